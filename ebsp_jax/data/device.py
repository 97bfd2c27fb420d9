"""Normalization of uint8 batches on the accelerator (``get_dataset(..., normalize=False)``).

The pipeline can hand uint8 images to the training step (a quarter of the bytes, no host
arithmetic); :func:`model_input` then normalizes them where they are, inside the jitted step, with
the constants and operation order of the host path (:func:`ebsp_jax.data.augment.normalize`:
``(float32(x) - 255 * mean) * (1 / (255 * std))`` in float32), so both give the same bits.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.data import augment


def normalize(images: jax.Array, mean: Sequence[float] | float,
              std: Sequence[float] | float) -> jax.Array:
  """uint8 (..., H, W, C) -> float32 ``(x / 255 - mean) / std``, per channel (traceable).

  Bit-identical to :func:`ebsp_jax.data.augment.normalize` of the same images.

  Raises:
    ValueError: ``images`` are not uint8 (one line).
  """
  if images.dtype != jnp.uint8:
    raise ValueError(f"device normalization expects uint8 images (normalize=False batches); "
                     f"got {images.dtype}")
  mean_a, inv_std = augment.normalize_constants(mean, std)
  return (images.astype(jnp.float32) - jnp.asarray(mean_a)) * jnp.asarray(inv_std)


def model_input(images: jax.Array | np.ndarray, mean: Sequence[float] | float,
                std: Sequence[float] | float) -> jax.Array:
  """The model's float input from either pipeline's images (traceable).

  uint8 images (``normalize=False``) are normalized with ``mean``/``std`` (:func:`normalize`);
  floating-point images were normalized on the host and are returned as they are. Under jit the
  choice is made once, from the traced dtype.

  Raises:
    ValueError: images of another dtype (one line).
  """
  dtype = np.dtype(images.dtype)
  if dtype == np.uint8:
    return normalize(jnp.asarray(images), mean, std)
  if np.issubdtype(dtype, np.floating):
    return images
  raise ValueError(f"model input: expected uint8 images (normalized here) or float images "
                   f"(normalized by the pipeline); got {dtype}")
