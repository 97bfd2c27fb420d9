"""LeNet-5 (LeCun et al. 1998) for 28x28x1 inputs, modernised with ReLU and max pooling.

Layers (param paths): ``conv_init`` 5x5x6 (pad 2) -> ReLU -> maxpool 2 -> ``conv1`` 5x5x16
(valid) -> ReLU -> maxpool 2 -> flatten (400 at 28x28) -> ``fc1`` 120 -> ReLU -> ``fc2`` 84 ->
ReLU -> ``head`` num_classes. No batch norm (as in the original); ``train`` is accepted for
interface uniformity and has no effect. 61,706 params for 10 classes at 28x28. Other input sizes
work (the flatten size follows the input), e.g. 32x32x3 gives a 576-feature flatten.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ebsp_jax.models.base import EbspModel, check_input


class LeNet5(EbspModel):
  """LeNet-5. Input NHWC float (N, H>=12, W>=12, C); output float32 logits (N, num_classes)."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train  # no batch norm / dropout
    x = check_input(x, "lenet5").astype(self.dtype)
    x = nn.relu(self.layers.conv(6, 5, use_bias=True, name="conv_init")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(self.layers.conv(16, 5, use_bias=True, padding="VALID", name="conv1")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(self.layers.dense(120, name="fc1")(x))
    x = nn.relu(self.layers.dense(84, name="fc2")(x))
    return self.head(x)
