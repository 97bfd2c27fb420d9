"""Tests of the activation calibration (statistics, clip choice) against direct computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ebsp_jax.numerics import quantize, uniform
from ebsp_jax.ptq import calibrate
from ebsp_jax.quant.calibration import _activation_scale_jit


def _hist(x, num_bins=512):
  x = np.asarray(x, np.float32)
  absmax = float(np.max(np.abs(x)))
  counts, zeros = jax.jit(calibrate.histogram, static_argnums=2)(x, np.float32(absmax),
                                                                  num_bins)
  return calibrate.Histogram(absmax, np.asarray(counts, np.int64), int(zeros))


def test_histogram_matches_numpy_and_counts_zeros_apart():
  rng = np.random.default_rng(0)
  x = np.where(rng.random(5000) < 0.3, 0.0, rng.normal(size=5000)).astype(np.float32)
  h = _hist(x, 64)
  nz = np.abs(x[x != 0])
  want, _ = np.histogram(nz, bins=64, range=(0.0, h.absmax))
  assert h.zeros == int(np.sum(x == 0))
  assert h.counts.sum() == nz.size
  # Bin edges agree with numpy's except for values within float rounding of an edge.
  assert np.abs(h.counts - want).sum() <= 2


@pytest.mark.parametrize("lo,hi", [(-3.0, 2.0), (0.0, 5.5), (-0.5, 0.25), (0.0, 0.0)])
def test_minmax_is_the_training_format(lo, hi):
  pattern, scale = calibrate.choose_format("minmax", calibrate.RangeStats(lo, hi), 8)
  signed, want = _activation_scale_jit(np.float32(lo), np.float32(hi), 8)
  assert pattern == uniform(8, signed=bool(signed))
  assert scale == float(want)


def test_percentile_clip_is_the_sample_percentile_within_one_bin():
  rng = np.random.default_rng(1)
  x = np.abs(rng.standard_cauchy(20000)).astype(np.float32)
  h = _hist(x, 2048)
  for p in (50.0, 99.0, 99.9):
    clip = calibrate.percentile_clip(h, p)
    # The smallest sample with >= p % of the samples at or below it (numpy's inverted_cdf,
    # whose float index 0.999 * 20000 > 19980 picks the next sample).
    want = np.sort(x)[int(np.ceil(p * x.size / 100 - 1e-9)) - 1]
    assert want <= clip <= want + h.absmax / 2048 * (1 + 1e-5), p


def test_percentile_with_mostly_zeros_falls_back_to_absmax():
  x = np.zeros(10000, np.float32)
  x[:3] = [1.0, 2.0, 4.0]
  h = _hist(x, 256)
  assert calibrate.percentile_clip(h, 99.0) == 0.0
  _, scale = calibrate.choose_format("percentile", calibrate.RangeStats(0.0, 4.0), 8, hist=h,
                                     percentile=99.0)
  assert scale == pytest.approx(4.0 / 255, rel=1e-6)


def _direct_mse(x, bits, signed, clip):
  pattern = uniform(bits, signed=signed)
  s = np.float32(clip / pattern.max_level)
  q = np.asarray(quantize(jnp.asarray(x), pattern, s), np.float64) * float(s)
  return float(np.sum((x.astype(np.float64) - q) ** 2))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), signed=st.booleans(), bits=st.sampled_from([4, 6, 8]))
def test_mse_clip_is_near_optimal_on_the_samples(seed, signed, bits):
  """The histogram estimate picks a clip whose true squared error (quantize on the samples)
  is within 2% of the best of the same candidates evaluated directly."""
  rng = np.random.default_rng(seed)
  x = rng.laplace(size=4000).astype(np.float32)
  if not signed:
    x = np.maximum(x, 0)
  h = _hist(x, 256)
  pattern = uniform(bits, signed=signed)
  clip = calibrate.mse_clip(h, pattern.max_level)
  candidates = h.absmax * np.arange(16, 257) / 256
  best = min(_direct_mse(x, bits, signed, c) for c in candidates[::4])
  assert _direct_mse(x, bits, signed, clip) <= 1.02 * best
  # Heavy tails: the optimum clips below the maximum.
  assert clip < h.absmax


def test_choose_format_signedness_and_errors():
  h = _hist(np.linspace(-1, 1, 101), 32)
  pattern, scale = calibrate.choose_format("mse", calibrate.RangeStats(-1.0, 1.0), 8, hist=h)
  assert pattern.signed and 0 < scale <= 1.0 / 127
  with pytest.raises(ValueError, match="calibration='kl' is not supported; allowed: minmax"):
    calibrate.choose_format("kl", calibrate.RangeStats(0.0, 1.0), 8)
  with pytest.raises(ValueError, match="needs the histogram"):
    calibrate.choose_format("mse", calibrate.RangeStats(0.0, 1.0), 8)
  zeros = calibrate.Histogram(1.0, np.zeros(16, np.int64), 100)
  assert calibrate.choose_format("mse", calibrate.RangeStats(0.0, 0.0), 8, hist=zeros)[1] == 1.0
