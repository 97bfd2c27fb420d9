"""Tests of the hardware code (sign, shift, mantissa), LOD and on-grid checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
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
])
def test_decode_rejects_invalid_codes(args, match):
  with pytest.raises(ValueError, match=match):
    decode(*(np.int32([a]) for a in args), BitPattern(6, 3))


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
