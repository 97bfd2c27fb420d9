"""MobileNetV2 (Sandler et al. 2018), torchvision layout, width multiplier 1.0 by default.

``conv_init`` 3x3/2 (32) + ``bn_init`` + ReLU6, 17 inverted-residual blocks ``stage{s}_block{b}``
(s = 1..7, settings t/c/n/s below), each with ``expand_conv``/``expand_bn`` (omitted when t = 1),
depthwise ``dw_conv``/``dw_bn`` (``feature_group_count`` = channels), linear
``project_conv``/``project_bn`` and an identity residual when stride 1 and channels match; then
``conv_last`` 1x1 (1280) + ``bn_last`` + ReLU6, global average pool, dropout 0.2, ``head``.
At 224x224 with 1000 classes: 3,504,872 params and 0.30 GMAC (identical to torchvision).
ReLU6 is kept as in the paper (it bounds activations, which suits 8-bit activations).

Small inputs (``small_inputs``; auto: ``min(H, W) <= 64``): ``conv_init`` and the first block of
stage 2 use stride 1 (total stride 8 instead of 32, the usual CIFAR adaptation); param shapes
and paths are unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ebsp_jax.models.base import EbspModel, Layers, check_input, is_small_input

#: (expansion t, output channels c, repeats n, first stride s) per stage.
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
  """Round channels to a multiple of ``divisor`` without going below 90% (torchvision rule)."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


class InvertedResidual(nn.Module):
  """Expand (1x1) -> depthwise 3x3 (stride) -> project (1x1, linear), BN after each.

  Input NHWC with C_in channels; output NHWC with ``out_features`` channels.
  """

  out_features: int
  expansion: int
  strides: int
  train: bool
  layers: Layers

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    L = self.layers
    in_features = x.shape[-1]
    hidden = in_features * self.expansion
    y = x
    if self.expansion != 1:
      y = L.conv(hidden, 1, name="expand_conv")(y)
      y = nn.relu6(L.norm(self.train, name="expand_bn")(y))
    y = L.conv(hidden, 3, strides=self.strides, groups=hidden, name="dw_conv")(y)
    y = nn.relu6(L.norm(self.train, name="dw_bn")(y))
    y = L.conv(self.out_features, 1, name="project_conv")(y)
    y = L.norm(self.train, name="project_bn")(y)
    if self.strides == 1 and in_features == self.out_features:
      y = x + y
    return y


class MobileNetV2(EbspModel):
  """MobileNetV2. Input NHWC float; output float32 logits (N, num_classes).

  Attributes:
    width_multiplier: channel multiplier (1.0 = the standard network).
    dropout_rate: dropout before ``head``.
    small_inputs: small-image variant (see module doc); ``None`` = auto.
  """

  width_multiplier: float = 1.0
  dropout_rate: float = 0.2
  small_inputs: bool | None = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = check_input(x, "mobilenet_v2").astype(self.dtype)
    L = self.layers
    small = is_small_input(x, self.small_inputs)
    w = self.width_multiplier
    x = L.conv(make_divisible(32 * w), 3, strides=1 if small else 2, name="conv_init")(x)
    x = nn.relu6(L.norm(train, name="bn_init")(x))
    for s, (t, c, n, first_stride) in enumerate(MOBILENET_V2_SETTINGS):
      if small and s == 1:
        first_stride = 1
      for b in range(n):
        x = InvertedResidual(
            out_features=make_divisible(c * w),
            expansion=t,
            strides=first_stride if b == 0 else 1,
            train=train,
            layers=L,
            name=f"stage{s + 1}_block{b}",
        )(x)
    x = L.conv(make_divisible(1280 * max(1.0, w)), 1, name="conv_last")(x)
    x = nn.relu6(L.norm(train, name="bn_last")(x))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return self.head(x)
