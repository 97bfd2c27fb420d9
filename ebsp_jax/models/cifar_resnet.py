"""CIFAR ResNets (He et al. 2016, "Deep Residual Learning", section 4.2): ResNet-20 / ResNet-56.

Structure: ``conv_init`` 3x3x16 -> ``bn_init`` -> ReLU, then 3 stages of ``n = (depth-2)/6`` basic
blocks with 16/32/64 channels (stride 2 at the first block of stages 2 and 3), global average
pool, ``head``. Block ``stage{s}_block{b}`` (s = 1..3, b = 0..n-1) holds ``conv1``/``bn1``/
``conv2``/``bn2`` and, where the shape changes, ``proj_conv``/``proj_bn``.

Shortcut choice: **option B** (1x1 conv + BN projection where the shape changes, identity
elsewhere) rather than the paper's parameter-free option A (zero-padded stride-2 identity). B is
the torchvision-style shortcut, keeps every layer a plain conv/dense (so the quantization hooks
cover every weight), and costs 2,752 extra params: ResNet-20 has 272,474 params (option A:
269,722) and 40.8 MMAC per 32x32 image; ResNet-56 855,770 params (option A: 853,018) and
125.7 MMAC (10 classes).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ebsp_jax.models.base import EbspModel, check_input
from ebsp_jax.models.resnet import BasicBlock, residual_stages


class CifarResNet(EbspModel):
  """ResNet-(6n+2) for 32x32 inputs. Input NHWC float; output float32 logits (N, num_classes).

  Attributes:
    depth: 6n+2 (20, 32, 44, 56, 110, ...).
    widths: channels of the three stages.
    zero_init_residual: zero-init the scale of each block's last BN (off by default, as in He
      et al. 2016).
  """

  depth: int = 20
  widths: tuple[int, int, int] = (16, 32, 64)
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    if (self.depth - 2) % 6 != 0 or self.depth < 8:
      raise ValueError(
          f"CifarResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, ...); got {self.depth}"
      )
    blocks_per_stage = (self.depth - 2) // 6
    x = check_input(x, f"resnet{self.depth}").astype(self.dtype)
    L = self.layers
    x = L.conv(self.widths[0], 3, name="conv_init")(x)
    x = nn.relu(L.norm(train, name="bn_init")(x))
    x = residual_stages(x, BasicBlock, self.widths, [blocks_per_stage] * len(self.widths),
                        train=train, layers=L, zero_init_residual=self.zero_init_residual)
    x = jnp.mean(x, axis=(1, 2))
    return self.head(x)


class ResNet20(CifarResNet):
  """ResNet-20 (3 blocks per stage)."""

  depth: int = 20


class ResNet56(CifarResNet):
  """ResNet-56 (9 blocks per stage)."""

  depth: int = 56
