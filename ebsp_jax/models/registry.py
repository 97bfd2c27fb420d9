"""Model registry: names -> Flax module classes, plus shape/naming helpers."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ebsp_jax.models.alexnet import AlexNet
from ebsp_jax.models.cifar_resnet import ResNet20, ResNet56
from ebsp_jax.models.lenet import LeNet5
from ebsp_jax.models.mobilenet_v2 import MobileNetV2
from ebsp_jax.models.resnet import ResNet18, ResNet50
from ebsp_jax.models.vgg import VGG16

#: name -> model class. Every class is an ``EbspModel`` (fields num_classes, dot_general_cls,
#: conv_general_dilated_cls, dtype, plus model-specific overridable fields).
MODELS: Mapping[str, type[nn.Module]] = {
    "alexnet": AlexNet,
    "lenet5": LeNet5,
    "mobilenet_v2": MobileNetV2,
    "resnet18": ResNet18,
    "resnet20": ResNet20,
    "resnet50": ResNet50,
    "resnet56": ResNet56,
    "vgg16": VGG16,
}

#: dataset -> default NHWC input (H, W, C).
INPUT_SHAPES: Mapping[str, tuple[int, int, int]] = {
    "fashion_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "imagenet": (224, 224, 3),
}

#: Param-path prefix of the first conv and of the final dense; the same in every model.
FIRST_LAYER = "conv_init"
LAST_LAYER = "head"

_CONTRACT_FIELDS = ("num_classes", "dot_general_cls", "conv_general_dilated_cls", "dtype")


def _check_name(name: str) -> type[nn.Module]:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
  return MODELS[name]


def get_model(
    name: str,
    num_classes: int = 10,
    dot_general_cls: Any = None,
    conv_general_dilated_cls: Any = None,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> nn.Module:
  """Build a registered model.

  Args:
    name: one of ``MODELS`` (alexnet, lenet5, mobilenet_v2, resnet18, resnet20, resnet50,
      resnet56, vgg16).
    num_classes: number of logits.
    dot_general_cls: module class forwarded to every ``nn.Dense`` (Flax hook), or None.
    conv_general_dilated_cls: module class forwarded to every ``nn.Conv``, or None.
    dtype: computation dtype.
    **overrides: model-specific fields, e.g. ``small_inputs=True`` (resnet18/50, alexnet,
      mobilenet_v2), ``width_multiplier=0.5`` (mobilenet_v2), ``classifier_hidden=(512,)``
      (vgg16), ``zero_init_residual`` (resnets).

  Returns:
    An unbound module; use ``model.init(rng, x, train=False)`` and
    ``model.apply(variables, x, train=...)`` with NHWC float ``x``; logits (N, num_classes)
    float32.

  Raises:
    ValueError: unknown name, unknown argument, or num_classes not a positive int (one line
      each; an unknown argument's message lists every accepted argument, the four common ones
      and the model-specific fields, with a close match when there is one).
  """
  cls = _check_name(name)
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
      or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
  fields = _model_fields(name)
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    accepted = _CONTRACT_FIELDS + fields
    close = {u: m[0] for u in unknown if (m := difflib.get_close_matches(u, accepted, n=1))}
    if len(unknown) == 1 and close:
      hint = f" (did you mean {close[unknown[0]]}?)"
    else:
      hint = "".join(f" (did you mean {m} for {u}?)" for u, m in close.items())
    raise ValueError(
        f"model {name!r} got unknown argument(s) {', '.join(unknown)}{hint}; accepted: "
        f"{', '.join(_CONTRACT_FIELDS)}; model-specific: {', '.join(fields) or '(none)'}"
    )
  return cls(
      num_classes=int(num_classes),
      dot_general_cls=dot_general_cls,
      conv_general_dilated_cls=conv_general_dilated_cls,
      dtype=dtype,
      **overrides,
  )


def _model_fields(name: str) -> tuple[str, ...]:
  """Sorted model-specific fields of model ``name`` (``get_model`` overrides), e.g. ``depth``.

  The four common arguments (num_classes, dot_general_cls, conv_general_dilated_cls, dtype)
  are not included; lenet5 and vgg16-style models may have none.
  """
  cls = _check_name(name)
  return tuple(sorted(
      f.name for f in dataclasses.fields(cls)
      if f.name not in ("parent", "name") and f.name not in _CONTRACT_FIELDS))


def default_input_shape(name: str, dataset: str) -> tuple[int, int, int]:
  """NHWC (H, W, C) a model gets on ``dataset`` (fashion_mnist, mnist, cifar10, imagenet).

  The shape depends only on the dataset; ``name`` is validated so typos fail early.
  """
  _check_name(name)
  if dataset not in INPUT_SHAPES:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(INPUT_SHAPES))}")
  return INPUT_SHAPES[dataset]


def first_and_last_layer(name: str) -> tuple[str, str]:
  """Param-path prefixes ``(first conv, last dense)`` of model ``name``: ('conv_init', 'head').

  Their kernels are ``params['conv_init']['kernel']`` and ``params['head']['kernel']``
  ('/'-joined: ``'conv_init/kernel'``, ``'head/kernel'``), the layers EBSP may keep at higher
  precision.
  """
  _check_name(name)
  return FIRST_LAYER, LAST_LAYER


def kernel_paths(params: Mapping[str, Any]) -> list[str]:
  """'/'-joined module paths of every conv/dense (every module owning a ``kernel``), sorted.

  Args:
    params: the ``'params'`` collection (or a full variables dict containing it).
  """
  if "params" in params:
    params = params["params"]
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  return sorted(k[: -len("/kernel")] for k in flat if k.endswith("/kernel"))
