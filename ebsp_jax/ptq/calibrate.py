"""Activation calibration of post-training quantization: statistics and the clipping range.

Each quantized layer's INPUT activation gets one format, as in training
(:mod:`ebsp_jax.quant.calibration`): unsigned ``uniform(bits, signed=False)`` when its
calibrated minimum is ``>= 0`` (after a ReLU), else signed sign-magnitude ``uniform(bits)``,
with one scale per tensor, ``scale = clip / max_level``. The statistics, gathered over every
calibration batch (:func:`range_stats`, :func:`histogram`, summed on the host), are

* the minimum and maximum (one pass);
* for ``'percentile'`` and ``'mse'``, a histogram of ``|x|`` over ``[0, absmax]`` in
  ``num_bins`` equal bins, exact zeros counted apart (a second pass, once ``absmax`` is known).

:func:`choose_format` turns them into the format:

* ``'minmax'``: ``clip = absmax`` (signed) or ``max`` (unsigned): exactly
  :func:`~ebsp_jax.quant.calibration.activation_scale`, the format an EMA-calibrated
  fake-quant model uses.
* ``'percentile'``: ``clip`` = the ``percentile``-th percentile of ``|x|`` (zeros included),
  read as the upper edge of the histogram bin where the cumulative count reaches it.
* ``'mse'``: the ``clip`` among the bin edges ``>= absmax / 16`` that minimises the
  histogram estimate of ``E[(x - Q(x))^2]`` (bin centres, quantizer: round half to even,
  saturate at ``max_level``; zeros quantize exactly and are left out), as TensorRT's and
  Brevitas' MSE observers do.

Where the percentile or the MSE search gives 0 (almost every value is 0) the clip is the
absmax; a tensor of zeros only gets scale 1, as in training.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics import BitPattern, uniform
from ebsp_jax.quant.calibration import activation_scale

METHODS = ("minmax", "percentile", "mse")
#: The smallest clip the MSE search tries, as a fraction of the calibrated absmax.
MSE_MIN_CLIP_FRACTION = 1.0 / 16


class RangeStats(NamedTuple):
  """Running range of one activation (float scalars)."""

  min: float
  max: float


class Histogram(NamedTuple):
  """Histogram of ``|x|`` over ``[0, absmax]`` (``counts`` int64 ``(num_bins,)``; exact zeros
  in ``zeros``, not in ``counts``)."""

  absmax: float
  counts: np.ndarray
  zeros: int


def check_method(method: str) -> str:
  if method not in METHODS:
    raise ValueError(f"calibration={method!r} is not supported; allowed: {', '.join(METHODS)}")
  return method


def range_stats(x: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """``(min, max)`` of ``x`` as float32 scalars (traceable)."""
  xs = jnp.asarray(x, jnp.float32)
  return jnp.min(xs), jnp.max(xs)


def merge_range(a: Optional[RangeStats], lo, hi) -> RangeStats:
  """``a`` widened by ``[lo, hi]`` (``a`` may be ``None``)."""
  lo, hi = float(lo), float(hi)
  return RangeStats(lo, hi) if a is None else RangeStats(min(a.min, lo), max(a.max, hi))


def histogram(x: jax.Array, absmax: jax.Array, num_bins: int) -> Tuple[jax.Array, jax.Array]:
  """Counts of ``|x|`` in ``num_bins`` equal bins over ``[0, absmax]`` (traceable).

  Args:
    x: float activation, any shape.
    absmax: float32 scalar ``> 0`` (values above it land in the last bin).
    num_bins: static bin count.

  Returns:
    ``(counts, zeros)``: int32 ``(num_bins,)`` counts of the non-zero values, and the int32
    count of exact zeros.
  """
  a = jnp.abs(jnp.asarray(x, jnp.float32)).reshape(-1)
  nonzero = a != 0
  idx = jnp.clip(jnp.floor(a / absmax * num_bins), 0, num_bins - 1).astype(jnp.int32)
  counts = jnp.zeros((num_bins,), jnp.int32).at[idx].add(nonzero.astype(jnp.int32))
  return counts, jnp.sum(~nonzero, dtype=jnp.int32)


def _format(signed: bool, bits: int) -> BitPattern:
  return uniform(bits, signed=bool(signed))


def percentile_clip(hist: Histogram, percentile: float) -> float:
  """The ``percentile``-th percentile of ``|x|`` (zeros included), from the histogram."""
  counts = np.asarray(hist.counts, np.int64)
  total = int(counts.sum()) + int(hist.zeros)
  if total == 0 or not counts.any():
    return 0.0
  target = percentile / 100.0 * total - hist.zeros
  if target <= 0:
    return 0.0
  k = int(np.searchsorted(np.cumsum(counts), target))
  k = min(k, counts.size - 1)
  return float(hist.absmax) * (k + 1) / counts.size


def mse_errors(hist: Histogram, max_level: int, clips: np.ndarray) -> np.ndarray:
  """Histogram estimate of ``sum (|x| - Q_c(|x|))^2`` for each clip ``c`` (float64 array).

  ``Q_c`` rounds ``|x| / s`` half to even and saturates at ``max_level``, ``s = c / max_level``;
  each bin's values sit at its centre.
  """
  counts = np.asarray(hist.counts, np.float64)
  n = counts.size
  centres = (np.arange(n) + 0.5) * (float(hist.absmax) / n)
  s = np.asarray(clips, np.float64)[:, None] / max_level
  q = np.minimum(np.round(centres[None, :] / s), max_level) * s
  return np.sum(counts[None, :] * np.square(centres[None, :] - q), axis=1)


def mse_clip(hist: Histogram, max_level: int) -> float:
  """The clip minimising :func:`mse_errors` over the bin edges ``>= absmax / 16``."""
  n = int(np.asarray(hist.counts).size)
  if float(hist.absmax) <= 0 or not np.asarray(hist.counts).any():
    return 0.0
  first = max(1, int(np.ceil(n * MSE_MIN_CLIP_FRACTION)))
  clips = float(hist.absmax) * np.arange(first, n + 1) / n
  return float(clips[int(np.argmin(mse_errors(hist, max_level, clips)))])


def choose_format(method: str, rng: RangeStats, bits: int, *,
                  hist: Optional[Histogram] = None, percentile: float = 99.99
                  ) -> Tuple[BitPattern, float]:
  """The activation format ``(uniform(bits, signed), scale)`` of one layer input.

  Args:
    method: ``'minmax'``, ``'percentile'`` or ``'mse'``.
    rng: the calibrated range.
    bits: activation bits.
    hist: the histogram of ``|x|`` (required for ``'percentile'`` and ``'mse'``).
    percentile: for ``'percentile'``, in ``(0, 100]``.

  Returns:
    ``(pattern, scale)`` with ``scale`` a Python float (the float32 value the fake-quant and
    integer modes use).
  """
  check_method(method)
  signed = rng.min < 0
  pattern = _format(signed, bits)
  if method == "minmax":
    _, scale = activation_scale(np.float32(rng.min), np.float32(rng.max), bits)
    return pattern, float(np.asarray(scale))
  if hist is None:
    raise ValueError(f"calibration={method!r} needs the histogram of the activation")
  if method == "percentile":
    if not 0 < percentile <= 100:
      raise ValueError(f"percentile={percentile} must be in (0, 100]")
    clip = percentile_clip(hist, percentile)
  else:
    clip = mse_clip(hist, pattern.max_level)
  if clip <= 0:                  # (almost) all zeros: fall back to the full range
    clip = float(hist.absmax)
  scale = np.float32(clip / pattern.max_level)
  if not (np.isfinite(scale) and scale > 0):
    scale = np.float32(1.0)
  return pattern, float(scale)
