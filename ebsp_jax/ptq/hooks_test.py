"""Tests of the hooks into unmodified linen and nnx models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ebsp_jax.ptq import hooks
from ebsp_jax.ptq.testing import NnxCNN, ResidualCNN, images, random_linen_variables


class Block(nn.Module):
  """A setup-style submodule (not compact) used twice."""

  def setup(self):
    self.fc = nn.Dense(4)

  def __call__(self, x):
    return nn.relu(self.fc(x))


class Nested(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Conv(3, (3, 3), name="stem")(x)
    x = x.reshape((x.shape[0], -1))
    block = Block(name="block")
    x = block(nn.Dense(4, name="pre")(x))
    return block(x)     # the same layer called twice


def _recorded(hooked, kwargs, x):
  seen = []

  def handler(layer, op, lhs, rhs, args, kw):
    seen.append((layer, op, tuple(lhs.shape), tuple(rhs.shape)))
    return hooks.lax_call(op, lhs, rhs, args, kw)

  with hooks.handling(handler):
    out = hooked.apply(hooked.variables, x, **kwargs)
  return seen, out


def test_linen_hooks_reach_every_dense_and_conv_with_param_paths():
  model = Nested()
  x = jnp.asarray(images(2, (6, 6, 1)))
  variables = model.init(jax.random.key(0), x)
  hooked, kwargs = hooks.adapt(model, variables)
  assert kwargs == {}
  seen, out = _recorded(hooked, kwargs, x)
  assert [s[:2] for s in seen] == [("stem", "conv_general_dilated"), ("pre", "dot_general"),
                                   ("block/fc", "dot_general"), ("block/fc", "dot_general")]
  # Every hooked path is a param path of a kernel.
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  kernels = {"/".join(str(k.key) for k in p[:-1]) for p, _ in flat if p[-1].key == "kernel"}
  assert {s[0] for s in seen} == kernels
  # Hooked with the plain lax op, the model computes exactly what it computes unhooked.
  np.testing.assert_array_equal(np.asarray(out), np.asarray(model.apply(variables, x)))
  with hooks.handling(None):
    np.testing.assert_array_equal(np.asarray(hooked.apply(variables, x)),
                                  np.asarray(model.apply(variables, x)))


def test_linen_layer_calls_are_static_facts():
  model = ResidualCNN()
  x = images(2)
  variables = random_linen_variables(model, jnp.asarray(x[:1]))
  hooked, kwargs = hooks.adapt(model, variables)
  assert kwargs == {"train": False}
  calls = hooks.layer_calls(hooked, kwargs, jax.ShapeDtypeStruct(x.shape, jnp.float32))
  assert [c.layer for c in calls] == [f"Conv_{i}" for i in range(7)] + ["Dense_0"]
  dw = calls[5]
  assert dw.kwargs["feature_group_count"] == 24 and dw.rhs_shape == (3, 3, 1, 24)
  assert calls[-1].out_shape == (2, 10)


def test_linen_custom_op_is_refused_naming_the_layer():
  class Custom(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3, dot_general=jax.lax.dot_general, name="mine")(x)

  model = Custom()
  x = jnp.ones((1, 4))
  hooked, kw = hooks.adapt(model, model.init(jax.random.key(0), x))
  with pytest.raises(hooks.CannotQuantize, match=r"layer 'mine' \(Dense\) has its own "
                                                 r"dot_general="):
    hooked.apply(hooked.variables, x, **kw)


def test_nnx_hooks_a_clone_in_eval_mode_and_leave_the_model_alone():
  model = NnxCNN(nnx.Rngs(0))
  x = jnp.asarray(images(3))
  hooked, kwargs = hooks.adapt(model, None)
  seen, out = _recorded(hooked, kwargs, x)
  assert [s[:2] for s in seen] == [("conv", "conv_general_dilated"), ("fc", "dot_general"),
                                   ("head", "dot_general")]
  # The original keeps its plain ops and its train mode (dropout active).
  assert model.fc.dot_general is jax.lax.dot_general and not model.drop.deterministic
  model.eval()
  np.testing.assert_array_equal(np.asarray(out), np.asarray(model(x)))


def test_nnx_unhooked_contractions_and_bad_arguments_are_refused():
  class WithGeneral(nnx.Module):
    def __init__(self, rngs):
      self.proj = nnx.LinearGeneral(4, (2, 3), rngs=rngs)

    def __call__(self, x):
      return self.proj(x)

  with pytest.raises(hooks.CannotQuantize, match=r"layer 'proj' is an nnx.LinearGeneral"):
    hooks.adapt(WithGeneral(nnx.Rngs(0)), None)

  class Empty(nnx.Module):
    def __call__(self, x):
      return x

  with pytest.raises(hooks.CannotQuantize, match="has no nnx.Linear / nnx.Conv"):
    hooks.adapt(Empty(), None)
  with pytest.raises(hooks.CannotQuantize, match="pass variables=None"):
    hooks.adapt(NnxCNN(nnx.Rngs(0)), {"params": {}})
  with pytest.raises(hooks.CannotQuantize, match="needs variables=model.init"):
    hooks.adapt(ResidualCNN(), None)
  with pytest.raises(hooks.CannotQuantize, match="must be a flax.linen or flax.nnx Module"):
    hooks.adapt(lambda x: x, None)
