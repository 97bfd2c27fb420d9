"""The three execution modes for ``flax.nnx`` models built from standard layers.

An unmodified nnx model whose convolutions and dense layers are plain ``nnx.Conv`` /
``nnx.Linear`` runs in the three modes of :mod:`ebsp_jax.quant` (AQT style: hooks replace the
layers' ``conv_general_dilated`` / ``dot_general`` attributes; the model code is untouched)::

    from ebsp_jax import quant
    model = MyCNN(rngs=nnx.Rngs(0))                                   # float
    qmodel = quant.nnx.fake_quant(model, 8, weight_rule=rule)         # training (fake-quant)
    ...train qmodel in train mode (qmodel.train()): calibrates activations...
    imodel = quant.nnx.to_integer(qmodel)                             # integer (emulated hw)
    logits = imodel.apply(x)

Fake-quant mode (:class:`FakeQuantOp`, installed by :func:`fake_quant`) is the linen hook
:class:`ebsp_jax.quant.inject.FakeQuantOp` for nnx, with the same functions: every layer
fake-quantizes its INPUT activation (``fake_quant_activation``: ``uniform(bits, signed)``, one
scale per tensor, straight-through gradient) from an EMA-calibrated range
(``calibration.ema_update`` / ``activation_scale``). With a ``weight_rule`` it also projects the
kernel onto its ``BitPattern`` grid in the forward pass with a straight-through gradient
(``ebsp_jax.fake_quant``, the forward pass of ADMM's ``tree_fake_quant``), with a per-output
channel scale fitted when the hooks are installed (:func:`refit_weight_scales` refits it).
Without a ``weight_rule`` the kernel passes through unchanged, exactly as in the linen hook
(weights projected outside, e.g. by ADMM).

State is ordinary nnx state, so ``nnx.split`` / ``nnx.merge`` / ``nnx.jit`` /
``nnx.Optimizer(..., wrt=nnx.Param)`` work unchanged:

* :class:`QuantStat` (``<layer>/<hook>/{min, max, count}``, ``<hook>`` being
  ``dot_general`` or ``conv_general_dilated``): the calibration statistics, the nnx
  counterpart of linen's ``'quant_stats'`` collection. Updated, like ``nnx.BatchNorm``'s batch
  statistics, in train mode (``use_running_average=False``: ``model.train()``) and frozen in
  eval mode (``model.eval()`` or ``nnx.view(model, use_running_average=True)``). A never
  calibrated layer (count 0) uses the current batch's range (dynamic quantization).
* :class:`WeightScale` (``<layer>/<hook>/weight_scale``): the kernel's scale (not a
  ``Param``: the optimizer leaves it alone).

Integer mode (:func:`to_integer`): the model is cloned with marker hooks (each layer becomes one
``ebsp_quantized_op`` of :mod:`ebsp_jax.quant.ops` carrying its path), set to eval mode,
and traced; the jaxpr is lowered by the same :class:`~ebsp_jax.quant.lowering.Interpreter` and
wrapped in the same :class:`~ebsp_jax.quant.integer.IntegerModel` as the linen models (weights
through :func:`~ebsp_jax.quant.integer.quantize_weights`, activation formats through
:func:`~ebsp_jax.quant.calibration.activation_formats`).

Layer paths are the ``'/'``-joined nnx graph paths (``'conv1'``, ``'blocks/0/conv'``); weight
rules see ``'<layer>/kernel'``, as for linen params.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from ebsp_jax.numerics import BitPattern, fake_quant as _fake_quant, path_str, tree_fit_scale
from ebsp_jax.numerics.tree import Rule
from ebsp_jax.quant.calibration import (ACT_MODULE_NAME, activation_formats, activation_scale,
                                        ema_update)
from ebsp_jax.quant.datapath import DatapathConfig
from ebsp_jax.quant.inject import (DualLodLength, _check_bits, check_dual_lod,
                                   dual_lod_activation, fake_quant_activation)
from ebsp_jax.quant.integer import (IntegerConfig, IntegerModel, dual_lod_rounding,
                                    integer_layers, quantize_weights)
from ebsp_jax.quant.lowering import cpu_device
from ebsp_jax.quant.ops import CONV, DOT_GENERAL, LAX_OPS, canonical_kwargs, quantized_op_p

PyTree = Any

#: The hooked nnx layer types: ``(class, attribute holding the lax op, op name)``.
LAYER_HOOKS: Tuple[Tuple[type, str, str], ...] = (
    (nnx.Linear, "dot_general", DOT_GENERAL),
    (nnx.Conv, "conv_general_dilated", CONV),
)


class QuantStat(nnx.Variable):
  """Activation calibration statistics (the nnx counterpart of linen's ``'quant_stats'``)."""


class WeightScale(nnx.Variable):
  """The scale of a layer's kernel on its ``BitPattern`` grid (per output channel)."""


class FakeQuantOp(nnx.Module):
  """``lax.dot_general`` / ``lax.conv_general_dilated`` with fake-quantized operands.

  Installed by :func:`fake_quant` as the ``dot_general`` / ``conv_general_dilated`` attribute
  of ``nnx.Linear`` / ``nnx.Conv``, and called by the layer with ``(lhs, rhs, ...)`` and the
  usual ``lax`` arguments.

  Attributes:
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    activation_bits: bits of the input activation format.
    ema_decay: EMA decay of the per-batch min/max (the first update takes the batch values).
    weight_pattern: the kernel's ``BitPattern`` (``None``: the kernel passes through).
    use_running_average: ``False`` (train mode): update the statistics on every call;
      ``True`` (eval mode): use the stored ones. Set by ``model.train()`` / ``model.eval()`` /
      ``nnx.view`` together with ``nnx.BatchNorm``.
    min, max, count: :class:`QuantStat` scalars (``count == 0``: never calibrated).
    weight_scale: :class:`WeightScale` broadcastable to the kernel, or ``None``.
    dual_lod_length: ``None``, or the ``L`` of dual-LOD-aware training: the input levels are
      cut to ``L`` significant bits (``dual_lod_rounding``) as the dual-LOD datapath does.
  """

  def __init__(self, op: str, activation_bits: int = 8, *, ema_decay: float = 0.99,
               weight_pattern: Optional[BitPattern] = None,
               weight_scale: Optional[jax.Array] = None, use_running_average: bool = False,
               dual_lod_length: Optional[int] = None, dual_lod_rounding: str = "round"):
    if op not in LAX_OPS:
      raise ValueError(f"FakeQuantOp: op must be one of {sorted(LAX_OPS)}, got {op!r}")
    if (weight_pattern is None) != (weight_scale is None):
      raise ValueError("FakeQuantOp: weight_pattern and weight_scale go together")
    self.op = op
    self.activation_bits = _check_bits(activation_bits)
    self.ema_decay = float(ema_decay)
    self.weight_pattern = weight_pattern
    self.use_running_average = bool(use_running_average)
    self.dual_lod_length = dual_lod_length
    self.dual_lod_rounding = dual_lod_rounding
    self.min = QuantStat(jnp.zeros((), jnp.float32))
    self.max = QuantStat(jnp.zeros((), jnp.float32))
    self.count = QuantStat(jnp.zeros((), jnp.int32))
    self.weight_scale = (None if weight_scale is None else
                         WeightScale(jnp.asarray(weight_scale, jnp.float32)))

  def set_view(self, use_running_average: Optional[bool] = None):
    """Used by ``nnx.view``: ``use_running_average=True`` freezes the calibration."""
    if use_running_average is not None:
      self.use_running_average = use_running_average

  def calibrated_scale(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Updates the statistics of ``x`` (train mode) and returns ``(signed, scale)``."""
    xs = lax.stop_gradient(jnp.asarray(x, jnp.float32))
    bmin, bmax = jnp.min(xs), jnp.max(xs)
    if not self.use_running_average:
      count = self.count[...]
      self.min[...] = ema_update(self.min[...], bmin, count, self.ema_decay)
      self.max[...] = ema_update(self.max[...], bmax, count, self.ema_decay)
      self.count[...] = count + 1
    calibrated = self.count[...] > 0
    amin = jnp.where(calibrated, self.min[...], bmin)
    amax = jnp.where(calibrated, self.max[...], bmax)
    signed, scale = activation_scale(amin, amax, self.activation_bits)
    return lax.stop_gradient(signed), lax.stop_gradient(scale)

  def quantized_weights(self, rhs: jax.Array) -> jax.Array:
    """The kernel as the layer sees it: on its grid (straight-through) or unchanged."""
    if self.weight_pattern is None:
      return rhs
    return _fake_quant(rhs, self.weight_pattern, lax.stop_gradient(self.weight_scale[...]))

  def __call__(self, lhs: jax.Array, rhs: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
    signed, scale = self.calibrated_scale(lhs)
    lhs_q = fake_quant_activation(lhs, signed, scale, self.activation_bits)
    if self.dual_lod_length is not None:
      lhs_q = dual_lod_activation(lhs_q, scale, self.dual_lod_length, self.dual_lod_rounding)
    return LAX_OPS[self.op](lhs_q, self.quantized_weights(rhs), *args, **kwargs)


class TraceOp(nnx.Module):
  """Integer-mode marker: binds ``ebsp_quantized_op`` with the layer path (float semantics)."""

  def __init__(self, op: str, layer: str):
    self.op = op
    self.layer = layer

  def __call__(self, lhs, rhs, *args, **kwargs):
    if kwargs.get("out_sharding", 0) is None:   # nnx passes it; the datapath takes no sharding
      kwargs.pop("out_sharding")
    return quantized_op_p.bind(lhs, rhs, op=self.op, layer=self.layer,
                               kwargs=canonical_kwargs(self.op, args, kwargs))


# ----------------------------------------------------------------------------------------------
def _layers(model: nnx.Module) -> List[Tuple[str, nnx.Module, str, str]]:
  """``[(path, layer, attribute, op)]`` of every hookable layer, in graph order."""
  out = []
  for path, module in nnx.iter_modules(model):
    for cls, attr, op in LAYER_HOOKS:
      if isinstance(module, cls):
        out.append((path_str(path), module, attr, op))
        break
  return out


def _kernel(layer: nnx.Module) -> jax.Array:
  """The kernel the layer passes to its op (``nnx.Conv``'s ``mask`` applied)."""
  kernel = layer.kernel[...]
  mask = getattr(layer, "mask", None)
  return kernel if mask is None else kernel * mask


def quantized_layers(model: nnx.Module) -> Dict[str, FakeQuantOp]:
  """``{layer_path: FakeQuantOp}`` of every layer with fake-quant hooks installed."""
  return {path: getattr(layer, attr) for path, layer, attr, _ in _layers(model)
          if isinstance(getattr(layer, attr), FakeQuantOp)}


def _no_layer_error(fn: str, model: nnx.Module) -> ValueError:
  return ValueError(f"quant.nnx.{fn}: {type(model).__name__} has no nnx.Linear / nnx.Conv "
                    "layer (nothing to quantize)")


def _fit_scales(kernels: Mapping[str, jax.Array], rule: Rule) -> Dict[str, Any]:
  """``{'<layer>/kernel': scale or None}`` with ``tree_fit_scale`` (as for linen params)."""
  return dict(tree_fit_scale(dict(kernels), rule))


def fake_quant(model: nnx.Module, activation_bits: int = 8, *, weight_rule: Optional[Rule] = None,
               ema_decay: float = 0.99, inplace: bool = False,
               dual_lod_length: DualLodLength = None,
               dual_lod_rounding: Optional[str] = None) -> nnx.Module:
  """Fake-quant (training) mode of an nnx model: installs :class:`FakeQuantOp` hooks.

  Args:
    model: an nnx model with ``nnx.Linear`` / ``nnx.Conv`` layers using the default
      ``lax`` ops (or already holding fake-quant hooks, which are replaced: statistics reset).
    activation_bits: bits of every hooked layer's input activation.
    weight_rule: ``(path, kernel) -> BitPattern | None`` over ``'<layer>/kernel'`` paths: the
      kernels it quantizes are projected onto their grid in the forward pass (straight-through
      gradient), per-output-channel scale fitted now with ``tree_fit_scale``. ``None``: kernels
      pass through (projected outside, as with the linen hooks).
    ema_decay: decay of the calibration EMA.
    inplace: install into ``model`` itself; by default a clone (``nnx.clone``: new variables
      sharing the arrays) is returned and ``model`` keeps running in float.
    dual_lod_length, dual_lod_rounding: dual-LOD-aware training, as in
      :func:`ebsp_jax.quant.fake_quant_injection`: one ``L`` for every layer, or
      ``{layer_path: L or None}`` (e.g. ``quant.dual_lod_lengths(rule, nnx.to_pure_dict(
      nnx.state(model, nnx.Param)))``) naming every hooked layer; the rounding is required
      with a length. :func:`to_integer` with ``mode='dual_lod'`` then takes it by default.

  Returns:
    The model with hooks, in train mode for the hooks (calibrating on every call until
    ``model.eval()``).

  Raises:
    ValueError: no hookable layer, a layer with a custom (non-``lax``) op, bad options.
  """
  _check_bits(activation_bits)
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f"ema_decay={ema_decay} must be in [0, 1)")
  target = model if inplace else nnx.clone(model)
  layers = _layers(target)
  if not layers:
    raise _no_layer_error("fake_quant", model)
  for path, layer, attr, op in layers:
    current = getattr(layer, attr)
    if current is not LAX_OPS[op] and not isinstance(current, (FakeQuantOp, TraceOp)):
      raise ValueError(f"quant.nnx.fake_quant: layer '{path}' has a custom {attr}={current!r}; "
                       "only layers using the default lax op can be hooked")
  dual = check_dual_lod(dual_lod_length, dual_lod_rounding, activation_bits)
  lengths = dual.get("dual_lod_length")
  if isinstance(lengths, tuple):
    lengths = dict(lengths)
    missing = [p for p, _, _, _ in layers if p not in lengths]
    if missing:
      raise ValueError(f"quant.nnx.fake_quant: dual_lod_length has no entry for layer(s) "
                       f"{', '.join(missing)} (build it with quant.dual_lod_lengths(rule, "
                       "params), None for float layers)")
  kernels = {f"{path}/kernel": _kernel(layer) for path, layer, _, _ in layers}
  scales = _fit_scales(kernels, weight_rule) if weight_rule is not None else {}
  for path, layer, attr, op in layers:
    key = f"{path}/kernel"
    pattern = weight_rule(key, kernels[key]) if weight_rule is not None else None
    length = lengths.get(path) if isinstance(lengths, dict) else lengths
    hook = FakeQuantOp(op, activation_bits, ema_decay=ema_decay, weight_pattern=pattern,
                       weight_scale=scales.get(key) if pattern is not None else None,
                       dual_lod_length=length, dual_lod_rounding=dual_lod_rounding or "round")
    setattr(layer, attr, nnx.data(hook))
  return target


def to_float(model: nnx.Module, *, inplace: bool = False) -> nnx.Module:
  """Float mode of a hooked model: the layers use plain ``lax`` ops again (same weights)."""
  target = model if inplace else nnx.clone(model)
  for _, layer, attr, op in _layers(target):
    if isinstance(getattr(layer, attr), (FakeQuantOp, TraceOp)):
      setattr(layer, attr, nnx.static(LAX_OPS[op]))
  return target


def refit_weight_scales(model: nnx.Module) -> Dict[str, jax.Array]:
  """Refits the :class:`WeightScale` of every hooked layer to its current kernel (in place).

  Like ADMM's Z-step refit: ``tree_fit_scale`` of the kernel under the hook's pattern.

  Returns:
    ``{layer_path: new scale}``.
  """
  out = {}
  for path, layer, attr, _ in _layers(model):
    hook = getattr(layer, attr)
    if isinstance(hook, FakeQuantOp) and hook.weight_pattern is not None:
      pattern = hook.weight_pattern
      scale = _fit_scales({f"{path}/kernel": _kernel(layer)},
                          lambda p, leaf, pattern=pattern: pattern)[f"{path}/kernel"]
      hook.weight_scale[...] = scale
      out[path] = scale
  return out


# ----------------------------------------------------------------------------------------------
class _TracedModel:
  """What :class:`IntegerModel` traces: ``apply(state, x, **kw)`` of an nnx graph."""

  def __init__(self, graphdef):
    self.graphdef = graphdef

  def apply(self, state, x, **kwargs):
    return nnx.merge(self.graphdef, state)(x, **kwargs)


def _flat_scales(model: nnx.Module, weight_scales: PyTree) -> Dict[str, Any]:
  """``{'<layer>/kernel': scale}`` from a scales tree shaped like the model's ``nnx.Param``s."""
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  if isinstance(weight_scales, nnx.State):
    weight_scales = nnx.to_pure_dict(weight_scales)
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  return {path_str(p): s for (p, _), s in zip(flat, treedef.flatten_up_to(weight_scales))}


def to_integer(model: nnx.Module, *, weight_rule: Optional[Rule] = None,
               weight_scales: Optional[PyTree] = None, activation_bits: Optional[int] = None,
               acc_bits: int = 32, overflow: str = "wrap", mode: str = "exact",
               method: str = "fast", accumulation: str = "auto",
               rounding: Optional[str] = None,
               strict: bool = True,
               call_kwargs: Optional[Mapping[str, Any]] = None) -> IntegerModel:
  """Integer mode (emulated hardware) of a calibrated fake-quant nnx model.

  The nnx counterpart of :func:`ebsp_jax.quant.integer.to_integer`: the same
  :class:`IntegerModel` (``apply``, ``apply(capture=True)``, ``events``, ``records``,
  ``golden.export``), lowered from a trace of the nnx model in eval mode. ``model`` itself is
  not modified.

  Args:
    model: the model returned by :func:`fake_quant`, calibrated (every hooked layer ran at
      least once in train mode).
    weight_rule: the per-kernel pattern rule; ``None``: the hooks' ``weight_pattern``.
    weight_scales: scales tree shaped like the model's params,
      ``nnx.to_pure_dict(nnx.state(model, nnx.Param))`` (``None`` at float leaves; an
      ``nnx.State`` works too), as given to ``tree_project``;
      ``None``: the hooks' :class:`WeightScale` where the hook has the rule's pattern, else a
      fresh ``tree_fit_scale``.
    activation_bits: checked against the hooks' bits (``None``: taken from the hooks).
    acc_bits, overflow, mode, method, accumulation, rounding: datapath options
      (:class:`~ebsp_jax.quant.datapath.DatapathConfig`, ``ebsp_jax.arith``). With
      ``mode='dual_lod'``, ``rounding`` defaults to the hooks' ``dual_lod_rounding`` when the
      model was trained for the dual-LOD datapath (a different one is refused), and is
      required otherwise.
    strict: raise when an op cannot be lowered to integers (else evaluate it in float).
    call_kwargs: extra keyword arguments of ``model(x, ...)``.

  Returns:
    An :class:`~ebsp_jax.quant.integer.IntegerModel`; ``imodel.variables`` is the nnx state
    of the traced clone.

  Raises:
    ValueError: no fake-quant hooks, uncalibrated activations, no weight rule, bad options.
  """
  hooks = quantized_layers(model)
  if not hooks:
    if not _layers(model):
      raise _no_layer_error("to_integer", model)
    raise ValueError(f"quant.nnx.to_integer: {type(model).__name__} has no fake-quant hooks; "
                     "install them with quant.nnx.fake_quant(model) and calibrate first")
  bits = {h.activation_bits for h in hooks.values()}
  if activation_bits is not None:
    _check_bits(activation_bits)
    if bits != {activation_bits}:
      raise ValueError(f"quant.nnx.to_integer: activation_bits={activation_bits} but the model "
                       f"was calibrated with {sorted(bits)}")
  trained = {h.dual_lod_rounding for h in hooks.values() if h.dual_lod_length is not None}
  if mode == "dual_lod" and trained:
    if rounding is None and len(trained) == 1:
      rounding = trained.pop()
    elif rounding is not None and trained != {rounding}:
      raise ValueError(f"quant.nnx.to_integer: rounding={rounding!r} but the model was trained "
                       f"with dual_lod_rounding {sorted(trained)}")
  rounding = dual_lod_rounding(mode, rounding)
  for layer, hook in hooks.items():
    if int(np.asarray(hook.count[...])) == 0:
      raise ValueError(f"quant.nnx.to_integer: activation of layer '{layer}' was never "
                       "calibrated (QuantStat count 0): run the fake-quant model in train mode "
                       "(model.train()) on data first")
  if weight_rule is None:
    patterns = {f"{k}/kernel": h.weight_pattern for k, h in hooks.items()}
    if all(p is None for p in patterns.values()):
      raise ValueError("quant.nnx.to_integer: pass weight_rule= (the hooks were installed "
                       "without one)")
    weight_rule = lambda path, leaf: patterns.get(path)
  layer_objs = {path: layer for path, layer, _, _ in _layers(model)}
  kernels = {f"{k}/kernel": _kernel(layer_objs[k]) for k in hooks}
  given = _flat_scales(model, weight_scales) if weight_scales is not None else {}

  # Offline constants on the CPU backend: the integer program does not depend on the device.
  with jax.default_device(cpu_device()):
    scales = {}
    for key, w in kernels.items():
      pattern, hook = weight_rule(key, w), hooks[key[: -len("/kernel")]]
      if pattern is None:
        scales[key] = None
      elif weight_scales is not None:
        scales[key] = given.get(key)
      elif hook.weight_pattern == pattern:
        scales[key] = hook.weight_scale[...]
      else:
        scales[key] = _fit_scales({key: w}, weight_rule)[key]
    qweights = quantize_weights(kernels, weight_rule, scales)
    formats = {}
    for layer, hook in hooks.items():
      stats = {layer: {ACT_MODULE_NAME: {"min": hook.min[...], "max": hook.max[...],
                                         "count": hook.count[...]}}}
      formats.update(activation_formats(stats, hook.activation_bits))

  layers, weights = integer_layers(qweights, formats, strict=True,
                                   hint="run the fake-quant model in train mode first")

  traced = nnx.clone(model)
  for path, layer, attr, op in _layers(traced):
    if isinstance(getattr(layer, attr), FakeQuantOp):
      setattr(layer, attr, nnx.data(TraceOp(op, path)))
  traced.eval()
  graphdef, state = nnx.split(traced)
  config = IntegerConfig(max(bits), DatapathConfig(acc_bits, overflow, mode, method,
                                                        accumulation, rounding), strict)
  return IntegerModel(_TracedModel(graphdef), state, layers, weights, dict(call_kwargs or {}),
                      config, {k: f for k, f in formats.items() if k not in layers})
