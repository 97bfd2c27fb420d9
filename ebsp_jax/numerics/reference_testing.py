"""Independent brute-force references for the number format, for tests only.

Nothing here calls the code under test: levels come from a bit-string definition of the
pattern, nearest levels from an argmin over all levels in float64.
"""

from __future__ import annotations

import numpy as np


def pattern_magnitudes(bits: int, length: int, signed: bool) -> np.ndarray:
  """Magnitudes whose binary string, trailing zeros removed, has at most `length` digits."""
  n = bits - 1 if signed else bits
  out = [0]
  for v in range(1, 1 << n):
    if len(bin(v)[2:].rstrip("0")) <= length:
      out.append(v)
  return np.array(out, np.int64)


def pattern_levels(bits: int, length: int, signed: bool) -> np.ndarray:
  mags = pattern_magnitudes(bits, length, signed)
  if not signed:
    return mags
  return np.unique(np.concatenate([-mags, mags]))


def trailing_zeros(v: np.ndarray) -> np.ndarray:
  """Trailing zero bits of |v|; 64 for 0 (zero has the most)."""
  v = np.abs(v.astype(np.int64))
  out = np.full(v.shape, 64, np.int64)
  nz = v != 0
  out[nz] = [len(bin(int(a))) - len(bin(int(a)).rstrip("0")) for a in v[nz]]
  return out


def nearest_level(y: np.ndarray, bits: int, length: int, signed: bool) -> np.ndarray:
  """Brute-force quantization of already-scaled values `y` (float64): argmin over levels.

  Ties go to the level with more trailing zero bits; NaN -> 0; values beyond the extreme
  levels (Inf included) saturate.
  """
  levels = pattern_levels(bits, length, signed)
  y = np.asarray(y, np.float64).reshape(-1)
  tz = trailing_zeros(levels)
  finite = np.where(np.isnan(y), 0.0, np.clip(y, levels[0], levels[-1]))
  d = np.abs(finite[:, None] - levels[None, :])
  is_min = d == d.min(axis=1, keepdims=True)
  # Among the nearest levels, the one with the most trailing zeros.
  return levels[np.argmax(np.where(is_min, tz[None, :], -1), axis=1)]
