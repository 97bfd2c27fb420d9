"""Pretrained torchvision weights for the registry's ImageNet models (no torch, no download).

::

    model, variables = models.load_torchvision("resnet50", "resnet50.safetensors")
    logits = model.apply(variables, x, train=False)   # x: NHWC, RGB, normalised (below)

The file is a torchvision ``state_dict`` saved with the ``safetensors`` package (e.g.
``safetensors.torch.save_file(torchvision.models.resnet50(weights=...).state_dict(), path)``
on a machine with torch), read here with its numpy API. Supported: ``resnet18``,
``resnet50``, ``mobilenet_v2``, ``alexnet`` and ``vgg16`` (torchvision's ``vgg16`` or
``vgg16_bn``, told apart by their keys).

Layout conversion:

* conv weights ``(O, I/groups, kh, kw)`` -> flax ``(kh, kw, I/groups, O)``; linear weights
  ``(O, I)`` -> ``(I, O)``. The first linear layer after a flatten (AlexNet's
  ``classifier.1``, VGG's ``classifier.0``) also has its inputs reordered: torch flattens NCHW
  ``(C, H, W)``, the flax models flatten NHWC ``(H, W, C)``.
* batch norm ``weight``/``bias`` -> ``params`` ``scale``/``bias``; ``running_mean``/
  ``running_var`` -> ``batch_stats`` ``mean``/``var`` (epsilon 1e-5 in both);
  ``num_batches_tracked`` is ignored.
* ``vgg16_bn``'s conv biases (the flax VGG with batch norm has none) are folded into the
  batch norm that follows: ``mean' = running_mean - bias`` (exact).

Architecture conventions checked against torchvision (same op order, strides and padding):
ResNet v1.5 (stride on the 3x3 conv of the bottleneck, on ``conv1`` of the basic block),
1x1 stride-s projection + BN where the shape changes, 7x7/2 stem with symmetric padding 3,
3x3/2 max pool with padding 1 (-inf); MobileNetV2 with symmetric ``(k-1)//2`` padding on
every conv (stride-2 3x3 included; flax's ``'SAME'`` would pad those asymmetrically), ReLU6,
dropout 0.2; AlexNet's 11x11/4 pad-2 stem and 3x3/2 unpadded max pools, adaptive average
pool to 6x6; VGG's 2x2/2 max pools and adaptive average pool to 7x7.

Differences to note:

* the models are built with ``small_inputs=False`` (the ImageNet stems that the weights
  belong to), whatever the input size;
* VGG's max pools use ``'SAME'`` padding: identical to torchvision's floor mode for even
  sizes (every size on the way from 224), one extra row/column for odd ones;
* ``vgg16_bn`` loads into the VGG with batch norm, whose convs have no bias: 4,224 fewer
  parameters than torchvision's 138,365,992 (the biases live in the folded means);
* inputs are NHWC, RGB in ``[0, 1]`` normalised with :data:`IMAGENET_MEAN` /
  :data:`IMAGENET_STD`, as torchvision's transforms do.

A missing, unexpected or mis-shaped tensor gives one line naming the first such tensor (in
torchvision's ``state_dict`` order) and the shape expected.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ebsp_jax.models.mobilenet_v2 import MOBILENET_V2_SETTINGS
from ebsp_jax.models.registry import get_model

#: torchvision's ImageNet normalisation (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED = ("alexnet", "mobilenet_v2", "resnet18", "resnet50", "vgg16")
#: conv indices of ``features`` in torchvision's vgg16 and vgg16_bn.
_VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_VGG_BN_CONVS = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)
_IGNORED_SUFFIX = ".num_batches_tracked"

# One entry per torch tensor: (torch key, flax collection, flax path, kind). Kinds: "conv",
# "linear", "flat_linear" (after an NCHW flatten), "vector" (bias, BN parameters, statistics),
# "fold_bias" (a conv bias folded into the next BN's mean).
Entry = Tuple[str, str, Tuple[str, ...], str]


class TorchvisionLoadError(ValueError):
  """A torchvision file that does not fit the model (one-line message)."""


def _bn(prefix: str, flax_path: Tuple[str, ...]) -> List[Entry]:
  return [(f"{prefix}.weight", "params", flax_path + ("scale",), "vector"),
          (f"{prefix}.bias", "params", flax_path + ("bias",), "vector"),
          (f"{prefix}.running_mean", "batch_stats", flax_path + ("mean",), "vector"),
          (f"{prefix}.running_var", "batch_stats", flax_path + ("var",), "vector")]


def _conv(key: str, flax_path: Tuple[str, ...], bias: bool = False) -> List[Entry]:
  out = [(f"{key}.weight", "params", flax_path + ("kernel",), "conv")]
  if bias:
    out.append((f"{key}.bias", "params", flax_path + ("bias",), "vector"))
  return out


def _linear(key: str, flax_path: Tuple[str, ...], flat: bool = False) -> List[Entry]:
  return [(f"{key}.weight", "params", flax_path + ("kernel",),
           "flat_linear" if flat else "linear"),
          (f"{key}.bias", "params", flax_path + ("bias",), "vector")]


def _resnet_entries(stage_sizes, bottleneck: bool) -> List[Entry]:
  e = _conv("conv1", ("conv_init",)) + _bn("bn1", ("bn_init",))
  convs = ("conv1", "conv2", "conv3") if bottleneck else ("conv1", "conv2")
  for s, n in enumerate(stage_sizes):
    for b in range(n):
      tv, fx = f"layer{s + 1}.{b}", f"stage{s + 1}_block{b}"
      for i, c in enumerate(convs):
        e += _conv(f"{tv}.{c}", (fx, c)) + _bn(f"{tv}.bn{i + 1}", (fx, f"bn{i + 1}"))
      if b == 0 and (s > 0 or bottleneck):      # stride 2, or 64 -> 256 channels
        e += _conv(f"{tv}.downsample.0", (fx, "proj_conv"))
        e += _bn(f"{tv}.downsample.1", (fx, "proj_bn"))
  return e + _linear("fc", ("head",))


def _mobilenet_v2_entries() -> List[Entry]:
  e = _conv("features.0.0", ("conv_init",)) + _bn("features.0.1", ("bn_init",))
  i = 1
  for s, (t, _, n, _) in enumerate(MOBILENET_V2_SETTINGS):
    for b in range(n):
      tv, fx = f"features.{i}.conv", f"stage{s + 1}_block{b}"
      layers = [] if t == 1 else [("expand_conv", "expand_bn")]
      layers.append(("dw_conv", "dw_bn"))
      for j, (c, bn) in enumerate(layers):
        e += _conv(f"{tv}.{j}.0", (fx, c)) + _bn(f"{tv}.{j}.1", (fx, bn))
      j = len(layers)
      e += _conv(f"{tv}.{j}", (fx, "project_conv")) + _bn(f"{tv}.{j + 1}", (fx, "project_bn"))
      i += 1
  e += _conv(f"features.{i}.0", ("conv_last",)) + _bn(f"features.{i}.1", ("bn_last",))
  return e + _linear("classifier.1", ("head",))


def _alexnet_entries() -> List[Entry]:
  names = ("conv_init", "conv1", "conv2", "conv3", "conv4")
  e = []
  for idx, name in zip((0, 3, 6, 8, 10), names):
    e += _conv(f"features.{idx}", (name,), bias=True)
  return (e + _linear("classifier.1", ("fc1",), flat=True) + _linear("classifier.4", ("fc2",))
          + _linear("classifier.6", ("head",)))


def _vgg16_entries(batch_norm: bool) -> List[Entry]:
  e = []
  for i, idx in enumerate(_VGG_BN_CONVS if batch_norm else _VGG_CONVS):
    conv, bn = ("conv_init", "bn_init") if i == 0 else (f"conv{i}", f"bn{i}")
    if batch_norm:
      e += [(f"features.{idx}.weight", "params", (conv, "kernel"), "conv"),
            (f"features.{idx}.bias", "batch_stats", (bn, "mean"), "fold_bias")]
      e += _bn(f"features.{idx + 1}", (bn,))
    else:
      e += _conv(f"features.{idx}", (conv,), bias=True)
  return (e + _linear("classifier.0", ("fc1",), flat=True) + _linear("classifier.3", ("fc2",))
          + _linear("classifier.6", ("head",)))


def _spec(name: str, batch_norm: bool) -> Tuple[List[Entry], Dict[str, Any], Tuple[int, ...]]:
  """(entries, get_model overrides, input shape) of a supported model."""
  if name == "resnet18":
    return _resnet_entries((2, 2, 2, 2), False), dict(small_inputs=False), (224, 224, 3)
  if name == "resnet50":
    return _resnet_entries((3, 4, 6, 3), True), dict(small_inputs=False), (224, 224, 3)
  if name == "mobilenet_v2":
    return _mobilenet_v2_entries(), dict(small_inputs=False), (224, 224, 3)
  if name == "alexnet":
    return _alexnet_entries(), dict(small_inputs=False), (224, 224, 3)
  if name == "vgg16":
    kw = dict(pool_size=7, classifier_hidden=(4096, 4096), batch_norm=batch_norm)
    return _vgg16_entries(batch_norm), kw, (224, 224, 3)
  raise TorchvisionLoadError(f"load_torchvision: unknown model {name!r}; supported: "
                             f"{', '.join(SUPPORTED)}")


def _torch_shape(kind: str, flax_shape: Tuple[int, ...]) -> Tuple[int, ...]:
  if kind == "conv":
    kh, kw, i, o = flax_shape
    return (o, i, kh, kw)
  if kind in ("linear", "flat_linear"):
    return (flax_shape[1], flax_shape[0])
  return tuple(flax_shape)


def _to_flax(kind: str, a: np.ndarray, flat_hw: Tuple[int, int]) -> np.ndarray:
  if kind == "conv":
    return np.transpose(a, (2, 3, 1, 0))
  if kind == "linear":
    return np.transpose(a)
  if kind == "flat_linear":
    h, w = flat_hw
    o, n = a.shape
    c = n // (h * w)
    return a.reshape(o, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, o)
  return a


def _get(tree: Mapping[str, Any], path: Tuple[str, ...]):
  for p in path:
    tree = tree[p]
  return tree


def _set(tree: Dict[str, Any], path: Tuple[str, ...], value) -> None:
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def model_and_shapes(name: str, *, num_classes: int = 1000, batch_norm: bool = True):
  """The registry model a torchvision file loads into, and the file's expected tensors.

  Args:
    name: one of :data:`SUPPORTED`.
    num_classes: classifier outputs.
    batch_norm: for ``vgg16``: ``vgg16_bn`` (True) or ``vgg16`` (False).

  Returns:
    ``(model, {torch key: torch shape})`` in torchvision's ``state_dict`` order (without
    ``num_batches_tracked``).
  """
  entries, overrides, in_shape = _spec(name, batch_norm)
  model = get_model(name, num_classes=num_classes, **overrides)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1,) + in_shape),
                                             train=False))
  out = {}
  for key, coll, path, kind in entries:
    if kind == "fold_bias":
      out[key] = tuple(_get(shapes[coll], path).shape)
    else:
      out[key] = _torch_shape(kind, tuple(_get(shapes[coll], path).shape))
  return model, out


def _read(path: str) -> Dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"load_torchvision: {path}: no such file (save a torchvision "
                            "state_dict with safetensors.torch.save_file; nothing is "
                            "downloaded)")
  try:
    return load_file(path)
  except (SafetensorError, OSError, ValueError, TypeError) as e:
    msg = " ".join(str(e).split())
    raise TorchvisionLoadError(f"load_torchvision: {path} is not a readable safetensors file "
                               f"({msg})") from e


def load_torchvision(name: str, path: str, *, num_classes: Optional[int] = None,
                     **model_kwargs: Any):
  """Reads a torchvision ``state_dict`` (safetensors) into a registry model.

  Args:
    name: ``'resnet18'``, ``'resnet50'``, ``'mobilenet_v2'``, ``'alexnet'`` or ``'vgg16'``
      (``vgg16`` or ``vgg16_bn`` weights, detected from the keys).
    path: the ``.safetensors`` file.
    num_classes: classifier outputs (default: from the classifier weight in the file).
    **model_kwargs: further ``get_model`` arguments (e.g. ``dot_general_cls`` hooks,
      ``dtype``); not the ones that change the architecture.

  Returns:
    ``(model, variables)``: the flax module (built with ``small_inputs=False``) and
    ``{'params': ..., 'batch_stats': ...}`` (float32), for
    ``model.apply(variables, x, train=False)``.

  Raises:
    FileNotFoundError: no file at ``path``.
    TorchvisionLoadError: an unknown model, an unreadable file, or one line naming the first
      tensor (in torchvision's order) that is missing, unexpected, not floating point, or of
      the wrong shape, with the shape expected.
  """
  if name not in SUPPORTED:
    raise TorchvisionLoadError(f"load_torchvision: unknown model {name!r}; supported: "
                               f"{', '.join(SUPPORTED)}")
  tensors = _read(path)
  tensors = {k: v for k, v in tensors.items() if not k.endswith(_IGNORED_SUFFIX)}
  batch_norm = name != "vgg16" or "features.1.weight" in tensors
  entries, overrides, in_shape = _spec(name, batch_norm)
  head_key = entries[-2][0]
  if num_classes is None:
    head = tensors.get(head_key)
    if head is None or head.ndim != 2:
      raise TorchvisionLoadError(f"load_torchvision({name!r}): {path} has no 2-D classifier "
                                 f"weight '{head_key}'")
    num_classes = int(head.shape[0])
  clash = sorted(set(model_kwargs) & (set(overrides) | {"small_inputs"}))
  if clash:
    raise TorchvisionLoadError(f"load_torchvision: {', '.join(clash)} is fixed by the "
                               "torchvision architecture")
  _, expected = model_and_shapes(name, num_classes=num_classes, batch_norm=batch_norm)
  model = get_model(name, num_classes=num_classes, **overrides, **model_kwargs)
  where = f"load_torchvision({name!r}, {path!r})"
  for key, shape in expected.items():
    if key not in tensors:
      raise TorchvisionLoadError(f"{where}: missing tensor '{key}' (expected shape {shape})")
    a = tensors[key]
    if not np.issubdtype(a.dtype, np.floating):
      raise TorchvisionLoadError(f"{where}: tensor '{key}' has dtype {a.dtype}; expected "
                                 "floating point")
    if tuple(a.shape) != shape:
      raise TorchvisionLoadError(f"{where}: tensor '{key}' has shape {tuple(a.shape)}; "
                                 f"expected {shape}")
  extra = [k for k in tensors if k not in expected]
  if extra:
    raise TorchvisionLoadError(f"{where}: unexpected tensor '{extra[0]}' (and "
                               f"{len(extra) - 1} more): not a torchvision {name} state_dict")
  flat_hw = (6, 6) if name == "alexnet" else (7, 7)
  variables: Dict[str, Any] = {}
  folds: List[Tuple[Tuple[str, ...], np.ndarray]] = []
  for key, coll, fpath, kind in entries:
    a = np.asarray(tensors[key], np.float32)
    if kind == "fold_bias":
      folds.append((fpath, a))
      continue
    _set(variables.setdefault(coll, {}), fpath, _to_flax(kind, a, flat_hw))
  for fpath, bias in folds:        # vgg16_bn: BN(conv + b) = BN with mean - b
    stats = variables["batch_stats"]
    _set(stats, fpath, _get(stats, fpath) - bias)
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  return model, variables
