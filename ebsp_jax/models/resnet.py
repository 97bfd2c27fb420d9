"""ImageNet ResNets v1.5 (He et al. 2016; stride on the 3x3 conv, as in Flax
``examples/imagenet/models.py`` and torchvision): ResNet-18 and ResNet-50.

Param paths: ``conv_init``/``bn_init`` (stem), ``stage{s}_block{b}`` (s = 1..4) holding
``conv1``/``bn1``/``conv2``/``bn2`` (+ ``conv3``/``bn3`` in bottlenecks) and ``proj_conv``/
``proj_bn`` where the shape changes, ``head``. The last BN of every residual branch is
zero-initialised (``zero_init_residual=True``, as in the Flax example).

Counts for 1000 classes at 224x224: ResNet-18 11,689,512 params, 1.814 GMAC; ResNet-50
25,557,032 params, 4.09 GMAC (conv + dense multiply-accumulates; see ``profile.py``). Identical
to torchvision because padding is symmetric (``(k-1)//2``) as in PyTorch.

Small inputs: with ``small_inputs`` (auto: ``min(H, W) <= 64``) the stem is a 3x3 stride-1
``conv_init`` and the max pool is dropped (the usual CIFAR adaptation), so 32x32 inputs reach
the last stage at 4x4 instead of 1x1. Param paths are unchanged; only the ``conv_init`` kernel
shape differs (3x3 instead of 7x7).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ebsp_jax.models.base import EbspModel, Layers, check_input, is_small_input


class BasicBlock(nn.Module):
  """Two 3x3 conv+BN and a residual; 1x1 conv + BN projection when the shape changes.

  Input NHWC; output NHWC with ``width`` channels and spatial size divided by ``strides``.
  """

  width: int
  strides: int
  train: bool
  layers: Layers
  zero_init_residual: bool = False

  expansion = 1

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    L = self.layers
    y = L.conv(self.width, 3, strides=self.strides, name="conv1")(x)
    y = nn.relu(L.norm(self.train, name="bn1")(y))
    y = L.conv(self.width, 3, name="conv2")(y)
    y = L.norm(self.train, name="bn2", zero_init=self.zero_init_residual)(y)
    return nn.relu(_shortcut(x, y, self.strides, self.train, L) + y)


class BottleneckBlock(nn.Module):
  """1x1 (width) -> 3x3 (width, stride) -> 1x1 (4*width) with BN, and a residual (v1.5).

  Input NHWC; output NHWC with ``4 * width`` channels, spatial size divided by ``strides``.
  """

  width: int
  strides: int
  train: bool
  layers: Layers
  zero_init_residual: bool = False

  expansion = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    L = self.layers
    y = L.conv(self.width, 1, name="conv1")(x)
    y = nn.relu(L.norm(self.train, name="bn1")(y))
    y = L.conv(self.width, 3, strides=self.strides, name="conv2")(y)
    y = nn.relu(L.norm(self.train, name="bn2")(y))
    y = L.conv(self.width * 4, 1, name="conv3")(y)
    y = L.norm(self.train, name="bn3", zero_init=self.zero_init_residual)(y)
    return nn.relu(_shortcut(x, y, self.strides, self.train, L) + y)


def _shortcut(x: jnp.ndarray, y: jnp.ndarray, strides: int, train: bool, L: Layers) -> jnp.ndarray:
  """Identity if shapes match, else ``proj_conv`` (1x1, stride) + ``proj_bn`` (option B)."""
  if x.shape == y.shape:
    return x
  x = L.conv(y.shape[-1], 1, strides=strides, name="proj_conv")(x)
  return L.norm(train, name="proj_bn")(x)


class ResNet(EbspModel):
  """ImageNet ResNet v1.5. Input NHWC float; output float32 logits (N, num_classes).

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-50.
    bottleneck: bottleneck blocks (ResNet-50/101/152) instead of basic blocks.
    width: channels of the first stage (doubling per stage).
    small_inputs: 3x3 stride-1 stem without max pool; ``None`` = auto (``min(H, W) <= 64``).
    zero_init_residual: zero-init the last BN scale of each residual branch.
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False
  width: int = 64
  small_inputs: bool | None = None
  zero_init_residual: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = check_input(x, type(self).__name__).astype(self.dtype)
    L = self.layers
    if is_small_input(x, self.small_inputs):
      x = L.conv(self.width, 3, name="conv_init")(x)
      x = nn.relu(L.norm(train, name="bn_init")(x))
    else:
      x = L.conv(self.width, 7, strides=2, name="conv_init")(x)
      x = nn.relu(L.norm(train, name="bn_init")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    block_cls = BottleneckBlock if self.bottleneck else BasicBlock
    widths = [self.width * 2**s for s in range(len(self.stage_sizes))]
    x = residual_stages(x, block_cls, widths, self.stage_sizes, train=train, layers=L,
                        zero_init_residual=self.zero_init_residual)
    x = jnp.mean(x, axis=(1, 2))
    return self.head(x)


def residual_stages(x: jnp.ndarray, block_cls, widths, stage_sizes, *, train: bool, layers: Layers,
                    zero_init_residual: bool) -> jnp.ndarray:
  """The stages of residual blocks shared by the ImageNet and CIFAR ResNets (call inside a
  compact ``__call__``): stride 2 at the first block of every stage but the first; blocks are
  named ``stage{s}_block{b}`` (s from 1)."""
  for s, (width, num_blocks) in enumerate(zip(widths, stage_sizes)):
    for b in range(num_blocks):
      x = block_cls(
          width=width,
          strides=2 if (s > 0 and b == 0) else 1,
          train=train,
          layers=layers,
          zero_init_residual=zero_init_residual,
          name=f"stage{s + 1}_block{b}",
      )(x)
  return x


class ResNet18(ResNet):
  """ResNet-18: basic blocks (2, 2, 2, 2)."""

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False


class ResNet50(ResNet):
  """ResNet-50: bottleneck blocks (3, 4, 6, 3)."""

  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  bottleneck: bool = True
