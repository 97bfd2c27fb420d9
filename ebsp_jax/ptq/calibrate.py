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
  :func:`~ebsp_jax.quant.calibration.activation_scale` (jitted, as ``activation_formats``
  runs it), the format an EMA-calibrated fake-quant model uses.
* ``'percentile'``: ``clip`` = the ``percentile``-th percentile of ``|x|`` (zeros included),
  read as the upper edge of the histogram bin where the cumulative count reaches it.
* ``'mse'``: the ``clip`` among the bin edges ``>= absmax / 16`` that minimises the
  histogram estimate of ``E[(x - Q(x))^2]`` (values spread uniformly within each bin, the
  error integrated exactly over each bin: round to nearest, saturate at ``max_level``; zeros
  quantize exactly and are left out), as the MSE observers of TensorRT or Brevitas do.

Where the percentile or the MSE search gives 0 (almost every value is 0) the clip is the
absmax; a tensor of zeros only gets scale 1, as in training.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics import BitPattern, uniform
from ebsp_jax.quant.calibration import _activation_scale_jit

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
  """The ``percentile``-th percentile of ``|x|`` (zeros included), from the histogram: the
  upper edge of the bin holding the smallest value with at least ``percentile`` % of the
  values at or below it (``numpy.percentile(..., method='inverted_cdf')`` to one bin)."""
  counts = np.asarray(hist.counts, np.int64)
  total = int(counts.sum()) + int(hist.zeros)
  if total == 0 or not counts.any():
    return 0.0
  need = int(np.ceil(percentile / 100.0 * total - 1e-9)) - int(hist.zeros)
  if need <= 0:
    return 0.0
  k = min(int(np.searchsorted(np.cumsum(counts), need)), counts.size - 1)
  return float(hist.absmax) * (k + 1) / counts.size


def _error_integral(x: np.ndarray, s: np.ndarray, max_level: int) -> np.ndarray:
  """``∫_0^x (t - Q(t))^2 dt`` for ``Q(t) = s * min(round(t / s), max_level)`` (``x >= 0``).

  With ``u = t / s``: below ``max_level + 1/2`` the integrand is periodic in ``u`` (each
  rounding cell contributes ``s^3 / 12``); above, ``Q = c = s * max_level`` (saturation).
  """
  top = max_level + 0.5
  u = np.minimum(x / s, top)
  k = np.floor(u + 0.5)                     # the level u rounds to (half up)
  w = u - k                                 # in [-1/2, 1/2)
  g = np.where(u < 0.5, u ** 3 / 3.0, 1.0 / 24 + (k - 1) / 12.0 + (w ** 3 + 0.125) / 3.0)
  inner = s ** 3 * g
  c = s * max_level
  sat = np.where(x / s > top, ((x - c) ** 3 - (0.5 * s) ** 3) / 3.0, 0.0)
  return inner + sat


def mse_errors(hist: Histogram, max_level: int, clips: np.ndarray,
               chunk: int = 128) -> np.ndarray:
  """Histogram estimate of ``sum (|x| - Q_c(|x|))^2`` for each clip ``c`` (float64 array).

  ``Q_c`` rounds ``|x| / s`` to the nearest level and saturates at ``max_level``,
  ``s = c / max_level``; each bin's values are taken as uniformly spread over the bin, whose
  expected error is integrated exactly (:func:`_error_integral`), so the estimate holds when
  a bin is as wide as a quantization step or wider.
  """
  counts = np.asarray(hist.counts, np.float64)
  n = counts.size
  edges = np.arange(n + 1) * (float(hist.absmax) / n)
  width = edges[1] - edges[0]
  clips = np.asarray(clips, np.float64)
  out = np.empty(clips.size)
  for i in range(0, clips.size, chunk):
    s = clips[i:i + chunk, None] / max_level
    f = _error_integral(edges[None, :], s, max_level)
    out[i:i + chunk] = np.sum(counts[None, :] * (f[:, 1:] - f[:, :-1]) / width, axis=1)
  return out


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
  if method == "minmax" or max(-rng.min, rng.max) <= 0:
    _, scale = _activation_scale_jit(np.float32(rng.min), np.float32(rng.max), bits)
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
