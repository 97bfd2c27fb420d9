"""Integer mode: a trained fake-quant model as an integer-only network (emulated hardware).

Usage (same model definition, same variables as in fake-quant training)::

    rule = make_rule(BitPattern(6, 3))
    imodel = quant.to_integer('lenet5', variables, weight_rule=rule, weight_scales=scales,
                              activation_bits=8)
    logits = imodel.apply(x)                     # float NHWC in, float32 logits out; jit-compiled
    logits, ints = imodel.apply(x, capture=True) # + per-layer integer tensors

``variables`` holds ``params`` (weights already projected to their grid by ADMM, or float:
they are rounded to the nearest level with ``quantize``), ``batch_stats`` and the calibrated
``quant_stats``. Fake-quant mode with the same ``tree_project(params, rule, scales)`` weights
is what the integer mode reproduces; see :mod:`ebsp_jax.quant.lowering` for which op becomes
which integer op, and ``tests/integer_fashion_mnist_test.py`` for the measured agreement.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax import models
from ebsp_jax.arith import events as arith_events
from ebsp_jax.numerics import BitPattern, on_grid, path_str, quantize, tree_fit_scale
from ebsp_jax.numerics.tree import Rule
from ebsp_jax.quant.calibration import ACT_MODULE_NAME, STATS_COLLECTION, activation_formats
from ebsp_jax.quant.datapath import DatapathConfig
from ebsp_jax.quant.inject import _check_bits
from ebsp_jax.quant.lowering import Interpreter, LayerRecord, QuantLayer, cpu_device
from ebsp_jax.quant.ops import CONV, DOT_GENERAL, canonical_kwargs, quantized_op_p

PyTree = Any


class TraceOp(nn.Module):
  """Injected module of the integer mode: marks a conv/dense in the jaxpr (float semantics).

  It declares the same ``'quant_stats'`` variables as the fake-quant modules (so the trained
  variables apply unchanged) and binds the marker :data:`ebsp_jax.quant.ops.quantized_op_p`
  with the layer's path, which :class:`~ebsp_jax.quant.lowering.Interpreter` lowers to the
  integer datapath.
  """

  op: str = DOT_GENERAL
  activation_bits: int = 8
  ema_decay: float = 0.99

  @nn.compact
  def __call__(self, lhs, rhs, *args, **kwargs):
    for name, dtype in (("min", jnp.float32), ("max", jnp.float32), ("count", jnp.int32)):
      self.variable(STATS_COLLECTION, name, lambda d=dtype: jnp.zeros((), d))
    layer = "/".join(self.scope.path[:-1])
    return quantized_op_p.bind(lhs, rhs, op=self.op, layer=layer,
                               kwargs=canonical_kwargs(self.op, args, kwargs))


def trace_injection(activation_bits: int = 8) -> Dict[str, Any]:
  """Hooks that mark every conv/dense for the integer lowering (float semantics if run)."""
  _check_bits(activation_bits)
  return dict(
      dot_general_cls=functools.partial(TraceOp, op=DOT_GENERAL, name=ACT_MODULE_NAME,
                                        activation_bits=activation_bits),
      conv_general_dilated_cls=functools.partial(TraceOp, op=CONV, name=ACT_MODULE_NAME,
                                                 activation_bits=activation_bits),
  )


#: The integer-mode hooks (AQT-style name): ``models.get_model(name, **integer_injection(8))``
#: gives the model that :func:`to_integer` lowers; run directly it computes in float.
integer_injection = trace_injection


@dataclasses.dataclass(frozen=True)
class IntegerConfig:
  """Options of the integer mode.

  Attributes:
    activation_bits: bits of every conv/dense input.
    datapath: options of the emulated datapath (acc_bits, overflow, mode, method).
    strict: raise on an op that cannot be lowered to integers (else run it in float and list
      it in ``IntegerModel.float_ops``).
  """

  activation_bits: int = 8
  datapath: DatapathConfig = DatapathConfig()
  strict: bool = True


def _leaf_dict(tree: PyTree) -> Dict[str, Any]:
  return {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@functools.partial(jax.jit, static_argnums=1)
def _quantize_checked(w, pattern, scale):
  """``(q, on the grid, off-grid fraction of w, largest |w/scale - q| in levels)``."""
  q = quantize(w, pattern, scale)
  dev = jnp.abs(w / scale - q.astype(w.dtype))
  return q, jnp.all(on_grid(q, pattern)), jnp.mean(dev > 1e-3), jnp.max(dev)


def quantize_weights(params: PyTree, rule: Rule, scales: Optional[PyTree] = None, *,
                     warn_off_grid: bool = False
                     ) -> Dict[str, Tuple[np.ndarray, BitPattern, np.ndarray]]:
  """Integer kernels of every quantized conv/dense.

  Args:
    params: the ``params`` collection.
    rule: ``(path, leaf) -> BitPattern | None``.
    scales: scales tree (``None`` at float leaves) or ``None`` to refit with ``tree_fit_scale``.
    warn_off_grid: with given ``scales``, a ``UserWarning`` names every kernel that is not on
      its grid at them (for params projected outside the model, e.g. by ADMM, as the linen
      fake-quant model expects: such a kernel is rounded here but not in fake-quant mode).

  Returns:
    ``{layer_path: (q, pattern, scale)}`` for every leaf ``<layer_path>/kernel`` the rule
    quantizes: ``q`` int32 numpy levels (kernel shape), ``scale`` float32 numpy ``(O,)`` per
    output channel (the kernel's last axis) or ``()``.
  """
  given = scales is not None
  if scales is None:
    scales = tree_fit_scale(params, rule)
  leaves = _leaf_dict(params)
  flat_scales = dict(zip(leaves, jax.tree_util.tree_structure(params).flatten_up_to(scales)))
  out = {}
  for path, w in leaves.items():
    if not path.endswith("kernel"):
      continue
    pattern = rule(path, w)
    if pattern is None:
      continue
    scale = flat_scales[path]
    if scale is None:
      raise ValueError(f"no weight scale for quantized leaf '{path}'")
    q, ok, off, worst = _quantize_checked(w, pattern, scale)
    if warn_off_grid and given and float(off) > 0:
      warnings.warn(f"quantize_weights: kernel '{path}' is not on the {pattern} grid at the given "
                    f"scales ({100 * float(off):.1f}% of its weights off by up to "
                    f"{float(worst):.2f} levels): the integer mode rounds them. If the params "
                    "were finalized with refit scales, pass those (admm.finalize(..., "
                    "return_scales=True)) or weight_scales=None", stacklevel=3)
    q = np.asarray(q, np.int32)
    if not bool(ok):  # pragma: no cover - quantize guarantees it
      raise ValueError(f"weights of '{path}' are not on the grid of {pattern}")
    s = np.asarray(scale, np.float32)
    if s.size > 1:
      if s.shape[-1] != w.shape[-1] or s.size != w.shape[-1]:
        raise ValueError(f"scale of '{path}' has shape {s.shape}: integer mode needs one scale "
                         "per tensor or per output channel (the kernel's last axis)")
      s = s.reshape(-1)
    else:
      s = s.reshape(())
    layer = path[: -len("kernel")].rstrip("/")
    out[layer] = (q, pattern, s)
  return out


class IntegerModel:
  """A network lowered to integer ops; call :meth:`apply` with float inputs.

  Attributes:
    layers: ``{layer_path: QuantLayer}`` (weight/activation formats and scales).
    records: ``{layer_path: LayerRecord}`` from the last lowering (requantization constants,
      accumulator bounds); filled on the first :meth:`apply` for an input shape.
    float_ops: ops of the last lowering evaluated in float on activations (empty when the
      network is integer-only apart from input quantization and output dequantization).
    epilogues: ``{layer_path: [op dicts]}``: the run-time integer ops applied to each layer's
      accumulator until the next requantization (bias fold, ReLU clamp, pooling, residual
      rescale/add, ...), with their small constants.
    float_inputs: ``{layer_path: (activation format, scale)}`` of the calibrated layers the
      weight rule keeps in float (with ``strict=False``): their input is fake-quantized to
      that format before the float op, as in the fake-quant model that was trained.
  """

  def __init__(self, model: nn.Module, variables: Mapping[str, Any],
               layers: Mapping[str, QuantLayer], weights: Mapping[str, np.ndarray],
               apply_kwargs: Mapping[str, Any], config: IntegerConfig,
               float_inputs: Optional[Mapping[str, Tuple[BitPattern, float]]] = None):
    self.model = model
    self.float_inputs = dict(float_inputs or {})
    self.variables = variables
    self.layers = dict(layers)
    self.weights = {k: jnp.asarray(v, jnp.int32) for k, v in weights.items()}
    self.apply_kwargs = dict(apply_kwargs)
    self.config = config
    self.records: Dict[str, LayerRecord] = {}
    self.float_ops: list = []
    self.epilogues: Dict[str, list] = {}
    self._jitted = jax.jit(self._run, static_argnames=("capture", "with_stats"))

  def interpret(self, x: jax.Array, *, weights: Optional[Mapping[str, jax.Array]] = None,
                raw: bool = False, capture: bool = False, with_stats: bool = False,
                **interpreter_kwargs: Any):
    """Traces the model and runs its integer program on ``x`` (not jitted; traceable).

    Args:
      x: the float input.
      weights: ``{layer: int32 levels}`` (default: this model's).
      raw: return the interpreter's values (``IntTensor`` with int32 ``q``, ``m``, ``o``)
        instead of the dequantized outputs.
      capture, with_stats: as in :meth:`apply`.
      **interpreter_kwargs: further :class:`~ebsp_jax.quant.lowering.Interpreter` options
        (``contraction``, ``input_levels``).

    Returns:
      ``(outputs, out_shape, interpreter)``: the flat list of outputs, the output pytree's
      shape (``jax.eval_shape`` form) and the :class:`Interpreter` (records, captured tensors,
      overflow counts). Also updates :attr:`records`, :attr:`float_ops`, :attr:`epilogues`.
    """
    fn = lambda xx: self.model.apply(self.variables, xx, **self.apply_kwargs)
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(
        jax.ShapeDtypeStruct(x.shape, x.dtype))
    interp = Interpreter(self.layers, self.weights if weights is None else weights,
                         config=self.config.datapath, strict=self.config.strict,
                         capture=capture, with_stats=with_stats,
                         float_inputs=self.float_inputs, **interpreter_kwargs)
    outs = interp.run(closed, x, raw=raw)
    self.records, self.float_ops = interp.records, interp.float_ops
    self.epilogues = interp.epilogues
    return outs, out_shape, interp

  def _run(self, weights, x, capture: bool = False, with_stats: bool = False):
    outs, out_shape, interp = self.interpret(x, weights=weights, capture=capture,
                                             with_stats=with_stats)
    out = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)
    extra = ((interp.captured,) if capture else ()) + ((interp.overflow,) if with_stats else ())
    return (out, *extra) if extra else out

  def apply(self, x: jax.Array, *, capture: bool = False, with_stats: bool = False):
    """Runs the integer network.

    Args:
      x: float input (e.g. NHWC ``(N, H, W, C)`` float32), the same the float model takes.
      capture: also return the integer tensors of every layer.
      with_stats: also return ``{layer: int32 scalar}``, the number of accumulator outputs of
        each conv/dense that overflowed ``acc_bits`` (the datapath's ``overflow`` policy
        was applied to them).

    Returns:
      float32 outputs (logits ``(N, num_classes)``: the dequantized int32 accumulator of the
      last layer plus its folded bias); with ``capture``, also ``{layer: {'input': int32
      levels, 'acc': int32 accumulator, 'pre': int32 requantizer input}}``; with
      ``with_stats``, also the overflow counts (last). ``(out, captured, counts)`` with both.

    Raises:
      OverflowError: ``overflow='error'`` and some accumulator output overflowed (one line:
        the layers and their counts). The check needs concrete counts: under an outer
        ``jax.jit`` use ``with_stats=True`` instead.
    """
    if self.config.datapath.overflow != "error":
      return self._jitted(self.weights, x, capture=capture, with_stats=with_stats)
    res = self._jitted(self.weights, x, capture=capture, with_stats=True)
    counts = res[-1]
    if any(isinstance(c, jax.core.Tracer) for c in counts.values()):
      raise ValueError("overflow='error' checks the overflow counts after the call, which "
                       "needs concrete values: call apply outside jax.jit, or use "
                       "with_stats=True")
    bad = {k: int(c) for k, c in counts.items() if int(c)}
    if bad:
      raise OverflowError(f"overflow='error': accumulator outputs overflow "
                          f"{self.config.datapath.acc_bits} bits in {len(bad)} layer(s): "
                          + ", ".join(f"{k}: {n}" for k, n in bad.items()))
    if with_stats:
      return res
    return res[0] if not capture else res[:2]

  __call__ = apply

  def events(self, x: jax.Array) -> Dict[str, Dict[str, Any]]:
    """Datapath event counts per layer on input ``x`` (``ebsp_jax.arith.events``).

    Returns:
      ``{layer_path: events dict}`` (LOD uses, LUT fills/reads, shifts by amount, adds,
      zero-weight products, accumulator high-water mark, ...: see ``ebsp_jax.arith.events``).
    """
    with arith_events.recording() as log:
      out = jax.jit(self._run)(self.weights, x)   # a fresh trace, so that every call records
      jax.block_until_ready(out)
    return {ev["name"]: ev for ev in log}


def _accepts(module: nn.Module, arg: str) -> bool:
  try:
    return arg in inspect.signature(module.__call__).parameters
  except (TypeError, ValueError):  # pragma: no cover
    return False


def to_integer(model: Union[str, nn.Module], variables: Mapping[str, Any], *, weight_rule: Rule,
               weight_scales: Optional[PyTree] = None, activation_bits: int = 8,
               acc_bits: int = 32, overflow: str = "wrap", mode: str = "exact",
               method: str = "fast", accumulation: str = "auto",
               rounding: Optional[str] = None,
               strict: bool = True,
               model_kwargs: Optional[Mapping[str, Any]] = None,
               apply_kwargs: Optional[Mapping[str, Any]] = None) -> IntegerModel:
  """Builds the integer-mode network of a trained model.

  Args:
    model: a registered model name (``ebsp_jax.models.get_model``) or a Flax module with the
      ``dot_general_cls`` / ``conv_general_dilated_cls`` fields (it is cloned with the
      integer-mode hooks; its own hooks are ignored).
    variables: ``{'params', 'quant_stats', ['batch_stats']}`` of the model trained in
      fake-quant mode (every conv/dense input calibrated).
    weight_rule: the per-leaf pattern rule used in training.
    weight_scales: the weight scales tree (as given to ``tree_project``), or ``None`` to refit
      with ``tree_fit_scale`` (only identical to training if training used that fit).
    activation_bits: activation bits used in training.
    acc_bits, overflow, mode, method, accumulation, rounding: datapath options
      (:class:`~ebsp_jax.quant.datapath.DatapathConfig`, ``ebsp_jax.arith``). ``rounding``
      is required with ``mode='dual_lod'`` (the one used in training, if the model was
      trained for that datapath) and unused otherwise.
    strict: raise when an op cannot be lowered to integers (else evaluate it in float).
    model_kwargs: extra arguments of ``get_model`` (``num_classes`` defaults to the size of
      ``params['head']['bias']``).
    apply_kwargs: extra arguments of ``model.apply`` (default ``train=False`` when accepted).

  Returns:
    An :class:`IntegerModel`.

  Raises:
    ValueError: uncalibrated activations, a quantized layer without scale, bad options
      (``activation_bits``; the datapath options are checked by :class:`DatapathConfig`).
  """
  _check_bits(activation_bits)
  if "params" not in variables:
    raise ValueError("to_integer: variables must hold 'params' (and 'quant_stats')")
  hooks = trace_injection(activation_bits)
  if isinstance(model, str):
    kw = dict(model_kwargs or {})
    if "num_classes" not in kw:
      try:
        kw["num_classes"] = int(variables["params"]["head"]["bias"].shape[-1])
      except (KeyError, TypeError) as e:
        raise ValueError("to_integer: pass model_kwargs={'num_classes': ...}") from e
    module = models.get_model(model, **kw, **hooks)
  else:
    fields = {f.name for f in dataclasses.fields(model)}
    present = {k: v for k, v in hooks.items() if k in fields}
    if not present:
      raise ValueError(f"to_integer: {type(model).__name__} has neither a dot_general_cls nor a "
                       "conv_general_dilated_cls field: declare the one(s) its nn.Dense / "
                       "nn.Conv layers use and pass them through (see ebsp_jax.quant)")
    module = model.clone(**present)
  if apply_kwargs is None:
    apply_kwargs = {"train": False} if _accepts(module, "train") else {}
  # Offline constants on the CPU backend: the integer program does not depend on the device.
  with jax.default_device(cpu_device()):
    formats = activation_formats(variables, activation_bits)
    qweights = quantize_weights(variables["params"], weight_rule, weight_scales,
                                warn_off_grid=True)
  layers, weights = integer_layers(qweights, formats, strict,
                                   "train with quant.fake_quant_injection")
  config = IntegerConfig(activation_bits, DatapathConfig(
      acc_bits, overflow, mode, method, accumulation, dual_lod_rounding(mode, rounding)), strict)
  return IntegerModel(module, variables, layers, weights, apply_kwargs, config,
                      {k: f for k, f in formats.items() if k not in layers})


def dual_lod_rounding(mode: str, rounding: Optional[str]) -> str:
  """The datapath's ``rounding``: required (no default) with ``mode='dual_lod'``."""
  if rounding is None:
    if mode == "dual_lod":
      raise ValueError("to_integer: mode='dual_lod' needs rounding='truncate' or 'round' (no "
                       "default: use the rounding the model was trained with, "
                       "fake_quant_injection's dual_lod_rounding)")
    return "truncate"
  return rounding


def integer_layers(qweights: Mapping[str, Tuple[np.ndarray, BitPattern, Any]],
                   formats: Mapping[str, Tuple[BitPattern, float]], strict: bool,
                   hint: str) -> Tuple[Dict[str, QuantLayer], Dict[str, np.ndarray]]:
  """The lowering's per-layer description from quantized weights and activation formats.

  Args:
    qweights: ``{layer: (int weights, pattern, scale)}`` from :func:`quantize_weights`.
    formats: ``{layer: (activation pattern, scale)}`` from ``activation_formats``.
    strict: raise for a quantized layer without calibrated activation (else keep it float).
    hint: how to calibrate, appended to that error.

  Returns:
    ``({layer: QuantLayer}, {layer: int weights})``.
  """
  layers, weights = {}, {}
  for layer, (q, pattern, scale) in qweights.items():
    if layer not in formats:
      if strict:
        raise ValueError(f"to_integer: layer '{layer}' has no calibrated activation ({hint})")
      continue
    act_pattern, act_scale = formats[layer]
    bound = np.sum(np.abs(q.astype(np.int64)), axis=tuple(range(q.ndim - 1)))
    layers[layer] = QuantLayer(pattern, scale, bound, act_pattern, act_scale)
    weights[layer] = q
  return layers, weights
