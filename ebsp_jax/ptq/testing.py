"""Small *unmodified* Flax models for the tests of :mod:`ebsp_jax.ptq` (no hook fields).

They cover what post-training quantization must reach and lower: a signed network input,
batch norm, ReLU / ReLU6, max and average pooling, a residual add with a projection shortcut,
a depthwise convolution, global average pooling, flatten, dense layers (linen), and the nnx
counterparts (``nnx.Conv`` / ``nnx.Linear`` / ``nnx.BatchNorm`` / ``nnx.Dropout``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class ResidualCNN(nn.Module):
  """conv-BN-ReLU, a strided basic block with a projection, an inverted residual (depthwise,
  ReLU6), max and average pooling, global mean and a dense head: plain ``nn`` layers."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = lambda: nn.BatchNorm(use_running_average=not train)  # noqa: E731
    x = nn.relu(bn()(nn.Conv(8, (3, 3), use_bias=False)(x)))
    y = nn.relu(bn()(nn.Conv(12, (3, 3), strides=(2, 2), use_bias=False)(x)))
    y = bn()(nn.Conv(12, (3, 3), use_bias=False)(y))
    s = bn()(nn.Conv(12, (1, 1), strides=(2, 2), use_bias=False)(x))
    x = nn.relu(y + s)
    y = nn.relu6(bn()(nn.Conv(24, (1, 1), use_bias=False)(x)))
    y = nn.relu6(bn()(nn.Conv(24, (3, 3), feature_group_count=24, use_bias=False)(y)))
    y = bn()(nn.Conv(12, (1, 1), use_bias=False)(y))
    x = nn.max_pool(x + y, (2, 2), (2, 2))
    x = nn.avg_pool(x, (2, 2), (1, 1), padding="SAME")
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class NnxCNN(nnx.Module):
  """nnx.Conv-BatchNorm-ReLU, max pool, flatten, nnx.Linear-ReLU, Dropout, nnx.Linear."""

  def __init__(self, rngs: nnx.Rngs, num_classes: int = 10):
    self.conv = nnx.Conv(1, 6, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(6, rngs=rngs)
    self.fc = nnx.Linear(6 * 8 * 8, 32, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.head = nnx.Linear(32, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn(self.conv(x)))
    x = nnx.max_pool(x, (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    return self.head(self.drop(nnx.relu(self.fc(x))))


def random_linen_variables(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
  """Variables with numpy-random params and batch statistics (no XLA RNG compile).

  Kernels ~ N(0, 2 / fan_in), biases and BN shifts ~ N(0, 0.1), BN scales ~ U(0.5, 1.5),
  running means ~ N(0, 0.1), running variances ~ U(0.5, 1.5).
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      v = rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape)
    elif name in ("scale", "var"):
      v = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      v = rng.normal(0, 0.1, leaf.shape)
    return jnp.asarray(v, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def images(n: int, shape=(16, 16, 1), seed: int = 0, signed: bool = True) -> np.ndarray:
  """Smooth random float32 images ``(n, *shape)`` (normalised: signed; else in [0, 1])."""
  rng = np.random.default_rng(seed)
  h, w, c = shape
  base = rng.normal(size=(n, h // 4 + 1, w // 4 + 1, c))
  up = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)[:, :h, :w, :]
  x = up + 0.3 * rng.normal(size=(n, h, w, c))
  if not signed:
    x = 1.0 / (1.0 + np.exp(-x))
  return x.astype(np.float32)
