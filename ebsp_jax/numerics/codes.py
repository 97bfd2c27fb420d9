"""The code the EBSP hardware stores for a weight: (sign, shift, mantissa).

For a magnitude ``q`` of ``BitPattern(b, L)`` the leading-one detector (LOD) gives the position
``pos`` of its most significant set bit; ``shift = max(0, pos - L + 1)`` and the multiplexer
extracts ``mantissa = q >> shift`` (``< 2**L``). The code is canonical: values below ``2**L``
have shift 0, larger ones carry their leading one at mantissa bit ``L - 1``.

Every function here takes integer arrays (levels, codes) and raises a one-line ``TypeError`` for
any other dtype (float and bool included, even when the values are integral): truncating
``5.7`` to ``5`` would silently produce a wrong level. Round floats onto the grid first with
:func:`ebsp_jax.numerics.quantize`. The dtype check is static, so it also applies under
``jax.jit`` at no cost.
"""

from __future__ import annotations

from typing import Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from ebsp_jax.numerics.pattern import BitPattern, check_pattern


def _integer(fn: str, name: str, x: chex.Array) -> jax.Array:
  """``x`` as a jax array of its own integer dtype; a one-line ``TypeError`` otherwise."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"{fn}: {name} must have an integer dtype, got {x.dtype}; round floats "
                    f"onto the grid first, e.g. with quantize(w, pattern, scale)")
  return x


def int_array(fn: str, name: str, x: chex.Array) -> jax.Array:
  """``x`` as an int32 jax array; a one-line ``TypeError`` unless its dtype is an integer.

  The cast wraps values outside int32 (``uint32``, and ``int64``/``uint64`` with
  ``jax_enable_x64``): range-test them in their own dtype first (:func:`in_range`).

  Args:
    fn: name of the calling function, for the message.
    name: name of the argument, for the message.
    x: array-like (Python ints and lists of ints are fine).

  Raises:
    TypeError: ``x`` has a float, complex or bool dtype.
  """
  return _integer(fn, name, x).astype(jnp.int32)


def in_range(x: jax.Array, lo: int, hi: int) -> jax.Array:
  """Boolean mask ``lo <= x <= hi`` of integer ``x``, computed in ``x``'s own dtype.

  No cast, so nothing wraps (``uint32`` ``2**31``, ``int64`` ``2**32 + 5`` stay out of range);
  bounds beyond the dtype's range are dropped instead of being converted. Usable under
  ``jax.jit``. Needs ``lo <= 0 <= hi``.
  """
  info = jnp.iinfo(x.dtype)
  ok = jnp.ones(jnp.shape(x), jnp.bool_)
  if lo > info.min:
    ok &= x >= jnp.asarray(lo, x.dtype)
  if hi < info.max:
    ok &= x <= jnp.asarray(hi, x.dtype)
  return ok


def _leading_one(mag: jax.Array) -> jax.Array:
  """Leading one of non-negative int32 ``mag``."""
  return (31 - jax.lax.clz(mag)).astype(jnp.int32)


def leading_one(x: chex.Array) -> jax.Array:
  """Leading-one detector: position of the most significant set bit of ``|x|``.

  Args:
    x: integer array (any int dtype up to 32 bits; magnitudes must fit in 31 bits).

  Returns:
    int32 array of ``x.shape``: ``floor(log2(|x|))`` for ``x != 0`` and ``-1`` for ``x == 0``.

  Raises:
    TypeError: ``x`` does not have an integer dtype.
  """
  return _leading_one(jnp.abs(int_array("leading_one", "x", x)))


def on_grid(q: chex.Array, pattern: BitPattern) -> jax.Array:
  """Boolean mask of the elements of integer ``q`` that are levels of ``pattern``.

  Usable under ``jax.jit``: e.g. ``checkify.check(jnp.all(on_grid(q, p)), ...)``.

  Raises:
    TypeError: ``q`` does not have an integer dtype, or ``pattern`` is not a ``BitPattern``.
  """
  check_pattern("on_grid", pattern)
  return _on_grid(_integer("on_grid", "q", q), pattern)


def _on_grid(q: jax.Array, pattern: BitPattern) -> jax.Array:
  """On-grid mask of integer ``q`` of any integer dtype.

  The range is tested on the signed value in ``q``'s own dtype, before any cast or ``abs``:
  ``abs(-2**31)`` wraps to ``-2**31`` in int32, and a cast to int32 wraps ``uint32``/``int64``
  values (``2**31`` -> ``-2**31``, ``2**32 + 8`` -> ``8``).
  """
  ok = in_range(q, -pattern.max_level if pattern.signed else 0, pattern.max_level)
  mag = jnp.abs(jnp.where(ok, q, 0).astype(jnp.int32))
  shift = jnp.maximum(_leading_one(mag) - (pattern.length - 1), 0)
  return ok & (((mag >> shift) << shift) == mag)


def _is_concrete(*xs) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _split(q: jax.Array, pattern: BitPattern):
  mag = jnp.abs(q)
  shift = jnp.maximum(_leading_one(mag) - (pattern.length - 1), 0)
  return (q < 0).astype(jnp.int32), shift.astype(jnp.int32), (mag >> shift).astype(jnp.int32)


def encode(q: chex.Array, pattern: BitPattern) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """Splits integer levels into the hardware code.

  Args:
    q: integer array of levels of ``pattern``.
    pattern: the ``BitPattern``.

  Returns:
    ``(sign, shift, mantissa)``, int32 arrays of ``q.shape``: ``sign`` 1 for negative,
    ``0 <= shift <= pattern.max_shift``, ``0 <= mantissa < 2**pattern.length``, canonical.

  Raises:
    TypeError: ``q`` does not have an integer dtype (also under ``jax.jit``), or ``pattern``
      is not a ``BitPattern``.
    ValueError: eagerly, when an element of ``q`` is not a level of ``pattern``. Under
      ``jax.jit`` no check is possible here: use :func:`on_grid` or :func:`checked_encode`.
  """
  check_pattern("encode", pattern)
  concrete = _is_concrete(q)
  q = _integer("encode", "q", q)
  if concrete:
    ok = np.asarray(_on_grid(q, pattern))
    if not ok.all():
      bad = np.asarray(q).reshape(-1)[~ok.reshape(-1)]
      raise ValueError(f"encode: {bad.size} value(s) are not levels of {pattern} "
                       f"(first: {int(bad[0])}); allowed magnitudes: {pattern.magnitudes.tolist()}")
  return _split(q.astype(jnp.int32), pattern)


def checked_encode(q: chex.Array, pattern: BitPattern):
  """``encode`` with a ``checkify`` check, for use under ``checkify.checkify(jax.jit(...))``.

  Raises:
    TypeError: as :func:`encode` (integer dtype, ``BitPattern``), at trace time.
  """
  check_pattern("checked_encode", pattern)
  q = _integer("checked_encode", "q", q)
  checkify.check(jnp.all(_on_grid(q, pattern)),
                 f"encode: some values are not levels of {pattern}")
  return _split(q.astype(jnp.int32), pattern)


def decode(sign: chex.Array, shift: chex.Array, mantissa: chex.Array,
           pattern: BitPattern) -> jax.Array:
  """Inverse of :func:`encode`: ``q = (-1)**sign * (mantissa << shift)`` as int32.

  Raises:
    TypeError: a field does not have an integer dtype, or ``pattern`` is not a ``BitPattern``.
    ValueError: eagerly, when a field is out of range or the code is not canonical
      (``shift > 0`` needs ``mantissa >= 2**(length - 1)``; zero has sign 0, no ``-0``).
  """
  check_pattern("decode", pattern)
  sign, shift, mantissa = (_integer("decode", name, a) for name, a in
                           (("sign", sign), ("shift", shift), ("mantissa", mantissa)))
  chex.assert_equal_shape([sign, shift, mantissa])
  if _is_concrete(sign, shift, mantissa):
    # Checked in each field's own dtype (NumPy compares Python ints exactly): no int32 wrap.
    s, k, m = (np.asarray(a) for a in (sign, shift, mantissa))
    checks = [
        ((s == 0) | (s == 1), "sign must be 0 or 1"),
        ((k >= 0) & (k <= pattern.max_shift), f"shift must be in [0, {pattern.max_shift}]"),
        ((m >= 0) & (m < (1 << pattern.length)), f"mantissa must be in [0, {(1 << pattern.length) - 1}]"),
        ((k == 0) | (m >= (1 << (pattern.length - 1))),
         f"a code with shift > 0 needs mantissa >= {1 << (pattern.length - 1)} (canonical)"),
        ((s == 0) | (m != 0), "zero has sign 0 (-0 is not canonical)"),
        (pattern.signed | (s == 0), f"sign must be 0 for the unsigned {pattern}"),
    ]
    for ok, msg in checks:
      if not np.all(ok):
        raise ValueError(f"decode: invalid code for {pattern}: {msg}")
  sign, shift, mantissa = (a.astype(jnp.int32) for a in (sign, shift, mantissa))
  mag = mantissa << shift
  return jnp.where(sign == 1, -mag, mag).astype(jnp.int32)
