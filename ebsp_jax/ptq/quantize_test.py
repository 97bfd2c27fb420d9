"""Tests of ``ptq.quantize`` on unmodified linen and nnx models (random weights, random images).

Agreement on trained models and real data: ``tests/ptq_fashion_mnist_test.py``.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ebsp_jax import BitPattern, make_rule, power_of_two, ptq, uniform
from ebsp_jax.numerics import fit_scale, on_grid, quantize
from ebsp_jax.ptq import hooks
from ebsp_jax.ptq.testing import NnxCNN, ResidualCNN, images, random_linen_variables
from ebsp_jax.quant import UnsupportedOp
from ebsp_jax.quant.calibration import _activation_scale_jit


@pytest.fixture(scope="module")
def residual():
  model = ResidualCNN()
  x = images(48)
  variables = random_linen_variables(model, jnp.asarray(x[:1]))
  qm = ptq.quantize(model, variables, [x[:24], x[24:]], calibration="minmax")
  return model, variables, x, qm


def _layer_inputs(model, variables, x):
  """Every hooked layer's float input, captured independently of ptq's statistics."""
  hooked, kw = hooks.adapt(model, variables)
  got = {}

  def handler(layer, op, lhs, rhs, args, kwargs):
    got.setdefault(layer, []).append(np.asarray(lhs))
    return hooks.lax_call(op, lhs, rhs, args, kwargs)

  with hooks.handling(handler):
    hooked.apply(variables, jnp.asarray(x), **kw)
  return got, hooked


def test_minmax_formats_and_weights_on_a_residual_cnn(residual):
  model, variables, x, qm = residual
  inputs, _ = _layer_inputs(model, variables, x)       # one batch = the two calibration ones
  assert list(qm.layers) == list(inputs) == [f"Conv_{i}" for i in range(7)] + ["Dense_0"]
  params = variables["params"]
  for layer, lq in qm.layers.items():
    a = np.concatenate(inputs[layer])
    assert (lq.act_min, lq.act_max) == (pytest.approx(a.min()), pytest.approx(a.max()))
    signed, scale = _activation_scale_jit(np.float32(a.min()), np.float32(a.max()), 8)
    # (The statistics of two batches of 24 and of one of 48 differ in the last float bit.)
    assert lq.act_pattern == uniform(8, signed=bool(signed))
    assert lq.act_scale == pytest.approx(float(scale), rel=1e-6)
    # Weights: fit_scale per output channel, levels on the 6b(L3) grid.
    w = np.asarray(params[layer]["kernel"])
    want = np.asarray(fit_scale(w, BitPattern(6, 3), axis=tuple(range(w.ndim - 1)),
                                num_iters=16)).reshape(-1)
    np.testing.assert_array_equal(lq.weight_scale, want)
    q = np.asarray(qm.integer_model.weights[layer])
    assert bool(jnp.all(on_grid(q, BitPattern(6, 3))))
    np.testing.assert_array_equal(q, quantize(w, BitPattern(6, 3), want))
  # The network input is normalised (signed); after ReLUs unsigned; the head input (a mean of
  # a residual sum without ReLU) signed again.
  assert qm.layers["Conv_0"].act_pattern.signed and not qm.layers["Conv_1"].act_pattern.signed
  assert qm.layers["Dense_0"].act_pattern.signed


def test_integer_tracks_fake_quant_and_codes_dequantize(residual):
  model, variables, x, qm = residual
  fq, it = np.asarray(qm.fake_quant(x)), np.asarray(qm.integer(x))
  # Random weights (near ties) still: same top-1 almost everywhere, logits within a few
  # activation levels of the head input.
  assert np.mean(fq.argmax(1) == it.argmax(1)) >= 0.95
  assert np.max(np.abs(fq - it)) <= 0.02 * np.max(np.abs(fq))
  np.testing.assert_array_equal(np.asarray(jax.jit(qm.fake_quant)(jnp.asarray(x))), fq)
  np.testing.assert_allclose(np.asarray(qm.float_model(x)),
                             np.asarray(model.apply(variables, x, train=False)), rtol=1e-5,
                             atol=1e-6)
  codes = qm.integer_codes(x)
  assert codes.dtype == jnp.int32 and codes.shape == (48, 10)
  np.testing.assert_allclose(np.asarray(qm.dequantize(codes)), it, rtol=1e-6, atol=1e-6)
  levels = qm.quantize_input(x)
  assert qm.input_layer == "Conv_0" and levels.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(levels),
                                np.asarray(quantize(x, qm.layers["Conv_0"].act_pattern,
                                                    qm.layers["Conv_0"].act_scale)))
  assert "Conv_5" in qm.summary() and "u8b(L8)" in qm.summary()


def test_rule_overrides_float_layers_and_mse():
  model = ResidualCNN()
  x = images(32, seed=3)
  variables = random_linen_variables(model, jnp.asarray(x[:1]), seed=3)
  rule = make_rule(BitPattern(6, 3), overrides=[("^Conv_0/", uniform(8)), ("^Dense_0/", None)])
  qm = ptq.quantize(model, variables, x, weights=rule, calibration="mse")
  assert qm.layers["Conv_0"].weight_pattern == uniform(8)
  assert qm.layers["Conv_3"].weight_pattern == BitPattern(6, 3)
  assert qm.layers["Dense_0"].weight_pattern is None
  # MSE clips at or below the calibrated maximum.
  assert all(lq.clip <= max(-lq.act_min, lq.act_max) * (1 + 1e-6) for lq in qm.layers.values())
  fq, it = np.asarray(qm.fake_quant(x)), np.asarray(qm.integer(x))
  assert np.max(np.abs(fq - it)) <= 0.02 * np.max(np.abs(fq))
  assert any("Dense_0" in op and "float layer" in op for op in qm.integer_model.float_ops)
  with pytest.raises(ptq.CannotQuantize, match="output is computed in float"):
    qm.integer_codes(x)


def test_bias_correction_removes_the_mean_weight_error():
  class TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = nn.relu(nn.Dense(32, name="hidden")(x))
      return nn.Dense(6, name="out")(h)

  model = TwoLayer()
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(512, 16)) + 1.0).astype(np.float32)
  variables = model.init(jax.random.key(0), x[:1])
  kw = dict(weights=power_of_two(4), activation_bits=16, calibration="minmax")
  errs = {}
  for bc in (False, True):
    qm = ptq.quantize(model, variables, x, bias_correction=bc, **kw)
    errs[bc] = np.abs(np.mean(np.asarray(qm.fake_quant(x) - qm.float_model(x)), axis=0))
    if bc:
      assert qm.layers["hidden"].bias_correction.shape == (32,)
      it = np.asarray(qm.integer(x))
      np.testing.assert_allclose(it, np.asarray(qm.fake_quant(x)), atol=2e-3)
  assert np.max(errs[False]) > 0.05
  assert np.max(errs[True]) < 0.1 * np.max(errs[False])


def test_nnx_model_with_batch_norm_and_dropout():
  model = NnxCNN(nnx.Rngs(0))
  x = images(32, seed=1, signed=False)
  qm = ptq.quantize(model, None, x, weights=uniform(8), calibration="percentile",
                    percentile=99.9)
  assert qm.kind == "nnx" and list(qm.layers) == ["conv", "fc", "head"]
  assert not qm.layers["conv"].act_pattern.signed      # images in [0, 1]
  fq, it = np.asarray(qm.fake_quant(x)), np.asarray(qm.integer(x))
  assert np.mean(fq.argmax(1) == it.argmax(1)) >= 0.95
  assert np.max(np.abs(fq - it)) <= 0.02 * np.max(np.abs(fq))
  model.eval()
  np.testing.assert_allclose(np.asarray(qm.float_model(x)), np.asarray(model(x)), rtol=1e-6,
                             atol=1e-6)


def test_dual_lod_fake_quant_cuts_like_the_datapath(residual):
  model, variables, x, exact = residual      # the same calibration (min/max of all of x)
  qm = ptq.quantize(model, variables, x, calibration="minmax", mode="dual_lod",
                    rounding="round")
  fq, it = np.asarray(qm.fake_quant(x)), np.asarray(qm.integer(x))
  assert np.max(np.abs(fq - it)) <= 0.02 * np.max(np.abs(fq))
  assert np.max(np.abs(np.asarray(exact.fake_quant(x)) - fq)) > 1e-3   # the cut is applied


def test_what_cannot_be_lowered_is_named():
  class Tanh(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(jnp.tanh(nn.Dense(8)(x)))

  class WithEinsum(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Einsum((8, 3), "...i,ij->...j")(nn.relu(nn.Dense(8)(x)))

  x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
  with pytest.raises(UnsupportedOp, match=r"op 'tanh' in 'Tanh' on an activation \(after "
                                          r"layer Dense_\d\)"):
    ptq.quantize(Tanh(), Tanh().init(jax.random.key(0), x), x)
  with pytest.raises(UnsupportedOp, match=r"op 'dot_general' in 'WithEinsum/Einsum_0"):
    ptq.quantize(WithEinsum(), WithEinsum().init(jax.random.key(0), x), x)
  qm = ptq.quantize(Tanh(), Tanh().init(jax.random.key(0), x), x, strict=False)
  assert any(op.startswith("tanh") for op in qm.integer_model.float_ops)


@pytest.mark.parametrize("kwargs,match", [
    (dict(calibration="kl"), "calibration='kl' is not supported"),
    (dict(weights="6b(L3)"), "weights must be a BitPattern or a rule"),
    (dict(activation_bits=1), r"activation_bits=1 is out of range \[2, 16\]"),
    (dict(num_bins=4), "num_bins=4 must be an int >= 16"),
    (dict(calibration="percentile", percentile=0.0), r"percentile=0.0 must be in \(0, 100\]"),
    (dict(acc_bits=40), r"acc_bits=40 is out of range"),
    (dict(mode="dual_lod"), "mode='dual_lod' needs rounding"),
])
def test_bad_options_are_one_line_errors(kwargs, match):
  model = nn.Dense(3)
  x = np.ones((4, 5), np.float32)
  with pytest.raises((ValueError, TypeError), match=match):
    ptq.quantize(model, model.init(jax.random.key(0), x), x, **kwargs)


def test_bad_calibration_data_is_refused():
  model = nn.Dense(3)
  x = np.ones((4, 5), np.float32)
  v = model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="calibration_batches is empty"):
    ptq.quantize(model, v, [])
  with pytest.raises(ValueError, match=r"must be float arrays \(N, \.\.\.\), got int32"):
    ptq.quantize(model, v, [np.ones((4, 5), np.int32)])
  with pytest.raises(ValueError, match="batches differ in shape"):
    ptq.quantize(model, v, [x, np.ones((4, 6), np.float32)])
  with pytest.raises(ValueError, match="needs an 'image' entry"):
    ptq.quantize(model, v, [{"x": x}])
  qm = ptq.quantize(model, v, [{"image": x}, (x, None)])
  assert list(qm.layers) == [""]        # a bare nn.Dense: the root module, params 'kernel'
  np.testing.assert_allclose(np.asarray(qm.integer(x)), np.asarray(qm.fake_quant(x)),
                             atol=1e-5)
