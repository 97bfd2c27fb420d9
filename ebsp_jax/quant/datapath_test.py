"""DatapathConfig: its options are checked once, by arith's own validation, with arith's words."""

import numpy as np
import pytest

from ebsp_jax.arith.config import validate_options
from ebsp_jax.numerics import BitPattern
from ebsp_jax.quant.datapath import DatapathConfig, int_op
from ebsp_jax.quant.ops import DOT_GENERAL

BAD = [
    (dict(acc_bits=1), ValueError, r"^acc_bits=1 is out of range: allowed \[2, 32\]$"),
    (dict(acc_bits=8.0), TypeError, r"^acc_bits must be an int, got float 8.0$"),
    (dict(overflow="wrapp"), ValueError,
     r"^overflow='wrapp' is not supported; allowed: wrap, saturate, clip, error$"),
    (dict(mode="approx"), ValueError, r"^mode='approx' is not supported; allowed: "),
    (dict(method="slow"), ValueError, r"^method='slow' is not supported; allowed: "),
    (dict(rounding="up"), ValueError, r"^rounding='up' is not supported; allowed: "),
    (dict(accumulation="int64"), ValueError, r"^accumulation='int64' is not supported; "),
]


@pytest.mark.parametrize("kw, error, message", BAD)
def test_bad_options_are_refused_in_arith_words(kw, error, message):
  with pytest.raises(error, match=message):
    DatapathConfig(**kw)
  options = dict(acc_bits=32, overflow="wrap", mode="exact", method="fast", rounding="truncate",
                 accumulation="auto")
  with pytest.raises(error, match=message):
    validate_options(**{**options, **kw})


def test_int_op_is_the_exact_dot_with_the_configured_accumulator():
  rng = np.random.default_rng(0)
  pattern = BitPattern(6, 3)
  lhs = rng.integers(-127, 128, size=(3, 40))
  rhs = rng.choice(pattern.levels, size=(40, 5))
  dims = (((1,), (0,)), ((), ()))
  exact = lhs.astype(np.int64) @ rhs.astype(np.int64)
  out = int_op(DOT_GENERAL, lhs, rhs, {"dimension_numbers": dims}, pattern=pattern,
               act_pattern=BitPattern(8, 7))
  np.testing.assert_array_equal(np.asarray(out), exact)
  out, overflows = int_op(DOT_GENERAL, lhs, rhs, {"dimension_numbers": dims}, pattern=pattern,
                          act_pattern=BitPattern(8, 7),
                          config=DatapathConfig(acc_bits=12, overflow="clip"),
                          with_stats=True)
  np.testing.assert_array_equal(np.asarray(out), np.clip(exact, -2048, 2047))
  assert int(overflows) == int(np.sum((exact < -2048) | (exact > 2047))) > 0
