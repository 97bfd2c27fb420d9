"""Exact 64-bit integers from 32-bit parts, for sums that may not fit an int32.

JAX runs with 64-bit types disabled by default, and accelerators are slow at them anyway, so the
exact value of a long integer sum is carried as a pair ``Wide(hi, lo)`` meaning
``hi * 2**32 + lo`` with ``hi`` int32 (two's complement) and ``lo`` uint32. Every operation here is
exact while the value stays in ``[-2**63, 2**63)``; the datapath never comes near that bound
(``|sum| < 2**31 * 2**17 * 2**15``).

The accumulator of ``acc_bits <= 32`` bits is then modelled from the exact value:

* wrap: the low ``acc_bits`` bits, sign-extended (:func:`wrap_low_bits` of :func:`low32`);
* clip: :func:`saturate` clips to ``[-2**(acc_bits-1), 2**(acc_bits-1) - 1]`` (also the
  single step of a saturating register, :func:`ebsp_jax.arith.datapath.saturating_accumulate`);
* overflow: :func:`in_range` tells whether the exact value fits.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class Wide(NamedTuple):
  """An exact integer ``hi * 2**32 + lo``: ``hi`` int32, ``lo`` uint32, same shape."""

  hi: jax.Array
  lo: jax.Array


def _u32(x: jax.Array) -> jax.Array:
  return lax.bitcast_convert_type(x.astype(jnp.int32), jnp.uint32)


def _s32(x: jax.Array) -> jax.Array:
  return lax.bitcast_convert_type(x.astype(jnp.uint32), jnp.int32)


def from_int32(x: jax.Array) -> Wide:
  """The exact value of an int32 array (sign-extended)."""
  x = jnp.asarray(x).astype(jnp.int32)
  return Wide(x >> 31, _u32(x))


def zeros(shape) -> Wide:
  """A zero :class:`Wide` (exact 64-bit value as an int32 high / uint32 low pair) of ``shape``."""
  return Wide(jnp.zeros(shape, jnp.int32), jnp.zeros(shape, jnp.uint32))


def shl(x: jax.Array, e: int) -> Wide:
  """``x * 2**e`` exactly, for int32 ``x`` and a static ``0 <= e < 32``."""
  x = jnp.asarray(x).astype(jnp.int32)
  if not 0 <= e < 32:
    raise ValueError(f"shl: shift e={e} must be in [0, 31]")
  if e == 0:
    return from_int32(x)
  return Wide(x >> (32 - e), _u32(x) << e)


def add(a: Wide, b: Wide) -> Wide:
  """Exact ``a + b`` (carry from the low word into the high word)."""
  lo = a.lo + b.lo
  carry = (lo < a.lo).astype(jnp.int32)
  return Wide(a.hi + b.hi + carry, lo)


def neg(a: Wide) -> Wide:
  """Exact ``-a`` (two's complement of the pair)."""
  lo = ~a.lo + jnp.uint32(1)
  return Wide(~a.hi + (lo == 0).astype(jnp.int32), lo)


def constant(c: int, shape=()) -> Wide:
  """The Python integer ``c`` (``-2**63 <= c < 2**63``) as a :class:`Wide` of ``shape``."""
  c = int(c)
  if not -(1 << 63) <= c < (1 << 63):
    raise ValueError(f"wide.constant: {c} does not fit 64 bits")
  hi, lo = c >> 32, c & 0xFFFFFFFF
  hi = hi - (1 << 32) if hi >= 1 << 31 else hi
  return Wide(jnp.full(shape, hi, jnp.int32), jnp.full(shape, lo, jnp.uint32))


def sub(a: Wide, b: Wide) -> Wide:
  """Exact ``a - b``."""
  return add(a, neg(b))


def is_negative(a: Wide) -> jax.Array:
  """True where the value is ``< 0``."""
  return a.hi < 0


def is_positive(a: Wide) -> jax.Array:
  """True where the value is ``> 0``."""
  return (a.hi > 0) | ((a.hi == 0) & (a.lo != 0))


def add_int32(a: Wide, x: jax.Array) -> Wide:
  """Exact ``a + x`` for an int32 ``x``."""
  return add(a, from_int32(x))


def low32(a: Wide) -> jax.Array:
  """The value modulo ``2**32`` as int32 (two's complement)."""
  return _s32(a.lo)


def fits_int32(a: Wide) -> jax.Array:
  """True where the value lies in ``[-2**31, 2**31)``."""
  return a.hi == (low32(a) >> 31)


def wrap_low_bits(x: jax.Array, bits: int) -> jax.Array:
  """Sign-extends the low ``bits`` bits of int32 ``x``: ``x`` modulo ``2**bits``, centred."""
  x = jnp.asarray(x).astype(jnp.int32)
  if bits == 32:
    return x
  return (x << (32 - bits)) >> (32 - bits)


def in_range(a: Wide, bits: int) -> jax.Array:
  """True where the value lies in ``[-2**(bits-1), 2**(bits-1) - 1]`` (``bits <= 32``)."""
  x = low32(a)
  return fits_int32(a) & (wrap_low_bits(x, bits) == x)


def saturate(a: Wide, bits: int) -> jax.Array:
  """The value clipped to the ``bits``-bit two's-complement range, as int32."""
  lo_lim = -(1 << (bits - 1))
  hi_lim = (1 << (bits - 1)) - 1
  x = low32(a)
  ok = in_range(a, bits)
  negative = jnp.where(fits_int32(a), x < 0, a.hi < 0)
  return jnp.where(ok, x, jnp.where(negative, jnp.int32(lo_lim), jnp.int32(hi_lim)))


def to_float(a: Wide) -> jax.Array:
  """Float32 approximation of the value (for diagnostics, not exact)."""
  return a.hi.astype(jnp.float32) * jnp.float32(2.0**32) + a.lo.astype(jnp.float32)


def to_python(a: Wide):
  """The exact values as a numpy int64 array (eager only)."""
  return np.asarray(a.hi).astype(np.int64) * (1 << 32) + np.asarray(a.lo).astype(np.int64)


def signed_bits(a: Wide) -> jax.Array:
  """Bits of the smallest two's-complement accumulator that holds each value, int32.

  0 and -1 need 1 bit; ``v >= 0`` needs ``floor(log2 v) + 2``; ``v < 0`` needs the bits of
  ``-v - 1`` (i.e. ``~v``) plus one.
  """
  # For two's complement, bits(v) = bits(~v) for v < 0, and bits(v) = 1 + position of the
  # leading one of v (+1) for v >= 0.
  negative = a.hi < 0
  hi = jnp.where(negative, ~a.hi, a.hi)
  lo = jnp.where(negative, ~a.lo, a.lo)
  lo_pos = 31 - lax.clz(lo).astype(jnp.int32)       # -1 for 0
  hi_pos = 31 - lax.clz(hi).astype(jnp.int32)
  pos = jnp.where(hi != 0, hi_pos + 32, lo_pos)
  return (pos + 2).astype(jnp.int32)
