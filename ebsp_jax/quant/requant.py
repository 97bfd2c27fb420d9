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

The 32 x 32 -> 64-bit product is emulated with 16-bit limbs in ``uint32`` arithmetic, so
everything runs in int32/uint32 under ``jax.jit`` without ``jax_enable_x64``, on any backend.
"""

from __future__ import annotations

import math
from typing import Tuple

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


def rounding_shift_reference(x: int, multiplier: int, shift: int) -> int:
  """Python-int reference of :func:`mul_shift_round` (for tests and golden-vector checkers)."""
  p = x * multiplier
  if shift:
    p = (p + (1 << (shift - 1))) >> shift   # Python >> on ints is floor division by 2**shift
  return max(INT32_MIN, min(INT32_MAX, p))


def multiplier_error_bound(real: float) -> float:
  """Absolute error bound of :func:`quantize_multiplier` for ``real``: ``2**-31 * real``."""
  return math.ldexp(abs(real), -31)
