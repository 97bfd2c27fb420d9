"""Tests of the datapath pieces and the 64-bit pair arithmetic against Python integers."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebsp_jax.arith import datapath, wide
from ebsp_jax.arith import numpy_reference as npref
from ebsp_jax.arith._test_strategies import fast_settings, patterns
from ebsp_jax.numerics import BitPattern


@pytest.mark.parametrize("length", [1, 3, 8])
def test_lut_fill_holds_multiples(length):
  a = np.array([0, 1, 7, 127, 255, -128, -1, 32767, -32768], np.int32)
  if length > 3:
    a = a[np.abs(a.astype(np.int64)) * ((1 << length) - 1) < (1 << 31)]
  lut = np.asarray(datapath.lut_fill(a, length))
  assert lut.shape == a.shape + (1 << length,)
  np.testing.assert_array_equal(lut, a[:, None].astype(np.int64) * np.arange(1 << length))
  m = np.arange(1 << length, dtype=np.int32)
  np.testing.assert_array_equal(np.asarray(datapath.lut_read(lut, m)), lut)
  np.testing.assert_array_equal(np.asarray(datapath.lut_entry(a[:, None], m[None, :], length)), lut)


@fast_settings(30)
@given(patterns(max_bits=16), st.integers(0, 2**31 - 1))
def test_split_and_product_are_exact(pattern, seed):
  """LOD + mux code, LUT read, shift and sign give q * a for every level of the pattern."""
  rng = np.random.default_rng(seed)
  all_levels = pattern.levels.astype(np.int64)
  levels = rng.choice(all_levels, size=256)     # fixed shape: one compilation for all examples
  levels[:2] = all_levels[[0, -1]]
  lim = ((1 << 31) - 1) // max(pattern.max_level, 1)
  a = rng.integers(-min(lim, 1 << 15), min(lim, 1 << 15), size=levels.size)
  sign, shift, mant = (np.asarray(t) for t in datapath.split_weight(levels, pattern))
  np.testing.assert_array_equal(np.where(sign == 1, -1, 1) * (mant.astype(np.int64) << shift), levels)
  assert (mant < (1 << pattern.length)).all() and (shift <= pattern.max_shift).all()
  assert ((shift == 0) | (mant >= 1 << (pattern.length - 1))).all()
  p = np.asarray(datapath.product(a, sign, shift, mant, pattern.length))
  np.testing.assert_array_equal(p, a * levels)


@fast_settings(40)
@given(st.integers(1, 8), st.sampled_from(["truncate", "round"]), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_act_split_matches_numpy_model(length, rounding, signed, seed):
  rng = np.random.default_rng(seed)
  a = rng.integers(-(1 << 15) if signed else 0, 1 << 15, size=200)
  a[:4] = [0, 1, (1 << 15) - 1, -(1 << 15) if signed else 255]
  sign, shift, mant = (np.asarray(t) for t in datapath.act_split(a, length, rounding))
  assert (mant < (1 << length)).all()
  approx = np.where(sign == 1, -1, 1) * (mant.astype(np.int64) << shift)
  np.testing.assert_array_equal(approx, npref.dual_lod_approx(a, length, rounding))
  np.testing.assert_array_equal(np.asarray(datapath.act_approx(a, length, rounding)), approx)


def test_act_split_examples():
  # 6b(L3) example: 255 = 0b11111111 -> truncate 0b111 << 5 = 224; round -> 256 (carry).
  s, k, m = datapath.act_split(np.array([255, 13, 12, -13]), 3, "truncate")
  np.testing.assert_array_equal(np.asarray(m) << np.asarray(k), [224, 12, 12, 12])
  s, k, m = datapath.act_split(np.array([255, 13, 12, -13, 10]), 3, "round")
  np.testing.assert_array_equal(np.asarray(m) << np.asarray(k), [256, 14, 12, 14, 10])
  np.testing.assert_array_equal(np.asarray(s), [0, 0, 0, 1, 0])
  with pytest.raises(ValueError, match="rounding"):
    datapath.act_split(np.array([1]), 3, "nearest")


@pytest.mark.parametrize("length", [1, 3, 4])
def test_dual_product_uses_mantissa_table(length):
  pattern = BitPattern(8, length)
  levels = pattern.levels
  a = np.arange(-128, 128)
  aa, qq = np.meshgrid(a, levels, indexing="ij")
  sign, shift, mant = datapath.split_weight(qq, pattern)
  f = jax.jit(datapath.dual_product, static_argnums=(4, 5))
  for rounding in ("truncate", "round"):
    p = np.asarray(f(aa, sign, shift, mant, length, rounding))
    np.testing.assert_array_equal(p, npref.dual_lod_approx(aa, length, rounding) * qq)
  t = datapath.mantissa_table(length)
  assert t.shape == (1 << length, 1 << length) and t[3 % (1 << length), 1] == 3 % (1 << length)


def test_accumulate_wraps_and_saturates():
  acc = np.array([127, -128, 100, 0], np.int32)
  p = np.array([1, -1, 27, -5], np.int32)
  np.testing.assert_array_equal(np.asarray(datapath.accumulate(acc, p, 8)), [-128, 127, 127, -5])
  out, clipped = datapath.saturating_accumulate(acc, p, 8)
  np.testing.assert_array_equal(np.asarray(out), [127, -128, 127, -5])
  np.testing.assert_array_equal(np.asarray(clipped), [True, True, False, False])
  np.testing.assert_array_equal(np.asarray(datapath.barrel_shift(np.int32(3), np.arange(4))), [3, 6, 12, 24])


@fast_settings(60)
@given(st.integers(2, 32), st.data())
def test_saturating_accumulate_is_exact(bits, data):
  """One saturating add on in-range registers and any int32 product, vs Python integers
  (int32 sums that wrap included)."""
  lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
  extremes = st.sampled_from([lo, hi, 0, -1, lo + 1, hi - 1])
  acc = data.draw(st.lists(st.one_of(st.integers(lo, hi), extremes), min_size=1, max_size=20))
  p = data.draw(st.lists(st.one_of(st.integers(-2**31, 2**31 - 1),
                                   st.sampled_from([-2**31, 2**31 - 1, 1, -1, 0])),
                         min_size=len(acc), max_size=len(acc)))
  out, clipped = datapath.saturating_accumulate(np.array(acc, np.int32), np.array(p, np.int32),
                                                bits)
  want = [min(max(a + q, lo), hi) for a, q in zip(acc, p)]
  np.testing.assert_array_equal(np.asarray(out), want)
  np.testing.assert_array_equal(np.asarray(clipped), [not lo <= a + q <= hi
                                                      for a, q in zip(acc, p)])


@fast_settings(30)
@given(st.lists(st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(0, 31),
                          st.booleans()), min_size=1, max_size=12),
       st.integers(2, 32))
def test_wide_sums_are_exact(terms, bits):
  """Pairs of int32 words sum ``±t << e`` exactly; range, saturation and bits agree with Python."""
  acc = wide.zeros(())
  exact = 0
  for t, e, negative in terms:
    v = wide.shl(jnp.int32(t), e)
    acc = wide.add(acc, wide.neg(v) if negative else v)
    exact += -(t << e) if negative else (t << e)
  assert int(wide.to_python(acc)) == exact
  lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
  assert bool(wide.in_range(acc, bits)) == (lo <= exact <= hi)
  assert int(wide.saturate(acc, bits)) == min(max(exact, lo), hi)
  assert int(wide.wrap_low_bits(wide.low32(acc), bits)) == (exact - lo) % (1 << bits) + lo
  assert int(wide.signed_bits(acc)) == (exact.bit_length() + 1 if exact >= 0
                                        else (~exact).bit_length() + 1)


def test_wide_works_under_jit_and_vmap():
  f = jax.jit(jax.vmap(lambda x, y: wide.low32(wide.add(wide.shl(x, 20), wide.from_int32(y)))))
  x = jnp.arange(-3, 3, dtype=jnp.int32)
  np.testing.assert_array_equal(np.asarray(f(x, x)), np.asarray(x) * (1 << 20) + np.asarray(x))
