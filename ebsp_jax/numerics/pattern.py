"""The bit-sparsity-pattern number format (docs/method.md §2).

A weight magnitude ``q`` fits the pattern ``BitPattern(bits=b, length=L)`` when all of its set
bits lie in a window of ``L`` consecutive bit positions that starts at its leading one, i.e.
``q = m * 2**s`` with an ``L``-bit mantissa ``1 <= m < 2**L`` and a shift ``s >= 0``, and
``q < 2**n`` with ``n`` the magnitude bits (``b - 1`` signed sign-magnitude, ``b`` unsigned).

``length == magnitude_bits`` is plain uniform integer quantization and ``length == 1`` is
power-of-two (shift-only) quantization: one knob spans the range between them.

This module is the project's one slot for a number format (cf. AQT's numerics interface):
:class:`NumberFormat` is the protocol the quantizers in :mod:`ebsp_jax.numerics.quantizers` call,
and :class:`BitPattern` is its implementation. A new format plugs in by implementing
``round_magnitude`` and the few attributes below.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

_MAX_BITS = 16


@runtime_checkable
class NumberFormat(Protocol):
  """What a number format must provide to plug into ``quantize``/``project``/``fake_quant``.

  Attributes:
    signed: whether negative levels exist (sign-magnitude: the levels are symmetric).
    max_level: the largest representable magnitude (an integer).
  """

  signed: bool

  @property
  def max_level(self) -> int:
    ...

  def round_magnitude(self, mag: jax.Array) -> jax.Array:
    """Rounds non-negative magnitudes to the nearest representable magnitude.

    Args:
      mag: float32 array (float64 for float64 inputs under ``jax_enable_x64``), finite,
        ``0 <= mag <= 2 * max_level``.

    Returns:
      array of ``mag``'s shape and dtype holding integral values (not yet saturated).
    """
    ...


def _check_int(name: str, value: object) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
  return int(value)


@dataclasses.dataclass(frozen=True)
class BitPattern:
  """A bit-sparsity-pattern integer format: ``b`` bits, set bits within a window of ``L``.

  Frozen and hashable, so it can be a static argument of ``jax.jit``.

  Attributes:
    bits: total bits of the plain integer format the pattern lives in (sign included when
      ``signed``): 2..16 signed, 1..16 unsigned.
    length: pattern length ``L``: the window of consecutive bit positions, starting at the
      leading one, that may hold set bits. ``1 <= length <= magnitude_bits``.
    signed: sign-magnitude signed format (default) or unsigned.

  Example:
    >>> p = BitPattern(6, 3)
    >>> str(p), p.num_levels, p.max_level, p.code_bits
    ('6b(L3)', 31, 28, 5)
  """

  bits: int
  length: int
  signed: bool = True

  def __post_init__(self):
    bits = _check_int("bits", self.bits)
    length = _check_int("length", self.length)
    if not isinstance(self.signed, (bool, np.bool_)):
      raise TypeError(f"signed must be a bool, got {type(self.signed).__name__} {self.signed!r}")
    lo = 2 if self.signed else 1
    if not lo <= bits <= _MAX_BITS:
      kind = "signed" if self.signed else "unsigned"
      raise ValueError(f"bits={bits} is out of range: a {kind} BitPattern allows bits in "
                       f"[{lo}, {_MAX_BITS}]")
    n = bits - 1 if self.signed else bits
    if not 1 <= length <= n:
      raise ValueError(f"length={length} is out of range: with bits={bits}"
                       f"{'' if self.signed else ' unsigned'} length must be in [1, {n}] "
                       f"(the magnitude bits)")
    # Normalise numpy ints/bools so equal patterns hash equal.
    object.__setattr__(self, "bits", bits)
    object.__setattr__(self, "length", length)
    object.__setattr__(self, "signed", bool(self.signed))

  # ----------------------------------------------------------------------------------------
  # Derived quantities.
  @property
  def magnitude_bits(self) -> int:
    """``n``: bits of the magnitude (``bits - 1`` signed, ``bits`` unsigned)."""
    return self.bits - 1 if self.signed else self.bits

  @property
  def max_shift(self) -> int:
    """The largest shift ``s`` of a canonical code: ``magnitude_bits - length``."""
    return self.magnitude_bits - self.length

  @property
  def max_level(self) -> int:
    """The largest magnitude: ``(2**length - 1) * 2**(magnitude_bits - length)``."""
    return ((1 << self.length) - 1) << self.max_shift

  @property
  def num_magnitudes(self) -> int:
    """Number of distinct magnitudes, 0 included: ``2**L + (n - L) * 2**(L-1)``."""
    return (1 << self.length) + self.max_shift * (1 << (self.length - 1))

  @property
  def num_levels(self) -> int:
    """Number of representable integers (negatives included when signed)."""
    return 2 * self.num_magnitudes - 1 if self.signed else self.num_magnitudes

  @property
  def code_bits(self) -> int:
    """Bits to store one value as (sign +) index into the magnitudes."""
    index_bits = max(1, math.ceil(math.log2(self.num_magnitudes)))
    return index_bits + (1 if self.signed else 0)

  @property
  def magnitudes(self) -> np.ndarray:
    """Sorted int32 numpy array of the non-negative representable magnitudes."""
    return _magnitudes(self.magnitude_bits, self.length)

  @property
  def levels(self) -> np.ndarray:
    """Sorted int32 numpy array of every representable integer."""
    mags = self.magnitudes
    if not self.signed:
      return mags
    return np.concatenate([-mags[:0:-1], mags]).astype(np.int32)

  @property
  def is_uniform(self) -> bool:
    """True when every integer in ``[-max_level, max_level]`` is representable."""
    return self.length == self.magnitude_bits

  @property
  def is_power_of_two(self) -> bool:
    """True when every non-zero level is a power of two (shift-only arithmetic)."""
    return self.length == 1

  def __str__(self) -> str:
    return f"{'' if self.signed else 'u'}{self.bits}b(L{self.length})"

  # ----------------------------------------------------------------------------------------
  # NumberFormat protocol.
  def round_magnitude(self, mag: jax.Array) -> jax.Array:
    """Nearest pattern magnitude of each float32/float64 ``mag`` (not saturated), analytically.

    With ``e = floor(log2(mag))`` read from the float exponent field, the pattern levels in
    the binade ``[2**e, 2**(e+1))`` are the multiples of ``2**k``, ``k = max(0, e - L + 1)``,
    and the binade's ends are levels too, so rounding to the step of the binade gives the
    nearest level. Ties go to the even multiple (``jnp.round`` is half-to-even): of two
    equidistant levels, the one with more trailing zero bits. The cost does not depend on the
    number of levels.

    Args:
      mag: float32 or float64 array, ``0 <= mag < 2**24`` (callers clamp), NaN-free.

    Returns:
      array of ``mag``'s shape and dtype, integral values.
    """
    dtype = jnp.dtype(mag.dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
      raise TypeError(f"round_magnitude: mag must be float32 or float64, got {dtype}")
    finfo = jnp.finfo(dtype)
    nmant, bias = finfo.nmant, finfo.maxexp - 1          # 23, 127 (f32); 52, 1023 (f64)
    itype = jnp.int32 if dtype.itemsize == 4 else jnp.int64
    bits = jax.lax.bitcast_convert_type(mag, itype)
    exponent = (bits >> nmant) - bias      # floor(log2(mag)); -bias for 0 and subnormals
    k = jnp.maximum(exponent - (self.length - 1), 0)
    inv_step = jax.lax.bitcast_convert_type((bias - k) << nmant, dtype)  # 2**-k, exact
    step = jax.lax.bitcast_convert_type((bias + k) << nmant, dtype)      # 2**k, exact
    return jnp.round(mag * inv_step) * step


@functools.lru_cache(maxsize=None)
def _magnitudes(n: int, length: int) -> np.ndarray:
  mags = set(range(1 << length))
  for s in range(1, n - length + 1):
    mags.update(m << s for m in range(1 << (length - 1), 1 << length))
  out = np.array(sorted(mags), dtype=np.int32)
  out.setflags(write=False)
  return out


def short_repr(value: object, limit: int = 60) -> str:
  """One-line ``repr`` of ``value``, cut to ``limit`` characters (for error messages)."""
  r = " ".join(repr(value).split())
  return r if len(r) <= limit else r[:limit - 3] + "..."


def _type_error(fn: str, allowed: str, pattern: object) -> TypeError:
  msg = f"{fn}: pattern must be {allowed}, got {type(pattern).__name__} {short_repr(pattern)}"
  if isinstance(pattern, str):
    msg += ("; strings are not parsed: build it with BitPattern(bits, length[, signed]), "
            "e.g. BitPattern(6, 3) for '6b(L3)'")
  return TypeError(msg)


def check_format(fn: str, pattern: object) -> NumberFormat:
  """Returns ``pattern`` if it is a :class:`NumberFormat`, else raises a one-line ``TypeError``.

  Args:
    fn: name of the calling function, for the message.
    pattern: the argument to check.

  Raises:
    TypeError: ``pattern`` lacks ``signed``/``max_level``/``round_magnitude`` (e.g. a string).
  """
  if type(pattern) is BitPattern or isinstance(pattern, NumberFormat):
    return pattern
  raise _type_error(fn, "a BitPattern (or another NumberFormat)", pattern)


def check_pattern(fn: str, pattern: object) -> BitPattern:
  """Returns ``pattern`` if it is a :class:`BitPattern`, else raises a one-line ``TypeError``.

  For the functions that need the pattern's structure (``length``, ``max_shift``): the hardware
  code, the on-grid mask, the telemetry.
  """
  if isinstance(pattern, BitPattern):
    return pattern
  raise _type_error(fn, "a BitPattern", pattern)


def uniform(bits: int, signed: bool = True) -> BitPattern:
  """The plain uniform integer format of ``bits`` bits (``length = magnitude_bits``)."""
  return BitPattern(bits, bits - 1 if signed else bits, signed)


def power_of_two(bits: int, signed: bool = True) -> BitPattern:
  """The power-of-two (shift-only) format of ``bits`` bits (``length = 1``)."""
  return BitPattern(bits, 1, signed)
