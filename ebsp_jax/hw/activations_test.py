"""Tests of the captured activation sparsity (zero fraction of every conv/dense input)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.hw import activations, workload


class _Tiny(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.Dense(4, use_bias=False, name="fc1")(x)
    x = nn.relu(x)
    return nn.Dense(2, use_bias=False, name="head")(x)


def test_zero_fractions_are_counted_on_each_layers_input():
  m = _Tiny()
  # fc1 sees x: 3 of 8 values are zero. Its kernel is the identity on the first 2 outputs and
  # minus the identity on the last 2: after the ReLU, the head sees max(x, 0) and max(-x, 0).
  x = jnp.array([[1.0, 0.0, -2.0, 3.0], [0.0, 0.0, 5.0, -1.0]])
  k = jnp.array([[1, 0, -1, 0], [0, 1, 0, -1], [0, 0, 0, 0], [0, 0, 0, 0]], jnp.float32)
  v = {"params": {"fc1": {"kernel": k}, "head": {"kernel": jnp.ones((4, 2))}}}
  z = activations.capture_zero_fractions(m, v, x)
  assert z["fc1"] == pytest.approx(3 / 8)
  # head input: relu([x0, x1, -x0, -x1]) = [[1,0,0,0], [0,0,0,0]] -> 7 of 8 zeros.
  assert z["head"] == pytest.approx(7 / 8)


def test_stats_follow_the_workload_and_check_coverage():
  wl = workload.model_workload("lenet5", "fashion_mnist")
  z = {"conv_init": 0.5, "conv1": 0.25, "fc1": 0.6, "fc2": 0.7, "head": 0.8}
  st = activations.activation_stats(wl, z)
  assert st["conv1"].act_density == pytest.approx(0.75)
  assert st["conv1"].out_density == pytest.approx(0.4)          # fc1's input
  assert not st["conv_init"].compress_input and st["fc1"].compress_input
  with pytest.raises(ValueError, match="no captured zero fraction for layer"):
    activations.activation_stats(wl, {"conv_init": 0.1})
  with pytest.raises(ValueError, match=r"zero fraction of layer fc2 must be in \[0, 1\]"):
    activations.activation_stats(wl, dict(z, fc2=1.5))
  u = activations.uniform_stats(wl, 0.5)
  assert u["conv_init"].act_density == 1.0 and u["head"].act_density == 0.5


def test_trained_lenet_capture_runs_on_real_shapes():
  from ebsp_jax import models
  m = models.get_model("lenet5", num_classes=10)
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  v = m.init(jax.random.PRNGKey(0), x, train=False)
  z = activations.capture_zero_fractions(m, v, x)
  wl = workload.model_workload("lenet5", "fashion_mnist")
  assert set(z) == {l.name for l in wl.layers}
  assert all(0.0 <= f <= 1.0 for f in z.values())
