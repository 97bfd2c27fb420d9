"""Shared building blocks for every model in :mod:`ebsp_jax.models`.

Every model is a Flax linen ``nn.Module`` dataclass that derives from :class:`EbspModel`, so it
carries the four contract fields::

    num_classes: int
    dot_general_cls: Any = None          # forwarded to EVERY nn.Dense
    conv_general_dilated_cls: Any = None # forwarded to EVERY nn.Conv
    dtype: Any = jnp.float32             # computation dtype (params stay float32)

The two ``*_cls`` fields are Flax's own injection hooks (``nn.Dense(dot_general_cls=...)``,
``nn.Conv(conv_general_dilated_cls=...)``): a module class that Flax instantiates inside each
layer and calls instead of ``lax.dot_general`` / ``lax.conv_general_dilated``. This is how ONE
model definition runs in float, fake-quant and emulated-integer modes (AQT style). Models must
create convolutions and dense layers only through the :class:`Layers` factory (``self.layers``,
passed on to blocks as a field) so the hooks reach every layer (``models_test.py`` proves it).

Naming convention (per-layer quantization rules match on parameter paths): the first
convolution of every model is named ``conv_init`` and the final dense layer ``head``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

# Kaiming-normal, fan_out (torchvision's ResNet/VGG/MobileNet conv init), suited to ReLU nets.
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Grouped/depthwise convs: Flax computes fan_out as kh*kw*C_out regardless of groups (C times too
# large for a depthwise 3x3), which makes MobileNetV2's activations vanish (logits ~1e-9 at init
# with running BN statistics). fan_in = kh*kw*C_in/groups is exact for grouped kernels.
GROUPED_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

#: Inputs whose smaller spatial side is at most this many pixels count as "small" (CIFAR,
#: Fashion-MNIST, Tiny-ImageNet): ImageNet models then use their small-input stem.
SMALL_INPUT_MAX_SIDE = 64


def same_padding(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """Symmetric padding ``(k-1)//2`` on both spatial dims (PyTorch-style, e.g. 1 for 3x3).

  Unlike Flax's ``'SAME'`` (which pads asymmetrically for even inputs with stride 2), this
  matches torchvision exactly, so output sizes and MAC counts agree with published numbers.
  """
  p = (kernel_size - 1) // 2
  return ((p, p), (p, p))


@dataclasses.dataclass(frozen=True)
class Layers:
  """Factory for hook-wired layers; blocks take one as a field so hooks reach nested layers.

  Layers created by these methods inside a module's ``@nn.compact`` method become children of
  that module (Flax picks the parent from the call context).

  Attributes:
    dot_general_cls: forwarded to every ``nn.Dense`` as ``dot_general_cls``.
    conv_general_dilated_cls: forwarded to every ``nn.Conv`` as ``conv_general_dilated_cls``.
    dtype: computation dtype of every layer.
  """

  dot_general_cls: Any = None
  conv_general_dilated_cls: Any = None
  dtype: Any = jnp.float32

  def conv(
      self,
      features: int,
      kernel_size: int,
      *,
      strides: int = 1,
      name: str,
      use_bias: bool = False,
      groups: int = 1,
      padding: Any = None,
  ) -> nn.Conv:
    """A square ``nn.Conv`` wired to ``conv_general_dilated_cls``.

    Args:
      features: output channels.
      kernel_size: square kernel side.
      strides: stride on both spatial dims.
      name: stable, readable module name (becomes the param path component).
      use_bias: add a bias (False when a BatchNorm follows).
      groups: ``feature_group_count`` (``groups == in_channels`` is depthwise).
      padding: Flax padding spec; default symmetric ``(k-1)//2`` (see :func:`same_padding`).
    """
    return nn.Conv(
        features=features,
        kernel_size=(kernel_size, kernel_size),
        strides=(strides, strides),
        padding=same_padding(kernel_size) if padding is None else padding,
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=self.dtype,
        kernel_init=CONV_INIT if groups == 1 else GROUPED_CONV_INIT,
        conv_general_dilated_cls=self.conv_general_dilated_cls,
        name=name,
    )

  def dense(self, features: int, *, name: str) -> nn.Dense:
    """An ``nn.Dense`` (with bias) wired to ``dot_general_cls``."""
    return nn.Dense(
        features=features,
        dtype=self.dtype,
        dot_general_cls=self.dot_general_cls,
        name=name,
    )

  def norm(self, train: bool, *, name: str, zero_init: bool = False) -> nn.BatchNorm:
    """``nn.BatchNorm(momentum=0.9, epsilon=1e-5)``; batch statistics iff ``train``.

    Args:
      train: use batch statistics (and update ``batch_stats``) when True.
      name: module name.
      zero_init: initialise the scale (gamma) to zero, e.g. for the last BN of a residual
        branch so each block starts as identity (Goyal et al. 2017).
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=self.dtype,
        scale_init=nn.initializers.zeros_init() if zero_init else nn.initializers.ones_init(),
        name=name,
    )


class EbspModel(nn.Module):
  """Base class of every registered model: the contract fields plus hook-wired layers.

  Attributes:
    num_classes: number of output logits.
    dot_general_cls: optional module class used by every ``nn.Dense`` instead of
      ``lax.dot_general`` (Flax hook; instantiated with no arguments inside the layer).
    conv_general_dilated_cls: optional module class used by every ``nn.Conv`` instead of
      ``lax.conv_general_dilated``.
    dtype: computation dtype of convs/denses/batch norms. Logits are always returned float32.
  """

  num_classes: int
  dot_general_cls: Any = None
  conv_general_dilated_cls: Any = None
  dtype: Any = jnp.float32

  @property
  def layers(self) -> Layers:
    """The :class:`Layers` factory carrying this model's hooks and dtype."""
    return Layers(self.dot_general_cls, self.conv_general_dilated_cls, self.dtype)

  def head(self, x: jnp.ndarray) -> jnp.ndarray:
    """Final classifier ``head``: Dense(num_classes) on (N, F); float32 logits (N, classes)."""
    x = self.layers.dense(self.num_classes, name="head")(x)
    return jnp.asarray(x, jnp.float32)


def is_small_input(x: jnp.ndarray, small_inputs: bool | None) -> bool:
  """Resolve a model's ``small_inputs`` field: explicit bool, or auto from NHWC ``x``.

  Auto (``None``): True iff ``min(H, W) <= SMALL_INPUT_MAX_SIDE`` (64).
  """
  if small_inputs is not None:
    return bool(small_inputs)
  return min(x.shape[1], x.shape[2]) <= SMALL_INPUT_MAX_SIDE


def check_input(x: jnp.ndarray, model_name: str) -> jnp.ndarray:
  """Validate an NHWC float input (one-line ValueError otherwise); returns it unchanged."""
  if x.ndim != 4:
    raise ValueError(
        f"{model_name} expects NHWC input of rank 4 (N, H, W, C); got shape {tuple(x.shape)}"
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"{model_name} expects a floating-point input (normalized image); got dtype {x.dtype}"
    )
  return x


def adaptive_avg_pool(x: jnp.ndarray, output_size: int) -> jnp.ndarray:
  """PyTorch ``AdaptiveAvgPool2d(output_size)`` on NHWC ``x`` -> (N, out, out, C).

  Bin ``i`` over an input side ``n`` covers ``[floor(i*n/out), ceil((i+1)*n/out))``; for
  ``n == out`` this is the identity, and for ``n < out`` input pixels are replicated, exactly
  as in torch.
  """
  n, h, w, c = x.shape
  if h == output_size and w == output_size:
    return x
  if h % output_size == 0 and w % output_size == 0:
    kh, kw = h // output_size, w // output_size
    return x.reshape(n, output_size, kh, output_size, kw, c).mean(axis=(2, 4))

  def bins(size: int) -> Sequence[tuple[int, int]]:
    return [
        (math.floor(i * size / output_size), math.ceil((i + 1) * size / output_size))
        for i in range(output_size)
    ]

  rows = []
  for h0, h1 in bins(h):
    rows.append(
        jnp.stack([x[:, h0:h1, w0:w1, :].mean(axis=(1, 2)) for w0, w1 in bins(w)], axis=1)
    )
  return jnp.stack(rows, axis=1)
