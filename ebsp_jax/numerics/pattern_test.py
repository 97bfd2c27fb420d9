"""Tests for BitPattern: levels against a bit-string definition, validation, hashing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.numerics import reference_testing as ref
from ebsp_jax.numerics.pattern import BitPattern, NumberFormat, power_of_two, uniform

ALL = [(b, l, s) for s in (True, False) for b in range(1, 11) for l in range(1, 11)
       if (b >= 2 or not s) and 1 <= l <= (b - 1 if s else b)]


@pytest.mark.parametrize("bits,length,signed", ALL)
def test_levels_match_bit_string_definition(bits, length, signed):
  p = BitPattern(bits, length, signed)
  want = ref.pattern_levels(bits, length, signed)
  np.testing.assert_array_equal(p.levels, want)
  assert p.levels.dtype == np.int32
  assert p.num_levels == len(want)
  assert p.max_level == want.max()
  n = p.magnitude_bits
  assert p.num_magnitudes == 2**length + (n - length) * 2**(length - 1)
  assert p.code_bits == int(signed) + max(1, int(np.ceil(np.log2(p.num_magnitudes))))


def test_spec_example_6b_l3():
  p = BitPattern(bits=6, length=3)
  np.testing.assert_array_equal(
      p.magnitudes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28])
  assert str(p) == "6b(L3)" and p.code_bits == 5 and p.max_level == 28
  assert str(BitPattern(4, 2, signed=False)) == "u4b(L2)"


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 10])
def test_length_equal_magnitude_bits_is_uniform(bits):
  p = BitPattern(bits, bits - 1)
  assert p.is_uniform and p == uniform(bits)
  np.testing.assert_array_equal(p.levels, np.arange(-(2**(bits - 1) - 1), 2**(bits - 1)))


@pytest.mark.parametrize("bits", [2, 4, 6, 8, 10])
def test_length_one_is_power_of_two(bits):
  p = BitPattern(bits, 1)
  assert p.is_power_of_two and p == power_of_two(bits)
  mags = p.magnitudes[1:]
  np.testing.assert_array_equal(mags, 2 ** np.arange(bits - 1))


@pytest.mark.parametrize("kwargs,match", [
    (dict(bits=1, length=1), r"bits=1 .* \[2, 16\]"),
    (dict(bits=17, length=3), r"bits=17 .* \[2, 16\]"),
    (dict(bits=0, length=1, signed=False), r"bits=0 .* \[1, 16\]"),
    (dict(bits=6, length=6), r"length=6 .* \[1, 5\]"),
    (dict(bits=6, length=0), r"length=0 .* \[1, 5\]"),
    (dict(bits=4, length=5, signed=False), r"length=5 .* \[1, 4\]"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
  with pytest.raises(ValueError, match=match):
    BitPattern(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(bits=6.0, length=3), dict(bits=6, length="3"),
                                    dict(bits=True, length=1), dict(bits=6, length=3, signed=1)])
def test_non_integers_raise_type_error(kwargs):
  with pytest.raises(TypeError):
    BitPattern(**kwargs)


def test_hashable_static_jit_argument_and_protocol():
  p, q = BitPattern(6, 3), BitPattern(np.int64(6), np.int32(3))
  assert p == q and hash(p) == hash(q) and isinstance(p, NumberFormat)
  with pytest.raises(Exception):
    p.bits = 5  # frozen

  traces = []

  @jax.jit
  def f(x, pattern):
    traces.append(pattern)
    return x * pattern.max_level
  f = jax.jit(lambda x, pattern: x * pattern.max_level, static_argnums=1)
  assert float(f(jnp.float32(1.0), p)) == 28.0
  assert float(f(jnp.float32(1.0), BitPattern(5, 3))) == 14.0
