"""One input pipeline for every dataset: grain ``MapDataset`` over index batches.

Pipeline (all random access, so any batch can be produced directly)::

    range(num_examples) -> shuffle(seed) -> batch(batch_size) -> repeat(num_epochs)
        -> random_map(load + augment + normalize, seed)

* Shuffling is a grain ``MapDataset.shuffle`` permutation, reshuffled every epoch by
  ``repeat`` (reseed_each_epoch); batches never straddle epochs.
* Augmentation draws from the generator grain derives from ``(seed, global batch index)``, so
  batch ``k`` is the same whether reached by iterating from 0 or by starting at
  ``start_step=k`` (exact resume after a checkpoint), and independent of thread count.
* ``rows=(start, stop)`` loads only those rows of every global batch (one process's part in
  multi-host data parallelism); they equal the same rows of the whole batch, augmentation
  included (crop/flip draws are made for the whole batch; ImageNet crops use one generator per
  example, seeded from the batch's).
* Images are gathered per batch (numpy fancy indexing for in-memory data, one
  ``__getitems__`` call for TFDS array_record sources). Variable-size images (ImageNet JPEGs)
  are read as stored and decoded by PIL straight into their crop (the same pixels TFDS's own
  PIL decoding gives, without the round trip through numpy), and normalized image by image
  into the batch. ``num_threads`` (``--data_workers``) grain threads build batches ahead.

Batches are dicts of numpy arrays: ``'image'`` float32 (B, H, W, C) normalized with the
dataset's mean/std (``normalize=False``: uint8 as cropped, for normalization on the accelerator
with ``spec.mean``/``spec.std``: a quarter of the bytes to copy and no host work),
``'label'`` int32 (B,).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from typing import Any, Iterator, Mapping

import grain
import numpy as np
import PIL.Image

from ebsp_jax.data import augment as aug
from ebsp_jax.data import fashion_mnist as idx
from ebsp_jax.data import tfds_source


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static description of a dataset.

  Attributes:
    name: our name ('cifar10', ...).
    tfds_name: TFDS builder name of the prepared array_record data.
    splits: our split ('train'/'test') -> TFDS split.
    num_classes: number of labels.
    image_shape: (H, W, C) of stored images, or None if sizes vary (ImageNet).
    default_image_size: output side for variable-size datasets (224 for ImageNet).
    mean: per-channel mean of the training images, in [0, 1] units.
    std: per-channel standard deviation (over all training pixels), in [0, 1] units.
    augment: 'crop_flip' (pad + random crop + horizontal flip), 'crop' (no flip, for digits)
      or 'inception' (random-resized crop + flip; eval = center crop).
    pad: padding of the random crop.
    idx: the four idx ``.gz`` files are also accepted (Fashion-MNIST, MNIST).
    default_dir: default data directory; None = the TFDS default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
  """

  name: str
  tfds_name: str
  splits: Mapping[str, str]
  num_classes: int
  image_shape: tuple[int, int, int] | None
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: str
  pad: int = 0
  default_image_size: int | None = None
  idx: bool = False
  default_dir: str | None = None


DATASETS: Mapping[str, DatasetSpec] = {
    # mean/std of Fashion-MNIST measured on its 60,000 training images (test checks them).
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", "fashion_mnist", {"train": "train", "test": "test"}, 10, (28, 28, 1),
        (0.2860,), (0.3530,), "crop_flip", pad=2, idx=True, default_dir=idx.DEFAULT_DATA_DIR),
    "mnist": DatasetSpec(
        "mnist", "mnist", {"train": "train", "test": "test"}, 10, (28, 28, 1),
        (0.1307,), (0.3081,), "crop", pad=2, idx=True),
    # CIFAR-10 per-channel mean and pixel std of the 50,000 training images.
    "cifar10": DatasetSpec(
        "cifar10", "cifar10", {"train": "train", "test": "test"}, 10, (32, 32, 3),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop_flip", pad=4),
    "imagenet": DatasetSpec(
        "imagenet", "imagenet2012", {"train": "train", "test": "validation"}, 1000, None,
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "inception", default_image_size=224),
}


#: Examples a dataset fingerprint reads from a TFDS source (in-memory data are hashed whole).
FINGERPRINT_SAMPLE = 128


def get_spec(name: str) -> DatasetSpec:
  """The :class:`DatasetSpec` of ``name``; one-line ValueError listing known names otherwise."""
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
  return DATASETS[name]


class _ArraySource:
  """In-memory uint8 images (N, H, W, C) and int32 labels (N,)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def get(self, indices: np.ndarray, as_pil: bool = False) -> tuple[Any, np.ndarray]:
    del as_pil  # arrays are what we hold
    return self.images[indices], self.labels[indices]

  def fingerprint(self, n: int) -> str:
    """SHA-256 of the first ``n`` examples, every image and label."""
    h = hashlib.sha256(f"array {n} {self.images.shape[1:]} {self.images.dtype.str}".encode())
    h.update(np.ascontiguousarray(self.images[:n]).view(np.uint8).reshape(-1))
    h.update(np.ascontiguousarray(self.labels[:n].astype("<i8")).view(np.uint8).reshape(-1))
    return h.hexdigest()


class _TfdsSource:
  """A TFDS array_record data source yielding {'image': uint8 HWC, 'label': int}.

  Args:
    source: the source with decoded images.
    encoded: the same split with the images as stored (JPEG bytes), or None: ``get(...,
      as_pil=True)`` then decodes them with PIL itself, straight into the crop (TFDS would
      decode to numpy, and the crop copy that back into PIL: the same pixels, ~10% more time).
  """

  def __init__(self, source: Any, encoded: Any = None):
    self.source, self.encoded = source, encoded

  def __len__(self) -> int:
    return len(self.source)

  def get(self, indices: np.ndarray, as_pil: bool = False) -> tuple[Any, np.ndarray]:
    """Images (uint8 HWC arrays, or decoded PIL images with ``as_pil`` when the source has
    ``encoded``) and int32 labels of ``indices``."""
    keys = [int(i) for i in indices]
    if as_pil and self.encoded is not None:
      records = self.encoded.__getitems__(keys)
      images = [_decode(r["image"]) for r in records]
    else:
      records = self.source.__getitems__(keys)
      images = [np.asarray(r["image"]) for r in records]
    labels = np.asarray([int(r["label"]) for r in records], np.int32)
    return images, labels

  def fingerprint(self, n: int) -> str:
    """SHA-256 of ``n`` and of :data:`FINGERPRINT_SAMPLE` evenly spaced examples of the first
    ``n`` (decoded images and labels): reading every record of a large split would take
    minutes."""
    idx = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_SAMPLE)).astype(np.int64))
    images, labels = self.get(idx)
    h = hashlib.sha256(f"sample {n} {idx.tolist()}".encode())
    for im, label in zip(images, labels):
      im = np.ascontiguousarray(im)
      h.update(f"{im.shape} {im.dtype.str} {int(label)}".encode())
      h.update(im.view(np.uint8).reshape(-1))
    return h.hexdigest()


def _decode(encoded: bytes) -> PIL.Image.Image:
  """A stored image (JPEG/PNG bytes) decoded by PIL, as TFDS decodes without OpenCV."""
  image = PIL.Image.open(io.BytesIO(encoded))
  image.load()
  return image


def _open(spec: DatasetSpec, split: str, data_dir: str | None) -> tuple[Any, str]:
  """Source for ``spec``/``split`` and a description of where it was found."""
  candidates = [data_dir] if data_dir else [d for d in (spec.default_dir, tfds_source.default_tfds_dir()) if d]
  for d in candidates:
    if spec.idx and any(os.path.isfile(os.path.join(d, f)) for f in idx.FILES[split]):
      images, labels = idx.load(split, d, dataset_name=spec.name)  # names a missing file
      return _ArraySource(images, labels), f"idx files in {d}"
  errors = []
  for d in candidates:
    try:
      tfds_source.find_prepared(spec.tfds_name, d, spec.splits[split])
    except FileNotFoundError as e:
      errors.append(str(e))
      continue
    src, _ = tfds_source.open_source(spec.tfds_name, d, spec.splits[split])
    encoded = None
    if spec.image_shape is None:  # variable-size JPEGs: decoded straight into the crop
      encoded, _ = tfds_source.open_source(spec.tfds_name, d, spec.splits[split],
                                           skip_decoding=("image",))
    return _TfdsSource(src, encoded), f"TFDS {spec.tfds_name} in {d}"
  if spec.idx:
    looked = " and ".join(
        f"{d} (idx files or {os.path.join(d, spec.tfds_name)}/<version>)" for d in candidates)
    hint = idx.HOW_TO_GET if spec.name == "fashion_mnist" else (
        "put the four MNIST idx .gz files there or " + tfds_source.prepare_hint(spec.tfds_name, candidates[0]))
    raise FileNotFoundError(f"{spec.name}: no data found in {looked}; {hint}")
  raise FileNotFoundError(errors[0] if len(errors) == 1 else " | ".join(errors))


class Dataset:
  """Deterministic, resumable iterable of batches ``{'image': f32 (B,H,W,C), 'label': i32 (B,)}``.

  Iteration yields global batches ``start_step, start_step + 1, ...`` up to ``total_steps``
  (forever if ``num_epochs`` is None). ``ds[k]`` returns global batch ``k`` directly.

  Attributes:
    spec: the :class:`DatasetSpec`.
    split: 'train' or 'test'.
    batch_size, seed, shuffle, augment, drop_remainder, num_epochs, start_step, normalize:
      as given.
    rows: ``(start, stop)``: only these rows of every batch are produced (None: all).
    num_examples: examples per epoch (after the ``num_examples`` cap).
    num_classes: number of labels.
    input_shape: (H, W, C) of the produced images.
    steps_per_epoch: batches per epoch.
    total_steps: ``num_epochs * steps_per_epoch``, or None when infinite.
    source_description: where the data were found (idx files / TFDS directory).
  """

  def __init__(
      self,
      spec: DatasetSpec,
      split: str,
      source: Any,
      source_description: str,
      *,
      batch_size: int,
      shuffle: bool,
      seed: int,
      augment: bool,
      num_examples: int | None,
      drop_remainder: bool,
      start_step: int,
      num_epochs: int | None,
      image_size: int | None,
      num_threads: int,
      prefetch: int,
      rows: tuple[int, int] | None = None,
      normalize: bool = True,
  ):
    self.spec, self.split, self.source_description = spec, split, source_description
    self.rows = rows
    self.batch_size, self.shuffle, self.seed, self.augment = batch_size, shuffle, seed, augment
    self.drop_remainder, self.num_epochs, self.start_step = drop_remainder, num_epochs, start_step
    self.num_threads, self.prefetch = num_threads, prefetch
    self.normalize = normalize
    self._source = source
    self.num_examples = len(source) if num_examples is None else min(num_examples, len(source))
    if spec.image_shape is None:
      size = image_size or spec.default_image_size
      self.input_shape: tuple[int, int, int] = (size, size, 3)
    else:
      self.input_shape = spec.image_shape
    self.num_classes = spec.num_classes
    self._mean, self._std = spec.mean, spec.std

    shuffle_seed, aug_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    ds = grain.MapDataset.range(self.num_examples)
    if shuffle:
      ds = ds.shuffle(seed=shuffle_seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    self.steps_per_epoch = len(ds)
    if self.steps_per_epoch == 0:
      raise ValueError(
          f"{spec.name}/{split}: {self.num_examples} examples give no batch of {batch_size} "
          "with drop_remainder=True; lower batch_size or set drop_remainder=False"
      )
    if num_epochs != 1:
      ds = ds.repeat(num_epochs)
    self.total_steps = None if num_epochs is None else num_epochs * self.steps_per_epoch
    self._ds = ds.random_map(self._make_batch, seed=aug_seed)

  # ---------------------------------------------------------------- batch construction
  def _make_batch(self, indices: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    indices = np.asarray(indices)
    total = len(indices)  # the whole batch (the last one of an epoch may be short)
    start, stop = (0, total) if self.rows is None else (min(r, total) for r in self.rows)
    indices = indices[start:stop]
    if len(indices) == 0:  # this process's rows lie past a short last batch
      return {"image": np.zeros((0,) + tuple(self.input_shape),
                                np.float32 if self.normalize else np.uint8),
              "label": np.zeros((0,), np.int32)}
    inception = self.spec.augment == "inception"
    images, labels = self._source.get(indices, as_pil=inception)
    size = self.input_shape[0]
    if inception:
      if self.augment:
        # One generator per example, so a row's crop does not depend on the rows before it.
        seeds = rng.integers(0, 2**63 - 1, size=total, dtype=np.int64)[start:stop]
        images = [aug.inception_crop_flip(im, np.random.default_rng(int(s)), size)
                  for im, s in zip(images, seeds)]
      else:
        images = [aug.center_crop(im, size) for im in images]
    else:
      images = np.stack(images) if isinstance(images, list) else np.asarray(images)
      if self.augment:
        images = aug.random_crop_flip(images, rng, self.spec.pad, self.spec.augment == "crop_flip",
                                      start=start, total=total)
    if self.normalize:
      images = aug.normalize(images, self._mean, self._std)
    elif isinstance(images, list):
      images = np.stack(images)
    return {"image": images, "label": labels.astype(np.int32)}

  # ------------------------------------------------------------------------- access
  def fingerprint(self) -> str:
    """SHA-256 (hex) identifying the examples this dataset reads (its ``num_examples``).

    Independent of where the data lie, the batch size, shuffling and augmentation: it changes
    when an image or a label changes. Idx (in-memory) data are hashed whole; a TFDS split
    through its size and :data:`FINGERPRINT_SAMPLE` evenly spaced examples.
    """
    return self._source.fingerprint(self.num_examples)

  def __getitem__(self, step: int) -> dict[str, np.ndarray]:
    """Global batch ``step`` (0-based, counting across epochs)."""
    if step < 0 or (self.total_steps is not None and step >= self.total_steps):
      raise IndexError(f"batch {step} out of range [0, {self.total_steps})")
    return self._ds[step]

  def __len__(self) -> int:
    """Number of batches iteration yields (from ``start_step``); TypeError if infinite."""
    if self.total_steps is None:
      raise TypeError("infinite dataset (num_epochs=None) has no len(); use steps_per_epoch")
    return max(0, self.total_steps - self.start_step)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    end = self.total_steps
    ds = self._ds.slice(slice(self.start_step, end))
    if self.num_threads <= 0:
      return (ds[i] for i in range(len(ds)))
    options = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=max(1, self.prefetch))
    return iter(ds.to_iter_dataset(options))

  def __repr__(self) -> str:
    return (
        f"Dataset({self.spec.name}/{self.split}, {self.num_examples} examples, batch "
        f"{self.batch_size}, steps/epoch {self.steps_per_epoch}, epochs {self.num_epochs}, "
        f"start_step {self.start_step}, shuffle={self.shuffle}, augment={self.augment}, "
        f"input {self.input_shape}, from {self.source_description}"
        + (f", rows {self.rows[0]}:{self.rows[1]}" if self.rows is not None else "") + ")"
    )


def get_dataset(
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int = 0,
    augment: bool | None = None,
    num_examples: int | None = None,
    drop_remainder: bool | None = None,
    start_step: int = 0,
    num_epochs: int | None = 1,
    image_size: int | None = None,
    num_threads: int = 2,
    prefetch: int = 2,
    rows: tuple[int, int] | None = None,
    normalize: bool = True,
) -> Dataset:
  """Batched, normalized, deterministic and resumable input pipeline.

  Args:
    name: 'fashion_mnist', 'mnist', 'cifar10' or 'imagenet'.
    split: 'train' or 'test' (ImageNet 'test' = the 50,000-image validation set).
    data_dir: directory holding the data; None = dataset default (Fashion-MNIST:
      /usr/share/datasets/fashion-mnist, then the TFDS default dir; others: ``$TFDS_DATA_DIR``
      or ``~/tensorflow_datasets``). Fashion-MNIST/MNIST accept the four idx ``.gz`` files
      directly in ``data_dir``; all datasets accept a prepared TFDS array_record dataset under
      ``data_dir/<tfds_name>/<version>/``.
    batch_size: examples per batch.
    shuffle: reshuffle every epoch; None = True for 'train', False for 'test'.
    seed: seeds shuffling and augmentation; same seed, same batches.
    augment: training augmentation (CIFAR/Fashion-MNIST: pad + random crop + flip; MNIST:
      pad + crop; ImageNet: random-resized crop + flip, otherwise center crop); None = True for
      'train', False for 'test'.
    num_examples: use only the first ``num_examples`` examples of the split (before shuffling).
    drop_remainder: drop the last partial batch of each epoch; None = True for 'train'.
    start_step: first global batch to yield (resume: equals skipping ``start_step`` batches).
    num_epochs: passes over the data; None = infinite.
    image_size: output side for ImageNet (default 224); must be None for fixed-size datasets.
    num_threads: grain reader threads (0 = synchronous, in the calling thread).
    prefetch: batches buffered ahead when ``num_threads > 0``.
    rows: ``(start, stop)``: produce only these rows of every batch of ``batch_size`` (this
      process's part of the global batch in multi-host training); they equal the same rows of
      the whole batch, augmentation included. Rows past a short last batch give fewer (or zero)
      examples. None: whole batches.
    normalize: float32 images normalized with the dataset's mean/std; False: uint8 images as
      cropped (normalize them on the accelerator: ``(x / 255 - spec.mean) / spec.std``).

  Returns:
    A :class:`Dataset`.

  Raises:
    ValueError: bad argument (one line naming it and what is allowed).
    FileNotFoundError: data missing (one line, within milliseconds, naming the path looked at and
      how to get the data).
  """
  spec = get_spec(name)
  if split not in spec.splits:
    raise ValueError(f"unknown split {split!r} for {name}; allowed: {', '.join(spec.splits)}")
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
  if num_examples is not None and num_examples < 1:
    raise ValueError(f"num_examples must be a positive int or None; got {num_examples!r}")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0; got {start_step}")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be a positive int or None; got {num_epochs!r}")
  if rows is not None and not (len(rows) == 2 and 0 <= rows[0] <= rows[1] <= batch_size):
    raise ValueError(f"rows must be (start, stop) with 0 <= start <= stop <= "
                     f"batch_size={batch_size}; got {rows!r}")
  if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
    raise ValueError(f"num_threads must be an int >= 0 (0: load in the calling thread); "
                     f"got {num_threads!r}")
  if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
    raise ValueError(f"prefetch must be an int >= 0; got {prefetch!r}")
  if image_size is not None and spec.image_shape is not None:
    raise ValueError(f"image_size applies to variable-size datasets (imagenet); {name} images are {spec.image_shape}")
  train = split == "train"
  source, where = _open(spec, split, data_dir)
  return Dataset(
      spec, split, source, where,
      batch_size=batch_size,
      shuffle=train if shuffle is None else bool(shuffle),
      seed=int(seed),
      augment=train if augment is None else bool(augment),
      num_examples=num_examples,
      drop_remainder=train if drop_remainder is None else bool(drop_remainder),
      start_step=int(start_step),
      num_epochs=num_epochs,
      image_size=image_size,
      num_threads=num_threads,
      prefetch=prefetch,
      rows=None if rows is None else (int(rows[0]), int(rows[1])),
      normalize=bool(normalize),
  )
