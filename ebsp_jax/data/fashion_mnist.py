"""Fashion-MNIST (and MNIST) from the four idx ``.gz`` files, parsed with numpy.

Default location: ``/usr/share/datasets/fashion-mnist``, installed by the Debian package
``dataset-fashion-mnist``. The same reader handles MNIST, whose files have the same names and
format. The idx format (LeCun): 2 zero bytes, a type byte (0x08 = uint8, ...), a byte with the
number of dimensions, one big-endian uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"

#: split -> (images file, labels file)
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

HOW_TO_GET = (
    "install it with `apt-get install dataset-fashion-mnist` (files go to "
    f"{DEFAULT_DATA_DIR}) or pass --data_dir / data_dir= pointing at a directory with "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz"
)


def read_idx(path: str, expected_ndim: int | None = None) -> np.ndarray:
  """Parse one idx file (gzip-compressed if it ends in ``.gz``).

  Args:
    path: file path.
    expected_ndim: if given, the file must have this many dimensions.

  Returns:
    Array with the file's dtype (native byte order) and shape.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: one line naming ``path`` for a bad magic number, wrong rank, truncated or
      oversized payload, or a corrupt gzip stream.
  """
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        raw = f.read()
    else:
      with open(path, "rb") as f:
        raw = f.read()
  except FileNotFoundError:
    raise
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f"corrupt idx file {path}: cannot decompress ({type(e).__name__}: {e})") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise ValueError(
        f"corrupt idx file {path}: bad magic number {raw[:4].hex() or '(empty)'} "
        "(expected 0000 + type byte 08/09/0b/0c/0d/0e + ndim)"
    )
  dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
  if expected_ndim is not None and ndim != expected_ndim:
    raise ValueError(f"corrupt idx file {path}: has {ndim} dimensions, expected {expected_ndim}")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f"corrupt idx file {path}: truncated header ({len(raw)} bytes)")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(raw) != expected:
    raise ValueError(
        f"corrupt idx file {path}: {len(raw)} bytes but header {shape} of {dtype.name} needs "
        f"{expected} ({'truncated' if len(raw) < expected else 'trailing data'})"
    )
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def has_idx_files(data_dir: str) -> bool:
  """True iff ``data_dir`` contains all four idx files."""
  return all(os.path.isfile(os.path.join(data_dir, f)) for pair in FILES.values() for f in pair)


def load(
    split: str, data_dir: str | None = None, dataset_name: str = "fashion_mnist"
) -> tuple[np.ndarray, np.ndarray]:
  """Load one split of Fashion-MNIST (or MNIST) from idx files.

  Args:
    split: 'train' (60,000 examples) or 'test' (10,000).
    data_dir: directory with the four idx ``.gz`` files; None = ``DEFAULT_DATA_DIR``.
    dataset_name: used in error messages only.

  Returns:
    images: uint8 (N, 28, 28, 1), read-only; labels: int32 (N,) in [0, 10), read-only.

  Raises:
    ValueError: unknown split or corrupt file (one line naming the file).
    FileNotFoundError: directory or file missing (one line naming the path and how to get it).
  """
  if split not in FILES:
    raise ValueError(f"unknown split {split!r} for {dataset_name}; allowed: train, test")
  data_dir = os.path.abspath(os.path.expanduser(data_dir or DEFAULT_DATA_DIR))
  for name in FILES[split]:
    path = os.path.join(data_dir, name)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{dataset_name}: missing {path}; {HOW_TO_GET}")
  return _load_cached(data_dir, split, *(os.path.getmtime(os.path.join(data_dir, n)) for n in FILES[split]))


@functools.lru_cache(maxsize=4)
def _load_cached(data_dir: str, split: str, *mtimes: float) -> tuple[np.ndarray, np.ndarray]:
  del mtimes  # part of the cache key only: a replaced file is re-read
  img_path, lbl_path = (os.path.join(data_dir, n) for n in FILES[split])
  images = read_idx(img_path, expected_ndim=3)
  labels = read_idx(lbl_path, expected_ndim=1)
  if images.dtype != np.uint8 or labels.dtype != np.uint8:
    raise ValueError(f"corrupt idx files in {data_dir}: expected uint8 images and labels")
  if images.shape[1:] != (28, 28):
    raise ValueError(f"corrupt idx file {img_path}: images are {images.shape[1:]}, expected (28, 28)")
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"idx files disagree: {img_path} has {images.shape[0]} images, {lbl_path} has "
        f"{labels.shape[0]} labels"
    )
  if labels.size and labels.max() >= 10:
    raise ValueError(f"corrupt idx file {lbl_path}: label {int(labels.max())} outside [0, 10)")
  images = images[..., None]
  labels = labels.astype(np.int32)
  images.flags.writeable = False
  labels.flags.writeable = False
  return images, labels
