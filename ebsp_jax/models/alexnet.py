"""AlexNet, torchvision style (Krizhevsky 2014 "one weird trick" variant, no batch norm).

ImageNet layout (``small_inputs=False``): ``conv_init`` 11x11/4 pad 2 (64) -> ReLU -> maxpool 3/2
-> ``conv1`` 5x5 (192) -> ReLU -> maxpool 3/2 -> ``conv2`` 3x3 (384) -> ``conv3`` 3x3 (256) ->
``conv4`` 3x3 (256) -> ReLU -> maxpool 3/2 -> adaptive average pool to 6x6 -> dropout ->
``fc1`` 4096 -> ReLU -> dropout -> ``fc2`` 4096 -> ReLU -> ``head``. All convs/denses have biases.
At 224x224 with 1000 classes: 61,100,840 params and 0.714 GMAC (identical to torchvision).

Small inputs (``small_inputs``; auto: ``min(H, W) <= 64``): an 11x11/4 stem would shrink 32x32 to
a 1x1 map before the last pool, so the small variant uses a 3x3 stride-1 ``conv_init`` and 2x2
stride-2 max pools (32 -> 16 -> 8 -> 4) and adaptive-pools to ``small_pool_size`` (4) -> 4096
features. Param paths are the same in both variants.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ebsp_jax.models.base import EbspModel, adaptive_avg_pool, check_input, is_small_input


class AlexNet(EbspModel):
  """AlexNet. Input NHWC float; output float32 logits (N, num_classes).

  Attributes:
    hidden_features: width of ``fc1`` and ``fc2``.
    dropout_rate: dropout before ``fc1`` and ``fc2``.
    small_inputs: small-image variant (see module doc); ``None`` = auto.
    small_pool_size: adaptive-pool output side in the small variant.
  """

  hidden_features: int = 4096
  dropout_rate: float = 0.5
  small_inputs: bool | None = None
  small_pool_size: int = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = check_input(x, "alexnet").astype(self.dtype)
    L = self.layers
    small = is_small_input(x, self.small_inputs)
    if small:
      pool = lambda y: nn.max_pool(y, (2, 2), strides=(2, 2), padding="SAME")  # noqa: E731
      x = nn.relu(L.conv(64, 3, use_bias=True, name="conv_init")(x))
    else:
      pool = lambda y: nn.max_pool(y, (3, 3), strides=(2, 2))  # noqa: E731
      x = L.conv(64, 11, strides=4, use_bias=True, padding=((2, 2), (2, 2)), name="conv_init")(x)
      x = nn.relu(x)
    x = pool(x)
    x = nn.relu(L.conv(192, 5, use_bias=True, name="conv1")(x))
    x = pool(x)
    x = nn.relu(L.conv(384, 3, use_bias=True, name="conv2")(x))
    x = nn.relu(L.conv(256, 3, use_bias=True, name="conv3")(x))
    x = nn.relu(L.conv(256, 3, use_bias=True, name="conv4")(x))
    x = pool(x)
    if x.shape[1] < 1 or x.shape[2] < 1:
      raise ValueError(f"alexnet: input of shape {x.shape} is too small for the ImageNet stem; use small_inputs=True")
    x = adaptive_avg_pool(x, self.small_pool_size if small else 6)
    x = x.reshape((x.shape[0], -1))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(L.dense(self.hidden_features, name="fc1")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(L.dense(self.hidden_features, name="fc2")(x))
    return self.head(x)
