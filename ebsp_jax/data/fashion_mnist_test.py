"""Tests for the idx reader on the real Fashion-MNIST files and on crafted/corrupt files."""

from __future__ import annotations

import gzip
import os
import struct
import time

import numpy as np
import pytest

from ebsp_jax import data
from ebsp_jax.data import fashion_mnist as fm

REAL_DIR = fm.DEFAULT_DATA_DIR
needs_real = pytest.mark.skipif(
    not fm.has_idx_files(REAL_DIR), reason=f"Fashion-MNIST not installed in {REAL_DIR}"
)


def idx_bytes(arr: np.ndarray) -> bytes:
  """Serialize a uint8 array in idx format."""
  assert arr.dtype == np.uint8
  return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_split(d: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
  img_name, lbl_name = fm.FILES[split]
  with gzip.open(os.path.join(d, img_name), "wb") as f:
    f.write(idx_bytes(images))
  with gzip.open(os.path.join(d, lbl_name), "wb") as f:
    f.write(idx_bytes(labels))


@pytest.fixture
def tiny_dir(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (("train", 12), ("test", 5)):
    write_split(str(tmp_path), split, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                (np.arange(n) % 10).astype(np.uint8))
  return tmp_path


@needs_real
def test_real_fashion_mnist():
  x, y = data.load_fashion_mnist("train")
  assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8
  assert y.shape == (60000,) and y.dtype == np.int32
  # Fashion-MNIST is balanced: 6,000 train and 1,000 test images per class.
  np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 6000))
  xt, yt = data.load_fashion_mnist("test", REAL_DIR)
  assert xt.shape == (10000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 1000))
  assert not x.flags.writeable  # cached arrays cannot be mutated by callers
  # The normalization constants of the pipeline are the training-set statistics.
  spec = data.get_spec("fashion_mnist")
  assert abs(x.mean() / 255 - spec.mean[0]) < 1e-4
  assert abs(x.std(dtype=np.float64) / 255 - spec.std[0]) < 1e-4
  # Images are not constant and differ between the splits.
  assert x[0].std() > 0 and not np.array_equal(x[:100], xt[:100])


def test_roundtrip_and_uncompressed(tiny_dir, tmp_path):
  x, y = fm.load("train", str(tiny_dir))
  assert x.shape == (12, 28, 28, 1) and y.tolist() == [i % 10 for i in range(12)]
  raw = tmp_path / "plain-idx"
  arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  raw.write_bytes(idx_bytes(arr))
  np.testing.assert_array_equal(fm.read_idx(str(raw)), arr)
  big = tmp_path / "int32-idx"
  vals = np.array([1, -2, 70000], np.int32)
  big.write_bytes(struct.pack(">BBBB", 0, 0, 0x0C, 1) + struct.pack(">I", 3) + vals.astype(">i4").tobytes())
  out = fm.read_idx(str(big))
  np.testing.assert_array_equal(out, vals)
  assert out.dtype == np.int32 and out.dtype.isnative


def _expect_value_error(path, *match):
  with pytest.raises(ValueError) as e:
    fm.read_idx(str(path))
  msg = str(e.value)
  assert "\n" not in msg and str(path) in msg
  for m in match:
    assert m in msg, msg


def test_corrupt_files(tmp_path):
  good = idx_bytes(np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8))
  p = tmp_path / "truncated.gz"
  p.write_bytes(gzip.compress(good[:-100]))
  _expect_value_error(p, "truncated")
  p = tmp_path / "trailing.gz"
  p.write_bytes(gzip.compress(good + b"xx"))
  _expect_value_error(p, "trailing data")
  p = tmp_path / "badmagic.gz"
  p.write_bytes(gzip.compress(b"\x12\x34" + good[2:]))
  _expect_value_error(p, "bad magic number 1234")
  p = tmp_path / "notgzip.gz"
  p.write_bytes(b"this is not gzip data at all")
  _expect_value_error(p, "cannot decompress")
  p = tmp_path / "cutgzip.gz"
  compressed = gzip.compress(good)
  assert len(compressed) > 1000
  p.write_bytes(compressed[:1000])
  _expect_value_error(p, "cannot decompress")
  p = tmp_path / "empty.gz"
  p.write_bytes(gzip.compress(b""))
  _expect_value_error(p, "(empty)")
  with pytest.raises(ValueError, match="has 3 dimensions, expected 1"):
    p = tmp_path / "rank.gz"
    p.write_bytes(gzip.compress(good))
    fm.read_idx(str(p), expected_ndim=1)


def test_inconsistent_split_files(tmp_path):
  write_split(str(tmp_path), "test", np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8))
  with pytest.raises(ValueError, match="4 images.*3 labels"):
    fm.load("test", str(tmp_path))
  write_split(str(tmp_path), "test", np.zeros((2, 28, 28), np.uint8), np.array([1, 12], np.uint8))
  with pytest.raises(ValueError, match="label 12 outside"):
    fm.load("test", str(tmp_path))
  write_split(str(tmp_path), "test", np.zeros((2, 32, 32), np.uint8), np.array([1, 2], np.uint8))
  with pytest.raises(ValueError, match=r"images are \(32, 32\), expected \(28, 28\)"):
    fm.load("test", str(tmp_path))


def test_missing_is_fast_and_explains(tmp_path):
  missing = tmp_path / "nope"
  t0 = time.perf_counter()
  with pytest.raises(FileNotFoundError) as e:
    fm.load("train", str(missing))
  assert time.perf_counter() - t0 < 1.0
  msg = str(e.value)
  assert str(missing / "train-images-idx3-ubyte.gz") in msg
  assert "apt-get install dataset-fashion-mnist" in msg and "data_dir" in msg and "\n" not in msg
  # Only the labels file missing: the message names exactly that file.
  write_split(str(tmp_path), "train", np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8))
  os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
  with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte.gz"):
    fm.load("train", str(tmp_path))
  with pytest.raises(ValueError, match="unknown split 'val' for fashion_mnist; allowed: train, test"):
    fm.load("val", str(tmp_path))
