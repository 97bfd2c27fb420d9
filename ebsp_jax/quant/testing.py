"""Small Flax networks and helpers for the tests of :mod:`ebsp_jax.quant` and :mod:`ebsp_jax.golden`.

The networks use the same hooks as :mod:`ebsp_jax.models` (``dot_general_cls`` /
``conv_general_dilated_cls`` forwarded to every ``nn.Dense`` / ``nn.Conv``) and cover what the
integer lowering must handle: a signed network input, batch norm, ReLU / ReLU6, max and average
pooling, a residual add with a projection shortcut, a depthwise conv, global average pooling,
flatten and dense layers.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics import BitPattern, make_rule, tree_fit_scale, tree_project
from ebsp_jax.quant.inject import fake_quant_injection


class TinyCNN(nn.Module):
  """conv(5x5) -> ReLU -> maxpool -> conv(3x3, BN) -> ReLU -> flatten -> fc -> ReLU -> head."""

  num_classes: int = 10
  dot_general_cls: Any = None
  conv_general_dilated_cls: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = lambda f, k, name, **kw: nn.Conv(f, (k, k), conv_general_dilated_cls=self.conv_general_dilated_cls, name=name, **kw)
    dense = lambda f, name: nn.Dense(f, dot_general_cls=self.dot_general_cls, name=name)
    x = nn.relu(conv(6, 5, "conv_init", padding=((2, 2), (2, 2)))(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = conv(8, 3, "conv1", use_bias=False, padding="VALID")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.5, name="bn1")(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(dense(16, "fc1")(x))
    return dense(self.num_classes, "head")(x)


class TinyResNet(nn.Module):
  """A residual stage, a MobileNet-style depthwise block, avg pool and global pooling."""

  num_classes: int = 10
  dot_general_cls: Any = None
  conv_general_dilated_cls: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = lambda f, k, name, **kw: nn.Conv(f, (k, k), use_bias=False, conv_general_dilated_cls=self.conv_general_dilated_cls, name=name, **kw)
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.5, name=name)
    x = nn.relu(bn("bn_init")(conv(8, 3, "conv_init")(x)))
    # Basic block with a strided projection shortcut.
    y = nn.relu(bn("bn1")(conv(12, 3, "conv1", strides=(2, 2))(x)))
    y = bn("bn2")(conv(12, 3, "conv2")(y))
    s = bn("proj_bn")(conv(12, 1, "proj_conv", strides=(2, 2))(x))
    x = nn.relu(y + s)
    # Inverted residual: expand 1x1 -> depthwise 3x3 -> project 1x1 (linear) + identity.
    y = nn.relu6(bn("expand_bn")(conv(24, 1, "expand_conv")(x)))
    y = nn.relu6(bn("dw_bn")(conv(24, 3, "dw_conv", feature_group_count=24)(y)))
    y = bn("project_bn")(conv(12, 1, "project_conv")(y))
    x = x + y
    x = nn.avg_pool(x, (2, 2), (2, 2))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dot_general_cls=self.dot_general_cls, name="head")(x)


def random_variables(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
  """Variables of ``model`` with numpy-random params (no XLA RNG compile: fast in tests).

  Kernels ~ N(0, 2 / fan_in) (He), biases ~ N(0, 0.1), batch-norm scales ~ U(0.5, 1.5) and
  shifts ~ N(0, 0.1); every other variable (batch stats, quant stats) as ``model.init`` makes it
  (zeros, BN variances ones).
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    names = [str(getattr(k, "key", k)) for k in path]
    if names[0] != "params":
      return jnp.ones(leaf.shape, leaf.dtype) if names[-1] == "var" else jnp.zeros(leaf.shape, leaf.dtype)
    if names[-1] == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape), leaf.dtype)
    if names[-1] == "scale":
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
    return jnp.asarray(rng.normal(0, 0.1, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def calibrated(module_cls, x: jax.Array, *, pattern: BitPattern = BitPattern(6, 3),
               activation_bits: int = 8, steps: int = 4, seed: int = 0,
               params_fn: Optional[Callable[[dict], dict]] = None,
               rule: Optional[Callable[[str, Any], Any]] = None
               ) -> Tuple[nn.Module, dict, Any, Any]:
  """Initialises ``module_cls`` in fake-quant mode, projects its kernels and calibrates.

  ``params_fn`` edits the random params before the projection (e.g. to plant a dead unit);
  ``rule`` replaces ``make_rule(pattern)``.

  Returns:
    ``(fake_quant_model, variables, rule, scales)`` with projected params, ``batch_stats``
    (if any) and ``quant_stats`` updated on ``steps`` passes over ``x`` in train mode.
  """
  model = module_cls(**fake_quant_injection(activation_bits))
  variables = dict(random_variables(model, x, seed))
  if params_fn is not None:
    variables["params"] = params_fn(variables["params"])
  rule = make_rule(pattern) if rule is None else rule

  @jax.jit
  def project(params):
    scales = tree_fit_scale(params, rule)
    return tree_project(params, rule, scales), scales

  variables["params"], scales = project(variables["params"])
  mutable = [k for k in ("batch_stats", "quant_stats") if k in variables]
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=mutable)[1])
  for _ in range(steps):
    variables.update(step(variables, x))
  return model, variables, rule, scales
