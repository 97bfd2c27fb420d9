"""Independent brute-force references for the number format, for tests only.

Nothing here calls the code under test: levels come from a bit-string definition of the
pattern, nearest levels from an argmin over all levels in float64; :func:`int32_aliases` draws
the integers a checker of levels or ranges must reject.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


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


@st.composite
def int32_aliases(draw, targets, x64: bool = False):
  """``(value, dtype)``: an integer that int32 arithmetic mistakes for one of ``targets``.

  Either ``-2**31`` as int32 (``abs`` wraps it to itself, negative), or a value whose cast to
  int32 wraps onto a target: a ``uint32`` ``target + 2**32`` (negative targets), and with
  ``x64`` an ``int64`` ``target + k * 2**32`` or a ``uint64`` congruent to the target modulo
  ``2**32``. None of them is a target itself: a checker must reject every one.

  Args:
    targets: the values a checker accepts (pattern levels, in-range activations), each in
      ``[-2**31 + 1, 2**31 - 1]``.
    x64: also draw 64-bit dtypes (only meaningful under ``jax_enable_x64``).
  """
  target = int(draw(st.sampled_from(list(targets))))
  kinds = ["int32_min"] + (["uint32"] if target < 0 else []) + (["int64", "uint64"] if x64 else [])
  kind = draw(st.sampled_from(kinds))
  if kind == "int32_min":
    return -(1 << 31), np.dtype(np.int32)
  if kind == "uint32":
    return target + (1 << 32), np.dtype(np.uint32)
  k = draw(st.integers(1, 4))
  if kind == "int64":
    return target + draw(st.sampled_from([-k, k])) * (1 << 32), np.dtype(np.int64)
  value = target + k * (1 << 32) if target >= 0 else target + (1 << 64) - k * (1 << 32)
  return value, np.dtype(np.uint64)
