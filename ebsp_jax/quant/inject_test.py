"""Tests of the fake-quant injection (float and fake-quant modes)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import fake_quant, uniform
from ebsp_jax import quant


class TinyNet(nn.Module):
  """A small CNN using the same hooks as ebsp_jax.models (conv -> BN -> ReLU -> pool -> dense)."""

  dot_general_cls: object = None
  conv_general_dilated_cls: object = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), conv_general_dilated_cls=self.conv_general_dilated_cls,
                use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (2, 2), (2, 2)).reshape((x.shape[0], -1))
    return nn.Dense(3, dot_general_cls=self.dot_general_cls, name="head")(x)


def _data():
  return jax.random.normal(jax.random.key(0), (8, 6, 6, 2))


def test_float_injection_is_plain_float():
  assert quant.float_injection() == {}


def test_quant_stats_created_and_updated_only_when_mutable():
  x = _data()
  model = TinyNet(**quant.fake_quant_injection(8))
  variables = model.init(jax.random.key(1), x, train=False)
  stats = variables["quant_stats"]
  assert set(stats) == {"conv", "head"}
  assert int(stats["conv"]["act"]["count"]) == 0
  _, upd = model.apply(variables, x, train=True, mutable=["batch_stats", "quant_stats"])
  conv = upd["quant_stats"]["conv"]["act"]
  assert int(conv["count"]) == 1
  np.testing.assert_allclose(conv["min"], x.min(), rtol=1e-6)
  np.testing.assert_allclose(conv["max"], x.max(), rtol=1e-6)
  # Second update: EMA.
  v2 = {**variables, **upd}
  _, upd2 = model.apply(v2, 2 * x, train=True, mutable=["batch_stats", "quant_stats"])
  np.testing.assert_allclose(upd2["quant_stats"]["conv"]["act"]["max"],
                             0.99 * x.max() + 0.01 * 2 * x.max(), rtol=1e-5)
  # Not mutable: nothing changes, no error.
  model.apply(v2, x, train=False)
  formats = quant.activation_formats(upd, 8)
  assert formats["conv"][0] == uniform(8, signed=True)      # normal data: signed
  assert formats["head"][0] == uniform(8, signed=False)     # after ReLU: unsigned


def test_fake_quant_forward_matches_explicit_quantization():
  x = _data()
  fq = TinyNet(**quant.fake_quant_injection(4))
  variables = fq.init(jax.random.key(1), x, train=False)
  _, upd = fq.apply(variables, x, train=True, mutable=["batch_stats", "quant_stats"])
  variables = {**variables, **upd}
  got = fq.apply(variables, x, train=False)
  signed, scale = quant.activation_scale(x.min(), x.max(), 4)
  assert bool(signed)
  xq = fake_quant(x, uniform(4, signed=True), scale)
  assert len(np.unique(np.asarray(xq))) <= 15
  # Reference, by hand: conv -> BN (running stats) -> ReLU -> pool -> fake-quant -> dense.
  p, bs = variables["params"], variables["batch_stats"]
  h = jax.lax.conv_general_dilated(xq, p["conv"]["kernel"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  h = (h - bs["bn"]["mean"]) / jnp.sqrt(bs["bn"]["var"] + 1e-5) * p["bn"]["scale"] + p["bn"]["bias"]
  h = nn.max_pool(nn.relu(h), (2, 2), (2, 2)).reshape((x.shape[0], -1))
  hs = variables["quant_stats"]["head"]["act"]
  s_signed, s_scale = quant.activation_scale(hs["min"], hs["max"], 4)
  assert not bool(s_signed)
  hq = fake_quant(h, uniform(4, signed=False), s_scale)
  ref = hq @ p["head"]["kernel"] + p["head"]["bias"]
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_straight_through_gradient_and_weights_unchanged():
  x = _data()
  model = TinyNet(**quant.fake_quant_injection(8))
  variables = model.init(jax.random.key(1), x, train=False)
  _, upd = model.apply(variables, x, train=True, mutable=["batch_stats", "quant_stats"])
  variables = {**variables, **upd}
  grads = jax.grad(lambda p: jnp.sum(model.apply({**variables, "params": p}, x) ** 2))(
      variables["params"])
  for g in jax.tree_util.tree_leaves(grads):
    assert np.all(np.isfinite(g)) and np.any(g != 0)
  # Input gradient: straight-through (nonzero almost everywhere inside the range).
  gx = jax.grad(lambda xx: jnp.sum(model.apply(variables, xx)))(x)
  assert np.mean(np.asarray(gx) != 0) > 0.5


def test_jit_train_step_and_bad_bits():
  x = _data()
  model = TinyNet(**quant.fake_quant_injection(8))
  variables = model.init(jax.random.key(1), x, train=False)
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "quant_stats"]))
  _, upd = step(variables, x)
  assert int(upd["quant_stats"]["head"]["act"]["count"]) == 1
  with pytest.raises(ValueError, match="activation_bits"):
    quant.fake_quant_injection(1)
  with pytest.raises(ValueError, match="never calibrated"):
    quant.activation_formats(variables, 8)
