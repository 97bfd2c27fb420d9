"""Lowering of a Flax model's jaxpr to an integer-only program (the emulated hardware).

The model is traced with a marker injected into every conv/dense (each layer shows up in the
jaxpr as one ``ebsp_quantized_op`` equation carrying its layer path: :mod:`ebsp_jax.quant.ops`,
``integer.TraceOp``), and the jaxpr is
then *interpreted* (:class:`Interpreter`) on integer tensors. Every activation that depends on
the input lives as an :class:`IntTensor`::

    real value  ≈  m * q + o          q: int32 array (traced), m > 0 and o: float constants

where ``m`` (a scale) and ``o`` (an offset) are compile-time constants broadcastable to ``q``
(per channel, or per element after a flatten). Float ops on ``m``/``o`` are offline constant
arithmetic (like TFLite's converter); the run-time ops on ``q`` are integer. Per primitive:

===========================  ============================================================
conv / dense (the hook)      input requantized to the layer's activation format (below),
                             weights as int levels of their ``BitPattern``, exact int32
                             accumulation through ``ebsp_jax.arith``: ``m = s_act * s_w``
add/sub of a constant        ``o += c`` (bias, batch-norm shift): no run-time op
mul/div by a constant        ``m *= |c|``, ``o *= c``; negative ``c`` flips the sign of ``q``
                             (batch-norm scale: the integer codes are unchanged)
neg                          ``q = -q``
add/sub of two activations   residual add: both rescaled with an integer multiplier and
                             shift (round half up) to a common scale, the finest at which
                             the worst-case sum fits 30 bits; then int32 add
max/min with a constant      ReLU / ReLU6 / clamp: the offset is first folded into an int32
                             bias with ``k`` fractional bits, ``q = (q << k) + round(o/m *
                             2**k)`` (``k <= 16``, as large as the static bound of ``|q|``
                             allows), then integer max/min with ``round(c/m)`` (exact for
                             ``c == 0``)
max pool (reduce_window_max) integer max (per-channel ``m`` commutes with max)
sum pool / mean / avg pool   int32 sums (pre-shifted right when the static bound would
                             overflow 31 bits); the division goes into ``m``
reshape, transpose, slice,   integer data movement; ``m``/``o`` follow the same movement
concatenate, pad, squeeze,
broadcast, convert (f->f)
===========================  ============================================================

Requantization (the input of every conv/dense): ``q_in = clip(mul_shift_round((q << k) + B,
M, n), lo, hi)`` with the int32 bias ``B = round(o/m * 2**k)`` (``k`` fractional bits as
above), ``M * 2**-n ≈ m / (2**k * s_act)`` (31-bit multiplier, :mod:`ebsp_jax.arith.requant`),
``[lo, hi]`` the activation format's range (``lo = 0`` for
unsigned: this clamp is the ReLU). The only float ops at run time are the quantization of the
network input (``quantize(x, act_format, s)``, exactly as in fake-quant mode) and the
dequantization of the outputs (``m * q + o``). Any other op on an activation is either an error
(``strict=True``) or evaluated in float on the dequantized tensor and listed in
``Interpreter.float_ops`` (``strict=False``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from ebsp_jax.arith import requant
from ebsp_jax.numerics import BitPattern, fake_quant, quantize
from ebsp_jax.quant.datapath import DatapathConfig, int_op
from ebsp_jax.quant.ops import CONV, LAX_OPS, quantized_op_p

INT32_BOUND = (1 << 31) - 1


# ----------------------------------------------------------------------------------------------
# Values of the interpreter.
@dataclasses.dataclass
class IntTensor:
  """An integer activation: ``real ≈ m * q + o``.

  Attributes:
    q: int32 array ``(N, ...)`` (batch first), traced.
    m: float64 numpy array, positive, ``ndim == q.ndim``, ``shape[0] == 1``, each other dim 1
      or ``q``'s.
    o: float64 numpy array, same rules as ``m``.
    bound: static upper bound of ``|q|`` (worst case over all inputs).
    layer: the last layer this tensor came from (for reports).
  """

  q: jax.Array
  m: np.ndarray
  o: np.ndarray
  bound: int
  layer: str = ""

  @property
  def shape(self):
    return self.q.shape


@dataclasses.dataclass
class FloatTensor:
  """A float activation (the network input before its first quantization, or a fallback)."""

  x: jax.Array


class UnsupportedOp(ValueError):
  """An op on an integer activation that the lowering does not handle."""


def cpu_device():
  """This process's CPU device (multi-host safe): offline integer constants are computed there,
  so that the integer program does not depend on the accelerator's float rounding."""
  return jax.local_devices(backend="cpu")[0]


def _meta(c, ndim: int) -> np.ndarray:
  """A constant as float64 metadata of rank ``ndim`` with a batch dim of 1."""
  c = np.asarray(c, np.float64)
  if c.ndim > ndim:
    raise UnsupportedOp(f"constant of rank {c.ndim} against an activation of rank {ndim}")
  c = c.reshape((1,) * (ndim - c.ndim) + c.shape)
  if ndim and c.shape[0] != 1:
    raise UnsupportedOp("constant varies along the batch axis")
  return c


def _full(meta: np.ndarray, shape) -> np.ndarray:
  return np.broadcast_to(meta, (1,) + tuple(shape[1:]))


def _compact(meta: np.ndarray) -> np.ndarray:
  """Reduces axes along which ``meta`` is constant to size 1."""
  for ax in range(1, meta.ndim):
    if meta.shape[ax] > 1:
      first = np.take(meta, [0], axis=ax)
      if np.all(meta == first):
        meta = first
  return np.ascontiguousarray(meta)


def _i32const(a) -> jax.Array:
  return jnp.asarray(np.asarray(a, np.int64).astype(np.int32))


def _round_int(x: np.ndarray) -> np.ndarray:
  """Round half away from zero (offline constants), as int64."""
  return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class QuantLayer:
  """Static description of one quantized conv/dense (what :class:`Interpreter` needs).

  Attributes:
    weight_pattern: the kernel's ``BitPattern``.
    weight_scale: float32 numpy scale, shape ``(O,)`` per output channel or ``()``.
    weight_bound: int64 numpy ``(O,)``: ``sum |q_w|`` over the contraction of each channel.
    act_pattern: the input activation format ``uniform(bits, signed)``.
    act_scale: float, the calibrated input scale.
  """

  weight_pattern: BitPattern
  weight_scale: np.ndarray
  weight_bound: np.ndarray
  act_pattern: BitPattern
  act_scale: float


@dataclasses.dataclass
class LayerRecord:
  """What happened at one quantized layer during a lowering (filled by :class:`Interpreter`).

  Attributes:
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    kwargs: the ``lax`` arguments.
    input_kind: ``'float'`` (network input, quantized in float) or ``'requant'``.
    acc_shift, bias, multiplier, shift: requantization constants of the input (``None`` for a
      float input): ``input = clip(mul_shift_round((pre << acc_shift) + bias, multiplier,
      shift), lo, hi)``; the arrays are int32-valued numpy, broadcastable to the input.
    acc_bound: static bound of ``|acc|`` (worst case); ``acc_bound_bits`` its signed width.
  """

  op: str
  kwargs: Tuple
  input_kind: str
  acc_shift: Optional[int]
  bias: Optional[np.ndarray]
  multiplier: Optional[np.ndarray]
  shift: Optional[np.ndarray]
  acc_bound: int

  @property
  def acc_bound_bits(self) -> int:
    return int(self.acc_bound).bit_length() + 1


_SUBJAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def sub_jaxpr(eqn) -> Optional[Tuple[Any, List[Any]]]:
  """``(jaxpr, consts)`` of an equation that calls one (``pjit``, ``custom_jvp_call``, ...),
  else ``None``."""
  sub = next((eqn.params[p] for p in _SUBJAXPR_PARAMS if p in eqn.params), None)
  if sub is None:
    return None
  if isinstance(sub, jcore.ClosedJaxpr):
    return sub.jaxpr, list(sub.consts)
  return sub, []


def walk_jaxpr(jaxpr, consts: Sequence[Any], args: Sequence[Any],
               eqn_fn: Callable[[Any, List[Any]], List[Any]],
               keep_const: Callable[[Any], bool] = lambda c: False,
               eqns: Optional[Sequence[Any]] = None) -> List[Any]:
  """Evaluates ``jaxpr`` on ``args`` with ``eqn_fn(eqn, inputs) -> outputs`` per equation.

  Literals and constants are numpy arrays (a constant for which ``keep_const`` holds is kept
  as it is); ``eqns`` (default: all) are the equations to evaluate, in order.
  """
  env: Dict[Any, Any] = {}

  def read(v):
    if isinstance(v, jcore.Literal):
      return np.asarray(v.val)
    return env[v]

  for v, c in zip(jaxpr.constvars, consts):
    env[v] = c if keep_const(c) else np.asarray(c)
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  for eqn in jaxpr.eqns if eqns is None else eqns:
    outs = eqn_fn(eqn, [read(v) for v in eqn.invars])
    for v, o in zip(eqn.outvars, outs):
      if not isinstance(v, jcore.DropVar):
        env[v] = o
  return [read(v) for v in jaxpr.outvars]
# Ops that log their run-time integer work themselves (or have none: constants only).
_SELF_LOGGING = ("add", "sub", "mul", "div", "neg", "max", "min", "clamp",
                 "convert_element_type", "copy", "copy_p", "reduce_precision")
_LOGGED_PARAMS = ("window_dimensions", "window_strides", "padding", "axes", "new_sizes",
                  "permutation", "dimensions", "start_indices", "limit_indices", "strides",
                  "shape", "broadcast_dimensions", "padding_config", "dimension")
_IDENTITY = {"copy", "copy_p", "reduce_precision", "optimization_barrier"}


class Interpreter:
  """Interprets a traced model jaxpr on integer tensors (one instance per lowering).

  Args:
    layers: ``{layer_path: QuantLayer}``.
    weights: ``{layer_path: int32 kernel levels}`` (arrays or tracers: the run-time operands).
    config: datapath options.
    strict: raise on any op on an activation that is not integer-lowered (else evaluate it in
      float on the dequantized tensor and list it in ``float_ops``).
    capture: keep the integer tensors of every layer in ``captured``.
    with_stats: count, per layer, the accumulator outputs that overflow ``acc_bits``
      (``overflow``: ``{layer: int32 scalar}``).
    float_inputs: ``{layer_path: (activation format, scale)}`` of calibrated layers kept in
      float (``strict=False``): their input is fake-quantized as in the fake-quant model
      (the format's levels times the scale) before the float op.
    contraction: the function that runs each quantized conv/dense on integers, with
      :func:`~ebsp_jax.quant.datapath.int_op`'s signature (default: ``int_op``); e.g. a wrapper
      that also marks the call for an exporter.
    input_levels: ``{layer_path: int32 levels}``: for these layers, the levels of a float input
      (the network input) are taken as given instead of ``quantize(x, ...)`` (to run the
      integer program from the quantized input, e.g. for export).
  """

  def __init__(self, layers: Mapping[str, QuantLayer], weights: Mapping[str, jax.Array], *,
               config: DatapathConfig = DatapathConfig(), strict: bool = True,
               capture: bool = False, with_stats: bool = False,
               float_inputs: Optional[Mapping[str, Tuple[BitPattern, float]]] = None,
               contraction: Optional[Callable[..., Any]] = None,
               input_levels: Optional[Mapping[str, Any]] = None):
    self.layers = layers
    self.contraction = int_op if contraction is None else contraction
    self.input_levels = dict(input_levels or {})
    self.float_inputs = dict(float_inputs or {})
    self.weights = weights
    self.config = config
    self.strict = strict
    self.capture = capture
    self.float_ops: List[str] = []
    self.records: Dict[str, LayerRecord] = {}
    # Run-time integer ops applied to each layer's output until the next requantization.
    self.epilogues: Dict[str, List[Dict[str, Any]]] = {}
    self.captured: Dict[str, Dict[str, jax.Array]] = {}
    self.with_stats = with_stats
    self.overflow: Dict[str, jax.Array] = {}

  # --- entry --------------------------------------------------------------------------------
  def run(self, closed_jaxpr, *args, raw: bool = False) -> List[Any]:
    """Runs the jaxpr on float inputs; returns float outputs (dequantized), or with ``raw``
    the interpreter's values themselves (:class:`IntTensor`: int32 ``q`` with its ``m``, ``o``;
    :class:`FloatTensor`; numpy constants)."""
    outs = self._eval(closed_jaxpr.jaxpr, closed_jaxpr.consts,
                      [FloatTensor(jnp.asarray(a)) for a in args])
    return list(outs) if raw else [self._to_float(o) for o in outs]

  def _eval(self, jaxpr, consts, args):
    return walk_jaxpr(jaxpr, consts, args, self._eqn,
                      lambda c: isinstance(c, (IntTensor, FloatTensor)))

  def _eqn(self, eqn, ins) -> List[Any]:
    name = eqn.primitive.name
    if eqn.primitive is quantized_op_p:
      return [self._quantized_op(eqn, *ins)]
    sub = sub_jaxpr(eqn)
    if sub is not None:
      return self._eval(sub[0], sub[1], ins)
    if all(isinstance(x, np.ndarray) for x in ins):
      # Constants are evaluated on the CPU backend, so that the integer program (biases,
      # multipliers) is the same whichever backend runs it (GPU rsqrt differs in the last ulp).
      with jax.ensure_compile_time_eval(), jax.default_device(cpu_device()):
        out = eqn.primitive.bind(*ins, **eqn.params)
      outs = out if eqn.primitive.multiple_results else [out]
      return [np.asarray(o) for o in outs]
    if any(isinstance(x, IntTensor) for x in ins):
      handler = getattr(self, f"_op_{name}", None)
      if handler is not None:
        try:
          out = handler(eqn, *ins)
        except UnsupportedOp as e:
          reason = str(e)
        else:
          if name not in _SELF_LOGGING:
            self._log(out.layer, name, **{k: v for k, v in eqn.params.items()
                                          if k in _LOGGED_PARAMS})
          return [out]
      else:
        reason = "no integer lowering"
      if self.strict:
        layers = sorted({x.layer for x in ins if isinstance(x, IntTensor)})
        raise UnsupportedOp(f"integer mode: op '{name}'{_where(eqn)} on an activation (after "
                            f"layer {', '.join(layers)}) is not supported: {reason}; pass "
                            "strict=False to evaluate it in float")
      self.float_ops.append(f"{name} ({reason})")
    elif any(isinstance(x, FloatTensor) for x in ins):
      if self.strict and name in LAX_OPS:
        raise UnsupportedOp(f"integer mode: op '{name}'{_where(eqn)} on an activation outside "
                            "the hooked layers (a layer that does not use the injected "
                            "dot_general / conv_general_dilated hooks, e.g. nnx.LinearGeneral, "
                            "nn.Einsum, a model without the hook field) would run in float; "
                            "pass strict=False to allow it")
      self.float_ops.append(name)
    vals = [self._to_float(x) if isinstance(x, (IntTensor, FloatTensor)) else x for x in ins]
    out = eqn.primitive.bind(*vals, **eqn.params)
    outs = out if eqn.primitive.multiple_results else [out]
    return [FloatTensor(o) for o in outs]

  def _log(self, layer: str, op: str, **consts) -> None:
    """Appends ``op`` (with small constants) to the epilogue of ``layer``."""
    entry: Dict[str, Any] = {"op": op}
    for k, v in consts.items():
      if isinstance(v, np.ndarray) and v.size > 4096:
        v = f"<array shape {v.shape}>"
      entry[k] = v
    self.epilogues.setdefault(layer, []).append(entry)

  # --- conversions --------------------------------------------------------------------------
  @staticmethod
  def _to_float(v):
    if isinstance(v, IntTensor):
      return (v.q.astype(jnp.float32) * jnp.asarray(v.m, jnp.float32)
              + jnp.asarray(v.o, jnp.float32))
    if isinstance(v, FloatTensor):
      return v.x
    return v

  def fold_parts(self, t: IntTensor, max_shift: int = 16):
    """How to fold the offset of ``t`` into an int32 bias with fractional bits.

    Returns ``(t, k, bias)`` (``t`` possibly narrowed first) such that
    ``(q << k) + bias`` with ``bias = round(o/m * 2**k)`` represents ``m * q + o`` at scale
    ``m / 2**k`` without int32 overflow: ``k`` is the largest shift ``<= max_shift`` the static
    bound allows, so the bias rounding error is ``2**-(k+1)`` accumulator units.
    """
    if not np.any(t.o):
      return t, 0, np.zeros((1,) * t.q.ndim, np.int64)
    r = t.o / t.m
    rmax = float(np.max(np.abs(r)))
    if t.bound + rmax + 1 > INT32_BOUND:
      t = self.narrow_for_offset(t)
      r = t.o / t.m
      rmax = float(np.max(np.abs(r)))
    k = 0
    while k < max_shift and (t.bound + rmax + 1) * 2.0 ** (k + 1) <= INT32_BOUND:
      k += 1
    return t, k, _compact(_round_int(r * 2.0 ** k))

  def fold(self, t: IntTensor) -> IntTensor:
    """Folds the offset into an int32 bias: ``q = (q << k) + round(o/m * 2**k)``, ``o = 0``."""
    t, k, bias = self.fold_parts(t)
    if not np.any(t.o):
      return dataclasses.replace(t, o=np.zeros_like(t.o))
    q = t.q * np.int32(1 << k) if k else t.q
    q = q + _i32const(bias) if np.any(bias) else q
    bound = (t.bound << k) + int(np.max(np.abs(bias)))
    self._log(t.layer, "bias", acc_shift=k, bias=bias.astype(np.int32),
              formula="q = (q << acc_shift) + bias")
    return IntTensor(q, t.m / 2.0 ** k, np.zeros_like(t.m), bound, t.layer)

  def narrow_for_offset(self, t: IntTensor) -> IntTensor:
    """Per-channel rounding right shifts so that ``2 * (bound + |o/m| + 2) <= 2**31 - 1``.

    A channel whose offset is huge in units of its scale (e.g. a dead unit: weights ~1e-33,
    bias ~0.1) gets a large shift; beyond 32 its ``q`` rounds to 0 (its real contribution is
    below ``m * 2**31``, negligible against the offset) and ``m`` grows by the full ``2**k``.
    """
    half = INT32_BOUND // 2 - 4
    r = np.abs(t.o / t.m)
    ratio = (t.bound + r) / half
    k = np.where(ratio > 1, np.ceil(np.log2(np.maximum(ratio, 1.0))), 0).astype(np.int64)
    # float rounding in log2: bump where the shifted need still exceeds the target
    k = np.where((t.bound / 2.0 ** k) + 1 + r / 2.0 ** k > half, k + 1, k)
    k = _compact(np.broadcast_to(k, np.broadcast_shapes(k.shape, t.m.shape)))
    shift = np.minimum(30 + k, 62)      # >= 32 extra bits: q (|q| < 2**31) rounds to 0
    q = requant.mul_shift_round(t.q, np.int32(1 << 30), _i32const(shift))
    self._log(t.layer, "rounding_shift_right", shift=k.astype(np.int32),
              formula="q = mul_shift_round(q, 2**30, 30 + shift) (per channel; >= 32: 0)")
    kmin = int(np.min(k))
    return IntTensor(q, t.m * 2.0 ** k, t.o, (t.bound >> kmin) + (1 if kmin else 0), t.layer)

  def narrow(self, t: IntTensor, extra: int = 1) -> IntTensor:
    """Rounding right shift so that ``bound * extra`` fits in 31 bits (``m`` grows)."""
    need = t.bound * extra
    if need <= INT32_BOUND:
      return t
    k = max(1, need.bit_length() - 30)
    q = requant.mul_shift_round(t.q, np.int32(1 << 30), np.int32(30 + k))
    self._log(t.layer, "rounding_shift_right", shift=k,
              formula="q = mul_shift_round(q, 2**30, 30 + shift)")
    return IntTensor(q, t.m * 2.0 ** k, t.o, (t.bound >> k) + 1, t.layer)

  def rescale(self, t: IntTensor, ratio: np.ndarray) -> Tuple[jax.Array, int]:
    """``round(q * ratio)`` with an integer multiplier and shift; returns ``(q, bound)``."""
    ratio = _compact(np.broadcast_to(ratio, np.broadcast_shapes(ratio.shape, t.m.shape)))
    if np.all(ratio == 1.0):
      return t.q, t.bound
    mult, shift = requant.quantize_multiplier(ratio)
    q = requant.mul_shift_round(t.q, _i32const(mult), _i32const(shift))
    self._log(t.layer, "rescale", multiplier=mult, shift=shift,
              formula="q = mul_shift_round(q, multiplier, shift)")
    return q, int(math.ceil(t.bound * float(np.max(ratio)))) + 1

  def requantize_to(self, t: IntTensor, pattern: BitPattern, scale: float):
    """Requantizes to ``pattern`` levels with real scale ``scale``.

    Returns:
      ``(q_out, pre, (acc_shift, bias, multiplier, shift))``: the int32 output levels, the
      int32 input ``pre`` of the requantizer and its constants (``acc_shift`` an int, the others
      int32-valued numpy arrays broadcastable to ``pre``)::

        q_out = clip(mul_shift_round((pre << acc_shift) + bias, multiplier, shift), lo, hi)
    """
    t, k, bias = self.fold_parts(t)
    ratio = _compact(t.m / 2.0 ** k / float(scale))
    mult, shift = requant.quantize_multiplier(ratio)
    lo = -pattern.max_level if pattern.signed else 0
    # One multiply-add-shift (exact: |q| * 2**k + |bias| fits int32 by fold_parts' bound).
    q = requant.apply_folded(t.q, requant.fold_requantizer(k, bias, mult, shift, lo,
                                                           pattern.max_level))
    return q, t.q, (k, bias.astype(np.int32), mult, shift)

  # --- the quantized layers -----------------------------------------------------------------
  def _quantized_op(self, eqn, lhs, rhs):
    p = eqn.params
    op, layer, kwargs = p["op"], p["layer"], p["kwargs"]
    if layer not in self.layers:
      if self.strict:
        raise UnsupportedOp(f"integer mode: layer '{layer}' has no weight pattern (the rule "
                            "returned None) or no calibrated activation; pass strict=False to "
                            "keep it in float")
      vals = [self._to_float(x) if isinstance(x, (IntTensor, FloatTensor)) else x
              for x in (lhs, rhs)]
      note = "float layer"
      if layer in self.float_inputs:          # as FakeQuantOp: the float op sees levels * scale
        act, scale = self.float_inputs[layer]
        vals[0] = fake_quant(jnp.asarray(vals[0], jnp.float32), act, jnp.float32(scale))
        note += f", {act} input"
      self.float_ops.append(f"{op} '{layer}' ({note})")
      return FloatTensor(LAX_OPS[op](vals[0], vals[1], **dict(kwargs)))
    info = self.layers[layer]
    if isinstance(rhs, (IntTensor, FloatTensor)):
      raise UnsupportedOp(f"integer mode: the weights of layer '{layer}' depend on the input")
    act = info.act_pattern
    if isinstance(lhs, IntTensor):
      q_in, pre, (acc_shift, bias, mult, shift) = self.requantize_to(lhs, act, info.act_scale)
      kind = "requant"
    else:
      x = lhs.x if isinstance(lhs, FloatTensor) else jnp.asarray(lhs)
      if layer in self.input_levels:
        q_in = jnp.asarray(self.input_levels[layer], jnp.int32)
      else:
        q_in = quantize(x, act, info.act_scale)
      acc_shift = bias = mult = shift = None
      kind = "float"
      pre = None
    w = self.weights[layer]
    acc = self.contraction(op, q_in, w, dict(kwargs), pattern=info.weight_pattern,
                           act_pattern=act, name=layer, config=self.config,
                           with_stats=self.with_stats)
    if self.with_stats:
      acc, self.overflow[layer] = acc
    out_ndim = acc.ndim
    axis = _out_feature_axis(op, dict(kwargs), np.ndim(rhs), out_ndim)
    shape = [1] * out_ndim
    ws = np.asarray(info.weight_scale, np.float64)
    wb = np.asarray(info.weight_bound, np.int64)
    if ws.ndim:
      shape[axis] = ws.shape[0]
    m = (float(info.act_scale) * ws).reshape(shape)
    bound = int(np.max(wb)) * act.max_level
    self.records[layer] = LayerRecord(op, kwargs, kind, acc_shift, bias, mult, shift, bound)
    if self.capture:
      cap = {"input": q_in, "acc": acc}
      if pre is not None:
        cap["pre"] = pre
      self.captured[layer] = cap
    return IntTensor(acc, m, np.zeros_like(m), bound, layer)

  # --- elementwise --------------------------------------------------------------------------
  def _op_add(self, eqn, a, b):
    out_shape = tuple(eqn.outvars[0].aval.shape)
    if isinstance(a, IntTensor) and isinstance(b, IntTensor):
      return self._add_int(a, b, out_shape)
    t, c = (a, b) if isinstance(a, IntTensor) else (b, a)
    if isinstance(c, FloatTensor):
      raise UnsupportedOp("sum of an integer and a float activation")
    c = _meta(c, len(out_shape))
    q = t.q if t.q.shape == out_shape else jnp.broadcast_to(t.q, out_shape)
    return IntTensor(q, t.m, _compact(np.broadcast_to(t.o + c, np.broadcast_shapes(
        t.o.shape, c.shape))), t.bound, t.layer)

  def _common_scale(self, a: IntTensor, b: IntTensor, total: bool) -> np.ndarray:
    """The finest common scale at which both tensors (their sum if ``total``) fit in 30 bits."""
    ma, mb = np.broadcast_arrays(a.m, b.m)
    if total:
      span = ma * a.bound + mb * b.bound
    else:
      span = np.maximum(ma * a.bound, mb * b.bound)
    mc = span / float(1 << 30)
    return _compact(np.where(mc > 0, mc, np.maximum(ma, mb)))

  def _align(self, a: IntTensor, b: IntTensor, total: bool):
    """Rescales both to a common scale ``mc`` (integer multiplier and shift, round half up)."""
    mc = self._common_scale(a, b, total)
    while True:
      qa, ba = self.rescale(a, a.m / mc)
      qb, bb = self.rescale(b, b.m / mc)
      need = ba + bb if total else max(ba, bb)
      if need <= INT32_BOUND:
        return qa, qb, mc, need
      mc = mc * 2.0

  def _add_int(self, a: IntTensor, b: IntTensor, out_shape) -> IntTensor:
    qa, qb, mc, bound = self._align(a, b, total=True)
    q = qa + qb
    self._log(a.layer, "add", other=b.layer,
              formula="q = q + q_other (each first rescaled to the common scale: 'rescale')")
    if q.shape != out_shape:
      q = jnp.broadcast_to(q, out_shape)
    o = _compact(np.broadcast_to(a.o + b.o, np.broadcast_shapes(a.o.shape, b.o.shape)))
    return IntTensor(q, mc, o, bound, a.layer or b.layer)

  def _neg(self, t: IntTensor) -> IntTensor:
    self._log(t.layer, "negate", formula="q = -q")
    return IntTensor(-t.q, t.m, -t.o, t.bound, t.layer)

  def _op_neg(self, eqn, a):
    return self._neg(a)

  def _op_sub(self, eqn, a, b):
    if isinstance(b, IntTensor):
      b = self._neg(b)
    elif isinstance(b, FloatTensor):
      raise UnsupportedOp("difference of an integer and a float activation")
    else:
      b = -np.asarray(b, np.float64)
    return self._op_add(eqn, a, b)

  def _op_mul(self, eqn, a, b):
    t, c = (a, b) if isinstance(a, IntTensor) else (b, a)
    if isinstance(c, (IntTensor, FloatTensor)):
      raise UnsupportedOp("product of two activations")
    return self._scale(t, np.asarray(c, np.float64), tuple(eqn.outvars[0].aval.shape))

  def _op_div(self, eqn, a, b):
    if not isinstance(a, IntTensor) or isinstance(b, (IntTensor, FloatTensor)):
      raise UnsupportedOp("division by an activation")
    return self._scale(a, 1.0 / np.asarray(b, np.float64), tuple(eqn.outvars[0].aval.shape))

  def _scale(self, t: IntTensor, c: np.ndarray, out_shape) -> IntTensor:
    c = _meta(c, len(out_shape))
    q = t.q if t.q.shape == out_shape else jnp.broadcast_to(t.q, out_shape)
    if np.any(c < 0):
      c_sign = _compact(np.sign(c))
      q = q * _i32const(c_sign)   # a sign flip (and zero) per channel
      self._log(t.layer, "sign", sign=c_sign.astype(np.int32), formula="q = q * sign")
    elif np.any(c == 0):
      q = q * _i32const(_compact((c != 0).astype(np.int64)))
      self._log(t.layer, "sign", sign=_compact((c != 0).astype(np.int32)),
                formula="q = q * sign")
    mag = np.abs(c)
    # Where c == 0 the value is the constant o*c: q is zeroed and m kept (so that a later
    # alignment with another tensor does not pick an arbitrary scale).
    m = _compact(np.where(mag == 0, np.broadcast_to(t.m, np.broadcast_shapes(t.m.shape, mag.shape)),
                          t.m * mag))
    return IntTensor(q, m, _compact(t.o * c), t.bound, t.layer)

  def _clamp_const(self, t: IntTensor, c, fn, out_shape) -> IntTensor:
    c = _meta(c, len(out_shape))
    t = self.fold(t)
    ci = _compact(np.broadcast_to(_round_int(c / t.m), np.broadcast_shapes(c.shape, t.m.shape)))
    if np.max(np.abs(ci)) > INT32_BOUND:
      raise UnsupportedOp("clamp constant out of the int32 range")
    q = fn(t.q, _i32const(ci))
    self._log(t.layer, fn.__name__, const=ci.astype(np.int32),
              formula=f"q = {fn.__name__}(q, const)")
    if q.shape != out_shape:
      q = jnp.broadcast_to(q, out_shape)
    return IntTensor(q, t.m, t.o, max(t.bound, int(np.max(np.abs(ci)))), t.layer)

  def _minmax(self, eqn, a, b, fn):
    out_shape = tuple(eqn.outvars[0].aval.shape)
    if isinstance(a, IntTensor) and isinstance(b, IntTensor):
      a, b = self.fold(a), self.fold(b)
      qa, qb, mc, bound = self._align(a, b, total=False)
      return IntTensor(jnp.broadcast_to(fn(qa, qb), out_shape), mc, np.zeros_like(mc), bound,
                       a.layer)
    t, c = (a, b) if isinstance(a, IntTensor) else (b, a)
    if isinstance(c, FloatTensor):
      raise UnsupportedOp("max/min of an integer and a float activation")
    return self._clamp_const(t, c, fn, out_shape)

  def _op_max(self, eqn, a, b):
    return self._minmax(eqn, a, b, jnp.maximum)

  def _op_min(self, eqn, a, b):
    return self._minmax(eqn, a, b, jnp.minimum)

  def _op_clamp(self, eqn, lo, x, hi):
    if not isinstance(x, IntTensor) or any(isinstance(v, (IntTensor, FloatTensor)) for v in (lo, hi)):
      raise UnsupportedOp("clamp with activation bounds")
    out_shape = tuple(eqn.outvars[0].aval.shape)
    t = self._clamp_const(x, lo, jnp.maximum, out_shape)
    return self._clamp_const(t, hi, jnp.minimum, out_shape)

  def _op_convert_element_type(self, eqn, t):
    if not jnp.issubdtype(eqn.params["new_dtype"], jnp.floating):
      raise UnsupportedOp(f"conversion to {eqn.params['new_dtype']}")
    return t

  # --- pooling and reductions ---------------------------------------------------------------
  def _uniform_along(self, meta: np.ndarray, axes) -> bool:
    return all(meta.shape[ax] == 1 for ax in axes)

  def _window_axes(self, p) -> List[int]:
    return [i for i, (w, s, pad, bd, wd) in enumerate(zip(
        p["window_dimensions"], p["window_strides"], p["padding"], p["base_dilation"],
        p["window_dilation"])) if w != 1 or s != 1 or tuple(pad) != (0, 0) or bd != 1 or wd != 1]

  def _pool_axes(self, p, t, kind: str):
    """Pooled axes of a reduce_window; only spatial pooling over one scale is lowered."""
    axes = self._window_axes(p)
    if 0 in axes:
      raise UnsupportedOp("pooling over the batch axis")
    if not self._uniform_along(t.m, axes):
      raise UnsupportedOp(f"{kind} pooling over elements of different scales")
    return axes

  def _op_reduce_window_max(self, eqn, t):
    p = eqn.params
    axes = self._pool_axes(p, t, "max")
    if not self._uniform_along(t.o, axes):
      t = self.fold(t)
    q = lax.reduce_window(t.q, np.int32(requant.INT32_MIN), lax.max, p["window_dimensions"],
                          p["window_strides"], p["padding"], p["base_dilation"],
                          p["window_dilation"])
    return IntTensor(q, t.m, t.o, t.bound, t.layer)

  def _op_reduce_window_sum(self, eqn, t):
    p = eqn.params
    axes = self._pool_axes(p, t, "sum")
    count = int(np.prod(p["window_dimensions"]))
    padded = any(tuple(pad) != (0, 0) for pad in p["padding"])
    if padded or not self._uniform_along(t.o, axes):
      t = self.fold(t)
    t = self.narrow(t, extra=count)
    q = lax.reduce_window(t.q, np.int32(0), lax.add, p["window_dimensions"],
                          p["window_strides"], p["padding"], p["base_dilation"],
                          p["window_dilation"])
    return IntTensor(q, t.m, t.o * count, t.bound * count, t.layer)

  def _reduce(self, eqn, t, kind):
    axes = tuple(eqn.params["axes"])
    if 0 in axes:
      raise UnsupportedOp("reduction over the batch axis")
    if not self._uniform_along(t.m, axes):
      raise UnsupportedOp("reduction over elements of different scales")
    m = np.squeeze(t.m, axis=axes)
    if kind == "sum":
      count = int(np.prod([t.q.shape[a] for a in axes]))
      t = self.narrow(t, extra=count)
      m = np.squeeze(t.m, axis=axes)
      o = np.sum(_full(t.o, t.q.shape), axis=axes)
      return IntTensor(jnp.sum(t.q, axis=axes, dtype=jnp.int32), m, _compact(o),
                       t.bound * count, t.layer)
    if not self._uniform_along(t.o, axes):
      t = self.fold(t)
    fn = jnp.max if kind == "max" else jnp.min
    return IntTensor(fn(t.q, axis=axes), m, np.squeeze(t.o, axis=axes), t.bound, t.layer)

  def _op_reduce_sum(self, eqn, t):
    return self._reduce(eqn, t, "sum")

  def _op_reduce_max(self, eqn, t):
    return self._reduce(eqn, t, "max")

  def _op_reduce_min(self, eqn, t):
    return self._reduce(eqn, t, "min")

  # --- data movement ------------------------------------------------------------------------
  def _move(self, t: IntTensor, q, fn: Callable[[np.ndarray], np.ndarray]) -> IntTensor:
    """Applies the same data movement ``fn`` (on a batch-1 full array) to m and o."""
    m, o = (_compact(fn(_full(a, t.q.shape))) for a in (t.m, t.o))
    return IntTensor(q, m, o, t.bound, t.layer)

  def _op_reshape(self, eqn, t):
    p = eqn.params
    new = tuple(p["new_sizes"])
    if p.get("dimensions") is not None or not new or new[0] != t.q.shape[0]:
      raise UnsupportedOp("reshape that moves the batch axis")
    q = jnp.reshape(t.q, new)
    return self._move(t, q, lambda a: a.reshape((1,) + new[1:]))

  def _op_transpose(self, eqn, t):
    perm = tuple(eqn.params["permutation"])
    if perm[0] != 0:
      raise UnsupportedOp("transpose that moves the batch axis")
    return self._move(t, jnp.transpose(t.q, perm), lambda a: np.transpose(a, perm))

  def _op_squeeze(self, eqn, t):
    dims = tuple(eqn.params["dimensions"])
    if 0 in dims:
      raise UnsupportedOp("squeeze of the batch axis")
    return self._move(t, lax.squeeze(t.q, dims), lambda a: np.squeeze(a, axis=dims))

  def _op_broadcast_in_dim(self, eqn, t):
    shape, bdims = tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
    if not bdims or bdims[0] != 0 or shape[0] != t.q.shape[0]:
      raise UnsupportedOp("broadcast that moves the batch axis")
    q = lax.broadcast_in_dim(t.q, shape, bdims)

    def fn(a):
      r = [1] * len(shape)
      for j, d in enumerate(bdims):
        r[d] = a.shape[j]
      return np.broadcast_to(a.reshape(r), (1,) + shape[1:])
    return self._move(t, q, fn)

  def _op_slice(self, eqn, t):
    p = eqn.params
    start, limit, strides = p["start_indices"], p["limit_indices"], p["strides"]
    if start[0] != 0 or limit[0] != t.q.shape[0] or (strides and strides[0] != 1):
      raise UnsupportedOp("slice of the batch axis")
    q = lax.slice(t.q, start, limit, strides)
    s1, l1 = (0,) + tuple(start[1:]), (1,) + tuple(limit[1:])
    return self._move(t, q, lambda a: np.asarray(lax.slice(a, s1, l1, strides)))

  def _op_rev(self, eqn, t):
    dims = tuple(eqn.params["dimensions"])
    if 0 in dims:
      raise UnsupportedOp("reversal of the batch axis")
    return self._move(t, lax.rev(t.q, dims), lambda a: np.flip(a, axis=dims))

  def _op_pad(self, eqn, t, value):
    if not isinstance(t, IntTensor) or not isinstance(value, np.ndarray):
      raise UnsupportedOp("padding with an activation")
    cfg = tuple(tuple(c) for c in eqn.params["padding_config"])
    if cfg[0] != (0, 0, 0):
      raise UnsupportedOp("padding of the batch axis")
    v = float(value)
    if v == 0.0:
      fill = np.int32(0)
    elif v == -np.inf:
      fill = np.int32(requant.INT32_MIN)
    else:
      raise UnsupportedOp(f"padding value {v}")
    t = self.fold(t)
    q = lax.pad(t.q, fill, cfg)

    def fn(a):
      a = np.asarray(a)
      pads = [(lo, hi) for lo, hi, _ in cfg]
      if any(c[2] for c in cfg):
        return np.asarray(lax.pad(jnp.asarray(a), jnp.asarray(a).dtype.type(1.0), cfg))
      return np.pad(a, pads, mode="edge")
    out = self._move(t, q, fn)
    return IntTensor(out.q, out.m, np.zeros_like(out.m), t.bound, t.layer)

  def _op_concatenate(self, eqn, *ts):
    dim = eqn.params["dimension"]
    if dim == 0 or not all(isinstance(x, IntTensor) for x in ts):
      raise UnsupportedOp("concatenation along the batch axis or with a float tensor")
    q = lax.concatenate([x.q for x in ts], dim)
    m = np.concatenate([_full(x.m, x.q.shape) for x in ts], axis=dim)
    o = np.concatenate([_full(x.o, x.q.shape) for x in ts], axis=dim)
    return IntTensor(q, _compact(m), _compact(o), max(x.bound for x in ts), ts[0].layer)

  def _op_copy(self, eqn, t):
    return t

  _op_copy_p = _op_copy
  _op_reduce_precision = _op_copy


def _where(eqn) -> str:
  """`` in '<module path>'`` from the equation's name stack (Flax linen names its modules'
  scopes), or ``''``."""
  stack = str(getattr(getattr(eqn, "source_info", None), "name_stack", "") or "")
  return f" in '{stack}'" if stack else ""


def _out_feature_axis(op: str, kwargs: Mapping[str, Any], rhs_ndim: int, out_ndim: int) -> int:
  """Output axis carrying the kernel's last (output-channel) axis."""
  if op == CONV:
    dn = kwargs.get("dimension_numbers")
    dn = lax.conv_dimension_numbers((1,) * out_ndim, (1,) * rhs_ndim, dn)
    if dn.rhs_spec[0] != rhs_ndim - 1:
      raise UnsupportedOp("integer mode needs the kernel's output features on its last axis")
    return dn.out_spec[1]
  (lc, rc), (lb, rb) = kwargs["dimension_numbers"]
  last = rhs_ndim - 1
  if last in rc or last in rb:
    raise UnsupportedOp("integer mode needs the kernel's last axis to be an output feature axis")
  free = [d for d in range(rhs_ndim) if d not in rc and d not in rb]
  lhs_free = out_ndim - len(lb) - len(free)
  return len(lb) + lhs_free + free.index(last)
