"""Tests for the grain pipeline over TFDS array_record data and in-memory idx data.

Tiny ``cifar10`` and ``imagenet2012`` datasets are written by the tests into a temporary
directory in the real prepared layout (``<dir>/<name>/<version>/``, array_record shards, PIL
images), so the whole TFDS -> grain path runs without network or TensorFlow.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import PIL.Image
import pytest

from ebsp_jax import data
from ebsp_jax.data import augment as aug
from ebsp_jax.data import fashion_mnist as fm

N_TRAIN, N_TEST = 50, 20


def _write_tfds(data_dir: str, name: str, version: str, splits: dict[str, list[tuple[np.ndarray, int]]],
                image_shape, num_classes: int) -> None:
  import tensorflow_datasets as tfds

  with tfds.core.registered.skip_registration():

    class Tiny(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version(version)

      def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=image_shape),
                "label": tfds.features.ClassLabel(num_classes=num_classes),
            }),
        )

      def _split_generators(self, dl_manager):
        return {s: self._generate_examples(ex) for s, ex in splits.items()}

      def _generate_examples(self, examples):
        for i, (img, label) in enumerate(examples):
          yield i, {"image": PIL.Image.fromarray(img if img.shape[-1] == 3 else img[..., 0]), "label": label}

    Tiny.name = name
    Tiny(data_dir=data_dir, file_format="array_record").download_and_prepare()


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  rng = np.random.default_rng(0)
  cifar = {
      s: [(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), int(rng.integers(0, 10))) for _ in range(n)]
      for s, n in (("train", N_TRAIN), ("test", N_TEST))
  }
  _write_tfds(d, "cifar10", "3.0.2", cifar, (32, 32, 3), 10)
  sizes = [(40, 56), (64, 48), (37, 37), (80, 30), (50, 70), (45, 45)]
  imnet = {
      s: [(rng.integers(0, 256, (*sizes[i % len(sizes)], 3), dtype=np.uint8), int(rng.integers(0, 1000)))
          for i in range(n)]
      for s, n in (("train", 6), ("validation", 4))
  }
  _write_tfds(d, "imagenet2012", "5.1.0", imnet, (None, None, 3), 1000)
  mnist = {
      s: [(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), int(rng.integers(0, 10))) for _ in range(n)]
      for s, n in (("train", 10), ("test", 6))
  }
  _write_tfds(d, "mnist", "3.0.1", mnist, (28, 28, 1), 10)
  return d


def raw_split(d: str, tfds_name: str, split: str):
  import tensorflow_datasets as tfds

  vdir = data.find_prepared(tfds_name, d, split)
  src = tfds.builder_from_directory(vdir).as_data_source(split=split)
  return [np.asarray(src[i]["image"]) for i in range(len(src))], np.asarray([src[i]["label"] for i in range(len(src))])


def cifar(d, **kw):
  kw.setdefault("batch_size", 8)
  return data.get_dataset("cifar10", data_dir=d, **kw)


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys() == {"image", "label"}
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])


def test_shapes_dtypes_normalization(tfds_dir):
  images, labels = raw_split(tfds_dir, "cifar10", "test")
  ds = cifar(tfds_dir, split="test")  # test defaults: no shuffle, no augment, keep remainder
  assert (ds.shuffle, ds.augment, ds.drop_remainder) == (False, False, False)
  assert (ds.num_examples, ds.num_classes, ds.input_shape, ds.steps_per_epoch, len(ds)) == (N_TEST, 10, (32, 32, 3), 3, 3)
  batches = list(ds)
  assert [b["image"].shape for b in batches] == [(8, 32, 32, 3), (8, 32, 32, 3), (4, 32, 32, 3)]
  img = np.concatenate([b["image"] for b in batches])
  assert img.dtype == np.float32 and batches[0]["label"].dtype == np.int32
  mean, std = np.array(data.get_spec("cifar10").mean), np.array(data.get_spec("cifar10").std)
  np.testing.assert_allclose(img, (np.stack(images) / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels)


def test_train_defaults_cap_and_epochs(tfds_dir):
  ds = cifar(tfds_dir, num_examples=30, num_epochs=2)
  assert (ds.shuffle, ds.augment, ds.drop_remainder) == (True, True, True)
  assert (ds.num_examples, ds.steps_per_epoch, ds.total_steps, len(ds)) == (30, 3, 6, 6)
  _, labels = raw_split(tfds_dir, "cifar10", "train")
  # Without augmentation, each epoch is a permutation of (a subset of) the first 30 examples.
  ds = cifar(tfds_dir, num_examples=30, num_epochs=2, augment=False, batch_size=10)
  epochs = [np.concatenate([b["image"] for b in list(ds)[e * 3:(e + 1) * 3]]) for e in range(2)]
  ref = cifar(tfds_dir, num_examples=30, shuffle=False, augment=False, batch_size=30)[0]["image"]
  key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
  assert key(epochs[0]) == key(epochs[1]) == key(ref)
  assert not np.array_equal(epochs[0], epochs[1]), "reshuffled every epoch"
  assert not np.array_equal(epochs[0], ref), "shuffled"
  inf = cifar(tfds_dir, num_epochs=None)
  assert inf.total_steps is None
  with pytest.raises(TypeError, match="infinite"):
    len(inf)
  np.testing.assert_array_equal(inf[1000]["label"].shape, (8,))


def test_determinism_and_resume(tfds_dir):
  kw = dict(num_epochs=2, seed=7)
  full = list(cifar(tfds_dir, **kw))
  assert len(full) == 2 * (N_TRAIN // 8)
  assert_batches_equal(full, list(cifar(tfds_dir, **kw)))
  assert_batches_equal(full, list(cifar(tfds_dir, num_threads=0, **kw)))  # threads do not matter
  for k in (1, 6, 11):
    resumed = cifar(tfds_dir, start_step=k, **kw)
    assert len(resumed) == len(full) - k
    assert_batches_equal(full[k:], list(resumed))
  ds = cifar(tfds_dir, **kw)
  np.testing.assert_array_equal(ds[9]["image"], full[9]["image"])
  with pytest.raises(IndexError):
    ds[len(full)]
  other = list(cifar(tfds_dir, num_epochs=2, seed=8))
  assert not np.array_equal(other[0]["image"], full[0]["image"])


def crop_flip_matches(original: np.ndarray, out: np.ndarray, pad: int) -> list[tuple[int, int, int]]:
  """All (oy, ox, flipped) such that ``out`` is that crop of the zero-padded ``original``."""
  h, w, _ = original.shape
  padded = np.pad(original, ((pad, pad), (pad, pad), (0, 0))).astype(int)
  return [(oy, ox, f) for oy in range(2 * pad + 1) for ox in range(2 * pad + 1) for f in (0, 1)
          if np.array_equal(padded[oy:oy + h, ox:ox + w][:, ::-1 if f else 1], out)]


def denormalize(images: np.ndarray, spec: data.DatasetSpec) -> np.ndarray:
  return np.rint(images * np.array(spec.std) * 255 + np.array(spec.mean) * 255).astype(int)


def test_augmentation_is_crop_and_flip_of_original(tfds_dir):
  images, labels = raw_split(tfds_dir, "cifar10", "train")
  ds = cifar(tfds_dir, shuffle=False, augment=True, batch_size=10, seed=3)
  batch = ds[0]
  raw = denormalize(batch["image"], data.get_spec("cifar10"))
  flips = 0
  for i in range(10):
    matches = crop_flip_matches(images[i], raw[i], pad=4)
    assert matches, f"augmented image {i} is not a pad-4 crop (+flip) of the original"
    flips += matches[0][2]
  assert 0 < flips < 10
  np.testing.assert_array_equal(batch["label"], labels[:10])
  assert not np.array_equal(raw, np.stack(images[:10])), "augmentation did something"


@pytest.mark.parametrize("shape, name", [((3, 17, 9, 3), "imagenet"), ((4, 28, 28, 1), "fashion_mnist"),
                                         ((17, 9, 3), "cifar10"), ((2, 2, 5, 7, 3), "cifar10")])
def test_normalize_is_the_float32_formula_exactly(shape, name):
  """The table lookup gives bit for bit what the float32 arithmetic gives (every level)."""
  spec = data.get_spec(name)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, shape, dtype=np.uint8)
  x.reshape(-1)[:256] = np.arange(256)
  want = ((x.astype(np.float32) - np.float32(255.0) * np.asarray(spec.mean, np.float32))
          * (np.float32(1.0) / (np.asarray(spec.std, np.float32) * np.float32(255.0))))
  for images in (x, x[..., ::-1, :]):   # contiguous and strided
    w = want if images is x else want[..., ::-1, :]
    got = aug.normalize(images, spec.mean, spec.std)
    assert got.dtype == np.float32 and got.shape == images.shape
    np.testing.assert_array_equal(got.view(np.uint32), np.ascontiguousarray(w).view(np.uint32))
  if x.ndim == 4:                         # a list of images: stacked
    got = aug.normalize(list(x), spec.mean, spec.std)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    with pytest.raises(ValueError, match="normalize: expected images of one shape"):
      aug.normalize([x[0], x[0, :-1]], spec.mean, spec.std)


def test_inception_crop_flip_is_crop_then_mirror():
  """Crop box, then a flip draw; the flip mirrors the resized crop (PIL and array inputs alike)."""
  rng = np.random.default_rng(0)
  flips = 0
  for k in range(40):
    im = rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3), np.uint8)
    a, b = np.random.default_rng(k), np.random.default_rng(k)
    box = aug.random_resized_crop_box(im.shape[0], im.shape[1], b)
    want = aug.crop_resize(im, box, 16)
    if b.random() < 0.5:
      want, flips = want[:, ::-1], flips + 1
    got = aug.inception_crop_flip(im, a, 16)
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous and a.random() == b.random()   # same draws consumed
    np.testing.assert_array_equal(aug.inception_crop_flip(PIL.Image.fromarray(im),
                                                          np.random.default_rng(k), 16), want)
  assert 10 < flips < 30


def test_random_crop_flip_statistics():
  rng = np.random.default_rng(0)
  img = np.zeros((2000, 4, 4, 1), np.uint8)
  img[:, 0, 0, 0] = 255  # top-left marker
  out = aug.random_crop_flip(img, rng, pad=1, flip=True)
  # Marker at padded (1, 1); offsets oy, ox uniform in {0, 1, 2}: visible iff oy <= 1 and
  # ox <= 1 (probability 4/9), at (1 - oy, 1 - ox), column mirrored to 3 - c when flipped.
  pos = np.argwhere(out[..., 0] == 255)
  assert abs(len(pos) / 2000 - 4 / 9) < 0.04
  assert abs(np.mean(np.isin(pos[:, 2], [2, 3])) - 0.5) < 0.06  # about half flipped
  assert set(map(tuple, pos[:, 1:])) == {(0, 0), (0, 1), (1, 0), (1, 1), (0, 3), (0, 2), (1, 3), (1, 2)}
  assert out.shape == img.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(aug.random_crop_flip(img[:3], np.random.default_rng(1), 0, False), img[:3])


def test_imagenet_tiny(tfds_dir):
  raw, labels = raw_split(tfds_dir, "imagenet2012", "validation")
  ds = data.get_dataset("imagenet", split="test", data_dir=tfds_dir, batch_size=2, image_size=24)
  assert ds.input_shape == (24, 24, 3) and ds.num_classes == 1000 and len(ds) == 2
  batches = list(ds)
  assert batches[0]["image"].shape == (2, 24, 24, 3)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels)
  spec = data.get_spec("imagenet")
  want = aug.normalize(np.stack([aug.center_crop(im, 24) for im in raw[:2]]), spec.mean, spec.std)
  np.testing.assert_allclose(batches[0]["image"], want, rtol=1e-6, atol=1e-6)
  train = data.get_dataset("imagenet", split="train", data_dir=tfds_dir, batch_size=3, image_size=24, seed=1)
  a, b = list(train), list(data.get_dataset("imagenet", split="train", data_dir=tfds_dir, batch_size=3, image_size=24, seed=1, start_step=1))
  assert_batches_equal(a[1:], b)
  assert a[0]["image"].shape == (3, 24, 24, 3) and np.isfinite(a[0]["image"]).all()
  assert data.get_dataset("imagenet", split="test", data_dir=tfds_dir).input_shape == (224, 224, 3)


def _jpeg(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  PIL.Image.fromarray(image).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def test_imagenet_jpegs_decoded_into_the_crop_equal_tfds_decoding(tmp_path):
  """ImageNet JPEGs (RGB and grayscale) are decoded by PIL straight into the crop; the batches
  equal those made from TFDS's decoded arrays (the path without ``encoded``), bit for bit."""
  import tensorflow_datasets as tfds

  rng = np.random.default_rng(3)
  jpegs = [_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
           for h, w in ((50, 70), (64, 48), (37, 90), (80, 80), (45, 61))]
  jpegs.insert(2, _jpeg(rng.integers(0, 256, (52, 66), dtype=np.uint8)))   # grayscale
  with tfds.core.registered.skip_registration():

    class Jpegs(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version("5.1.0")

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=1000)}))

      def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(), "validation": self._generate_examples()}

      def _generate_examples(self):
        for i, j in enumerate(jpegs):
          yield i, {"image": io.BytesIO(j), "label": i}

    Jpegs.name = "imagenet2012"
    Jpegs(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  raw, _ = raw_split(str(tmp_path), "imagenet2012", "train")
  assert (52, 66, 3) in [im.shape for im in raw]   # TFDS: the grayscale JPEG as 3 channels
  for split, augment in (("train", True), ("test", False)):
    kw = dict(split=split, data_dir=str(tmp_path), batch_size=4, image_size=32, seed=5,
              augment=augment, num_epochs=2, drop_remainder=False)
    direct = data.get_dataset("imagenet", **kw)
    assert direct._source.encoded is not None
    via_arrays = data.get_dataset("imagenet", **kw)
    via_arrays._source.encoded = None                 # TFDS decodes to numpy, as before
    assert_batches_equal(list(direct), list(via_arrays))
  spec = data.get_spec("imagenet")
  first = data.get_dataset("imagenet", split="test", data_dir=str(tmp_path), batch_size=6,
                           image_size=32)[0]["image"]
  raw, _ = raw_split(str(tmp_path), "imagenet2012", "validation")
  want = aug.normalize(np.stack([aug.center_crop(im, 32) for im in raw]), spec.mean, spec.std)
  np.testing.assert_array_equal(first, want)


def test_uint8_batches_are_the_normalized_ones_before_normalizing(tfds_dir):
  for name, kw in (("imagenet", dict(image_size=24, batch_size=4)), ("cifar10", dict(batch_size=8))):
    kw = dict(kw, split="train", data_dir=tfds_dir, num_epochs=1, seed=2, rows=(1, 4))
    spec = data.get_spec(name)
    for norm, raw in zip(data.get_dataset(name, **kw), data.get_dataset(name, normalize=False, **kw)):
      assert raw["image"].dtype == np.uint8 and norm["image"].dtype == np.float32
      np.testing.assert_array_equal(aug.normalize(raw["image"], spec.mean, spec.std), norm["image"])
      np.testing.assert_array_equal(raw["label"], norm["label"])


def test_mnist_from_tfds(tfds_dir):
  images, labels = raw_split(tfds_dir, "mnist", "test")
  ds = data.get_dataset("mnist", split="test", data_dir=tfds_dir, batch_size=4)
  assert ds.source_description == f"TFDS mnist in {tfds_dir}" and ds.input_shape == (28, 28, 1)
  b = ds[0]
  assert b["image"].shape == (4, 28, 28, 1)
  np.testing.assert_allclose(b["image"], (np.stack(images[:4]) / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(b["label"], labels[:4])
  # 'crop' augmentation for digits: pad-2 crops, never flipped.
  tr_images, _ = raw_split(tfds_dir, "mnist", "train")
  tr = data.get_dataset("mnist", data_dir=tfds_dir, batch_size=10, augment=True, shuffle=False)
  raw = denormalize(tr[0]["image"], data.get_spec("mnist"))
  shifted = 0
  for i in range(10):
    matches = crop_flip_matches(tr_images[i], raw[i], pad=2)
    assert matches and all(f == 0 for _, _, f in matches), i
    shifted += matches[0][:2] != (2, 2)
  assert shifted > 0


def test_center_crop_box_matches_resize_then_crop():
  # 256x320 image: resize shorter side to 256 is identity; center 224 crop box = [48,16..272,240].
  assert aug.center_crop_box(256, 320) == (48.0, 16.0, 272.0, 240.0)
  img = np.random.default_rng(0).integers(0, 256, (256, 320, 3), dtype=np.uint8)
  np.testing.assert_array_equal(aug.center_crop(img, 224), img[16:240, 48:272])
  for _ in range(50):
    l, t, r, b = aug.random_resized_crop_box(100, 60, np.random.default_rng(_))
    assert 0 <= l < r <= 60 and 0 <= t < b <= 100
    assert (r - l) * (b - t) >= 0.05 * 6000


def test_fashion_mnist_pipeline(tmp_path):
  if not fm.has_idx_files(fm.DEFAULT_DATA_DIR):
    pytest.skip("Fashion-MNIST not installed")
  x, y = fm.load("test")
  ds = data.get_dataset("fashion_mnist", split="test", batch_size=100, num_examples=1000)
  assert (len(ds), ds.input_shape, ds.num_classes) == (10, (28, 28, 1), 10)
  assert "idx files in /usr/share/datasets/fashion-mnist" in ds.source_description
  b = ds[0]
  np.testing.assert_array_equal(b["label"], y[:100])
  np.testing.assert_allclose(b["image"], (x[:100] / 255.0 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-5)
  tr = data.get_dataset("fashion_mnist", batch_size=256, num_examples=2048, seed=0)
  assert len(tr) == 8
  first = tr[0]
  assert first["image"].shape == (256, 28, 28, 1) and abs(float(first["image"].mean())) < 0.3


def test_missing_data_fast_and_clear(tmp_path):
  for name, tfds_name in (("cifar10", "cifar10"), ("imagenet", "imagenet2012"), ("mnist", "mnist")):
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError) as e:
      data.get_dataset(name, data_dir=str(tmp_path))
    assert time.perf_counter() - t0 < 1.0
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / tfds_name) in msg, msg
    assert f"tfds build {tfds_name}" in msg and "--file_format=array_record" in msg
    # The hint is complete: where to copy the prepared data, or which option to point at it.
    assert msg.endswith(f"holds {tfds_name}/<version>/ prepared that way"), msg
    assert f"copy {tmp_path / tfds_name} to the same path" in msg and "--data_dir" in msg
  with pytest.raises(FileNotFoundError, match="--manual_dir"):
    data.get_dataset("imagenet", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    data.get_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_tfrecord_only_dataset_is_explained(tmp_path):
  vdir = tmp_path / "cifar10" / "3.0.2"
  vdir.mkdir(parents=True)
  (vdir / "dataset_info.json").write_text(json.dumps({"name": "cifar10", "splits": [{"name": "train"}]}))
  with pytest.raises(ValueError, match="prepared as tfrecord, which needs TensorFlow.*--file_format=array_record"):
    data.get_dataset("cifar10", data_dir=str(tmp_path))


def test_argument_errors(tfds_dir):
  with pytest.raises(ValueError, match="unknown dataset 'cifar100'; known: cifar10, fashion_mnist, imagenet, mnist"):
    data.get_dataset("cifar100")
  with pytest.raises(ValueError, match="unknown split 'validation' for cifar10; allowed: train, test"):
    cifar(tfds_dir, split="validation")
  with pytest.raises(ValueError, match="image_size applies to variable-size datasets"):
    cifar(tfds_dir, image_size=64)
  with pytest.raises(ValueError, match="batch_size must be a positive int"):
    cifar(tfds_dir, batch_size=0)
  with pytest.raises(ValueError, match="start_step must be >= 0"):
    cifar(tfds_dir, start_step=-1)
  with pytest.raises(ValueError, match="give no batch of 64 with drop_remainder=True"):
    cifar(tfds_dir, batch_size=64)
  with pytest.raises(ValueError, match="imagenet2012: split 'test' not in .*; available: train, validation"):
    data.find_prepared("imagenet2012", tfds_dir, "test")
  with pytest.raises(ValueError, match=r"rows must be \(start, stop\) with 0 <= start <= stop <= batch_size=8"):
    cifar(tfds_dir, rows=(4, 9))
  with pytest.raises(ValueError, match=r"^num_threads must be an int >= 0 \(0: load in the calling thread\); got -1$"):
    cifar(tfds_dir, num_threads=-1)
  with pytest.raises(ValueError, match=r"^prefetch must be an int >= 0; got 1.5$"):
    cifar(tfds_dir, prefetch=1.5)


def _concat_rows(datasets):
  """Batches of ``datasets`` (row parts of one dataset) concatenated back, batch by batch."""
  return [{k: np.concatenate([b[k] for b in parts]) for k in ("image", "label")}
          for parts in zip(*[list(d) for d in datasets])]


def test_rows_are_the_rows_of_the_whole_batch(tfds_dir):
  """Multi-host loading: each process's rows equal those rows of the whole batch (augmented)."""
  kw = dict(num_epochs=2, seed=5, batch_size=8)
  whole = list(cifar(tfds_dir, **kw))
  assert_batches_equal(whole, _concat_rows([cifar(tfds_dir, rows=r, **kw)
                                            for r in ((0, 3), (3, 4), (4, 8))]))
  part = cifar(tfds_dir, rows=(2, 6), start_step=3, **kw)
  assert_batches_equal([{k: b[k][2:6] for k in b} for b in whole[3:]], list(part))
  # Evaluation: the last batch of 20 is short (4); rows past it are empty, not an error.
  test = list(cifar(tfds_dir, split="test"))
  tail = list(cifar(tfds_dir, split="test", rows=(4, 8)))
  assert [len(b["label"]) for b in tail] == [4, 4, 0] and tail[-1]["image"].shape == (0, 32, 32, 3)
  assert_batches_equal(test, _concat_rows([cifar(tfds_dir, split="test", rows=(0, 4)),
                                           cifar(tfds_dir, split="test", rows=(4, 8))]))
  # ImageNet: random-resized crops and flips drawn per example.
  im = dict(split="train", data_dir=tfds_dir, batch_size=3, image_size=24, seed=2, num_epochs=2)
  whole = list(data.get_dataset("imagenet", **im))
  assert_batches_equal(whole, _concat_rows([data.get_dataset("imagenet", rows=r, **im)
                                            for r in ((0, 1), (1, 3))]))
  assert not np.array_equal(whole[0]["image"], whole[2]["image"])  # epochs differ (reshuffled)


@pytest.mark.parametrize("info, match", [
    ("[1, 2]", "expected a JSON object, found list"),
    ('{"fileFormat": "array_record", "splits": "train"}',
     "'splits' must be a list of objects with a string 'name'"),
    ('{"fileFormat": "array_record", "splits": [{"name": 3}]}', "'splits' must be a list"),
    ('{"fileFormat": ["array_record"]}', "'fileFormat' must be a string, found list"),
    ('{"fileFormat": "array_record", "splits": [', "not valid JSON"),
    (b"\xff\xfe{", "not valid JSON \\(UnicodeDecodeError"),
])
def test_malformed_dataset_info_is_one_line(tmp_path, info, match):
  vdir = tmp_path / "cifar10" / "3.0.2"
  vdir.mkdir(parents=True)
  path = vdir / "dataset_info.json"
  path.write_bytes(info if isinstance(info, bytes) else info.encode())
  with pytest.raises(ValueError, match=f"malformed TFDS dataset info {path}: {match}") as e:
    data.get_dataset("cifar10", data_dir=str(tmp_path))
  assert "\n" not in str(e.value)


def _write_idx_dir(d, images, labels):
  from ebsp_jax.data.fashion_mnist_test import write_split  # pylint: disable=g-import-not-at-top
  d.mkdir()
  write_split(str(d), "train", images, labels)
  write_split(str(d), "test", images[:7], labels[:7])
  return str(d)


def test_fingerprint_is_of_the_content(tmp_path):
  """Same examples elsewhere: the same fingerprint, whatever the batching; labels shifted by
  one, or one pixel changed: another; the --train_examples cap counts."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, 40).astype(np.uint8)
  a = _write_idx_dir(tmp_path / "a", images, labels)
  b = _write_idx_dir(tmp_path / "b", images, labels)
  shifted = _write_idx_dir(tmp_path / "shifted", images, (labels + 1) % 10)
  pixel = images.copy()
  pixel[39, 27, 27] ^= 1
  one_pixel = _write_idx_dir(tmp_path / "pixel", pixel, labels)

  def fp(d, **kw):
    return data.get_dataset("fashion_mnist", data_dir=d, **kw).fingerprint()

  ref = fp(a, batch_size=8)
  assert len(ref) == 64 and fp(b, batch_size=5, seed=3, augment=True) == ref
  assert fp(shifted, batch_size=8) != ref and fp(one_pixel, batch_size=8) != ref
  assert fp(a, batch_size=8, num_examples=39) != ref
  assert fp(one_pixel, batch_size=8, num_examples=39) == fp(a, batch_size=8, num_examples=39)
  assert fp(a, split="test") != fp(a, batch_size=8)


def test_tfds_fingerprint_reads_a_sample(tfds_dir):
  ds = cifar(tfds_dir, split="test")
  assert ds.fingerprint() == cifar(tfds_dir, split="test", batch_size=3).fingerprint()
  assert ds.fingerprint() != cifar(tfds_dir, split="test", num_examples=N_TEST - 1).fingerprint()
  assert ds.fingerprint() != cifar(tfds_dir, split="train").fingerprint()
  assert len(data.get_dataset("imagenet", split="test", data_dir=tfds_dir,
                              batch_size=2).fingerprint()) == 64
