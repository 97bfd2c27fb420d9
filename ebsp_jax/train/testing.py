"""Helpers for tests of the training library: a tiny learnable Fashion-MNIST stand-in on disk.

The images are written as the four idx ``.gz`` files ``ebsp_jax.data`` reads from any
``--data_dir``, so tests exercise the real input pipeline without the 30 MB dataset.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from typing import Any, Dict

import numpy as np
import PIL.Image

from ebsp_jax.data import fashion_mnist


def _write_idx(path: str, array: np.ndarray) -> None:
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion_mnist(directory: str, num_train: int = 256, num_test: int = 128,
                             seed: int = 0) -> str:
  """Writes a learnable 10-class 28x28 dataset (class = a bright block's position) as idx files.

  Returns:
    ``directory``.
  """
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)

  def make(n):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.int32)
    for i, c in enumerate(labels):
      r, col = divmod(int(c), 5)
      images[i, 4 + 10 * r:12 + 10 * r, 1 + 5 * col:6 + 5 * col] += 160
    return np.clip(images, 0, 255).astype(np.uint8), labels

  xtr, ytr = make(num_train)
  xte, yte = make(num_test)
  _write_idx(os.path.join(directory, "train-images-idx3-ubyte.gz"), xtr)
  _write_idx(os.path.join(directory, "train-labels-idx1-ubyte.gz"), ytr)
  _write_idx(os.path.join(directory, "t10k-images-idx3-ubyte.gz"), xte)
  _write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"), yte)
  return directory


def copy_with_shifted_labels(directory: str, out: str) -> str:
  """Copies the idx dataset in ``directory`` to ``out`` with every label ``y`` -> ``(y+1) % 10``
  (the same images and sizes: other data only a content check can tell apart). Returns ``out``."""
  os.makedirs(out, exist_ok=True)
  for images, labels in fashion_mnist.FILES.values():
    shutil.copyfile(os.path.join(directory, images), os.path.join(out, images))
    y = fashion_mnist.read_idx(os.path.join(directory, labels))
    _write_idx(os.path.join(out, labels), (y.astype(np.int64) + 1) % 10)
  return out


#: A 16-step run (4 float + 8 ADMM + 4 fine-tune steps of 32 examples) for pipeline tests.
TINY_FLAGS: Dict[str, Any] = dict(
    model="lenet5", train_examples=128, eval_examples=100, batch_size=32, eval_batch_size=50,
    float_epochs=1.0, admm_epochs=2.0, finetune_epochs=1.0, learning_rate=0.05,
    admm_learning_rate=0.02, finetune_learning_rate=0.01, admm_rho=0.01, admm_update_every=2,
    admm_rho_growth=1.5, pattern_bits=5, pattern_length=2, activation_bits=8,
    checkpoint_every=3, keep_checkpoints=50, log_every=2)


def as_argv(flags: Dict[str, Any]) -> list:
  """``{'a': 1, 'b': True}`` -> ``['--a=1', '--b']``."""
  out = []
  for k, v in flags.items():
    if isinstance(v, bool):
      out.append(f"--{k}" if v else f"--no{k}")
    else:
      out.append(f"--{k}={v}")
  return out


def write_tiny_tfds(data_dir: str, name: str, version: str, split_sizes: Dict[str, int],
                    image_shape, num_classes: int, seed: int = 0) -> str:
  """Writes a tiny prepared TFDS dataset (array_record) in the real layout, for pipeline tests.

  Args:
    data_dir: the TFDS data directory (``--data_dir``).
    name / version: TFDS builder name and version (e.g. ``cifar10``, ``3.0.2``).
    split_sizes: TFDS split -> number of random images.
    image_shape: (H, W, C), or (None, None, 3) for variable sizes (then 40..80 pixels).
    num_classes: labels drawn in ``[0, num_classes)``.
  """
  import tensorflow_datasets as tfds  # deferred heavy import (tensorflow_datasets)

  rng = np.random.default_rng(seed)

  def image():
    h, w, c = image_shape
    if h is None:
      h, w = (int(v) for v in rng.integers(40, 81, 2))
    return rng.integers(0, 256, (h, w, c), dtype=np.uint8)

  splits = {s: [(image(), int(rng.integers(0, num_classes))) for _ in range(n)]
            for s, n in split_sizes.items()}

  with tfds.core.registered.skip_registration():

    class Tiny(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version(version)

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=tuple(image_shape)),
            "label": tfds.features.ClassLabel(num_classes=num_classes)}))

      def _split_generators(self, dl_manager):
        return {s: self._generate_examples(ex) for s, ex in splits.items()}

      def _generate_examples(self, examples):
        for i, (img, label) in enumerate(examples):
          yield i, {"image": PIL.Image.fromarray(img if img.shape[-1] == 3 else img[..., 0]),
                    "label": label}

    Tiny.name = name
    Tiny(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir
