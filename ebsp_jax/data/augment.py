"""Numpy/PIL image augmentation and normalization (host side, deterministic given a Generator).

All functions take uint8 images in HWC / NHWC layout and a ``np.random.Generator``; the same
generator state gives the same output.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import PIL.Image

#: ImageNet eval: center crop of this fraction of the shorter side (224 of 256).
EVAL_CROP_FRACTION = 0.875


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, pad: int, flip: bool,
    start: int = 0, total: int | None = None,
) -> np.ndarray:
  """Zero-pad by ``pad`` pixels, take a random crop of the original size, maybe flip.

  The CIFAR recipe (pad 4, random 32x32 crop, horizontal flip with probability 1/2), vectorized
  over the batch.

  Args:
    images: uint8 (B, H, W, C).
    rng: random generator (consumed: ``total`` crop offsets per axis, then ``total`` flip draws
      if ``flip``).
    pad: padding on every side (0 disables cropping).
    flip: apply random horizontal flips.
    start / total: ``images`` are rows ``[start, start + B)`` of a batch of ``total`` (default
      B) drawn with ``rng``: they get exactly the crops and flips those rows get when the whole
      batch is augmented (one process's part of a global batch).

  Returns:
    uint8 (B, H, W, C), a new array.
  """
  b, h, w, _ = images.shape
  total = b if total is None else total
  if not 0 <= start <= start + b <= total:
    raise ValueError(f"rows [{start}, {start + b}) are not within a batch of {total}")
  part = slice(start, start + b)
  out = images
  if pad > 0:
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oy = rng.integers(0, 2 * pad + 1, size=total)[part]
    ox = rng.integers(0, 2 * pad + 1, size=total)[part]
    rows = oy[:, None] + np.arange(h)[None, :]
    cols = ox[:, None] + np.arange(w)[None, :]
    out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
  else:
    out = images.copy()
  if flip:
    mask = rng.random(total)[part] < 0.5
    out[mask] = out[mask, :, ::-1]
  return out


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
  """Crop box ``(left, top, right, bottom)`` of torchvision's ``RandomResizedCrop``.

  Samples area fraction in ``scale`` and log-uniform aspect ratio in ``ratio``; after
  ``attempts`` failures falls back to the largest central crop with ratio clipped to ``ratio``.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(attempts):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  top, left = (height - h) // 2, (width - w) // 2
  return left, top, left + w, top + h


def center_crop_box(height: int, width: int, fraction: float = EVAL_CROP_FRACTION) -> tuple[float, float, float, float]:
  """Central square covering ``fraction`` of the shorter side, as ``(left, top, right, bottom)``.

  Resizing this box to S x S equals "resize shorter side to S / fraction, center crop S"
  (224 from 256 for the default 0.875).
  """
  side = min(height, width) * fraction
  left, top = (width - side) / 2, (height - side) / 2
  return left, top, left + side, top + side


#: An image: uint8 HWC (or HW) array, or a PIL image (e.g. a decoded JPEG, used as it is).
Image = Union[np.ndarray, PIL.Image.Image]


def image_hw(image: Image) -> tuple[int, int]:
  """``(height, width)`` of an array or PIL image."""
  if isinstance(image, PIL.Image.Image):
    return image.height, image.width
  return int(image.shape[0]), int(image.shape[1])


def crop_resize(image: Image, box: Sequence[float], size: int, flip: bool = False) -> np.ndarray:
  """Crop ``box`` (left, top, right, bottom) from ``image`` and resize to size x size.

  Bilinear with antialiasing (PIL, ``reducing_gap`` off so results are exact and deterministic).
  ``image``: HWC uint8 array, or a PIL image (no copy into numpy and back; an array and the PIL
  image it came from give the same result). Grayscale (H, W) or (H, W, 1), RGBA and other PIL
  modes are converted to RGB. ``flip``: mirror the result left-right. Returns uint8
  (size, size, 3), C-contiguous.
  """
  if isinstance(image, PIL.Image.Image):
    pil = image
  else:
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    pil = PIL.Image.fromarray(image)
  if pil.mode != "RGB":
    pil = pil.convert("RGB")
  out = pil.resize((size, size), PIL.Image.Resampling.BILINEAR, box=tuple(float(v) for v in box))
  if flip:
    out = out.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(out, dtype=np.uint8)


def inception_crop_flip(image: Image, rng: np.random.Generator, size: int) -> np.ndarray:
  """ImageNet training augmentation: random-resized crop to size x size, then random flip.

  Args:
    image: uint8 (H, W, 3) (any size), or a PIL image.
    rng: random generator (consumed: the crop box, then one flip draw).
    size: output side.

  Returns:
    uint8 (size, size, 3).
  """
  box = random_resized_crop_box(*image_hw(image), rng)
  return crop_resize(image, box, size, flip=bool(rng.random() < 0.5))


def center_crop(image: Image, size: int) -> np.ndarray:
  """ImageNet eval preprocessing: central 87.5% of the shorter side resized to size x size."""
  return crop_resize(image, center_crop_box(*image_hw(image)), size)


def normalize_constants(mean: Sequence[float] | float, std: Sequence[float] | float
                        ) -> tuple[np.ndarray, np.ndarray]:
  """float32 ``(255 * mean, 1 / (255 * std))``: normalization is ``(x - c0) * c1`` in float32.

  The one definition of the constants, shared by :func:`normalize` (host) and
  :func:`ebsp_jax.data.device.normalize` (accelerator), so both give the same bits.
  """
  mean_a = np.asarray(mean, np.float32) * np.float32(255.0)
  inv_std = np.float32(1.0) / (np.asarray(std, np.float32) * np.float32(255.0))
  return mean_a, inv_std


def normalize(images: np.ndarray | Sequence[np.ndarray], mean: Sequence[float],
              std: Sequence[float]) -> np.ndarray:
  """uint8 NHWC -> float32 ``(x / 255 - mean) / std`` with per-channel ``mean``/``std`` in [0, 1].

  Computed in float32 as ``(float32(x) - 255 * mean) * (1 / (255 * std))``. For uint8 images
  with a channel axis the 256 possible results per channel are computed that way once and
  looked up image by image (identical values; 2-4x faster than the arithmetic over a whole
  ImageNet batch, whose float32 temporaries do not stay in cache).

  Args:
    images: (..., H, W, C) array, or a sequence of (H, W, C) arrays of one shape (stacked into
      the result, no intermediate uint8 batch).
    mean, std: one value per channel (or one for all).
  """
  mean_a, inv_std = normalize_constants(mean, std)
  if isinstance(images, (list, tuple)):
    parts = [np.asarray(im) for im in images]
    if not parts or any(p.shape != parts[0].shape for p in parts):
      raise ValueError(f"normalize: expected images of one shape, got "
                       f"{sorted({p.shape for p in parts})}")
    shape = (len(parts),) + parts[0].shape
  else:
    images = np.asarray(images)
    shape = images.shape
    parts = images.reshape((-1,) + shape[-3:]) if images.ndim >= 3 else [images]
  if (len(shape) < 3 or any(p.dtype != np.uint8 for p in parts)
      or not {mean_a.size, inv_std.size} <= {1, shape[-1]}):
    stacked = images if not isinstance(images, (list, tuple)) else np.stack(parts)
    return (stacked.astype(np.float32) - mean_a) * inv_std
  channels = shape[-1]
  # table[c * 256 + v]: channel c's value of level v; offsets[j]: 256 * (channel of element j).
  table = np.ascontiguousarray(
      ((np.arange(256, dtype=np.float32)[:, None] - np.broadcast_to(mean_a, (channels,)))
       * np.broadcast_to(inv_std, (channels,))).T).reshape(-1)
  per_image = int(np.prod(shape[-3:]))
  offsets = np.tile(np.arange(channels, dtype=np.intp) * 256, per_image // channels)
  out = np.empty(shape, np.float32)
  dst = out.reshape(len(parts), per_image)
  index = np.empty(per_image, np.intp)
  for i, part in enumerate(parts):
    np.add(offsets, part.reshape(-1), out=index)
    np.take(table, index, out=dst[i], mode="clip")   # every index < 256 * channels
  return out
