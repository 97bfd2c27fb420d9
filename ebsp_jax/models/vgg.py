"""VGG-16 for CIFAR (Simonyan & Zisserman 2015, with batch norm; the common CIFAR variant).

13 x (3x3 conv -> BN -> ReLU) in 5 groups (64x2, 128x2, 256x3, 512x3, 512x3), each group followed
by a 2x2 stride-2 max pool ('SAME' padding, so odd sizes such as 28x28 also work), a global
average pool to 512 features (the identity on the 1x1 map of a 32x32 input), optional hidden
dense layers, and ``head``. Param paths: ``conv_init``/``bn_init`` for the first conv, then
``conv1``..``conv12`` / ``bn1``..``bn12``, ``fc1``.. for hidden layers, ``head``.

Default (``classifier_hidden=()``): a single 512 -> num_classes classifier, 14,724,042 params (convs have no bias) and
313.2 MMAC per 32x32 image (10 classes). ``classifier_hidden=(512, 512)`` gives the
512-512-classes classifier with dropout of some CIFAR ports.

The ImageNet layout of torchvision (``ebsp_jax.models.load_torchvision``): ``pool_size=7``
(adaptive average pool to 7x7, flattened: 25,088 features), ``classifier_hidden=(4096, 4096)``
and, for torchvision's ``vgg16`` (no batch norm), ``batch_norm=False``, whose convs then have
biases: 138,357,544 params with 1000 classes, as torchvision's.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ebsp_jax.models.base import EbspModel, adaptive_avg_pool, check_input

#: Channels per conv; 'M' = 2x2 max pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class VGG(EbspModel):
  """VGG with BN for small images. Input NHWC float; output float32 logits (N, num_classes).

  Attributes:
    cfg: conv channels and 'M' (max pool) markers.
    classifier_hidden: widths of hidden dense layers (ReLU + dropout) before ``head``.
    dropout_rate: dropout before each hidden dense layer (only if ``classifier_hidden``).
    batch_norm: a batch norm after every conv (the convs have no bias); ``False``: no batch
      norm, convs with biases (torchvision's ``vgg16``).
    pool_size: ``0``: global average pool to the channels (the CIFAR variant); ``k``:
      adaptive average pool to ``k x k``, flattened (torchvision: 7).
  """

  cfg: Sequence[int | str] = VGG16_CFG
  classifier_hidden: Sequence[int] = ()
  dropout_rate: float = 0.5
  batch_norm: bool = True
  pool_size: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = check_input(x, "vgg").astype(self.dtype)
    L = self.layers
    i = 0
    for v in self.cfg:
      if v == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        continue
      conv_name, bn_name = ("conv_init", "bn_init") if i == 0 else (f"conv{i}", f"bn{i}")
      x = L.conv(int(v), 3, use_bias=not self.batch_norm, name=conv_name)(x)
      if self.batch_norm:
        x = L.norm(train, name=bn_name)(x)
      x = nn.relu(x)
      i += 1
    if self.pool_size:
      x = adaptive_avg_pool(x, self.pool_size)
      x = x.reshape((x.shape[0], -1))
    else:
      x = jnp.mean(x, axis=(1, 2))
    for j, width in enumerate(self.classifier_hidden):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(L.dense(width, name=f"fc{j + 1}")(x))
    return self.head(x)


class VGG16(VGG):
  """VGG-16 (13 conv + BN + ReLU)."""

  cfg: Sequence[int | str] = VGG16_CFG
