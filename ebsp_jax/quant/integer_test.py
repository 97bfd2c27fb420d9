"""Tests of the integer mode (``quant.to_integer``) on small networks."""

import re
import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import BitPattern, make_rule, uniform
from ebsp_jax import quant
from ebsp_jax.quant import lowering, testing


def _levels(model, variables, x):
  """Fake-quant logits and the integer levels of every layer input."""
  logits, inter = model.apply(variables, x, mutable=["intermediates"])
  flat = jax.tree_util.tree_flatten_with_path(inter["intermediates"])[0]
  levels = {"/".join(str(k.key) for k in p[:-3]): np.asarray(a) for p, a in flat}
  return np.asarray(logits), levels


@pytest.fixture(scope="module", params=["cnn", "resnet"])
def case(request):
  cls, shape = {"cnn": (testing.TinyCNN, (16, 12, 12, 1)),
                "resnet": (testing.TinyResNet, (16, 8, 8, 3))}[request.param]
  x = jax.random.normal(jax.random.key(0), shape)
  model, variables, rule, scales = testing.calibrated(cls, x)
  imodel = quant.to_integer(cls(), variables, weight_rule=rule, weight_scales=scales)
  out, cap = imodel.apply(x, capture=True)
  return request.param, x, model, variables, imodel, out, cap


def test_integer_mode_matches_fake_quant(case):
  _, x, model, variables, imodel, out, cap = case
  fq, levels = _levels(model, variables, x)
  assert imodel.float_ops == []              # integer-only between input and output
  assert set(cap) == set(levels)
  for layer, lv in levels.items():
    diff = np.abs(np.asarray(cap[layer]["input"]) - lv)
    assert diff.max() <= 1, layer            # at most one level, from float32 rounding
    assert np.mean(diff == 0) >= 0.999, layer
  np.testing.assert_allclose(np.asarray(out), fq, atol=1e-3 * (1 + np.abs(fq).max()))
  assert np.mean(np.argmax(out, -1) == np.argmax(fq, -1)) == 1.0
  # Records: every layer after the first is requantized with positive multipliers.
  for layer, rec in imodel.records.items():
    assert rec.input_kind == ("float" if layer == "conv_init" else "requant")
    if rec.input_kind == "requant":
      assert np.all(rec.multiplier >= 0) and np.all((rec.shift >= 0) & (rec.shift <= 62))
    assert rec.acc_bound_bits <= 32


def test_requantization_is_exact_rounding_of_the_real_value():
  """conv1's input vs a float64 evaluation of relu(acc * s * s_w + b) -> maxpool -> round."""
  x = jax.random.normal(jax.random.key(1), (8, 12, 12, 1))
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales)
  _, cap = imodel.apply(x, capture=True)
  first, nxt = imodel.layers["conv_init"], imodel.layers["conv1"]
  real = (np.asarray(cap["conv_init"]["acc"], np.float64) * first.act_scale
          * first.weight_scale.astype(np.float64) + np.asarray(v["params"]["conv_init"]["bias"],
                                                               np.float64))
  real = np.maximum(real, 0.0)
  n, h, w, c = real.shape
  real = real.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)) / nxt.act_scale
  want = np.clip(np.floor(real + 0.5), 0, 255)
  got = np.asarray(cap["conv1"]["input"])
  near_tie = np.abs(real - np.floor(real) - 0.5) < 1e-6
  assert np.all((got == want) | near_tie)


def test_jit_and_batch_independence(case):
  _, x, _, _, imodel, out, _ = case
  np.testing.assert_array_equal(jax.jit(imodel.apply)(x[:3]), out[:3])


class _Tanh(nn.Module):
  dot_general_cls: object = None
  conv_general_dilated_cls: object = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = jnp.tanh(nn.Dense(8, dot_general_cls=self.dot_general_cls, name="fc1")(x))
    return nn.Dense(3, dot_general_cls=self.dot_general_cls, name="head")(x)


def test_unsupported_op_strict_and_float_fallback():
  x = jax.random.normal(jax.random.key(2), (8, 5))
  model, v, rule, scales = testing.calibrated(_Tanh, x)
  with pytest.raises(lowering.UnsupportedOp, match="'tanh'.*strict=False"):
    quant.to_integer(_Tanh(), v, weight_rule=rule, weight_scales=scales).apply(x)
  imodel = quant.to_integer(_Tanh(), v, weight_rule=rule, weight_scales=scales, strict=False)
  out = imodel.apply(x)
  assert any("tanh" in op for op in imodel.float_ops)
  np.testing.assert_allclose(out, model.apply(v, x), atol=1e-4)


def test_float_layers_and_errors():
  x = jax.random.normal(jax.random.key(3), (4, 12, 12, 1))
  model, v, _, _ = testing.calibrated(testing.TinyCNN, x)
  keep_head_float = make_rule(BitPattern(6, 3), exclude=["^head/"])
  with pytest.raises(lowering.UnsupportedOp, match="layer 'head'"):
    quant.to_integer(testing.TinyCNN(), v, weight_rule=keep_head_float).apply(x)
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=keep_head_float, strict=False)
  out = np.asarray(imodel.apply(x))
  assert imodel.float_ops == ["dot_general 'head' (float layer, u8b(L8) input)", "add"]  # + bias
  # The float layer sees its input fake-quantized, as in the fake-quant model (without it:
  # differences of ~1% of the logits' range).
  fq = np.asarray(model.apply(v, x))
  np.testing.assert_allclose(out, fq, atol=1e-4 * (1 + np.abs(fq).max()))
  # Higher precision for the first layer: a per-layer rule works unchanged.
  rule8 = make_rule(BitPattern(6, 3), overrides=[("^conv_init/", uniform(8))])
  assert quant.to_integer(testing.TinyCNN(), v, weight_rule=rule8).layers[
      "conv_init"].weight_pattern == uniform(8)
  uncalibrated = testing.random_variables(testing.TinyCNN(**quant.fake_quant_injection(8)), x)
  with pytest.raises(ValueError, match="never calibrated"):
    quant.to_integer(testing.TinyCNN(), uncalibrated, weight_rule=keep_head_float)
  with pytest.raises(ValueError, match="'params'"):
    quant.to_integer(testing.TinyCNN(), {}, weight_rule=keep_head_float)


def test_registry_model_by_name():
  from ebsp_jax import models  # pylint: disable=import-outside-toplevel
  x = jax.random.normal(jax.random.key(4), (1, 28, 28, 1))
  model = models.get_model("lenet5", num_classes=10, **quant.fake_quant_injection(8))
  v = dict(testing.random_variables(model, x))
  v.update(jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["quant_stats"])[1])(v, x))
  rule = make_rule(BitPattern(6, 3))
  imodel = quant.to_integer("lenet5", v, weight_rule=rule)   # scales refit
  assert imodel.apply(x).shape == (1, 10)
  assert set(imodel.records) == {"conv_init", "conv1", "fc1", "fc2", "head"}


def test_events(case):
  name, x, _, _, imodel, _, _ = case
  if name != "cnn":
    pytest.skip("events: one network is enough (cost)")
  ev = imodel.events(x[:1])
  assert set(ev) == set(imodel.layers)
  assert all(e["macs"] > 0 and e["acc_high_water_bits"] <= 32 for e in ev.values())


def test_dead_units_with_bias_lower_without_overflow():
  """A unit whose weights are ~1e-33 but whose bias is not (seen after float training) has an
  offset ~1e32 accumulator units: it is narrowed per channel, not recursed on forever."""
  def plant(params):
    params = jax.tree_util.tree_map(lambda a: a, params)
    k = np.array(params["fc1"]["kernel"])
    k[:, :3] = 1e-33
    b = np.array(params["fc1"]["bias"])
    b[:3] = [0.3, -0.2, 0.05]
    params["fc1"] = dict(params["fc1"], kernel=jnp.asarray(k), bias=jnp.asarray(b))
    return params

  x = jax.random.normal(jax.random.key(2), (16, 12, 12, 1))
  model, v, rule, scales = testing.calibrated(testing.TinyCNN, x, params_fn=plant)
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales)
  out, cap = imodel.apply(x, capture=True)
  fq, levels = _levels(model, v, x)
  assert imodel.float_ops == []
  assert any(e["op"] == "rounding_shift_right" for e in imodel.epilogues["fc1"])
  diff = np.abs(np.asarray(cap["head"]["input"]) - levels["head"])
  assert diff.max() <= 1 and np.mean(diff == 0) >= 0.99
  np.testing.assert_allclose(np.asarray(out), fq, atol=1e-3 * (1 + np.abs(fq).max()))


def _exact_accumulators(imodel, cap):
  """Every layer's exact sum from its captured input, in float64 (exact: |sum| << 2**53)."""
  from jax import lax  # pylint: disable=import-outside-toplevel
  out = {}
  with jax.enable_x64(True):
    for layer, rec in imodel.records.items():
      fn = lax.dot_general if rec.op == "dot_general" else lax.conv_general_dilated
      a = jnp.asarray(np.asarray(cap[layer]["input"]), jnp.float64)
      w = jnp.asarray(np.asarray(imodel.weights[layer]), jnp.float64)
      out[layer] = np.asarray(fn(a, w, **dict(rec.kwargs), precision=lax.Precision.HIGHEST),
                              np.float64)
  return out


@pytest.mark.parametrize("acc_bits", [14, 32])
def test_overflow_counts_and_policies_against_exact_sums(acc_bits):
  x = jax.random.normal(jax.random.key(5), (6, 12, 12, 1))
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  kw = dict(weight_rule=rule, weight_scales=scales, acc_bits=acc_bits)
  wrap = quant.to_integer(testing.TinyCNN(), v, **kw)
  out, cap, counts = wrap.apply(x, capture=True, with_stats=True)
  exact = _exact_accumulators(wrap, cap)
  lo, hi = -2.0 ** (acc_bits - 1), 2.0 ** (acc_bits - 1) - 1
  assert set(counts) == set(exact)
  for layer, s in exact.items():
    over = (s < lo) | (s > hi)
    assert int(counts[layer]) == int(over.sum()), layer
    wrapped = np.mod(s + 2.0 ** (acc_bits - 1), 2.0 ** acc_bits) - 2.0 ** (acc_bits - 1)
    np.testing.assert_array_equal(np.asarray(cap[layer]["acc"], np.float64), wrapped)
  total = sum(int(c) for c in counts.values())
  assert (total > 0) == (acc_bits == 14)      # 14 bits: the 6-bit x 8-bit sums overflow
  np.testing.assert_array_equal(np.asarray(wrap.apply(x)), np.asarray(out))
  err = quant.to_integer(testing.TinyCNN(), v, overflow="error", **kw)
  if total:
    with pytest.raises(OverflowError, match=r"overflow 14 bits in \d+ layer\(s\): .*conv_init: [1-9]"):
      err.apply(x)
    # clip = the exact sum clipped once (the per-add 'saturate' register: arith/saturate_test
    # and golden_test, which recomputes it from the exported files).
    sat = quant.to_integer(testing.TinyCNN(), v, overflow="clip", **kw)
    _, scap = sat.apply(x, capture=True)
    s0 = exact["conv_init"]                  # first layer: same input as the wrap run
    np.testing.assert_array_equal(np.asarray(scap["conv_init"]["acc"], np.float64),
                                  np.clip(s0, lo, hi))
  else:
    o, c = err.apply(x, with_stats=True)
    np.testing.assert_array_equal(np.asarray(o), np.asarray(out))
    assert all(int(n) == 0 for n in c.values())


def test_datapath_options_are_checked_by_to_integer():
  x = jax.random.normal(jax.random.key(6), (2, 12, 12, 1))
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  for kw, msg in (({"acc_bits": 40}, r"acc_bits=40 is out of range: allowed \[2, 32\]"),
                  ({"overflow": "clamp"}, "overflow='clamp' is not supported; allowed: wrap"),
                  ({"mode": "x"}, "mode='x' is not supported"),
                  ({"method": "slow"}, "method='slow' is not supported"),
                  ({"accumulation": "int64"}, "accumulation='int64' is not supported")):
    with pytest.raises(ValueError, match=msg):
      quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales, **kw)


@pytest.mark.parametrize("rounding", ["truncate", "round"])
def test_dual_lod_aware_fake_quant_matches_integer_dual_lod(rounding):
  x = jax.random.normal(jax.random.key(7), (16, 12, 12, 1))
  exact_model, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  dual_model = testing.TinyCNN(**quant.fake_quant_injection(8, dual_lod_length=3,
                                                            dual_lod_rounding=rounding))
  fq_exact = np.asarray(exact_model.apply(v, x))
  fq_dual = np.asarray(dual_model.apply(v, x))
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales,
                            mode="dual_lod", rounding=rounding)
  out = np.asarray(imodel.apply(x))
  tol = 1e-3 * (1 + np.abs(fq_dual).max())
  assert np.abs(fq_dual - fq_exact).max() > 20 * tol       # the approximation is visible
  np.testing.assert_allclose(out, fq_dual, atol=tol)       # and the integer mode computes it
  assert np.mean(np.argmax(out, -1) == np.argmax(fq_dual, -1)) == 1.0
  # Gradients pass straight through the cut (as through the uniform quantizer).
  g = jax.grad(lambda xx: jnp.sum(dual_model.apply(v, xx)))(x)
  assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).sum() > 0
  with pytest.raises(ValueError, match=r"dual_lod_length=8 must be None or an int in \[1, 7\]"):
    quant.fake_quant_injection(8, dual_lod_length=8, dual_lod_rounding=rounding)
  # No default rounding on either side: a silent truncate/round mismatch is impossible.
  with pytest.raises(ValueError, match="dual_lod_length needs dual_lod_rounding='truncate' or"):
    quant.fake_quant_injection(8, dual_lod_length=3)
  with pytest.raises(ValueError, match="without dual_lod_length"):
    quant.fake_quant_injection(8, dual_lod_rounding=rounding)
  with pytest.raises(ValueError, match="mode='dual_lod' needs rounding='truncate' or 'round'"):
    quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales,
                     mode="dual_lod")


def test_dual_lod_training_with_per_layer_lengths_matches_integer_dual_lod():
  """First conv 8-bit uniform (L = 7), conv1 and fc1 6b(L2), the classifier float (no cut)."""
  x = jax.random.normal(jax.random.key(8), (16, 12, 12, 1))
  rule = make_rule(BitPattern(6, 2), overrides=[("^conv_init/", uniform(8)), ("^head/", None)])
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x, rule=rule)
  lengths = quant.dual_lod_lengths(rule, v["params"])
  assert lengths == {"conv_init": 7, "conv1": 2, "fc1": 2, "head": None}
  shapes = jax.eval_shape(lambda: v["params"])                   # abstract params work too
  assert quant.dual_lod_lengths(rule, shapes) == lengths
  dual = testing.TinyCNN(**quant.fake_quant_injection(8, dual_lod_length=lengths,
                                                      dual_lod_rounding="round"))
  fq_dual = np.asarray(dual.apply(v, x))
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales,
                            mode="dual_lod", rounding="round", strict=False)
  out = np.asarray(imodel.apply(x))
  assert imodel.float_ops == ["dot_general 'head' (float layer, u8b(L8) input)", "add"]
  tol = 1e-3 * (1 + np.abs(fq_dual).max())
  np.testing.assert_allclose(out, fq_dual, atol=tol)
  # One L for all layers would cut the first layer's input to 2 bits and the head's too.
  one = testing.TinyCNN(**quant.fake_quant_injection(8, dual_lod_length=2,
                                                     dual_lod_rounding="round"))
  assert np.abs(np.asarray(one.apply(v, x)) - out).max() > 20 * tol
  del lengths["fc1"]
  missing = testing.TinyCNN(**quant.fake_quant_injection(8, dual_lod_length=lengths,
                                                         dual_lod_rounding="round"))
  with pytest.raises(ValueError, match="dual_lod_length has no entry for layer 'fc1'"):
    missing.apply(v, x)
  with pytest.raises(ValueError, match=r"dual_lod_length\['conv1'\]=0 must be None or an int"):
    quant.fake_quant_injection(8, dual_lod_length={"conv1": 0}, dual_lod_rounding="round")


class _DenseOnly(nn.Module):
  """Declares only the hook field its layers use."""

  dot_general_cls: Any = None

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3, dot_general_cls=self.dot_general_cls, name="head")(x)


class _NoHooks(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3, name="head")(x)


def test_models_with_one_hook_field_or_none():
  x = jax.random.normal(jax.random.key(9), (8, 4))
  rule = make_rule(BitPattern(6, 3))
  fq = _DenseOnly(dot_general_cls=quant.fake_quant_injection(8)["dot_general_cls"])
  v = dict(fq.init(jax.random.key(0), x))
  v.update(fq.apply(v, x, mutable=["quant_stats"])[1])
  out = quant.to_integer(_DenseOnly(), v, weight_rule=rule).apply(x)
  assert out.shape == (8, 3)
  with pytest.raises(ValueError, match="_NoHooks has neither a dot_general_cls nor a "
                     "conv_general_dilated_cls field"):
    quant.to_integer(_NoHooks(), v, weight_rule=rule)


def test_given_scales_that_do_not_fit_the_kernels_are_reported():
  x = jax.random.normal(jax.random.key(10), (4, 12, 12, 1))
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  with warnings.catch_warnings():
    warnings.simplefilter("error")                      # the training scales: silent
    quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales)
    quant.to_integer(testing.TinyCNN(), v, weight_rule=rule)          # refit: silent
  wrong = jax.tree_util.tree_map(lambda s: None if s is None else s * 1.1, scales,
                                 is_leaf=lambda s: s is None)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=wrong)
  msgs = sorted(str(w.message) for w in caught if issubclass(w.category, UserWarning))
  assert len(msgs) == 4                              # one per kernel
  assert re.search(r"kernel 'conv1/kernel' is not on the 6b\(L3\) grid at the given scales "
                   r"\(\d+\.\d% of its weights off by up to \d+\.\d\d levels\)", msgs[0])
