"""Integer requantization: a real multiplier as an integer multiplier and a right shift.

gemmlowp / TFLite style (Jacob et al., CVPR 2018): a positive real multiplier ``r`` (e.g.
``s_in * s_w / s_out``) is represented as ``r ≈ M * 2**-n`` with a 31-bit integer ``M`` in
``[2**30, 2**31)`` and a right shift ``0 <= n <= 62``, so ``|M * 2**-n - r| <= 2**-31 * r``.

Rounding (one rounding step, documented and tested against a Python-int reference):

    mul_shift_round(x, M, n) = floor((x * M + 2**(n-1)) / 2**n)     (n >= 1; x * M for n == 0)

i.e. the exact 64-bit product rounded to nearest, ties toward +infinity ("round half up",
what an adder of ``2**(n-1)`` followed by an arithmetic shift does in hardware). The result
saturates to the int32 range. TFLite's ``MultiplyByQuantizedMultiplier`` rounds twice (a
doubling high multiply, then a rounding shift); this single rounding is never further from the
exact real product than TFLite's.

The 32 x 32 -> 64-bit product is computed in int64 with 64-bit types enabled for that one
function (``jax.enable_x64`` inside the trace), so callers need no global ``jax_enable_x64``.

A whole requantizer ``clip(mul_shift_round((pre << k) + bias, M, n), lo, hi)`` (what the
integer mode applies at the input of every conv/dense) is folded offline by
:func:`fold_requantizer` into one multiply-add-shift, ``clip((pre * M' + C) >> n', lo, hi)``:
one widening multiply, one add and one shift per element instead of five integer ops and two
clamps (:func:`apply_folded`).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
MAX_SHIFT = 62


def quantize_multiplier(real: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Integer multiplier and right shift of non-negative real multipliers (offline, numpy).

  Args:
    real: float array (any shape) of multipliers ``0 <= r < 2**31``.

  Returns:
    ``(multiplier, shift)``: int32 numpy arrays of ``real.shape``, ``multiplier`` in
    ``[2**30, 2**31)`` (0 where ``r`` is 0 or below ``2**-32``, where every int32 input rounds
    to 0), ``shift`` in ``[0, 62]``, with ``|multiplier * 2**-shift - r| <= 2**-31 * r``.

  Raises:
    ValueError: on a negative, non-finite or too large multiplier.
  """
  r = np.asarray(real, np.float64)
  if not np.all(np.isfinite(r)) or np.any(r < 0) or np.any(r >= 2.0 ** 31):
    bad = r[~(np.isfinite(r) & (r >= 0) & (r < 2.0 ** 31))].reshape(-1)[0]
    raise ValueError(f"quantize_multiplier: multipliers must be finite and in [0, 2**31), got {bad}")
  frac, exp = np.frexp(r)                            # r = frac * 2**exp, frac in [0.5, 1)
  mult = np.round(frac * 2.0 ** 31).astype(np.int64)
  carry = mult == (1 << 31)
  mult = np.where(carry, 1 << 30, mult)
  exp = exp + carry
  shift = 31 - exp.astype(np.int64)
  zero = (r == 0) | (shift > MAX_SHIFT)
  mult = np.where(zero, 0, mult)
  shift = np.where(zero, 0, shift)
  return mult.astype(np.int32), shift.astype(np.int32)


def mul_shift_round(x: chex.Array, multiplier: chex.Array, shift: chex.Array) -> jax.Array:
  """``floor((x * multiplier + 2**(shift-1)) / 2**shift)``, exact, saturated to int32.

  Computed in int64 (64-bit types are enabled for this function only, also inside a trace):
  the product of two int32 values fits, so every step is exact; on GPUs the sign-extended
  32 x 32 product is one widening multiply.

  Args:
    x: int32 array.
    multiplier: int32 array broadcasting against ``x``, ``|multiplier| < 2**31``.
    shift: int32 array broadcasting against ``x``, ``0 <= shift <= 62``.

  Returns:
    int32 array of the broadcast shape.
  """
  x = jnp.asarray(x, jnp.int32)
  multiplier = jnp.asarray(multiplier, jnp.int32)
  shift = jnp.asarray(shift, jnp.int32)
  with jax.enable_x64(True):
    p = x.astype(jnp.int64) * multiplier.astype(jnp.int64)
    n = shift.astype(jnp.int64)
    half = jnp.where(n > 0, jnp.left_shift(jnp.int64(1), jnp.maximum(n - 1, 0)), jnp.int64(0))
    r = jnp.right_shift(p + half, n)     # arithmetic shift: floor division by 2**n
    return jnp.clip(r, INT32_MIN, INT32_MAX).astype(jnp.int32)


def requantize(acc: chex.Array, multiplier: chex.Array, shift: chex.Array, lo: int,
               hi: int) -> jax.Array:
  """``clip(mul_shift_round(acc, multiplier, shift), lo, hi)``: int32 to the next format.

  Args:
    acc: int32 array (accumulator, bias already added).
    multiplier, shift: from :func:`quantize_multiplier`, broadcasting against ``acc``.
    lo, hi: the clamp range of the output format (e.g. 0, 255 unsigned 8-bit; -127, 127
      signed sign-magnitude 8-bit). The clamp is also the ReLU when ``lo == 0``.

  Returns:
    int32 array of the broadcast shape with values in ``[lo, hi]``.
  """
  return jnp.clip(mul_shift_round(acc, multiplier, shift), lo, hi).astype(jnp.int32)


class FoldedRequantizer(NamedTuple):
  """``clip((pre * multiplier + offset) >> shift, lo, hi)``: a requantizer as one multiply-add.

  Attributes:
    multiplier: int32 (``wide`` False) or int64 numpy array broadcasting against ``pre``.
    offset: int64 numpy array, same broadcast shape.
    shift: int64 numpy array in ``[0, 62]``, same broadcast shape.
    lo, hi: the output clamp.
    wide: whether ``multiplier`` needs 64 bits (some channel had ``shift < acc_shift``).
  """

  multiplier: np.ndarray
  offset: np.ndarray
  shift: np.ndarray
  lo: int
  hi: int
  wide: bool


def fold_requantizer(acc_shift: int, bias: np.ndarray, multiplier: np.ndarray,
                     shift: np.ndarray, lo: int, hi: int) -> FoldedRequantizer:
  """Folds ``clip(mul_shift_round((pre << acc_shift) + bias, multiplier, shift), lo, hi)``.

  Exact rewrite (offline, numpy int64; ``s = min(shift, acc_shift)`` per channel)::

    floor(((pre * 2**k + B) * M + 2**(n-1)) / 2**n)
      = floor((pre * M * 2**(k-s) + floor((B * M + 2**(n-1)) / 2**s)) / 2**(n-s))

  (nested floors with a positive integer divisor), and the int32 saturation of
  :func:`mul_shift_round` is subsumed by the clamp because ``INT32_MIN <= lo <= hi <=
  INT32_MAX``. Valid for every ``pre`` with ``|pre| * 2**acc_shift + |bias| <= INT32_MAX``
  (the integer lowering chooses ``acc_shift`` from a static bound of ``|pre|`` so that this
  holds; the unfolded form would wrap in int32 beyond it). Then nothing overflows int64:
  ``|pre * M * 2**(k-s)| < 2**62`` and the sum is the floor of a value below ``2**63``.

  Args:
    acc_shift: ``k`` in ``[0, 31]``.
    bias, multiplier, shift: int32-valued arrays broadcasting against ``pre`` (``multiplier``
      and ``shift`` from :func:`quantize_multiplier`; a zero multiplier gives 0).
    lo, hi: the clamp, ``INT32_MIN <= lo <= hi <= INT32_MAX``.

  Returns:
    A :class:`FoldedRequantizer` for :func:`apply_folded`.

  Raises:
    ValueError: on out-of-range arguments.
  """
  if not 0 <= acc_shift <= 31:
    raise ValueError(f"fold_requantizer: acc_shift must be in [0, 31], got {acc_shift}")
  if not INT32_MIN <= lo <= hi <= INT32_MAX:
    raise ValueError(f"fold_requantizer: need INT32_MIN <= lo <= hi <= INT32_MAX, got [{lo}, {hi}]")
  b, m, n = np.broadcast_arrays(*(np.asarray(a, np.int64) for a in (bias, multiplier, shift)))
  if np.any(np.abs(m) > INT32_MAX) or np.any((n < 0) | (n > MAX_SHIFT)):
    raise ValueError("fold_requantizer: multipliers must fit in int32 and shifts lie in "
                     f"[0, {MAX_SHIFT}]")
  k = np.int64(acc_shift)
  # A zero multiplier gives 0 whatever the shift; n = k keeps it on the narrow path.
  n = np.where(m == 0, np.maximum(n, k), n)
  s = np.minimum(n, k)
  half = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0)
  offset = np.right_shift(b * m + half, s)             # floor division by 2**s
  wide = bool(np.any(s < k))
  mult = np.left_shift(m, k - s)
  return FoldedRequantizer(mult if wide else mult.astype(np.int32), offset, n - s, int(lo),
                           int(hi), wide)


def apply_folded(pre: chex.Array, f: FoldedRequantizer) -> jax.Array:
  """``clip((pre * M + C) >> n, lo, hi)`` in int64 (enabled here only), as int32.

  Args:
    pre: int32 array.
    f: from :func:`fold_requantizer`, its arrays broadcasting against ``pre``.

  Returns:
    int32 array of the broadcast shape with values in ``[lo, hi]``.
  """
  pre = jnp.asarray(pre, jnp.int32)
  with jax.enable_x64(True):
    p = pre.astype(jnp.int64) * jnp.asarray(f.multiplier).astype(jnp.int64)
    r = jnp.right_shift(p + jnp.asarray(f.offset, jnp.int64), jnp.asarray(f.shift, jnp.int64))
    return jnp.clip(r, f.lo, f.hi).astype(jnp.int32)


def rounding_shift_reference(x: int, multiplier: int, shift: int) -> int:
  """Python-int reference of :func:`mul_shift_round` (for tests and golden-vector checkers)."""
  p = x * multiplier
  if shift:
    p = (p + (1 << (shift - 1))) >> shift   # Python >> on ints is floor division by 2**shift
  return max(INT32_MIN, min(INT32_MAX, p))


def multiplier_error_bound(real: float) -> float:
  """Absolute error bound of :func:`quantize_multiplier` for ``real``: ``2**-31 * real``."""
  return math.ldexp(abs(real), -31)
