"""Property tests of the integer requantization against Python-int / Fraction references."""

from fractions import Fraction

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings

from ebsp_jax.arith import requant

_int32 = st.integers(requant.INT32_MIN, requant.INT32_MAX)
_mult = st.integers(-(2 ** 31) + 1, 2 ** 31 - 1)
_shift = st.integers(0, requant.MAX_SHIFT)
_msr = jax.jit(requant.mul_shift_round)
_rq = jax.jit(lambda x, m, n: requant.requantize(x, m, n, -(2 ** 20), 2 ** 20))


def _padded(a, size=64):
  """Pads to a fixed size so that the jitted function compiles once."""
  a = np.asarray(a, np.int64)
  return np.pad(a, (0, size - len(a))).astype(np.int32)


@settings(max_examples=40)
@given(st.lists(st.tuples(_int32, _mult, _shift), min_size=1, max_size=64))
def test_mul_shift_round_matches_python_ints(triples):
  x, m, n = (_padded(v) for v in zip(*triples))
  got = np.asarray(_msr(x, m, n))[:len(triples)]
  want = [requant.rounding_shift_reference(int(a), int(b), int(c)) for a, b, c in triples]
  np.testing.assert_array_equal(got, np.array(want, np.int64))


def test_mul_shift_round_edges():
  x = np.array([requant.INT32_MIN, requant.INT32_MAX, -1, 1, 0, -3, 3, -2, 2], np.int32)
  for m in (requant.INT32_MAX, -requant.INT32_MAX, 1 << 30, 1, -1, 0):
    shifts = np.array([0, 1, 2, 30, 31, 32, 33, 61, 62], np.int32)
    got = np.asarray(_msr(x[:, None], np.int32(m), shifts[None, :]))
    want = [[requant.rounding_shift_reference(int(v), m, int(n)) for n in shifts] for v in x]
    np.testing.assert_array_equal(got, want, err_msg=f"m={m}")


@settings(max_examples=60)
@given(st.floats(min_value=2.0 ** -40, max_value=2.0 ** 30, allow_nan=False))
def test_quantize_multiplier_against_fractions(r):
  m, n = requant.quantize_multiplier(np.array([r]))
  m, n = int(m[0]), int(n[0])
  if m == 0:
    assert r < 2.0 ** -31
    return
  assert (1 << 30) <= m < (1 << 31) and 0 <= n <= requant.MAX_SHIFT
  err = abs(Fraction(m, 1 << n) - Fraction(r))
  assert err <= Fraction(r) / (1 << 31)


@settings(max_examples=40)
@given(st.floats(min_value=2.0 ** -20, max_value=4.0), st.lists(st.integers(-(2 ** 24), 2 ** 24),
                                                             min_size=1, max_size=32))
def test_requantize_is_nearest_up_to_multiplier_error(r, xs):
  m, n = requant.quantize_multiplier(np.array(r))
  got = np.asarray(_rq(_padded(xs, 32), m, n))[:len(xs)]
  for x, g in zip(xs, got):
    exact = Fraction(x) * Fraction(r)
    # Within 1/2 of the exact real product, up to the multiplier's relative error.
    assert abs(Fraction(int(g)) - exact) <= Fraction(1, 2) + abs(exact) / (1 << 31) or \
        abs(int(g)) == 2 ** 20


def test_quantize_multiplier_errors():
  with pytest.raises(ValueError, match="multipliers"):
    requant.quantize_multiplier(np.array([-1.0]))
  with pytest.raises(ValueError, match="multipliers"):
    requant.quantize_multiplier(np.array([np.inf]))
  m, n = requant.quantize_multiplier(np.array([0.0, 1.0, 0.5]))
  assert m.tolist() == [0, 1 << 30, 1 << 30] and n.tolist() == [0, 30, 31]


@st.composite
def _requantizers(draw, size=32):
  """``(k, pre, bias, mult, shift, lo, hi)`` with ``|pre| * 2**k + |bias| <= INT32_MAX``."""
  k = draw(st.integers(0, 16))
  rows = []
  for _ in range(draw(st.integers(1, size))):
    b = draw(st.integers(-(2 ** 31) + 1, 2 ** 31 - 1))
    room = (requant.INT32_MAX - abs(b)) >> k
    pre = draw(st.one_of(st.integers(-room, room), st.sampled_from([-room, room, 0])))
    m = draw(st.one_of(_mult, st.integers(1 << 30, (1 << 31) - 1), st.just(0)))
    rows.append((pre, b, m, draw(_shift)))
  lo = draw(st.one_of(st.sampled_from([requant.INT32_MIN, -127, 0]), _int32))
  hi = draw(st.one_of(st.sampled_from([requant.INT32_MAX, 127, 255]), _int32))
  return (k, *zip(*rows), min(lo, hi), max(lo, hi))


@settings(max_examples=80, deadline=None)
@given(_requantizers())
def test_folded_requantizer_matches_python_ints(case):
  k, pre, bias, mult, shift, lo, hi = case
  f = requant.fold_requantizer(k, _padded(bias), _padded(mult), _padded(shift), lo, hi)
  got = np.asarray(requant.apply_folded(_padded(pre), f))[:len(pre)]
  want = [min(hi, max(lo, requant.rounding_shift_reference((p << k) + b, m, n)))
          for p, b, m, n in zip(pre, bias, mult, shift)]
  np.testing.assert_array_equal(got, np.array(want, np.int64))


def test_folded_requantizer_narrow_multiplier_and_errors():
  f = requant.fold_requantizer(4, np.int32(7), np.int32(1 << 30), np.int32(40), 0, 255)
  assert not f.wide and f.multiplier.dtype == np.int32 and int(f.shift) == 36
  g = requant.fold_requantizer(4, np.int32(7), np.int32(1 << 30), np.int32(2), 0, 255)
  assert g.wide and int(g.multiplier) == (1 << 32) and int(g.shift) == 0
  with pytest.raises(ValueError, match="acc_shift must be in"):
    requant.fold_requantizer(32, 0, 1, 1, 0, 1)
  with pytest.raises(ValueError, match="lo <= hi"):
    requant.fold_requantizer(0, 0, 1, 1, 5, 1)
  with pytest.raises(ValueError, match="shifts lie in"):
    requant.fold_requantizer(0, 0, 1, 63, 0, 1)
