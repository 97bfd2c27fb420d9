"""Tests of the flax.nnx modes (``quant.nnx``): float, fake-quant, integer.

The nnx CNN below is written with plain nnx layers and mirrors ``testing.TinyCNN`` (linen), so
the nnx modes are checked against the linen modes on the same weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebsp_jax import BitPattern, make_rule, on_grid, project, quantize
from ebsp_jax import quant
from ebsp_jax.quant import testing

PATTERN = BitPattern(6, 3)


class NnxCNN(nnx.Module):
  """conv(5x5) -> ReLU -> maxpool -> conv(3x3) -> BN -> ReLU -> flatten -> fc -> ReLU -> head."""

  def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
    self.conv_init = nnx.Conv(1, 6, (5, 5), padding=((2, 2), (2, 2)), rngs=rngs)
    self.conv1 = nnx.Conv(6, 8, (3, 3), use_bias=False, padding="VALID", rngs=rngs)
    self.bn1 = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
    self.fc1 = nnx.Linear(8 * 4 * 4, 16, rngs=rngs)
    self.head = nnx.Linear(16, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.max_pool(nnx.relu(self.conv_init(x)), (2, 2), (2, 2))
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = x.reshape((x.shape[0], -1))
    return self.head(nnx.relu(self.fc1(x)))


def _nnx_cnn(linen_variables):
  """An :class:`NnxCNN` holding the (unprojected) weights of a linen ``TinyCNN``."""
  model = NnxCNN(rngs=nnx.Rngs(0))
  pure = {**linen_variables["params"]}
  pure["bn1"] = {**pure["bn1"], **linen_variables["batch_stats"]["bn1"]}
  state = nnx.state(model)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  return model


_forward = nnx.jit(lambda m, x: m(x))


@pytest.fixture(scope="module")
def setup():
  x = jax.random.normal(jax.random.key(0), (16, 12, 12, 1))
  # linen reference: random weights projected with tree_fit_scale scales, 4 calibration passes.
  lmodel, lvars, rule, scales = testing.calibrated(testing.TinyCNN, x, pattern=PATTERN, steps=4)
  raw = testing.random_variables(testing.TinyCNN(), x, seed=0)   # same weights, unprojected
  float_model = _nnx_cnn(raw)
  qmodel = quant.nnx.fake_quant(float_model, 8, weight_rule=rule)
  for _ in range(4):                       # train mode: BN batch stats + activation calibration
    _forward(qmodel, x)
  qmodel.eval()
  return dict(x=x, lmodel=lmodel, lvars=lvars, rule=rule, scales=scales, raw=raw,
              float_model=float_model, qmodel=qmodel)


def test_float_mode_unchanged(setup):
  x, raw, float_model = setup["x"], setup["raw"], setup["float_model"]
  ref = testing.TinyCNN().apply(raw, x, train=False)
  m = nnx.clone(float_model)
  m.eval()
  got = m(x)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)   # the weight mapping is right
  # fake_quant cloned: the float model has no hooks and its BN stats never moved.
  assert quant.nnx.quantized_layers(float_model) == {}
  assert float_model.conv1.conv_general_dilated is jax.lax.conv_general_dilated
  np.testing.assert_array_equal(float_model.bn1.mean[...], raw["batch_stats"]["bn1"]["mean"])
  # to_float of the fake-quant model: float again (raw kernels, calibrated BN stats), equal to
  # the linen float model with those variables; fake-quant differs from it.
  back = quant.nnx.to_float(setup["qmodel"])
  assert quant.nnx.quantized_layers(back) == {}
  assert quant.nnx.quantized_layers(setup["qmodel"])      # to_float cloned
  ref = testing.TinyCNN().apply({"params": raw["params"],
                                 "batch_stats": setup["lvars"]["batch_stats"]}, x, train=False)
  np.testing.assert_allclose(back(x), ref, rtol=1e-5, atol=1e-5)
  assert not np.allclose(back(x), _forward(setup["qmodel"], x), atol=1e-3)


def test_fake_quant_matches_linen(setup):
  x, lmodel, lvars, qmodel = setup["x"], setup["lmodel"], setup["lvars"], setup["qmodel"]
  hooks = quant.nnx.quantized_layers(qmodel)
  assert set(hooks) == {"conv_init", "conv1", "fc1", "head"}
  # Same calibration statistics and weight scales as the linen hooks.
  for layer, hook in hooks.items():
    ls = lvars["quant_stats"][layer]["act"]
    assert int(hook.count[...]) == int(ls["count"]) == 4
    np.testing.assert_allclose(hook.min[...], ls["min"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hook.max[...], ls["max"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hook.weight_scale[...], setup["scales"][layer]["kernel"], rtol=1e-6)
    assert hook.weight_pattern == PATTERN
  np.testing.assert_allclose(qmodel.bn1.mean[...], lvars["batch_stats"]["bn1"]["mean"], rtol=1e-5,
                             atol=1e-6)
  # Forward (eval): the linen fake-quant model on projected weights == nnx hooks projecting.
  ref = lmodel.apply(lvars, x, train=False)
  got = _forward(qmodel, x)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  # Eval mode froze the calibration.
  assert int(hooks["conv1"].count[...]) == 4
  # The weights the layers see are on the pattern grid (and the raw kernels are not).
  for layer, hook in hooks.items():
    w = getattr(qmodel, layer).kernel[...]
    wq = hook.quantized_weights(w)
    q = quantize(wq, PATTERN, hook.weight_scale[...])
    assert bool(jnp.all(on_grid(q, PATTERN)))
    np.testing.assert_allclose(wq, q * hook.weight_scale[...], rtol=1e-6)
    assert not np.allclose(w, wq)


def test_split_merge_and_training_step_with_ste(setup):
  x = setup["x"]
  model = nnx.clone(setup["qmodel"])
  model.train()
  graphdef, params, stats, rest = nnx.split(model, nnx.Param, quant.nnx.QuantStat, ...)
  assert len(jax.tree_util.tree_leaves(stats)) == 4 * 3
  assert len(jax.tree_util.tree_leaves(nnx.state(model, quant.nnx.WeightScale))) == 4
  model = nnx.merge(graphdef, params, stats, rest)
  labels = jnp.arange(x.shape[0]) % 10
  opt = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, x, y):
    def loss_fn(m):
      return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss, grads

  kernels0 = {k: getattr(model, k).kernel[...] for k in ("conv_init", "conv1", "fc1", "head")}
  losses = []
  for _ in range(3):
    loss, grads = step(model, opt, x, labels)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  for layer, w0 in kernels0.items():
    g = grads[layer]["kernel"][...]
    assert np.all(np.isfinite(g)) and np.mean(np.asarray(g) != 0) > 0.5, layer   # STE
    assert not np.allclose(getattr(model, layer).kernel[...], w0), layer
  hooks = quant.nnx.quantized_layers(model)
  assert int(hooks["fc1"].count[...]) == 4 + 3                # calibrated while training
  assert set(grads["fc1"]) == {"kernel", "bias"}          # only nnx.Param is differentiated
  # The forward pass uses projected weights: pre-projecting the kernels changes nothing.
  model.eval()
  pre = nnx.clone(model)
  for layer, hook in quant.nnx.quantized_layers(pre).items():
    kernel = getattr(pre, layer).kernel
    kernel[...] = project(kernel[...], hook.weight_pattern, hook.weight_scale[...])
  np.testing.assert_allclose(_forward(pre, x), _forward(model, x), rtol=1e-6, atol=1e-6)
  # Refit after training: scales change, still fit the current kernels.
  old = hooks["fc1"].weight_scale[...]
  new = quant.nnx.refit_weight_scales(model)
  assert set(new) == set(hooks) and not np.allclose(new["fc1"], old)


def test_integer_mode_matches_fake_quant_and_linen(setup):
  x, qmodel = setup["x"], setup["qmodel"]
  imodel = quant.nnx.to_integer(qmodel, activation_bits=8)
  assert isinstance(imodel, quant.IntegerModel)
  out = np.asarray(imodel.apply(x))
  fq = np.asarray(_forward(qmodel, x))
  assert imodel.float_ops == []                   # integer-only between input and output
  assert set(imodel.records) == {"conv_init", "conv1", "fc1", "head"}
  np.testing.assert_allclose(out, fq, atol=1e-3 * (1 + np.abs(fq).max()))
  assert np.mean(np.argmax(out, -1) == np.argmax(fq, -1)) == 1.0
  # Same integer program as the linen model's (same weights, stats, scales).
  lint = quant.to_integer(testing.TinyCNN(), setup["lvars"], weight_rule=setup["rule"],
                          weight_scales=setup["scales"])
  np.testing.assert_allclose(out, lint.apply(x), rtol=1e-6, atol=1e-6)
  for layer, rec in imodel.records.items():
    assert rec.input_kind == lint.records[layer].input_kind
    if rec.input_kind == "requant":
      np.testing.assert_array_equal(rec.multiplier, lint.records[layer].multiplier)
  # Explicit rule and scales (tree shaped like the nnx params), as with linen.
  im2 = quant.nnx.to_integer(qmodel, weight_rule=setup["rule"], weight_scales=setup["scales"])
  np.testing.assert_array_equal(im2.apply(x[:4]), out[:4])
  assert int(quant.nnx.quantized_layers(qmodel)["conv1"].count[...]) == 4  # model untouched


class _NoQuantizable(nnx.Module):
  def __init__(self, rngs):
    self.bn = nnx.BatchNorm(3, rngs=rngs)

  def __call__(self, x):
    return nnx.relu(self.bn(x))


def test_errors_and_nested_paths():
  with pytest.raises(ValueError, match=r"^quant\.nnx\.fake_quant: _NoQuantizable has no "
                     r"nnx\.Linear / nnx\.Conv layer \(nothing to quantize\)$"):
    quant.nnx.fake_quant(_NoQuantizable(nnx.Rngs(0)))
  mlp = nnx.Sequential(nnx.Linear(5, 8, rngs=nnx.Rngs(0)), nnx.relu,
                       nnx.Linear(8, 3, rngs=nnx.Rngs(1)))
  with pytest.raises(ValueError, match="has no fake-quant hooks"):
    quant.nnx.to_integer(mlp, weight_rule=make_rule(PATTERN))
  with pytest.raises(ValueError, match="activation_bits"):
    quant.nnx.fake_quant(mlp, 1)
  qmlp = quant.nnx.fake_quant(mlp, 8, weight_rule=make_rule(PATTERN))
  assert set(quant.nnx.quantized_layers(qmlp)) == {"layers/0", "layers/2"}
  with pytest.raises(ValueError, match=r"layer 'layers/0' was never calibrated .*model\.train\(\)"):
    quant.nnx.to_integer(qmlp)
  x = jax.random.normal(jax.random.key(1), (8, 5))
  qmlp.eval()
  _forward(qmlp, x)                       # eval mode: no calibration
  with pytest.raises(ValueError, match="never calibrated"):
    quant.nnx.to_integer(qmlp)
  nnx.view(qmlp, use_running_average=False)(x)   # a train-mode view shares the variables
  imodel = quant.nnx.to_integer(qmlp)
  assert set(imodel.layers) == {"layers/0", "layers/2"}
  np.testing.assert_allclose(imodel.apply(x), qmlp(x), atol=1e-3)
  with pytest.raises(ValueError, match="calibrated with"):
    quant.nnx.to_integer(qmlp, activation_bits=4)
  custom = nnx.Linear(2, 2, dot_general=lambda *a, **k: jax.lax.dot_general(*a, **k),
                      rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="custom dot_general"):
    quant.nnx.fake_quant(custom)


def test_dual_lod_training_per_layer_matches_integer_dual_lod(setup):
  """conv_init 8-bit uniform (L = 7), the others 6b(L2): each input cut at its layer's L."""
  from ebsp_jax import uniform  # pylint: disable=import-outside-toplevel
  x = setup["x"]
  rule = make_rule(BitPattern(6, 2), overrides=[("^conv_init/", uniform(8))])
  params = nnx.to_pure_dict(nnx.state(setup["float_model"], nnx.Param))
  lengths = quant.dual_lod_lengths(rule, params)
  assert lengths == {"conv_init": 7, "conv1": 2, "fc1": 2, "head": 2}
  qmodel = quant.nnx.fake_quant(setup["float_model"], 8, weight_rule=rule,
                                dual_lod_length=lengths, dual_lod_rounding="round")
  for _ in range(4):
    _forward(qmodel, x)
  qmodel.eval()
  fq = np.asarray(_forward(qmodel, x))
  imodel = quant.nnx.to_integer(qmodel, mode="dual_lod")      # rounding: the hooks' ('round')
  assert imodel.config.datapath.rounding == "round"
  with pytest.raises(ValueError, match=r"rounding='truncate' but the model was trained with "
                     r"dual_lod_rounding \['round'\]"):
    quant.nnx.to_integer(qmodel, mode="dual_lod", rounding="truncate")
  out = np.asarray(imodel.apply(x))
  tol = 1e-3 * (1 + np.abs(fq).max())
  np.testing.assert_allclose(out, fq, atol=tol)
  exact = np.asarray(quant.nnx.to_integer(qmodel).apply(x))      # the cut is visible
  assert np.abs(exact - out).max() > 20 * tol
  del lengths["fc1"]
  with pytest.raises(ValueError, match=r"dual_lod_length has no entry for layer\(s\) fc1"):
    quant.nnx.fake_quant(setup["float_model"], 8, weight_rule=rule, dual_lod_length=lengths,
                         dual_lod_rounding="round")
  with pytest.raises(ValueError, match="mode='dual_lod' needs rounding="):   # exact-trained
    quant.nnx.to_integer(setup["qmodel"], mode="dual_lod")


class _UnhookedFirst(nnx.Module):
  """``nnx.LinearGeneral`` is not hooked: its matmul must not run in float silently."""

  def __init__(self, rngs):
    self.l = nnx.LinearGeneral(4, 10, rngs=rngs)
    self.fc = nnx.Linear(10, 3, rngs=rngs)

  def __call__(self, x):
    return self.fc(nnx.relu(self.l(x)))


def test_strict_refuses_a_matmul_outside_the_hooked_layers():
  x = jax.random.normal(jax.random.key(2), (8, 4))
  qmodel = quant.nnx.fake_quant(_UnhookedFirst(nnx.Rngs(0)), 8, weight_rule=make_rule(PATTERN))
  _forward(qmodel, x)
  qmodel.eval()
  with pytest.raises(quant.UnsupportedOp, match="op 'dot_general' on an activation outside "
                     "the hooked layers"):
    quant.nnx.to_integer(qmodel).apply(x)
  imodel = quant.nnx.to_integer(qmodel, strict=False)
  np.testing.assert_allclose(imodel.apply(x), _forward(qmodel, x), atol=1e-3)
  assert imodel.float_ops[0] == "dot_general"
