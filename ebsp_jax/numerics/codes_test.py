"""Tests of the hardware code (sign, shift, mantissa), LOD and on-grid checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.experimental import checkify

from ebsp_jax.numerics import reference_testing as ref
from ebsp_jax.numerics.codes import checked_encode, decode, encode, leading_one, on_grid
from ebsp_jax.numerics.pattern import BitPattern

ALL = [BitPattern(b, l, s) for s in (True, False) for b in range(1, 11) for l in range(1, 11)
       if (b >= 2 or not s) and 1 <= l <= (b - 1 if s else b)]


@given(st.lists(st.integers(-(2**31 - 1), 2**31 - 1), min_size=1, max_size=50))
def test_leading_one_against_bit_length(xs):
  got = np.asarray(leading_one(np.array(xs, np.int32)))
  np.testing.assert_array_equal(got, [abs(x).bit_length() - 1 for x in xs])


@pytest.mark.parametrize("p", ALL, ids=str)
def test_round_trip_every_level_and_canonical(p):
  q = p.levels
  sign, shift, mant = encode(q, p)
  s, k, m = (np.asarray(a) for a in (sign, shift, mant))
  # Independent: canonical code from Python ints.
  for v, si, ki, mi in zip(q.tolist(), s, k, m):
    mag = abs(v)
    want_k = max(0, mag.bit_length() - p.length)
    assert (si, ki, mi) == (int(v < 0), want_k, mag >> want_k), (v, si, ki, mi)
  assert (m < 2**p.length).all() and (k >= 0).all() and (k <= p.max_shift).all()
  np.testing.assert_array_equal(np.asarray(decode(sign, shift, mant, p)), q)


@pytest.mark.parametrize("p", ALL, ids=str)
def test_on_grid_matches_bit_string_definition(p):
  n = p.magnitude_bits
  q = np.arange(-(2**n) - 3, 2**n + 3, dtype=np.int32)
  want = np.isin(q, ref.pattern_levels(p.bits, p.length, p.signed))
  np.testing.assert_array_equal(np.asarray(on_grid(q, p)), want)


def test_off_grid_raises_eagerly_and_checkify_under_jit():
  p = BitPattern(6, 3)
  with pytest.raises(ValueError, match=r"not levels of 6b\(L3\) \(first: 9\)"):
    encode(np.int32([8, 9, 10]), p)
  with pytest.raises(ValueError, match="first: 29"):
    encode(np.int32([29]), p)
  with pytest.raises(ValueError, match="first: -1"):
    encode(np.int32([-1]), BitPattern(4, 2, signed=False))
  f = checkify.checkify(jax.jit(lambda q: checked_encode(q, p)))
  err, _ = f(jnp.int32([8, 9]))
  with pytest.raises(checkify.JaxRuntimeError, match="not levels"):
    err.throw()
  err, out = f(jnp.int32([8, 10]))
  err.throw()  # no error
  np.testing.assert_array_equal(np.asarray(out[2]), [4, 5])
  # Under plain jit, encode does not check; on_grid is the mask to use.
  sign, shift, mant = jax.jit(lambda q: encode(q, p))(jnp.int32([9]))
  assert not bool(on_grid(jnp.int32([9]), p)[0])


@pytest.mark.parametrize("args,match", [
    ((2, 0, 3), "sign must be 0 or 1"),
    ((0, 3, 4), r"shift must be in \[0, 2\]"),
    ((0, 0, 8), r"mantissa must be in \[0, 7\]"),
    ((0, 1, 3), "canonical"),
    ((1, 0, 0), r"zero has sign 0 \(-0 is not canonical\)"),
])
def test_decode_rejects_invalid_codes(args, match):
  with pytest.raises(ValueError, match=match):
    decode(*(np.int32([a]) for a in args), BitPattern(6, 3))


def test_decode_accepts_plus_zero_and_rejects_minus_zero_among_valid_codes():
  p = BitPattern(6, 3)
  np.testing.assert_array_equal(np.asarray(decode(np.int32([0, 1]), np.int32([0, 0]),
                                                  np.int32([0, 3]), p)), [0, -3])
  with pytest.raises(ValueError, match="-0"):
    decode(np.int32([0, 1]), np.int32([0, 0]), np.int32([3, 0]), p)


def test_decode_checks_fields_before_the_int32_cast():
  """With x64 an int64 sign 2**32 + 1 used to wrap to 1 and pass."""
  p = BitPattern(6, 3)
  with jax.enable_x64(True):
    with pytest.raises(ValueError, match="sign must be 0 or 1"):
      decode(jnp.array([2**32 + 1], jnp.int64), jnp.int64([0]), jnp.int64([3]), p)
    with pytest.raises(ValueError, match="mantissa must be"):
      decode(jnp.int64([0]), jnp.int64([0]), jnp.array([2**32 + 3], jnp.int64), p)


def _check_rejected(value, dtype, p: BitPattern):
  """``value`` of ``dtype``: off grid for on_grid, encode and checked_encode under jit."""
  q = jnp.asarray(np.array([value, 0], dtype))
  assert q.dtype == dtype, (q.dtype, dtype)
  np.testing.assert_array_equal(np.asarray(on_grid(q, p)), [False, True])
  with pytest.raises(ValueError, match=f"not levels of .*first: {value}\\)"):
    encode(q, p)
  err, _ = checkify.checkify(jax.jit(lambda q: checked_encode(q, p)))(q)
  assert err.get() is not None and "not levels" in err.get(), (value, dtype)


@pytest.mark.parametrize("p", [BitPattern(16, 4), BitPattern(6, 3), BitPattern(16, 16, False)],
                         ids=str)
@pytest.mark.parametrize("value,dtype", [(-(2**31), np.int32), (2**31, np.uint32),
                                         (2**32 - 8, np.uint32), (2**32 - 1, np.uint32)])
def test_values_that_wrap_in_int32_are_off_grid(p, value, dtype):
  """abs(-2**31) wraps to -2**31 in int32 and used to pass the magnitude test; uint32 2**31
  and 2**32 - 8 wrapped to -2**31 and -8 (a level) in the cast to int32."""
  _check_rejected(value, np.dtype(dtype), p)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_int32_aliases_of_levels_are_off_grid(data):
  """Property: no value that int32 arithmetic mistakes for a level (INT32_MIN, uint32 and,
  with x64, int64/uint64 values congruent to a level modulo 2**32) is on the grid."""
  p = data.draw(st.sampled_from([BitPattern(6, 3), BitPattern(8, 2, False), BitPattern(16, 15)]))
  with jax.enable_x64(True):
    value, dtype = data.draw(ref.int32_aliases(p.levels, x64=True))
    _check_rejected(value, dtype, p)


class JitTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_encode_decode_variants(self):
    p = BitPattern(8, 3)
    q = jnp.asarray(p.levels)
    enc = self.variant(lambda q: encode(q, p))
    dec = self.variant(lambda s, k, m: decode(s, k, m, p))
    np.testing.assert_array_equal(np.asarray(dec(*enc(q))), p.levels)


@pytest.mark.parametrize("call,match", [
    (lambda p: encode(jnp.array([5.7]), p), "encode: q must have an integer dtype, got float32"),
    (lambda p: encode(np.float32([4.0]), p), "encode: q must have an integer dtype, got float32"),
    (lambda p: checked_encode(jnp.array([4.0]), p), "checked_encode: q must have an integer"),
    (lambda p: on_grid(jnp.array([5.0]), p), "on_grid: q must have an integer dtype, got float32"),
    (lambda p: on_grid(np.array([True]), p), "on_grid: q must have an integer dtype, got bool"),
    (lambda p: leading_one(np.float32([3.5])), "leading_one: x must have an integer dtype"),
    (lambda p: leading_one(2.0), "leading_one: x must have an integer dtype"),
    (lambda p: decode(0, 0, np.float32([5.0]), p), "decode: mantissa must have an integer dtype"),
])
def test_float_input_raises_one_line_type_error(call, match):
  """Integer levels only: 5.7 used to be truncated to mantissa 5 without a word."""
  with pytest.raises(TypeError, match=match) as e:
    call(BitPattern(6, 3))
  assert "\n" not in str(e.value) and "quantize(w, pattern, scale)" in str(e.value)


def test_float_input_raises_under_jit_too_and_integer_dtypes_pass():
  p = BitPattern(6, 3)
  with pytest.raises(TypeError, match="integer dtype"):
    jax.jit(lambda q: encode(q, p))(jnp.float32([4.0]))
  with pytest.raises(TypeError, match="integer dtype"):
    jax.jit(lambda q: on_grid(q, p))(jnp.float32([4.0]))
  for dt in (np.int8, np.uint8, np.int16, np.int32, np.int64):
    np.testing.assert_array_equal(np.asarray(encode(np.array([12], dt), p)[2]), [6])
    assert bool(on_grid(np.array([12], dt), p)[0]) and int(leading_one(np.array([12], dt))[0]) == 3
  np.testing.assert_array_equal(np.asarray(encode([0, 5, 28], p)[1]), [0, 0, 2])  # Python ints


@pytest.mark.parametrize("call", [
    lambda: encode(np.int32([4]), "6b(L3)"),
    lambda: checked_encode(np.int32([4]), "6b(L3)"),
    lambda: decode(0, 0, 4, "6b(L3)"),
    lambda: on_grid(np.int32([4]), "6b(L3)"),
], ids=["encode", "checked_encode", "decode", "on_grid"])
def test_pattern_string_raises_type_error(call):
  with pytest.raises(TypeError, match=r"pattern must be a BitPattern, got str '6b\(L3\)'; strings "
                                      r"are not parsed: build it with BitPattern"):
    call()
