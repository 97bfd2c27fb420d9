"""Post-training quantization of an unmodified Flax model: :func:`quantize`.

::

    qm = ebsp_jax.ptq.quantize(model, variables, calibration_batches,
                               weights=BitPattern(6, 3), activation_bits=8, calibration="mse")
    qm.fake_quant(x)       # float32 logits of the fake-quantized model (jit-able)
    qm.integer(x)          # float32 logits through the bit-exact integer datapath
    qm.quantize_input(x)   # int32 levels the integer program consumes
    qm.integer_codes(x)    # int32 outputs of the last layer; qm.dequantize(codes) = integer(x)

What happens (no training, no gradient):

1. The model's ``nn.Dense`` / ``nn.Conv`` (linen) or ``nnx.Linear`` / ``nnx.Conv`` (nnx) calls
   are hooked (:mod:`ebsp_jax.ptq.hooks`); the model code is not changed.
2. One pass over the calibration batches records each layer's kernel (as the layer uses it:
   masks and dtype promotion applied) and the range of its input; a second pass (``'mse'``,
   ``'percentile'`` or ``bias_correction``) the histogram of ``|input|`` and the mean output
   error the weight quantization causes. Every statistic is of the *float* model.
3. Weights: the rule (``weights``: a ``BitPattern`` for every kernel, or a rule from
   ``make_rule`` with per-layer overrides; ``None`` keeps a layer float) assigns each
   ``'<layer>/kernel'`` its pattern; the scale is ``fit_scale``'s (per output channel by
   default); the kernel is rounded to the grid (``quantize``).
4. Activations: each layer input gets ``uniform(activation_bits)`` (unsigned when its
   calibrated minimum is ``>= 0``) with the clip of :mod:`ebsp_jax.ptq.calibrate`.
5. Optional bias correction (Nagel et al. 2019): the per-channel mean of ``op(x, W_q - W)``
   over the calibration inputs is subtracted from the layer's output, in both modes (in the
   integer program it is folded into the output offset: no run-time op).
6. Fake-quant mode runs the float model with the layer inputs fake-quantized and the weights
   on their grid; integer mode lowers the same hooked model with
   :mod:`ebsp_jax.quant.lowering` into :class:`~ebsp_jax.quant.integer.IntegerModel` (the
   documented integer program: ``ebsp_jax.arith`` datapath, integer requantization, ...).
   The two agree up to the documented one-level rounding flips (``ebsp_jax/quant/README.md``).

A layer the rule keeps in float runs in float in both modes, on its input fake-quantized to
its calibrated format (the integer model lists it in ``float_ops``; ONNX export refuses it).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics import BitPattern, NumberFormat, fake_quant, make_rule, tree_fit_scale
from ebsp_jax.numerics.tree import Rule
from ebsp_jax.ptq import calibrate, hooks
from ebsp_jax.quant.datapath import DatapathConfig
from ebsp_jax.quant.inject import _check_bits, dual_lod_activation
from ebsp_jax.quant.integer import (IntegerConfig, IntegerModel, dual_lod_rounding, integer_layers,
                                    quantize_weights)
from ebsp_jax.quant.lowering import FloatTensor, IntTensor, UnsupportedOp, cpu_device
from ebsp_jax.quant.ops import canonical_kwargs, quantized_op_p

Weights = Union[NumberFormat, Rule]


@dataclasses.dataclass(frozen=True)
class LayerQuant:
  """How one conv/dense was quantized.

  Attributes:
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    weight_pattern: the kernel's ``BitPattern`` (``None``: kept float).
    weight_scale: float32 ``(O,)`` per output channel or ``()`` (``None`` for a float layer).
    act_pattern: the input format ``uniform(bits, signed)``.
    act_scale: the input scale.
    act_min, act_max: the calibrated input range.
    bias_correction: float32 ``(O,)`` subtracted from the output, or ``None``.
  """

  op: str
  weight_pattern: Optional[BitPattern]
  weight_scale: Optional[np.ndarray]
  act_pattern: BitPattern
  act_scale: float
  act_min: float
  act_max: float
  bias_correction: Optional[np.ndarray] = None

  @property
  def clip(self) -> float:
    """The largest input magnitude the format represents (``max_level * act_scale``)."""
    return self.act_pattern.max_level * self.act_scale


def weight_rule(weights: Weights) -> Rule:
  """A rule from ``weights``: a ``NumberFormat`` for every kernel, or a rule as is."""
  if isinstance(weights, NumberFormat) or type(weights) is BitPattern:  # noqa: E721
    return make_rule(weights)
  if callable(weights):
    return weights
  raise TypeError(f"ptq.quantize: weights must be a BitPattern or a rule (make_rule), got "
                  f"{type(weights).__name__} {weights!r}")


def _as_batches(calibration_batches: Any, batch_size: int) -> List[jax.Array]:
  """Calibration data as a list of float arrays ``(N, ...)``.

  Accepts one array (split into ``batch_size`` chunks) or an iterable of arrays, of
  ``(x, ...)`` tuples or of dicts with an ``'image'`` entry.
  """
  if isinstance(calibration_batches, (np.ndarray, jax.Array)):
    x = calibration_batches
    items: Iterable[Any] = [x[i:i + batch_size] for i in range(0, x.shape[0], batch_size)]
  else:
    items = calibration_batches
  out = []
  for b in items:
    if isinstance(b, Mapping):
      if "image" not in b:
        raise ValueError(f"ptq.quantize: a calibration batch dict needs an 'image' entry, got "
                         f"keys {sorted(b)}")
      b = b["image"]
    elif isinstance(b, (tuple, list)):
      b = b[0]
    b = jnp.asarray(b)
    if not jnp.issubdtype(b.dtype, jnp.floating) or b.ndim < 1 or b.shape[0] < 1:
      raise ValueError(f"ptq.quantize: calibration batches must be float arrays (N, ...), got "
                       f"{b.dtype} {tuple(b.shape)}")
    if out and b.shape[1:] != out[0].shape[1:]:
      raise ValueError(f"ptq.quantize: calibration batches differ in shape: "
                       f"{tuple(out[0].shape)} and {tuple(b.shape)}")
    out.append(b)
  if not out:
    raise ValueError("ptq.quantize: calibration_batches is empty")
  return out


def _channel_mean_parts(y: jax.Array) -> Tuple[jax.Array, int]:
  """Sum over every axis but the last, and the number of summed elements per channel."""
  axes = tuple(range(y.ndim - 1))
  return jnp.sum(jnp.asarray(y, jnp.float32), axis=axes), int(np.prod([y.shape[a] for a in axes]))


def _corrected(y: jax.Array, corr: Optional[np.ndarray]) -> jax.Array:
  return y if corr is None else y - jnp.asarray(corr, y.dtype)


class _Marked:
  """The hooked model with every conv/dense marked for the integer lowering
  (``ebsp_quantized_op``) and its bias correction subtracted: what ``IntegerModel`` traces."""

  def __init__(self, hooked, corrections: Mapping[str, np.ndarray]):
    self.hooked = hooked
    self.corrections = dict(corrections)

  def _mark(self, layer, op, lhs, rhs, args, kwargs):
    y = quantized_op_p.bind(lhs, rhs, op=op, layer=layer,
                            kwargs=canonical_kwargs(op, args, kwargs))
    return _corrected(y, self.corrections.get(layer))

  def apply(self, variables, x, **kwargs):
    with hooks.handling(self._mark):
      return self.hooked.apply(variables, x, **kwargs)


class QuantizedModel:
  """A post-training-quantized model (from :func:`quantize`).

  Attributes:
    layers: ``{layer: LayerQuant}`` in call order.
    integer_model: the :class:`~ebsp_jax.quant.integer.IntegerModel` behind :meth:`integer`
      (``records``, ``epilogues``, ``events``, ``golden.export`` work on it).
    apply_kwargs: the keyword arguments of every model call.
    kind: ``'linen'`` or ``'nnx'``.
  """

  def __init__(self, hooked, apply_kwargs: Mapping[str, Any], layers: Dict[str, LayerQuant],
               fq_weights: Mapping[str, np.ndarray], integer_model: IntegerModel):
    self._hooked = hooked
    self.kind = hooked.kind
    self.apply_kwargs = dict(apply_kwargs)
    self.layers = layers
    self._fq_weights = {k: jnp.asarray(v) for k, v in fq_weights.items()}
    self.integer_model = integer_model
    self._dual_lod = integer_model.config.datapath.mode == "dual_lod"
    self._output_meta: Optional[Tuple[np.ndarray, np.ndarray]] = None
    self._input_layer: Optional[str] = None
    self._fake = jax.jit(self._fake_impl)
    self._float = jax.jit(self._float_impl)
    self._codes = jax.jit(self._codes_impl)
    self._input = jax.jit(self._input_impl)

  # --- the float and fake-quant models ------------------------------------------------------
  def _forward(self, x):
    return self._hooked.apply(self._hooked.variables, x, **self.apply_kwargs)

  def _fake_op(self, layer, op, lhs, rhs, args, kwargs):
    lq = self.layers[layer]
    scale = np.float32(lq.act_scale)
    x = fake_quant(jnp.asarray(lhs), lq.act_pattern, scale)
    if self._dual_lod and lq.weight_pattern is not None:
      x = dual_lod_activation(x, jnp.asarray(scale, x.dtype), lq.weight_pattern.length,
                              self.integer_model.config.datapath.rounding)
    w = self._fq_weights.get(layer)
    w = rhs if w is None else w.astype(rhs.dtype)
    return _corrected(hooks.lax_call(op, x, w, args, kwargs), lq.bias_correction)

  def _fake_impl(self, x):
    with hooks.handling(self._fake_op):
      return jnp.asarray(self._forward(x), jnp.float32)

  def _float_impl(self, x):
    with hooks.handling(None):
      return jnp.asarray(self._forward(x), jnp.float32)

  def fake_quant(self, x: jax.Array) -> jax.Array:
    """Logits of the fake-quantized model (float32; jitted, and jit-able).

    Args:
      x: the model's float input, e.g. NHWC ``(N, H, W, C)``.
    """
    return self._fake(x)

  def float_model(self, x: jax.Array) -> jax.Array:
    """Logits of the original float model (float32; the reference)."""
    return self._float(x)

  # --- the integer model --------------------------------------------------------------------
  def integer(self, x: jax.Array) -> jax.Array:
    """Logits through the bit-exact integer datapath (float32: the dequantized int32 outputs
    of the last layer, ``dequantize(integer_codes(x))``)."""
    return self.integer_model.apply(x)

  def _single_output(self, outs) -> IntTensor:
    if len(outs) != 1:
      raise hooks.CannotQuantize(f"ptq: the model returns {len(outs)} arrays; integer_codes "
                                 "needs exactly one (the logits)")
    out = outs[0]
    if isinstance(out, FloatTensor):
      raise hooks.CannotQuantize("ptq: the model's output is computed in float (after a layer "
                                 "the rule keeps float, or a float op: see "
                                 "integer_model.float_ops); integer_codes needs an integer "
                                 "output")
    if not isinstance(out, IntTensor):
      raise hooks.CannotQuantize("ptq: the model's output does not depend on its input")
    return out

  def _codes_impl(self, x):
    outs, _, _ = self.integer_model.interpret(x, raw=True)
    out = self._single_output(outs)
    self._output_meta = (np.asarray(out.m, np.float32), np.asarray(out.o, np.float32))
    return out.q

  def integer_codes(self, x: jax.Array) -> jax.Array:
    """The int32 outputs of the last layer before dequantization (jitted).

    ``logits = output_scale * codes + output_offset`` (:meth:`dequantize`), with per-class
    constants (the last layer's scales, its bias folded into the offset).
    """
    return self._codes(x)

  @property
  def output_scale_offset(self) -> Tuple[np.ndarray, np.ndarray]:
    """``(scale, offset)`` float32 arrays broadcasting against :meth:`integer_codes`."""
    if self._output_meta is None:
      raise ValueError("ptq: run integer_codes (or export_onnx) once first")
    return self._output_meta

  def dequantize(self, codes: jax.Array) -> jax.Array:
    """``scale * codes + offset`` in float32: the logits :meth:`integer` returns."""
    m, o = self.output_scale_offset
    return codes.astype(jnp.float32) * jnp.asarray(m) + jnp.asarray(o)

  def _find_input_layer(self, records) -> str:
    first = [k for k, r in records.items() if r.input_kind == "float"]
    if len(first) != 1:
      raise hooks.CannotQuantize(
          f"ptq: the network input reaches {len(first)} quantized layers "
          f"({', '.join(first) or 'none'}) without integer requantization; quantize_input and "
          "ONNX export need exactly one")
    return first[0]

  def _input_impl(self, x):
    _, _, interp = self.integer_model.interpret(x, capture=True)
    self._input_layer = self._find_input_layer(interp.records)
    return interp.captured[self._input_layer]["input"]

  def quantize_input(self, x: jax.Array) -> jax.Array:
    """The int32 levels of the network input that the integer program consumes: the input of
    the first quantized layer, ``quantize(x', act_format, act_scale)`` with ``x'`` the float
    input after any float ops that precede that layer (e.g. a flatten). Jitted."""
    return self._input(x)

  @property
  def input_layer(self) -> str:
    """The quantized layer that consumes the network input (known after
    :meth:`quantize_input` ran once)."""
    if self._input_layer is None:
      raise ValueError("ptq: run quantize_input once first")
    return self._input_layer

  def summary(self) -> str:
    """One line per layer: op, weight format and scale range, input format and clip."""
    lines = [f"{'layer':<28} {'op':<5} {'weights':<8} {'w scale':<19} {'input':<8} "
             f"{'clip':>9} {'range':>21} bias corr"]
    for name, lq in self.layers.items():
      op = "conv" if lq.op == "conv_general_dilated" else "dot"
      if lq.weight_pattern is None:
        w, ws = "float", "-"
      else:
        s = np.asarray(lq.weight_scale)
        w, ws = str(lq.weight_pattern), f"{s.min():.3g}..{s.max():.3g}"
      bc = "-" if lq.bias_correction is None else f"|.|max {np.abs(lq.bias_correction).max():.3g}"
      lines.append(f"{name:<28} {op:<5} {w:<8} {ws:<19} {str(lq.act_pattern):<8} "
                   f"{lq.clip:>9.4g} [{lq.act_min:>9.3g}, {lq.act_max:>9.3g}] {bc}")
    return "\n".join(lines)


def quantize(model: Any, variables: Optional[Mapping[str, Any]], calibration_batches: Any, *,
             weights: Weights = BitPattern(6, 3), activation_bits: int = 8,
             calibration: str = "mse", percentile: float = 99.99, num_bins: int = 2048,
             bias_correction: bool = False, per_channel: bool = True, acc_bits: int = 32,
             overflow: str = "wrap", mode: str = "exact", rounding: Optional[str] = None,
             method: str = "fast", accumulation: str = "auto",
             strict: bool = True, apply_kwargs: Optional[Mapping[str, Any]] = None,
             batch_size: int = 256) -> QuantizedModel:
  """Post-training quantization of an unmodified Flax model (see the module docstring).

  Args:
    model: a ``flax.linen.Module`` or a ``flax.nnx.Module`` built from ``nn.Dense`` /
      ``nn.Conv`` (``nnx.Linear`` / ``nnx.Conv``), batch norm, pooling, ReLU/ReLU6, residual
      adds, reshapes, ... (what :mod:`ebsp_jax.quant.lowering` lowers).
    variables: linen: ``model.init(...)``'s variables (``params``, ``batch_stats``); nnx:
      ``None``.
    calibration_batches: float inputs: one array ``(N, ...)`` (split into ``batch_size``
      chunks) or an iterable of arrays, ``(x, y)`` tuples or ``{'image': x}`` dicts.
    weights: a ``BitPattern`` for every kernel, or a rule ``(path, kernel) -> pattern | None``
      over ``'<layer>/kernel'`` paths (``make_rule`` with ``overrides`` for per-layer
      patterns; ``None``: float layer).
    activation_bits: bits of every layer input.
    calibration: ``'mse'``, ``'minmax'`` or ``'percentile'`` (:mod:`ebsp_jax.ptq.calibrate`).
    percentile: the percentile of ``|x|`` for ``calibration='percentile'``.
    num_bins: histogram bins (``'mse'``, ``'percentile'``).
    bias_correction: subtract the mean output error of the weight quantization per channel.
    per_channel: one weight scale per output channel (else per tensor).
    acc_bits, overflow, mode, rounding, method, accumulation: the datapath
      (:class:`~ebsp_jax.quant.datapath.DatapathConfig`); with ``mode='dual_lod'`` the
      fake-quant mode also cuts each layer input to its weight pattern's length.
    strict: refuse (one line naming it) any op on an activation that the integer lowering
      cannot handle; ``False`` evaluates such ops in float in integer mode (listed in
      ``qm.integer_model.float_ops``). A layer the rule keeps float always runs in float.
    apply_kwargs: keyword arguments of every model call (default ``train=False`` when the
      model's ``__call__`` takes ``train``).
    batch_size: chunk size when ``calibration_batches`` is one array.

  Returns:
    A :class:`QuantizedModel`.

  Raises:
    ValueError: bad options or data (one line); ``hooks.CannotQuantize`` (a ``ValueError``)
      or ``UnsupportedOp`` naming the layer or op the integer lowering cannot handle.
  """
  _check_bits(activation_bits)
  calibrate.check_method(calibration)
  if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 16:
    raise ValueError(f"num_bins={num_bins!r} must be an int >= 16")
  if calibration == "percentile" and not 0 < percentile <= 100:
    raise ValueError(f"percentile={percentile} must be in (0, 100]")
  rule = weight_rule(weights)
  datapath = DatapathConfig(acc_bits, overflow, mode, method, accumulation,
                            dual_lod_rounding(mode, rounding))
  hooked, kwargs = hooks.adapt(model, variables, apply_kwargs)
  batches = _as_batches(calibration_batches, batch_size)
  forward = lambda x: hooked.apply(hooked.variables, x, **kwargs)  # noqa: E731

  calls = hooks.layer_calls(hooked, kwargs, jax.ShapeDtypeStruct(batches[0].shape,
                                                                 batches[0].dtype))
  if not calls:
    raise hooks.CannotQuantize(f"ptq: {type(model).__name__} calls no nn.Dense / nn.Conv "
                               "(nnx.Linear / nnx.Conv) layer: nothing to quantize")
  ops = {c.layer: c.op for c in calls}       # call order, first call of each layer

  # Pass 1: input ranges, and the kernels as the layers use them (masks, dtype promotion).
  observe = jax.jit(lambda x: _ranges_and_kernels(forward, x))
  ranges: Dict[str, calibrate.RangeStats] = {}
  kernels: Dict[str, np.ndarray] = {}
  for i, b in enumerate(batches):
    rng_out, kern_out = observe(b)
    if i == 0:
      kernels = {k: np.asarray(v, np.float32) for k, v in kern_out.items()}
    for layer, (lo, hi) in jax.device_get(rng_out).items():
      ranges[layer] = calibrate.merge_range(ranges.get(layer), lo, hi)

  # Weights: patterns, fitted scales, levels (offline constants on the CPU backend).
  with jax.default_device(cpu_device()):
    keyed = {f"{layer}/kernel" if layer else "kernel": kernels[layer] for layer in ops}
    scales = jax.jit(lambda k: tree_fit_scale(k, rule, per_channel=per_channel))(keyed)
    qweights = quantize_weights(keyed, rule, scales)
  for layer, (_, pattern, _) in qweights.items():
    if not isinstance(pattern, BitPattern):
      raise hooks.CannotQuantize(f"ptq: layer '{layer}': the integer datapath needs a "
                                 f"BitPattern, the rule gave {pattern!r}")
  fq_weights = {layer: (q * (s if s.ndim == 0 else s.reshape((1,) * (q.ndim - 1) + (-1,))))
                .astype(np.float32) for layer, (q, _, s) in qweights.items()}

  # Pass 2: histograms of |input| and the output error of the weight quantization.
  hists: Dict[str, calibrate.Histogram] = {}
  corr_sum: Dict[str, np.ndarray] = {}
  corr_n: Dict[str, int] = {}
  if calibration != "minmax" or bias_correction:
    absmax = {k: np.float32(max(-r.min, r.max)) for k, r in ranges.items()}
    absmax = {k: v if v > 0 else np.float32(1.0) for k, v in absmax.items()}
    deltas = ({k: jnp.asarray(v) for k, v in fq_weights.items()} if bias_correction else {})
    observe2 = jax.jit(lambda x: _histograms_and_errors(
        forward, x, absmax, num_bins, deltas, need_hist=calibration != "minmax"))
    for b in batches:
      h, e = jax.device_get(observe2(b))
      for layer, (counts, zeros) in h.items():
        old = hists.get(layer)
        counts = np.asarray(counts, np.int64)
        hists[layer] = calibrate.Histogram(
            float(absmax[layer]), counts if old is None else old.counts + counts,
            int(zeros) + (0 if old is None else old.zeros))
      for layer, (s, n) in e.items():
        corr_sum[layer] = corr_sum.get(layer, 0.0) + np.asarray(s, np.float64)
        corr_n[layer] = corr_n.get(layer, 0) + int(n)

  layers: Dict[str, LayerQuant] = {}
  formats = {}
  for layer, op in ops.items():
    fmt = calibrate.choose_format(calibration, ranges[layer], activation_bits,
                                  hist=hists.get(layer), percentile=percentile)
    formats[layer] = fmt
    q = qweights.get(layer)
    corr = (corr_sum[layer] / corr_n[layer]).astype(np.float32) if layer in corr_sum else None
    layers[layer] = LayerQuant(op, None if q is None else q[1], None if q is None else q[2],
                               fmt[0], fmt[1], ranges[layer].min, ranges[layer].max, corr)

  ilayers, iweights = integer_layers(qweights, formats, True, "ptq calibration")
  float_layers = [k for k in ops if k not in ilayers]
  config = IntegerConfig(activation_bits, datapath, strict=strict and not float_layers)
  corrections = {k: v.bias_correction for k, v in layers.items()
                 if v.bias_correction is not None}
  imodel = IntegerModel(_Marked(hooked, corrections), hooked.variables, ilayers, iweights,
                        kwargs, config, {k: formats[k] for k in float_layers})
  qm = QuantizedModel(hooked, kwargs, layers, fq_weights, imodel)
  # Lower once now (abstractly), so that an unsupported op fails here, naming it.
  spec = jax.ShapeDtypeStruct(batches[0].shape, batches[0].dtype)
  if config.strict:
    jax.eval_shape(qm._codes_impl, spec)  # pylint: disable=protected-access
  else:
    jax.eval_shape(imodel.apply, spec)
    # With float layers the lowering runs non-strict; unsupported ops on integer activations
    # (listed as "<op> (<reason>)", unlike float layers and ops on their float outputs) are
    # still refused when strict.
    bad = [e for e in imodel.float_ops if re.match(r"^[\w.]+ \(", e)]
    if strict and bad:
      raise UnsupportedOp(f"ptq: integer mode cannot lower {', '.join(bad)}; pass strict=False "
                          "to evaluate it in float")
  return qm


def _ranges_and_kernels(forward, x):
  """``({layer: (min, max) of its input}, {layer: kernel as passed to its op})``."""
  ranges: Dict[str, Tuple[jax.Array, jax.Array]] = {}
  kernels: Dict[str, jax.Array] = {}

  def handler(layer, op, lhs, rhs, args, kwargs):
    lo, hi = calibrate.range_stats(lhs)
    if layer in ranges:
      lo, hi = jnp.minimum(ranges[layer][0], lo), jnp.maximum(ranges[layer][1], hi)
    ranges[layer] = (lo, hi)
    kernels.setdefault(layer, rhs)
    return hooks.lax_call(op, lhs, rhs, args, kwargs)

  with hooks.handling(handler):
    forward(x)
  return ranges, kernels


def _histograms_and_errors(forward, x, absmax, num_bins, fq_weights, need_hist: bool):
  hist: Dict[str, Tuple[jax.Array, jax.Array]] = {}
  err: Dict[str, Tuple[jax.Array, int]] = {}

  def handler(layer, op, lhs, rhs, args, kwargs):
    if need_hist:
      counts, zeros = calibrate.histogram(lhs, jnp.float32(absmax[layer]), num_bins)
      if layer in hist:
        counts, zeros = counts + hist[layer][0], zeros + hist[layer][1]
      hist[layer] = (counts, zeros)
    if layer in fq_weights:
      delta = fq_weights[layer].astype(rhs.dtype) - rhs
      s, n = _channel_mean_parts(hooks.lax_call(op, lhs, delta, args, kwargs))
      if layer in err:
        s, n = s + err[layer][0], n + err[layer][1]
      err[layer] = (s, n)
    return hooks.lax_call(op, lhs, rhs, args, kwargs)

  with hooks.handling(handler):
    forward(x)
  return hist, err
