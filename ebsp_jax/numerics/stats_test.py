"""Tests of pattern_stats against plain-Python counting."""

import chex
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ebsp_jax.numerics.pattern import BitPattern
from ebsp_jax.numerics.stats import pattern_stats


@given(st.lists(st.integers(-40, 40), min_size=64, max_size=64))
@settings(max_examples=max(15, settings().max_examples // 4))   # ~0.3 s each
def test_histograms_match_python_counting(xs):
  p = BitPattern(6, 3)
  got = jax.jit(lambda q: pattern_stats(q, p))(np.int32(xs))
  lead = np.zeros(6, int)
  shift = np.zeros(4, int)
  mant = np.zeros(8, int)
  for x in xs:
    m = abs(x)
    if m:
      pos = m.bit_length() - 1
      lead[min(pos, 5)] += 1
      k = max(0, pos - 2)
      shift[min(k, 3)] += 1
      mant[m >> k] += 1
    else:
      mant[0] += 1
  levels = set(p.levels.tolist())
  np.testing.assert_array_equal(np.asarray(got["leading_one"]), lead)
  np.testing.assert_array_equal(np.asarray(got["shift"]), shift)
  np.testing.assert_array_equal(np.asarray(got["mantissa"]), mant)
  assert int(got["count"]) == len(xs)
  np.testing.assert_allclose(float(got["zero_fraction"]), xs.count(0) / len(xs), rtol=1e-6)
  np.testing.assert_allclose(float(got["on_grid_fraction"]),
                             sum(x in levels for x in xs) / len(xs), rtol=1e-6)
  np.testing.assert_allclose(float(got["negative_fraction"]),
                             sum(x < 0 for x in xs) / len(xs), rtol=1e-6)
  chex.assert_shape(got["mantissa"], (8,))


def test_float_levels_and_pattern_strings_raise_type_error():
  with pytest.raises(TypeError, match="pattern_stats: q must have an integer dtype, got float32"):
    pattern_stats(np.float32([1.5, 2.0]), BitPattern(6, 3))
  with pytest.raises(TypeError, match=r"pattern_stats: pattern must be a BitPattern, got str"):
    pattern_stats(np.int32([1, 2]), "6b(L3)")


def test_values_that_wrap_in_int32_are_not_counted_on_grid():
  p = BitPattern(6, 3)
  q = np.array([8, 2**32 - 8], np.uint32)            # an int32 cast would give 8, -8
  assert float(pattern_stats(q, p)["on_grid_fraction"]) == pytest.approx(1 / 2)
