"""The quantized-model artifact: a finished run's integer model in one file, and its one reader.

A training run ends by writing ``quantized_model.safetensors`` next to ``results.json``
(``ebsp_jax.train.export_model``); ``experiments/hardware.py --run``,
``experiments/datapath_sweep.py`` and the golden-vector export read it through :func:`read`.
It holds what the integer datapath runs, as the run left it, so no reader re-quantizes or
guesses: per quantized conv/dense layer its integer weight codes, per-channel scales, weight
format and input-activation format and scale; every other variable (biases, batch norm,
calibration statistics, float kernels) as float arrays. The full specification is
``docs/artifact.md``; in short, a safetensors file (no pickle) whose metadata holds

* ``format``: ``"ebsp-jax.quantized_model"``, ``version``: ``"1"`` (:data:`VERSION`);
* ``header``: JSON ``{"model", "dataset", "num_classes", "activation_bits", "dual_lod",
  "layers": {name: {"format": {"bits", "length", "signed"}, "activation": {"bits", "signed",
  "scale"} | null}}, "source": {...}}``;
* ``checksum``: SHA-256 over every tensor (name, dtype, shape, bytes; sorted by name);

and whose tensors are ``codes/<name>`` (the narrowest of int8 / int16 / int32 that holds the
format's levels: int8 up to signed 8 bits; the kernel's
shape: HWIO for convs, ``(in, out)`` for dense), ``scales/<name>`` (float32 ``(out,)`` or
``()``) and ``variables/<collection>/<path>`` (float). ``<name>`` is the layer's path in the
model's ``params`` (the kernel is ``params/<name>/kernel``), the name the traced workload
(``Layer.param_path``) and the integer mode use. The weight of a layer is
``codes * scales`` (per output channel, the last axis). Bad files are refused with one line:
missing, not safetensors, another format or version, a checksum mismatch, a layer without its
tensors, codes off their format's grid.

This module is numpy only (``numerics`` floor): the training package builds the model, and
writes the bytes of :func:`to_bytes` atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ebsp_jax.numerics.pattern import BitPattern, uniform
from ebsp_jax.numerics.tree import Rule, make_rule

#: The file a finished run writes in its workdir.
FILE_NAME = "quantized_model.safetensors"
FORMAT = "ebsp-jax.quantized_model"
VERSION = 1
_CODES, _SCALES, _VARS = "codes/", "scales/", "variables/"


@dataclasses.dataclass(frozen=True)
class QuantizedLayer:
  """One quantized conv/dense layer.

  Attributes:
    name: the layer's path in ``params`` (its kernel is ``params/<name>/kernel``).
    codes: integer weights on ``format``'s grid (int8, int16 or int32), the kernel's shape.
    scale: float32 ``(out,)`` per output channel (the kernel's last axis) or ``()``.
    format: the weight format.
    activation: the input activation format (``uniform(bits, signed)``), or None (a run
      with float activations).
    activation_scale: the calibrated input scale (float32 value), or None.
  """

  name: str
  codes: np.ndarray
  scale: np.ndarray
  format: BitPattern
  activation: Optional[BitPattern] = None
  activation_scale: Optional[float] = None

  @property
  def kernel(self) -> np.ndarray:
    """The float32 weight ``codes * scale`` (what the fake-quant model computes with)."""
    return (self.codes.astype(np.float32) * self.scale).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class QuantizedModel:
  """A run's integer model (see the module docstring).

  Attributes:
    model / dataset / num_classes: the registered model (``ebsp_jax.models``), its dataset.
    activation_bits: bits of every quantized conv/dense input (0: float activations).
    dual_lod: the datapath the run trained for: ``'off'``, ``'truncate'`` or ``'round'``.
    layers: ``{name: QuantizedLayer}`` in the model's parameter order.
    variables: every other variable, ``{'<collection>/<path>': float array}`` (e.g.
      ``params/head/bias``, ``batch_stats/...``, ``quant_stats/<layer>/act/max``).
    source: provenance (``step``, ``config``, ``data_fingerprint``, ...), JSON.
  """

  model: str
  dataset: str
  num_classes: int
  activation_bits: int
  dual_lod: str
  layers: Mapping[str, QuantizedLayer]
  variables: Mapping[str, np.ndarray]
  source: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def formats(self) -> Dict[str, BitPattern]:
    """``{layer: weight format}``."""
    return {n: l.format for n, l in self.layers.items()}

  def weight_rule(self) -> Rule:
    """A rule giving exactly ``params/<name>/kernel`` of each layer its format (paths as in
    the ``params`` collection, without the ``params/`` prefix); everything else stays float."""
    return make_rule(None, overrides=[(f"^{re.escape(n)}/kernel$", l.format)
                                      for n, l in self.layers.items()])

  def variable_tree(self) -> Dict[str, Any]:
    """The nested variables dict ``{'params': ..., 'batch_stats': ..., 'quant_stats': ...}``,
    every quantized kernel as ``codes * scale`` (float32): what ``model.apply`` takes."""
    tree: Dict[str, Any] = {}
    items = list(self.variables.items()) + [(f"params/{n}/kernel", l.kernel)
                                            for n, l in self.layers.items()]
    for path, v in items:
      node = tree
      *parents, leaf = path.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = v
    return tree

  def weight_scales(self, params: Any) -> Any:
    """The scales tree of ``params`` (as ``tree_project`` takes): each quantized kernel's
    scale, ``None`` at every other leaf."""
    import jax  # pylint: disable=import-outside-toplevel - numpy-only readers need no jax
    from ebsp_jax.numerics.tree import path_str  # pylint: disable=import-outside-toplevel
    by_path = {f"{n}/kernel": l.scale for n, l in self.layers.items()}
    return jax.tree_util.tree_map_with_path(lambda p, _: by_path.get(path_str(p)), params)


# ----------------------------------------------------------------------------------------------
# Writing.


def _format_json(f: BitPattern) -> Dict[str, Any]:
  return {"bits": f.bits, "length": f.length, "signed": f.signed, "name": str(f)}


def _code_dtype(f: BitPattern):
  """The narrowest of int8 / int16 / int32 that holds every level of ``f``."""
  return next(t for t in (np.int8, np.int16, np.int32) if f.max_level <= np.iinfo(t).max)


def _c(a) -> np.ndarray:
  """``a`` as a C-contiguous array of the same shape (``np.ascontiguousarray`` would make a
  0-d array 1-d)."""
  return np.array(a, order="C", copy=None)


def _checksum(tensors: Mapping[str, np.ndarray]) -> str:
  h = hashlib.sha256()
  for k in sorted(tensors):
    a = _c(tensors[k])
    h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def to_bytes(qm: QuantizedModel) -> bytes:
  """The safetensors file of ``qm``.

  Raises:
    ValueError: codes off their grid, a scale of the wrong shape, a layer name also among the
      variables (one line).
  """
  from safetensors.numpy import save  # pylint: disable=import-outside-toplevel

  tensors: Dict[str, np.ndarray] = {}
  layers = {}
  for name, l in qm.layers.items():
    _check_layer(name, l.codes, l.scale, l.format, "to_bytes")
    if f"params/{name}/kernel" in qm.variables:
      raise ValueError(f"to_bytes: params/{name}/kernel is both a quantized layer and a variable")
    tensors[_CODES + name] = _c(l.codes.astype(_code_dtype(l.format)))
    tensors[_SCALES + name] = _c(np.asarray(l.scale, np.float32))
    act = (None if l.activation is None else
           {"bits": l.activation.bits, "signed": l.activation.signed,
            "scale": float(l.activation_scale)})
    layers[name] = {"format": _format_json(l.format), "activation": act}
  for k, v in qm.variables.items():
    tensors[_VARS + k] = _c(np.asarray(v))
  header = {"model": qm.model, "dataset": qm.dataset, "num_classes": int(qm.num_classes),
            "activation_bits": int(qm.activation_bits), "dual_lod": qm.dual_lod,
            "layers": layers, "source": dict(qm.source)}
  meta = {"format": FORMAT, "version": str(VERSION),
          "header": json.dumps(header, sort_keys=True, allow_nan=False),
          "checksum": _checksum(tensors)}
  return save(tensors, metadata=meta)


# ----------------------------------------------------------------------------------------------
# Reading: the one reader.


def _check_layer(name: str, codes: np.ndarray, scale: np.ndarray, fmt: BitPattern,
                 where: str) -> None:
  if not np.issubdtype(codes.dtype, np.integer):
    raise ValueError(f"{where}: layer {name!r}: codes of dtype {codes.dtype}, expected integers")
  if codes.ndim < 2:
    raise ValueError(f"{where}: layer {name!r}: codes of shape {codes.shape}, expected a kernel "
                     "(2 or more axes)")
  if scale.shape not in ((), (codes.shape[-1],)):
    raise ValueError(f"{where}: layer {name!r}: scale of shape {scale.shape}, expected () or "
                     f"({codes.shape[-1]},) (one per output channel)")
  if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
    raise ValueError(f"{where}: layer {name!r}: scales must be finite and > 0")
  off = int(np.size(codes) - np.count_nonzero(np.isin(codes, fmt.levels)))
  if off:
    raise ValueError(f"{where}: layer {name!r}: {off} codes are off the {fmt} grid")


def _pattern(d: Any, what: str, where: str) -> BitPattern:
  try:
    return BitPattern(int(d["bits"]), int(d["length"]), bool(d["signed"]))
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{where}: {what} is not a valid format ({str(e).splitlines()[0]})") from None


def read(path: str) -> QuantizedModel:
  """The :class:`QuantizedModel` in ``path`` (a file, or a run's workdir holding
  :data:`FILE_NAME`).

  Raises:
    ValueError: the file is missing, unreadable, not this format, of another version, fails
      its checksum, or is inconsistent (one line naming the file and what is wrong).
  """
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel

  if os.path.isdir(path):
    path = os.path.join(path, FILE_NAME)
  where = f"quantized model {path}"
  if not os.path.isfile(path):
    raise ValueError(f"{where} does not exist")
  try:
    with safe_open(path, framework="np") as f:
      meta = dict(f.metadata() or {})
      tensors = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
    raise ValueError(f"{where}: not a readable safetensors file "
                     f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
  if meta.get("format") != FORMAT:
    raise ValueError(f"{where}: not an ebsp-jax quantized model (format {meta.get('format')!r}, "
                     f"expected {FORMAT!r})")
  if meta.get("version") != str(VERSION):
    raise ValueError(f"{where}: format version {meta.get('version')!r}, this reader reads "
                     f"version {VERSION}; rewrite it with python -m ebsp_jax.train.export_run "
                     "--workdir=<the run>")
  if meta.get("checksum") != _checksum(tensors):
    raise ValueError(f"{where}: checksum mismatch: the file is corrupt (rewrite it with python "
                     "-m ebsp_jax.train.export_run --workdir=<the run>)")
  try:
    header = json.loads(meta["header"])
    layer_meta = header["layers"]
    fields = (str(header["model"]), str(header["dataset"]), int(header["num_classes"]),
              int(header["activation_bits"]), str(header["dual_lod"]))
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{where}: malformed header ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
  if not isinstance(layer_meta, dict):
    raise ValueError(f"{where}: malformed header ('layers' is not an object)")
  layers = {}
  for name, d in layer_meta.items():
    for prefix in (_CODES, _SCALES):
      if prefix + name not in tensors:
        raise ValueError(f"{where}: layer {name!r} has no tensor {prefix + name!r}")
    fmt = _pattern((d or {}).get("format"), f"layer {name!r}'s format", where)
    act = (d or {}).get("activation")
    act_fmt = act_scale = None
    if act is not None:
      try:
        act_fmt, act_scale = uniform(int(act["bits"]), bool(act["signed"])), float(act["scale"])
      except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: layer {name!r}'s activation is not a valid format "
                         f"({str(e).splitlines()[0]})") from None
    codes, scale = tensors.pop(_CODES + name), tensors.pop(_SCALES + name)
    _check_layer(name, codes, scale, fmt, where)
    layers[name] = QuantizedLayer(name, codes, scale, fmt, act_fmt, act_scale)
  stray = [k for k in tensors if k.startswith((_CODES, _SCALES))]
  if stray:
    raise ValueError(f"{where}: tensor {stray[0]!r} belongs to no layer of the header")
  variables = {k[len(_VARS):]: v for k, v in tensors.items() if k.startswith(_VARS)}
  other = [k for k in tensors if not k.startswith(_VARS)]
  if other:
    raise ValueError(f"{where}: unexpected tensor {other[0]!r}")
  model, dataset, num_classes, activation_bits, dual_lod = fields
  return QuantizedModel(model, dataset, num_classes, activation_bits, dual_lod, layers,
                        variables, header.get("source") or {})
