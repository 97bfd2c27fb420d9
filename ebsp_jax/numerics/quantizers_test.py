"""Property tests of quantize/project/fake_quant/fit_scale against a brute-force reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ebsp_jax.numerics import reference_testing as ref
from ebsp_jax.numerics.pattern import BitPattern
from ebsp_jax.numerics.quantizers import fake_quant, fit_scale, project, quantize

ALL = [BitPattern(b, l, s) for s in (True, False) for b in range(1, 11) for l in range(1, 11)
       if (b >= 2 or not s) and 1 <= l <= (b - 1 if s else b)]
patterns = st.sampled_from(ALL)


def scaled32(x, scale):
  """The documented scaling in NumPy float32: ``x * (1 / scale)``, each op correctly rounded."""
  s = np.asarray(scale, np.float32)
  return np.asarray(x, np.float32) * (np.float32(1) / s)


def brute(x, p, scale):
  y = np.asarray(scaled32(x, scale), np.float64)
  return ref.nearest_level(y, p.bits, p.length, p.signed).reshape(y.shape)


@pytest.mark.parametrize("p", ALL, ids=str)
def test_every_midpoint_and_neighbour(p):
  """Exhaustive on the points that decide rounding: levels, midpoints (ties), midpoints ± ulp."""
  lv = p.levels.astype(np.float32)
  mids = ((lv[1:].astype(np.float64) + lv[:-1]) / 2).astype(np.float32)
  beyond = np.float32([p.max_level + 0.5, p.max_level + 1, 2.0 * p.max_level + 3, 1e30, -1e30])
  pts = np.concatenate([lv, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), beyond,
                        -beyond, np.float32([0.25, 0.5, 0.75, -0.5])])
  np.testing.assert_array_equal(np.asarray(quantize(pts, p, 1.0)), brute(pts, p, 1.0))


def _tie_points(p, scale):
  """Float32 ``x`` near every midpoint of ``scale * levels``: ``fl(m * scale)`` and its 4
  float neighbours each side; and the mask of those whose scaled value is exactly a tie."""
  lv = p.levels.astype(np.float64)
  mids = (lv[1:] + lv[:-1]) / 2
  x0 = (mids * np.float64(np.float32(scale))).astype(np.float32)
  pts = [x0]
  up, down = x0, x0
  for _ in range(4):
    up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
    pts += [up, down]
  x = np.concatenate(pts)
  y = scaled32(x, scale).astype(np.float64)
  return x, np.isin(y, mids)


def _check_one_rule(p, x, scale):
  """quantize, project, fake_quant: the documented rule, eagerly and under jit (scale traced or
  a constant), per tensor and per channel; project == quantize * scale."""
  want = brute(x, p, scale)
  q = np.asarray(quantize(x, p, scale))
  np.testing.assert_array_equal(q, want)
  np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: quantize(v, p, scale))(x)), want)
  np.testing.assert_array_equal(
      np.asarray(jax.jit(lambda v, s: quantize(v, p, s))(x, np.float32(scale))), want)
  np.testing.assert_array_equal(np.asarray(quantize(x, p, np.full(x.shape, scale, np.float32))),
                                want)
  proj = (want * np.float32(scale)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(project(x, p, scale)), proj)
  np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: project(v, p, scale))(x)), proj)
  np.testing.assert_array_equal(np.asarray(fake_quant(jnp.asarray(x), p, scale)), proj)
  np.testing.assert_array_equal(
      np.asarray(jax.jit(lambda v, s: fake_quant(v, p, s))(jnp.asarray(x), jnp.float32(scale))),
      proj)


def test_ties_at_scale_0037_8b_l7():
  """The reported case: 8b(L7), scale 0.037, where 30 of 254 midpoints had project(x) !=
  quantize(x) * scale. Now one rule everywhere, and exact ties occur among these points."""
  p = BitPattern(8, 7)
  x, tie = _tie_points(p, 0.037)
  assert tie.sum() >= 100
  _check_one_rule(p, x, 0.037)


@given(p=st.sampled_from([BitPattern(8, 7), BitPattern(6, 3), BitPattern(5, 2),
                          BitPattern(4, 3, signed=False), BitPattern(8, 2)]),
       scale=st.floats(np.float32(1e-4), np.float32(1e3), width=32, allow_subnormal=False))
@settings(max_examples=max(15, settings().max_examples // 4))   # ~0.7 s each (compiles)
def test_ties_over_many_scales(p, scale):
  """Every midpoint of ``scale * levels`` and its float neighbours, over many scales: one
  rounding rule for every function, eager and jitted. Exact ties are among the points."""
  x, tie = _tie_points(p, scale)
  assert tie.any()
  _check_one_rule(p, x, scale)


@given(p=patterns, data=st.data())
def test_quantize_matches_brute_force(p, data):
  x = np.array(data.draw(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=40)),
               np.float32)
  scale = np.float32(data.draw(st.floats(np.float32(1e-3), np.float32(1e3), width=32)))
  got = quantize(x, p, scale)
  chex.assert_type(got, jnp.int32)
  np.testing.assert_array_equal(np.asarray(got), brute(x, p, scale))


def test_special_values():
  p = BitPattern(6, 3)
  x = np.float32([0.0, -0.0, 1e-45, -1e-45, 1e-40, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan])
  np.testing.assert_array_equal(np.asarray(quantize(x, p, 1.0)),
                                [0, 0, 0, 0, 0, 28, -28, 28, -28, 0])
  out = np.asarray(project(x, p, 0.5))
  np.testing.assert_array_equal(out[:-1], [0, 0, 0, 0, 0, 14, -14, 14, -14])
  assert np.isnan(out[-1])
  assert np.isnan(np.asarray(fake_quant(jnp.asarray(x), p, 0.5))[-1])
  u = BitPattern(4, 2, signed=False)
  np.testing.assert_array_equal(np.asarray(quantize(np.float32([-5, -np.inf, 5, np.inf]), u, 1)),
                                [0, 0, 4, 12])


def test_documented_ties():
  p = BitPattern(6, 3)
  x = np.float32([0.5, 1.5, 2.5, 3.5, 9.0, 11.0, 13.0, 18.0, 22.0, 26.0, -9.0])
  np.testing.assert_array_equal(np.asarray(quantize(x, p, 1.0)),
                                [0, 2, 2, 4, 8, 12, 12, 16, 24, 24, -8])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_project_dtypes(dtype):
  p = BitPattern(5, 2)
  x = jax.random.normal(jax.random.key(0), (257,), jnp.float32).astype(dtype) * 3
  scale = 0.37
  out = project(x, p, scale)
  assert out.dtype == dtype
  want = brute(np.asarray(x.astype(jnp.float32)), p, scale) * np.float32(scale)
  np.testing.assert_array_equal(np.asarray(out.astype(jnp.float32)),
                                np.asarray(jnp.asarray(want, jnp.float32).astype(dtype)
                                           .astype(jnp.float32)))


@given(p=patterns, data=st.data())
def test_per_channel_scale_broadcasts(p, data):
  rows, cols = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
  x = np.array(data.draw(st.lists(st.floats(-100, 100, width=32), min_size=rows * cols,
                                  max_size=rows * cols)), np.float32).reshape(rows, cols)
  s = np.array(data.draw(st.lists(st.floats(np.float32(0.01), 10, width=32), min_size=cols, max_size=cols)),
               np.float32).reshape(1, cols)
  got = np.asarray(quantize(x, p, s))
  for c in range(cols):
    np.testing.assert_array_equal(got[:, c], brute(x[:, c], p, s[0, c]))


class TransformsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_and_plain_agree_with_brute_force(self):
    p = BitPattern(7, 3)
    x = jax.random.uniform(jax.random.key(1), (1000,), minval=-70, maxval=70)
    fn = self.variant(lambda x: quantize(x, p, 1.0))
    np.testing.assert_array_equal(np.asarray(fn(x)), brute(np.asarray(x), p, 1.0))

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_over_scales(self):
    p = BitPattern(6, 2)
    x = jax.random.normal(jax.random.key(2), (4, 50)) * 10
    s = jnp.array([0.5, 1.0, 2.0, 3.0])
    fn = self.variant(jax.vmap(lambda x, s: quantize(x, p, s)))
    for i in range(4):
      np.testing.assert_array_equal(np.asarray(fn(x, s))[i], brute(np.asarray(x[i]), p, s[i]))

  @chex.variants(with_jit=True, without_jit=True)
  def test_straight_through_gradient(self):
    p = BitPattern(6, 3)
    x = jnp.float32([-40, -28.5, -28, -3.3, 0, 0.2, 7.7, 28, 28.01, 100])
    g = self.variant(jax.grad(lambda x: jnp.sum(fake_quant(x, p, 1.0) * jnp.arange(10.0))))(x)
    np.testing.assert_array_equal(np.asarray(g), [0, 0, 2, 3, 4, 5, 6, 7, 0, 0])
    u = BitPattern(6, 3, signed=False)
    gu = jax.grad(lambda x: jnp.sum(fake_quant(x, u, 1.0)))(x)
    np.testing.assert_array_equal(np.asarray(gu), [0, 0, 0, 0, 1, 1, 1, 1, 1, 0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_lsq_scale_gradient(self):
    p = BitPattern(6, 3)
    x = jax.random.normal(jax.random.key(3), (64, 8)) * 3
    s = jnp.linspace(0.05, 0.3, 8).reshape(1, 8)
    cot = jax.random.normal(jax.random.key(4), (64, 8))
    gs = self.variant(jax.grad(lambda s: jnp.sum(fake_quant(x, p, s) * cot)))(s)
    chex.assert_shape(gs, (1, 8))
    # Independent LSQ formula in numpy: d/ds = q - x/s inside, q (= ±max) outside.
    xn, sn, cn = (np.asarray(a, np.float64) for a in (x, s, cot))
    y = scaled32(x, s).astype(np.float64)
    q = brute(np.asarray(x), p, np.asarray(s))
    inside = np.abs(y) <= p.max_level
    assert inside.any() and (~inside).any()       # both branches of the gradient are used
    want = np.sum(cn * np.where(inside, q - y, q), axis=0, keepdims=True)
    np.testing.assert_allclose(np.asarray(gs), want, rtol=1e-4, atol=1e-4)
    # Saturated (+28) and inside: -5 - (-5.25) = 0.25, 4 - 3.75 = 0.25 (independent values).
    x0 = jnp.float32([100.0, -5.25, 3.75])
    gs0 = self.variant(jax.grad(lambda s: jnp.sum(fake_quant(x0, p, s))))(jnp.float32(1.0))
    np.testing.assert_allclose(float(gs0), 28.0 + 0.25 + 0.25, atol=1e-6)

  def test_fake_quant_forward_equals_project(self):
    p = BitPattern(5, 3)
    x = jax.random.normal(jax.random.key(5), (300,), jnp.bfloat16) * 4
    np.testing.assert_array_equal(np.asarray(fake_quant(x, p, 0.3).astype(jnp.float32)),
                                  np.asarray(project(x, p, 0.3).astype(jnp.float32)))


def _err(w, p, s):
  w = np.asarray(w, np.float64)
  return np.sum((w - np.asarray(s, np.float64) * np.asarray(quantize(w.astype(np.float32), p, s)))**2)


@given(p=patterns, seed=st.integers(0, 2**31 - 1), heavy=st.booleans())
@settings(max_examples=max(15, settings().max_examples // 4))   # ~0.5 s each
def test_fit_scale_never_worse_than_max_abs(p, seed, heavy):
  rng = np.random.default_rng(seed)
  w = (rng.standard_t(2, 200) if heavy else rng.normal(size=200)).astype(np.float32)
  s = fit_scale(w, p)
  chex.assert_shape(s, ())
  assert np.isfinite(s) and s > 0
  s_max = np.float32(np.abs(w).max() / p.max_level)
  assert _err(w, p, s) <= _err(w, p, s_max) * (1 + 1e-6)


def test_fit_scale_improves_on_gaussian_and_is_locally_optimal():
  p = BitPattern(6, 3)
  w = np.asarray(jax.random.normal(jax.random.key(7), (4096,)))
  s = float(fit_scale(w, p))
  s_max = np.abs(w).max() / p.max_level
  assert _err(w, p, s) < 0.95 * _err(w, p, s_max)
  for f in (0.9, 0.95, 0.97, 0.99, 1.01, 1.03, 1.05, 1.1):
    assert _err(w, p, s) <= _err(w, p, s * f) * (1 + 1e-6)


def test_fit_scale_per_channel_keepdims_and_zero_channels():
  p = BitPattern(5, 2)
  w = np.array(jax.random.normal(jax.random.key(8), (3, 3, 4, 6)))
  w[..., 2] = 0.0
  s = fit_scale(w, p, axis=(0, 1, 2))
  chex.assert_shape(s, (1, 1, 1, 6))
  assert np.all(np.isfinite(s)) and np.all(np.asarray(s) > 0) and float(s[0, 0, 0, 2]) == 1.0
  for c in range(6):
    np.testing.assert_allclose(float(s[0, 0, 0, c]), float(fit_scale(w[..., c], p)), rtol=1e-6)
  s_dense = fit_scale(w.reshape(-1, 6), p, axis=0)
  chex.assert_shape(s_dense, (1, 6))
  with pytest.raises(ValueError, match="axis 4"):
    fit_scale(w, p, axis=4)


BAD_SCALES = [(0.0, "got 0.0"), (-1.0, "got -1.0"), (float("nan"), "got nan"),
              (float("inf"), "got inf"), (np.float32([[1.0, 0.0, 2.0]]), r"got 0.0 \(1 of 3"),
              (jnp.array([0.5, -0.5]), r"got -0.5 \(1 of 2"), (jnp.bfloat16(0), "got 0.0"),
              # Finite in float64 but Inf / a flushed denormal in float32, the division's dtype.
              (1e39, r"got 1e\+39 \(scale and 1/scale must be normal float32"),
              (np.float64(6e38), "got 6e\\+38"), (np.float64(1e38), "got 1e\\+38"),
              (1e-40, r"got 1e-40 \(scale and 1/scale must be normal float32"),
              (np.float64(1e-46), "got 1e-46"),
              (np.float64([1.0, 1e-39]), r"got 1e-39 \(1 of 2 elements\) \(scale and")]


@pytest.mark.parametrize("fn", [quantize, project, fake_quant], ids=lambda f: f.__name__)
@pytest.mark.parametrize("scale,match", BAD_SCALES)
def test_concrete_bad_scale_raises_one_line_value_error(fn, scale, match):
  x = jnp.ones((4, 3))
  msg = rf"^{fn.__name__}: scale must be finite and > 0, {match}"
  with pytest.raises(ValueError, match=msg) as e:
    fn(x, BitPattern(6, 3), scale)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("fn", [quantize, project, fake_quant], ids=lambda f: f.__name__)
@pytest.mark.parametrize("scale", ["0.5", None, True])
def test_non_numeric_scale_raises_type_error(fn, scale):
  with pytest.raises(TypeError, match=f"^{fn.__name__}: scale must be a positive real number"):
    fn(jnp.ones(3), BitPattern(6, 3), scale)


def test_scale_range_is_that_of_the_division_dtype():
  """float32 inputs divide in float32: the extremes of [2**-126, 2**126] pass and give the
  right levels (above 2**126, XLA:CPU's x * (1/scale) flushes 1/scale to 0); float64 inputs
  (x64) divide in float64, where 1e39 and 1e-300 are fine."""
  p = BitPattern(6, 3)
  tiny, big = np.finfo(np.float32).tiny, np.float32(2.0**126)
  np.testing.assert_array_equal(np.asarray(quantize(np.float32([3 * tiny, 1.0]), p, tiny)),
                                [3, 28])
  np.testing.assert_array_equal(np.asarray(quantize(np.float32([3 * big, 1.0]), p, big)), [3, 0])
  np.testing.assert_array_equal(np.asarray(project(np.float32([3 * big, -1.0]), p, big)),
                                [3 * big, 0])
  with jax.enable_x64(True):
    x = jnp.array([1e40, 3e-300], jnp.float64)
    np.testing.assert_array_equal(np.asarray(quantize(x, p, 1e39)), [10, 0])
    np.testing.assert_array_equal(np.asarray(quantize(x, p, 1e-300)), [28, 3])
    with pytest.raises(ValueError, match=r"must be normal float32"):
      quantize(x.astype(jnp.float32), p, 1e39)


def brute64(x, p, scale):
  """Brute force with the scaling in float64 (the float64 path under x64)."""
  y = np.asarray(x, np.float64) * (1.0 / np.asarray(scale, np.float64))
  return ref.nearest_level(y, p.bits, p.length, p.signed).reshape(y.shape)


def test_float64_input_rounds_in_float64():
  """9.000000001 is 9.0 (a tie: 8) in float32; in float64 its nearest level is 10."""
  p = BitPattern(6, 3)
  with jax.enable_x64(True):
    x = jnp.array([9.000000001, 8.999999999, -9.000000001, 26.0 + 1e-12], jnp.float64)
    np.testing.assert_array_equal(np.asarray(quantize(x, p, 1.0)), [10, 8, -10, 28])
    out = project(x, p, 0.5)
    assert out.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(out), [10.0, 8.0, -10.0, 14.0])  # x / 0.5 ~ ±18
    np.testing.assert_array_equal(np.asarray(fake_quant(x, p, 1.0)), [10, 8, -10, 28])
    g = jax.grad(lambda s: jnp.sum(fake_quant(x, p, s)))(jnp.float64(1.0))
    np.testing.assert_allclose(float(g), float(np.sum([10, 8, -10, 28] - np.asarray(x))))


@given(p=patterns, data=st.data())
def test_quantize_float64_matches_float64_brute_force(p, data):
  """Property (x64): float64 inputs and scales give the float64 nearest level."""
  x = np.array(data.draw(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=40)), np.float64)
  scale = data.draw(st.floats(1e-3, 1e3))
  # Points within float32 resolution of a tie, where a float32 division picks wrongly.
  lv = p.levels.astype(np.float64)
  mids = (lv[1:] + lv[:-1]) / 2 * scale
  x = np.concatenate([x, mids * (1 + 1e-12), mids * (1 - 1e-12)])
  with jax.enable_x64(True):
    got = quantize(jnp.asarray(x, jnp.float64), p, scale)
    np.testing.assert_array_equal(np.asarray(got), brute64(x, p, scale))


@pytest.mark.parametrize("scale_shape", [(2, 3), (4, 1, 3), (2,), (1, 2)])
def test_fake_quant_scale_must_not_enlarge_or_misfit_x(scale_shape):
  """A scale broadcasting to more than x's shape used to return the larger shape (and fail in
  the gradient with an opaque custom_vjp error)."""
  p, x = BitPattern(6, 3), jnp.ones((3,))
  s = jnp.ones(scale_shape)
  with pytest.raises(ValueError, match=r"^fake_quant: scale of shape .* must broadcast to x's "
                                       r"shape \(3,\)") as e:
    fake_quant(x, p, s)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="must broadcast to x's shape"):
    jax.grad(lambda s: jnp.sum(fake_quant(x, p, s)))(s)
  with pytest.raises(ValueError, match="must broadcast to x's shape"):
    jax.jit(lambda x, s: fake_quant(x, p, s))(x, s)
  # Scales that keep x's shape are fine: scalar, (1,), (3,), and (1, 3) for a (2, 3) x.
  for shape, xs in (((), (3,)), ((1,), (3,)), ((3,), (3,)), ((1, 3), (2, 3))):
    chex.assert_shape(fake_quant(jnp.ones(xs), p, jnp.ones(shape)), xs)


def test_traced_scale_is_not_checked_and_good_scales_pass():
  p, x = BitPattern(6, 3), jnp.ones((4, 8))
  # Documented: under jit a bad scale is not checked (no run-time cost on the hot path).
  assert int(jax.jit(lambda s: quantize(x, p, s))(0.0)[0, 0]) == p.max_level
  np.testing.assert_array_equal(
      np.asarray(jax.vmap(lambda s: quantize(x, p, s))(jnp.array([1.0, 2.0])))[:, 0, 0], [1, 0])
  assert np.isfinite(float(jax.grad(lambda s: jnp.sum(fake_quant(x, p, s)))(0.3)))
  # Every legitimate scale kind: Python int/float, NumPy, jax, bfloat16, per channel.
  np.testing.assert_array_equal(np.asarray(quantize(x, p, 2)), 0)  # 1/2 rounds half to even
  for s in (0.5, np.float32(0.5), jnp.float32(0.5), jnp.bfloat16(0.5), np.full((1, 8), 0.5)):
    np.testing.assert_array_equal(np.asarray(quantize(x, p, s)), np.full((4, 8), 2))
  s = fit_scale(np.zeros((3, 4), np.float32), p, axis=0)   # all-zero slices -> 1, accepted
  np.testing.assert_array_equal(np.asarray(project(np.zeros((3, 4), np.float32), p, s)), 0)


@pytest.mark.parametrize("call", [
    lambda: quantize(jnp.ones(3), "6b(L3)", 1.0),
    lambda: project(jnp.ones(3), "6b(L3)", 1.0),
    lambda: fake_quant(jnp.ones(3), "6b(L3)", 1.0),
    lambda: fit_scale(jnp.ones(3), "6b(L3)"),
], ids=["quantize", "project", "fake_quant", "fit_scale"])
def test_pattern_string_raises_one_line_type_error(call):
  with pytest.raises(TypeError, match=r"pattern must be a BitPattern \(or another NumberFormat\), "
                                      r"got str '6b\(L3\)'; strings are not parsed") as e:
    call()
  assert "\n" not in str(e.value)


def test_other_number_format_still_accepted():
  """The NumberFormat protocol, not only BitPattern, passes the pattern check."""

  class Ternary:
    signed = True
    max_level = 1

    def round_magnitude(self, mag):
      return jnp.round(mag)

  got = quantize(np.float32([-3, -0.4, 0.6, 2]), Ternary(), 1.0)
  np.testing.assert_array_equal(np.asarray(got), [-1, 0, 1, 1])
  with pytest.raises(TypeError, match="got list"):
    quantize(jnp.ones(3), [6, 3], 1.0)
