"""The pieces of the EBSP "non-multiplication engine" (docs/method.md §3) on integer arrays.

Per product of an integer activation ``a`` and a weight ``q`` of a ``BitPattern(b, L)``:

1. LOD + mux on the weight: ``(sign, shift, mant) = split_weight(q, pattern)`` — the leading-one
   detector of :func:`ebsp_jax.numerics.leading_one` gives ``shift = max(0, lod - L + 1)`` and
   the multiplexer ``mant = |q| >> shift`` (weights are static, so this is done offline).
2. LUT fill from the activation: ``lut_fill(a, L)[..., j] = j * a`` for ``j < 2**L``, built with
   shifts and adds only (``LUT[2j] = LUT[j] << 1``, ``LUT[2j+1] = LUT[2j] + a``).
3. LUT read ``lut_read(lut, mant)``, barrel shift ``barrel_shift(x, shift)``, sign, and
   ``accumulate`` into a two's-complement accumulator of ``acc_bits`` bits.

"Dual LOD" (approximate) mode also splits the activation: ``act_split(a, L, rounding)`` keeps
its ``L`` significant bits (truncated or rounded; see there), and the product is read from the
constant ``2**L x 2**L`` table ``mantissa_table(L)`` and shifted by ``shift_w + shift_a``.

All functions are pure, jit/vmap-safe and work on int32 (any integer input is converted).
"""

from __future__ import annotations

from typing import Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.arith import wide
from ebsp_jax.numerics import BitPattern, encode, leading_one

ROUNDINGS = ("truncate", "round")

# LUTs with more entries than this are not materialised by :func:`lut_product`: the entry is
# formed by the same shift-and-add recurrence on the fly (identical value, less memory).
MAX_MATERIALISED_LUT = 256


def lod(x: chex.Array) -> jax.Array:
  """Leading-one detector (see :func:`ebsp_jax.numerics.leading_one`): int32, -1 for 0."""
  return leading_one(x)


def split_weight(q: chex.Array, pattern: BitPattern) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """LOD + mux: the hardware code ``(sign, shift, mant)`` of integer weights ``q``.

  Args:
    q: integer array of levels of ``pattern`` (checked eagerly by ``encode``; under jit the
      caller checks, see :mod:`ebsp_jax.arith.api`).
    pattern: the weights' ``BitPattern``.

  Returns:
    int32 arrays of ``q.shape``: ``sign`` in {0, 1}, ``0 <= shift <= max_shift``,
    ``0 <= mant < 2**length``, with ``q = (-1)**sign * (mant << shift)``.
  """
  return encode(q, pattern)


def lut_fill(a: chex.Array, length: int) -> jax.Array:
  """The LUT of multiples of ``a``: ``out[..., j] = j * a`` for ``j < 2**length``.

  Built as the hardware does, by shifts and adds only: starting from ``[0]``, each of the
  ``length`` doubling steps maps a table ``T`` of ``2**k`` entries to the interleaving of
  ``T << 1`` (even entries) and ``(T << 1) + a`` (odd entries).

  Args:
    a: integer array, shape ``S`` (int32 arithmetic; ``|a| * (2**length - 1) < 2**31``).
    length: pattern length ``L >= 1``.

  Returns:
    int32 array of shape ``S + (2**length,)``.
  """
  a = jnp.asarray(a).astype(jnp.int32)[..., None]
  table = jnp.zeros_like(a)
  for _ in range(length):
    even = table << 1
    table = jnp.stack([even, even + a], axis=-1).reshape(*a.shape[:-1], 2 * even.shape[-1])
  return table


def lut_read(lut: chex.Array, mant: chex.Array) -> jax.Array:
  """LUT read: ``out[..., y] = lut[..., mant[y]]`` for a 1-D index vector ``mant``.

  Args:
    lut: int32 array ``S + (2**L,)``, e.g. from :func:`lut_fill`.
    mant: int32 array ``(Y,)`` of entries ``< 2**L``.

  Returns:
    int32 array ``S + (Y,)``.
  """
  return jnp.take(lut, jnp.asarray(mant).astype(jnp.int32), axis=-1, mode="clip")


def lut_entry(a: chex.Array, mant: chex.Array, length: int) -> jax.Array:
  """The LUT entry ``mant * a`` formed by the fill recurrence without storing the table.

  ``sum_j bit_j(mant) * (a << j)``: the same shifts and adds that fill entry ``mant``. Used
  for long patterns where a ``2**L``-entry table per activation would not fit in memory.
  Broadcasts ``a`` against ``mant``.
  """
  a = jnp.asarray(a).astype(jnp.int32)
  mant = jnp.asarray(mant).astype(jnp.int32)
  out = jnp.zeros(jnp.broadcast_shapes(a.shape, mant.shape), jnp.int32)
  for j in range(length):
    out = out + jnp.where(((mant >> j) & 1) == 1, a << j, 0)
  return out


def barrel_shift(x: chex.Array, shift: chex.Array) -> jax.Array:
  """Left shift by a per-element amount (int32, wraps modulo ``2**32`` like the hardware)."""
  return jnp.left_shift(jnp.asarray(x).astype(jnp.int32), jnp.asarray(shift).astype(jnp.int32))


def apply_sign(x: chex.Array, sign: chex.Array) -> jax.Array:
  """``-x`` where ``sign == 1``, else ``x`` (sign-magnitude to two's complement)."""
  x = jnp.asarray(x).astype(jnp.int32)
  return jnp.where(jnp.asarray(sign) == 1, -x, x)


def act_split(a: chex.Array, length: int,
              rounding: str = "truncate") -> Tuple[jax.Array, jax.Array, jax.Array]:
  """Dual-LOD split of an activation into ``(sign, shift, mant)`` with an ``length``-bit mantissa.

  The activation is taken as sign-magnitude. With ``pos = lod(|a|)``,
  ``shift = max(0, pos - length + 1)`` and

  * ``rounding="truncate"``: ``mant = |a| >> shift`` (the low bits are dropped: toward zero);
  * ``rounding="round"``: ``mant = (|a| + 2**(shift-1)) >> shift`` for ``shift > 0`` (round
    half up in magnitude, i.e. half away from zero); when this carries to ``2**length`` the
    result is renormalised to ``mant = 2**(length-1)``, ``shift + 1``.

  The approximated activation is ``(-1)**sign * (mant << shift)``; with ``round`` its
  magnitude can reach ``2**(lod(|a|) + 1)`` (e.g. 255 -> 256 for ``length=3``).

  Returns:
    int32 arrays of ``a.shape``: sign in {0, 1}, shift >= 0, ``0 <= mant < 2**length``.
  """
  if rounding not in ROUNDINGS:
    raise ValueError(f"rounding={rounding!r} is not supported; allowed: {ROUNDINGS}")
  a = jnp.asarray(a).astype(jnp.int32)
  mag = jnp.abs(a)
  shift = jnp.maximum(lod(mag) - (length - 1), 0)
  if rounding == "truncate":
    mant = mag >> shift
  else:
    half = jnp.where(shift > 0, jnp.left_shift(1, jnp.maximum(shift - 1, 0)), 0)
    mant = (mag + half) >> shift
    carry = mant >= (1 << length)
    mant = jnp.where(carry, mant >> 1, mant)
    shift = jnp.where(carry, shift + 1, shift)
  return (a < 0).astype(jnp.int32), shift.astype(jnp.int32), mant.astype(jnp.int32)


def act_approx(a: chex.Array, length: int, rounding: str = "truncate") -> jax.Array:
  """The activation the dual-LOD datapath effectively uses: ``(-1)**sign * (mant << shift)``."""
  sign, shift, mant = act_split(a, length, rounding)
  return apply_sign(mant << shift, sign)


def mantissa_table(length: int) -> np.ndarray:
  """The constant dual-LOD LUT: ``T[i, j] = i * j`` for ``i, j < 2**length``, int32 numpy."""
  r = np.arange(1 << length, dtype=np.int64)
  return (r[:, None] * r[None, :]).astype(np.int32)


def product(a: chex.Array, sign: chex.Array, shift: chex.Array, mant: chex.Array,
            length: int) -> jax.Array:
  """One exact-mode product per element (broadcasting): ``±(LUT_a[mant] << shift)``.

  Args:
    a: integer activations; ``sign, shift, mant``: the weight code (see :func:`split_weight`).
    length: pattern length ``L``.

  Returns:
    int32 ``a * q`` (broadcast shape).
  """
  return apply_sign(barrel_shift(lut_entry(a, mant, length), shift), sign)


def dual_product(a: chex.Array, sign: chex.Array, shift: chex.Array, mant: chex.Array,
                 length: int, rounding: str = "truncate") -> jax.Array:
  """One dual-LOD product per element: ``±(T[mant_w, mant_a] << (shift_w + shift_a))``."""
  sa, ka, ma = act_split(a, length, rounding)
  table = jnp.asarray(mantissa_table(length))
  r = table[jnp.asarray(mant).astype(jnp.int32), ma]
  return apply_sign(barrel_shift(r, shift + ka), sign ^ sa)


def accumulate(acc: chex.Array, p: chex.Array, acc_bits: int) -> jax.Array:
  """One wrapping add into a two's-complement accumulator of ``acc_bits`` bits (int32 carrier).

  ``acc`` and the result hold values in ``[-2**(acc_bits-1), 2**(acc_bits-1))``.
  """
  return wide.wrap_low_bits(jnp.asarray(acc).astype(jnp.int32) + jnp.asarray(p).astype(jnp.int32),
                            acc_bits)


def saturating_accumulate(acc: chex.Array, p: chex.Array, acc_bits: int) -> Tuple[jax.Array, jax.Array]:
  """One saturating add: ``clip(acc + p)`` to ``acc_bits`` bits, and whether it clipped.

  ``acc`` must hold an in-range value and ``p`` any int32. Exact in int32 arithmetic: the
  wrapped sum ``s = acc + p`` is the true sum unless both operands have one sign and ``s`` the
  other (then the true sum lies beyond int32, hence beyond the range, on that side).
  """
  lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
  acc = jnp.asarray(acc).astype(jnp.int32)
  p = jnp.asarray(p).astype(jnp.int32)
  s = acc + p                                               # modulo 2**32
  pos_ovf = (acc >= 0) & (p > 0) & (s < 0)                  # true sum >= 2**31
  neg_ovf = (acc < 0) & (p < 0) & (s >= 0)                  # true sum < -2**31
  above = pos_ovf | (~neg_ovf & (s > hi))                   # true sum > hi
  below = neg_ovf | (~pos_ovf & (s < lo))                   # true sum < lo
  out = jnp.where(above, jnp.int32(hi), jnp.where(below, jnp.int32(lo), s))
  return out, above | below
