"""The integer program of a quantized model as an integer-only ONNX graph.

:func:`export_onnx` traces the integer program of a :class:`~ebsp_jax.ptq.QuantizedModel`
from its quantized input (``qm.quantize_input(x)``, int32) to the int32 outputs of its last
layer (``qm.integer_codes(x)``) — the very program :mod:`ebsp_jax.quant.lowering` runs, with
each conv/dense kept as one marked equation — and translates the jaxpr, equation by
equation, to ONNX:

=================================  =========================================================
jaxpr                              ONNX (opset 21; ONNX Runtime CPU kernels)
=================================  =========================================================
conv / dense (the datapath)        ``ConvInteger`` / ``MatMulInteger``, uint8 x uint8 -> int32
                                   with zero points (below); NHWC/HWIO by ``Transpose``;
                                   padding by an explicit ``Pad``
add, sub, mul, neg, max, min       ``Add``, ``Sub``, ``Mul``, ``Neg``, ``Max``, ``Min``
clamp                              ``Max`` then ``Min``
shift_left by a constant ``k``     ``Mul`` by ``2**k``
shift_right_arithmetic by ``k``    floor division: ``Div(x - Mod(x, 2**k), 2**k)``
                                   (``Mod`` with ``fmod=0`` is Python's, so it is exact)
convert_element_type (int)         ``Cast`` (int32 <-> int64: the 64-bit requantizer product)
select_n, comparisons              ``Where``, ``Greater``, ``Less``, ``Equal``, ...
reduce_window_max / _sum           ``Pad`` with the identity, one strided ``Slice`` per window
                                   offset, ``Max`` / ``Add`` (ONNX Runtime has no int32
                                   ``MaxPool``)
reduce_sum / max / min             ``ReduceSum`` / ``ReduceMax`` / ``ReduceMin``
reshape, transpose, squeeze,       ``Reshape``, ``Transpose``, ``Squeeze``, ``Reshape`` +
broadcast_in_dim, slice, rev,      ``Expand``, ``Slice``, ``Pad``, ``Concat``
pad, concatenate
=================================  =========================================================

Equations on constants only are folded into initializers. The batch axis is left dynamic.

Operands of the contractions. ONNX Runtime's CPU ``ConvInteger`` / ``MatMulInteger`` take
8-bit operands; with uint8 activations and int8 weights (U8S8) its x86 kernels without VNNI
use ``vpmaddubsw``, which saturates int16 pair sums (ONNX Runtime's quantization docs), so
both operands are sent as uint8 (U8U8, exact on every path): unsigned activation levels as
they are, signed sign-magnitude levels ``+128`` with ``x_zero_point = 128``; signed weight
levels ``+128`` with ``w_zero_point = 128``. The int32 result is then the exact sum
``S = Σ a·w`` whenever the static bound ``max_channel Σ|w| · max|a|`` is below ``2**31``
(checked; a larger bound is refused). The datapath's accumulator is reproduced on ``S``:
``acc_bits < 32`` with ``wrap`` (or ``error``) as ``((S + 2**(b-1)) mod 2**b) - 2**(b-1)``,
with ``clip`` (the clamped exact sum) as ``Clip``; nothing for ``acc_bits = 32`` or wherever
the bound shows that no overflow can happen. ``saturate`` (a register that clamps after every
add, in the datapath's order) is exported only where it cannot clamp.

Refused with a one-line error: activations or weights wider than 8 bits, the ``dual_lod``
datapath, a layer kept in float or any float op on an activation, input dilation, and
anything not in the table.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.interpreters import mlir

from ebsp_jax.numerics import BitPattern
from ebsp_jax.quant.datapath import DatapathConfig, int_op
from ebsp_jax.quant.lowering import cpu_device, sub_jaxpr, walk_jaxpr
from ebsp_jax.quant.ops import CONV, DOT_GENERAL, LAX_OPS

OPSET = 21
IR_VERSION = 10          # what ONNX Runtime 1.31 loads with opset 21
INPUT_NAME = "input_levels"
OUTPUT_NAME = "int_logits"
INT32_BOUND = (1 << 31) - 1
_INT64_MAX = np.iinfo(np.int64).max


class ExportError(ValueError):
  """Something in the integer program has no integer-only ONNX form (one-line message)."""


# ----------------------------------------------------------------------------------------------
# The marked contraction: one equation per conv/dense in the traced integer program.
contraction_p = jcore.Primitive("ebsp_int_contraction")


def _contraction_impl(lhs, rhs, *, op, kwargs, pattern, act_pattern, layer, config):
  return int_op(op, lhs, rhs, dict(kwargs), pattern=pattern, act_pattern=act_pattern,
                name=layer, config=config)


def _contraction_abstract(lhs, rhs, *, op, kwargs, **_):
  out = jax.eval_shape(
      lambda a, b: LAX_OPS[op](a, b, **dict(kwargs), preferred_element_type=jnp.int32),
      jax.ShapeDtypeStruct(lhs.shape, jnp.int32), jax.ShapeDtypeStruct(rhs.shape, jnp.int32))
  return jax.core.ShapedArray(out.shape, jnp.int32)


contraction_p.def_impl(_contraction_impl)
contraction_p.def_abstract_eval(_contraction_abstract)
mlir.register_lowering(contraction_p, mlir.lower_fun(_contraction_impl, multiple_results=False))


def marked_contraction(op: str, lhs, rhs, kwargs: Mapping[str, Any], *, pattern: BitPattern,
                       act_pattern: Optional[BitPattern] = None, name: Optional[str] = None,
                       config: DatapathConfig = DatapathConfig(), with_stats: bool = False):
  """:func:`~ebsp_jax.quant.datapath.int_op` as one ``ebsp_int_contraction`` equation (the
  ``contraction`` the lowering's ``Interpreter`` takes)."""
  if with_stats:
    raise ExportError("export_onnx: overflow statistics are not exported")
  return contraction_p.bind(jnp.asarray(lhs, jnp.int32), jnp.asarray(rhs, jnp.int32), op=op,
                            kwargs=tuple(sorted(kwargs.items())), pattern=pattern,
                            act_pattern=act_pattern, layer=name or "", config=config)


def integer_program(qm, example_x: jax.Array):
  """The jaxpr of ``input levels -> integer codes`` and the example's input levels.

  Returns:
    ``(closed_jaxpr, input_levels)``.
  """
  x = jnp.asarray(example_x)
  levels = qm.quantize_input(x)
  first = qm.input_layer
  # Concrete zeros: float ops before the first layer run eagerly (not traced) and are unused.
  x0 = np.zeros(x.shape, x.dtype)

  def program(q):
    outs, _, _ = qm.integer_model.interpret(x0, raw=True, input_levels={first: q},
                                            contraction=marked_contraction)
    return qm._single_output(outs).q  # pylint: disable=protected-access

  closed = jax.make_jaxpr(program)(jax.ShapeDtypeStruct(levels.shape, jnp.int32))
  return closed, levels


# ----------------------------------------------------------------------------------------------
class _Tensor:
  """A run-time value of the graph: its ONNX name, dtype and (jax) shape."""

  def __init__(self, name: str, dtype, shape):
    self.name, self.dtype, self.shape = name, np.dtype(dtype), tuple(shape)


_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "max": "Max", "min": "Min",
           "eq": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater",
           "ge": "GreaterOrEqual", "div": "Div"}
_UNARY = {"neg": "Neg", "abs": "Abs", "sign": "Sign"}
_NP_FOLD = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum,
            "min": np.minimum, "neg": np.negative, "abs": np.abs, "sign": np.sign,
            "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
            "gt": np.greater, "ge": np.greater_equal, "and": np.logical_and,
            "or": np.logical_or, "not": np.logical_not, "shift_left": np.left_shift,
            "shift_right_arithmetic": np.right_shift}


class _Converter:
  """Translates one integer jaxpr into ONNX nodes (see the module docstring)."""

  def __init__(self):
    from onnx import numpy_helper  # deferred heavy import (onnx): only export needs it
    self._np_helper = numpy_helper
    self.nodes: List[Any] = []
    self.inits: List[Any] = []
    self._count = itertools.count()
    self._const_cache: Dict[Tuple[str, Tuple[int, ...], bytes], str] = {}
    self.layer = ""          # the last contraction seen (for error messages)

  # --- graph building -----------------------------------------------------------------------
  def fresh(self, prefix: str) -> str:
    return f"{prefix}_{next(self._count)}"

  def const(self, value) -> str:
    a = np.ascontiguousarray(np.asarray(value))
    key = (a.dtype.str, a.shape, a.tobytes())
    if key not in self._const_cache:
      name = self.fresh("c")
      self.inits.append(self._np_helper.from_array(a, name))
      self._const_cache[key] = name
    return self._const_cache[key]

  def node(self, op: str, inputs: Sequence[str], prefix: Optional[str] = None, **attrs) -> str:
    from onnx import helper  # deferred heavy import (onnx): only export needs it
    out = self.fresh(prefix or op.lower())
    self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
    return out

  def fail(self, msg: str) -> ExportError:
    where = f" (after layer '{self.layer}')" if self.layer else ""
    return ExportError(f"export_onnx: {msg}{where}")

  # --- evaluation ---------------------------------------------------------------------------
  def convert(self, closed, input_name: str) -> Tuple[str, Any]:
    jaxpr = closed.jaxpr
    if len(jaxpr.invars) != 1 or len(jaxpr.outvars) != 1:
      raise self.fail("the integer program must have one input and one output")
    inv = jaxpr.invars[0]
    arg = _Tensor(input_name, inv.aval.dtype, inv.aval.shape)
    outs = self._eval(jaxpr, list(closed.consts), [arg])
    return outs[0]

  def _eval(self, jaxpr, consts, args) -> List[Any]:
    return walk_jaxpr(jaxpr, consts, args, self._eqn, lambda c: isinstance(c, _Tensor),
                      eqns=_live_eqns(jaxpr))

  def _eqn(self, eqn, ins) -> List[Any]:
    name = eqn.primitive.name
    sub = sub_jaxpr(eqn) if eqn.primitive is not contraction_p else None
    if sub is not None:
      return self._eval(sub[0], sub[1], ins)
    if not any(isinstance(x, _Tensor) for x in ins):
      return self._fold(eqn, ins)
    for v in eqn.outvars:
      dt = np.dtype(v.aval.dtype)
      if not (np.issubdtype(dt, np.integer) or dt == np.bool_):
        raise self.fail(f"op '{name}' computes in {dt} on an activation: the graph is "
                        "integer-only (a layer kept in float, or an op the integer lowering "
                        "evaluated in float)")
    if eqn.primitive is contraction_p:
      return [self._contraction(eqn, *ins)]
    handler = getattr(self, f"_op_{name}", None)
    if handler is not None:
      return [handler(eqn, *ins)]
    if name in _BINARY:
      return [self._binary(eqn, _BINARY[name], ins)]
    if name in _UNARY:
      return [self.tensor(self.node(_UNARY[name], [self.ref(ins[0])]), eqn)]
    raise self.fail(f"op '{name}' has no ONNX translation")

  def _fold(self, eqn, ins) -> List[np.ndarray]:
    """Evaluates an equation on constants (numpy broadcasting keeps them compact)."""
    name = eqn.primitive.name
    if name in _NP_FOLD:
      return [np.asarray(_NP_FOLD[name](*ins)).astype(eqn.outvars[0].aval.dtype)]
    if name == "convert_element_type":
      return [np.asarray(ins[0]).astype(eqn.params["new_dtype"])]
    if name == "select_n" and len(ins) == 3:
      return [np.where(np.asarray(ins[0]).astype(bool), ins[2], ins[1]).astype(
          eqn.outvars[0].aval.dtype)]
    if name == "broadcast_in_dim":
      return [_broadcast_compact(ins[0], eqn.params["shape"],
                                 eqn.params["broadcast_dimensions"])]
    full = [np.broadcast_to(x, v.aval.shape) if hasattr(v, "aval") else x
            for x, v in zip(ins, eqn.invars)]
    # 64-bit types on (the requantizer's constants are int64), on the CPU backend.
    with jax.enable_x64(True), jax.ensure_compile_time_eval(), jax.default_device(cpu_device()):
      out = eqn.primitive.bind(*full, **eqn.params)
    outs = out if eqn.primitive.multiple_results else [out]
    return [np.asarray(o) for o in outs]

  # --- helpers ------------------------------------------------------------------------------
  def ref(self, x, dtype=None) -> str:
    """The ONNX name of a tensor or (an initializer of) a constant, optionally cast."""
    if isinstance(x, _Tensor):
      return x.name
    a = np.asarray(x)
    return self.const(a if dtype is None else a.astype(dtype))

  @staticmethod
  def tensor(name: str, eqn) -> _Tensor:
    aval = eqn.outvars[0].aval
    return _Tensor(name, aval.dtype, aval.shape)

  def _binary(self, eqn, op: str, ins) -> _Tensor:
    dtype = next(x.dtype for x in ins if isinstance(x, _Tensor))
    names = [self.ref(x, None if isinstance(x, _Tensor) else dtype) for x in ins]
    return self.tensor(self.node(op, names), eqn)

  def _op_ne(self, eqn, a, b):
    eq = self._binary(eqn, "Equal", [a, b])
    return self.tensor(self.node("Not", [eq.name]), eqn)

  def _op_and(self, eqn, a, b):
    op = "And" if np.dtype(eqn.outvars[0].aval.dtype) == np.bool_ else "BitwiseAnd"
    return self._binary(eqn, op, [a, b])

  def _op_or(self, eqn, a, b):
    op = "Or" if np.dtype(eqn.outvars[0].aval.dtype) == np.bool_ else "BitwiseOr"
    return self._binary(eqn, op, [a, b])

  def _op_not(self, eqn, a):
    op = "Not" if np.dtype(eqn.outvars[0].aval.dtype) == np.bool_ else "BitwiseNot"
    return self.tensor(self.node(op, [self.ref(a)]), eqn)

  def _identity(self, eqn, a, *_):
    return self.tensor(self.node("Identity", [self.ref(a)]), eqn)

  _op_copy = _op_copy_p = _op_optimization_barrier = _op_reduce_precision = _identity

  def _op_convert_element_type(self, eqn, a):
    from onnx import helper  # deferred heavy import (onnx): only export needs it
    to = helper.np_dtype_to_tensor_dtype(np.dtype(eqn.params["new_dtype"]))
    return self.tensor(self.node("Cast", [self.ref(a)], to=to), eqn)

  def _shift_amount(self, s, dtype) -> np.ndarray:
    if isinstance(s, _Tensor):
      raise self.fail("a shift by a run-time amount")
    s = np.asarray(s, np.int64)
    bits = np.dtype(dtype).itemsize * 8
    if np.any(s < 0) or np.any(s >= bits - 1):
      raise self.fail(f"a shift by {int(s.max())} bits of a {bits}-bit value")
    return s

  def _op_shift_left(self, eqn, a, s):
    k = self._shift_amount(s, a.dtype)
    factor = np.left_shift(np.int64(1), k).astype(a.dtype)
    return self.tensor(self.node("Mul", [a.name, self.const(factor)]), eqn)

  def _op_shift_right_arithmetic(self, eqn, a, s):
    k = self._shift_amount(s, a.dtype)
    d = self.const(np.left_shift(np.int64(1), k).astype(a.dtype))
    rem = self.node("Mod", [a.name, d], fmod=0)          # in [0, d): Python's modulo
    exact = self.node("Sub", [a.name, rem])
    return self.tensor(self.node("Div", [exact, d]), eqn)

  def _op_select_n(self, eqn, pred, *cases):
    if len(cases) != 2:
      raise self.fail(f"select_n with {len(cases)} cases")
    dtype = next((x.dtype for x in cases if isinstance(x, _Tensor)), np.dtype(np.int32))
    p = self.ref(pred, np.bool_)
    if isinstance(pred, _Tensor) and pred.dtype != np.bool_:
      p = self.node("Cast", [p], to=9)       # BOOL
    return self.tensor(self.node("Where", [p, self.ref(cases[1], dtype),
                                           self.ref(cases[0], dtype)]), eqn)

  def _op_clamp(self, eqn, lo, x, hi):
    if not isinstance(x, _Tensor) or isinstance(lo, _Tensor) or isinstance(hi, _Tensor):
      raise self.fail("clamp with run-time bounds")
    y = self.node("Max", [x.name, self.ref(lo, x.dtype)])
    return self.tensor(self.node("Min", [y, self.ref(hi, x.dtype)]), eqn)

  def _reduce(self, eqn, op: str, a):
    axes = tuple(eqn.params["axes"])
    if 0 in axes:
      raise self.fail(f"{op} over the batch axis")
    return self.tensor(self.node(op, [a.name, self.const(np.asarray(axes, np.int64))],
                                 keepdims=0), eqn)

  def _op_reduce_sum(self, eqn, a):
    return self._reduce(eqn, "ReduceSum", a)

  def _op_reduce_max(self, eqn, a):
    return self._reduce(eqn, "ReduceMax", a)

  def _op_reduce_min(self, eqn, a):
    return self._reduce(eqn, "ReduceMin", a)

  def _reduce_window(self, eqn, a, kind: str):
    p = eqn.params
    if any(d != 1 for d in p["base_dilation"]) or any(d != 1 for d in p["window_dilation"]):
      raise self.fail(f"reduce_window_{kind} with dilation")
    wd, ws, pads = p["window_dimensions"], p["window_strides"], p["padding"]
    if wd[0] != 1 or ws[0] != 1 or tuple(pads[0]) != (0, 0):
      raise self.fail(f"reduce_window_{kind} over the batch axis")
    x = a.name
    if any(tuple(pd) != (0, 0) for pd in pads):
      init = np.iinfo(a.dtype).min if kind == "max" else 0
      pv = np.asarray([lo for lo, _ in pads] + [hi for _, hi in pads], np.int64)
      x = self.node("Pad", [x, self.const(pv), self.const(np.asarray(init, a.dtype))])
    out_shape = eqn.outvars[0].aval.shape
    axes = [d for d in range(1, len(wd)) if wd[d] != 1 or ws[d] != 1 or out_shape[d] != a.shape[d]
            or tuple(pads[d]) != (0, 0)]
    parts = []
    for offs in itertools.product(*[range(wd[d]) for d in axes]):
      starts = np.asarray(offs, np.int64)
      ends = np.asarray([o + (out_shape[d] - 1) * ws[d] + 1 for o, d in zip(offs, axes)],
                        np.int64)
      steps = np.asarray([ws[d] for d in axes], np.int64)
      parts.append(self.node("Slice", [x, self.const(starts), self.const(ends),
                                       self.const(np.asarray(axes, np.int64)),
                                       self.const(steps)]))
    op = "Max" if kind == "max" else "Add"
    while len(parts) > 1:                 # a balanced tree (ONNX Runtime has no int32 Sum)
      nxt = [self.node(op, parts[i:i + 2]) for i in range(0, len(parts) - 1, 2)]
      if len(parts) % 2:
        nxt.append(parts[-1])
      parts = nxt
    return self.tensor(self.node("Identity", parts), eqn)

  def _op_reduce_window_max(self, eqn, a):
    return self._reduce_window(eqn, a, "max")

  def _op_reduce_window_sum(self, eqn, a):
    return self._reduce_window(eqn, a, "sum")

  def _batch_preserving(self, eqn, a, new_shape) -> np.ndarray:
    if not new_shape or new_shape[0] != a.shape[0]:
      raise self.fail(f"{eqn.primitive.name} that changes the batch axis")
    return np.asarray((0,) + tuple(new_shape[1:]), np.int64)   # 0: copy the (dynamic) batch

  def _op_reshape(self, eqn, a):
    if eqn.params.get("dimensions") is not None:
      raise self.fail("reshape with dimensions")
    shape = self._batch_preserving(eqn, a, tuple(eqn.params["new_sizes"]))
    return self.tensor(self.node("Reshape", [a.name, self.const(shape)]), eqn)

  def _op_squeeze(self, eqn, a):
    dims = tuple(eqn.params["dimensions"])
    if 0 in dims:
      raise self.fail("squeeze of the batch axis")
    return self.tensor(self.node("Squeeze", [a.name, self.const(np.asarray(dims, np.int64))]),
                       eqn)

  def _op_expand_dims(self, eqn, a):  # pragma: no cover - jax emits broadcast_in_dim/reshape
    raise self.fail("expand_dims")

  def _op_transpose(self, eqn, a):
    perm = tuple(int(p) for p in eqn.params["permutation"])
    if perm[0] != 0:
      raise self.fail("transpose that moves the batch axis")
    return self.tensor(self.node("Transpose", [a.name], perm=list(perm)), eqn)

  def _op_broadcast_in_dim(self, eqn, a):
    shape, bdims = tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
    if not bdims or bdims[0] != 0 or shape[0] != a.shape[0]:
      raise self.fail("broadcast that moves the batch axis")
    r = [1] * len(shape)
    for j, d in enumerate(bdims):
      r[d] = a.shape[j]
    x = self.node("Reshape", [a.name, self.const(np.asarray([0] + r[1:], np.int64))])
    target = np.asarray([1] + list(shape[1:]), np.int64)   # Expand keeps the input's batch
    return self.tensor(self.node("Expand", [x, self.const(target)]), eqn)

  def _op_slice(self, eqn, a):
    p = eqn.params
    start, limit = list(p["start_indices"]), list(p["limit_indices"])
    strides = list(p["strides"] or [1] * len(start))
    if start[0] != 0 or limit[0] != a.shape[0] or strides[0] != 1:
      raise self.fail("slice of the batch axis")
    limit[0] = _INT64_MAX
    n = len(start)
    return self.tensor(self.node("Slice", [
        a.name, self.const(np.asarray(start, np.int64)), self.const(np.asarray(limit, np.int64)),
        self.const(np.arange(n, dtype=np.int64)), self.const(np.asarray(strides, np.int64))]),
        eqn)

  def _op_rev(self, eqn, a):
    dims = tuple(eqn.params["dimensions"])
    if 0 in dims:
      raise self.fail("reversal of the batch axis")
    k = len(dims)
    return self.tensor(self.node("Slice", [
        a.name, self.const(np.full(k, -1, np.int64)), self.const(np.full(k, -_INT64_MAX,
                                                                          np.int64)),
        self.const(np.asarray(dims, np.int64)), self.const(np.full(k, -1, np.int64))]), eqn)

  def _op_pad(self, eqn, a, value):
    if not isinstance(a, _Tensor) or isinstance(value, _Tensor):
      raise self.fail("padding with a run-time value")
    cfg = [tuple(c) for c in eqn.params["padding_config"]]
    if cfg[0] != (0, 0, 0) or any(c[2] for c in cfg):
      raise self.fail("padding of the batch axis or interior padding")
    pads = np.asarray([c[0] for c in cfg] + [c[1] for c in cfg], np.int64)
    return self.tensor(self.node("Pad", [a.name, self.const(pads),
                                         self.const(np.asarray(value, a.dtype))]), eqn)

  def _op_concatenate(self, eqn, *xs):
    dim = eqn.params["dimension"]
    if dim == 0 or not all(isinstance(x, _Tensor) for x in xs):
      raise self.fail("concatenation along the batch axis or with a constant")
    return self.tensor(self.node("Concat", [x.name for x in xs], axis=int(dim)), eqn)

  # --- the contraction ----------------------------------------------------------------------
  def _contraction(self, eqn, lhs, rhs) -> _Tensor:
    p = eqn.params
    op, kwargs, pattern, act, config = (p["op"], dict(p["kwargs"]), p["pattern"],
                                        p["act_pattern"], p["config"])
    self.layer = p["layer"]
    if not isinstance(lhs, _Tensor) or isinstance(rhs, _Tensor):
      raise self.fail(f"layer '{p['layer']}': activations must be the run-time operand and "
                      "weights constant")
    if config.mode != "exact":
      raise self.fail(f"the '{config.mode}' datapath (only 'exact' is exported)")
    if act is None or act.bits > 8:
      raise self.fail(f"layer '{p['layer']}': activations of {act.bits if act else 16} bits "
                      "(ConvInteger / MatMulInteger take at most 8)")
    if pattern.max_level > (127 if pattern.signed else 255):
      raise self.fail(f"layer '{p['layer']}': weights {pattern} do not fit 8 bits")
    w = np.asarray(rhs, np.int64)
    # x: unsigned levels as they are; signed sign-magnitude levels + 128 (zero point 128).
    x = lhs.name
    x_zp = self.const(np.asarray(128, np.uint8)) if act.signed else ""
    w_zp = self.const(np.asarray(128, np.uint8)) if pattern.signed else ""
    w_shift = 128 if pattern.signed else 0
    if op == CONV:
      y, bound_w = self._conv(eqn, lhs, x, w, kwargs, act, w_shift, x_zp, w_zp)
    elif op == DOT_GENERAL:
      y, bound_w = self._dot(eqn, lhs, x, w, kwargs, act, w_shift, x_zp, w_zp)
    else:  # pragma: no cover
      raise self.fail(f"contraction {op!r}")
    bound = int(bound_w) * act.max_level
    if bound > INT32_BOUND:
      raise self.fail(f"layer '{p['layer']}': the accumulator bound {bound} exceeds int32, "
                      "so ONNX Runtime's int32 sum is not guaranteed to match")
    b = config.acc_bits
    if b < 32 and bound >= (1 << (b - 1)):
      half, full = 1 << (b - 1), 1 << b
      if config.overflow == "saturate":
        raise self.fail(f"layer '{p['layer']}': overflow='saturate' (a register clamping after "
                        f"every add, in the datapath's order) at acc_bits={b} can overflow "
                        f"here (bound {bound}) and has no ConvInteger/MatMulInteger form; "
                        "export 'clip' (the clamped exact sum), 'wrap', or a wider "
                        "accumulator")
      if config.overflow == "clip":
        y = self.node("Clip", [y, self.const(np.asarray(-half, np.int32)),
                               self.const(np.asarray(half - 1, np.int32))])
      else:   # wrap (and 'error', which computes as wrap)
        y = self.node("Add", [y, self.const(np.asarray(half, np.int32))])
        y = self.node("Mod", [y, self.const(np.asarray(full, np.int32))], fmod=0)
        y = self.node("Sub", [y, self.const(np.asarray(half, np.int32))])
    return self.tensor(y, eqn)

  def _encode_x(self, x: str, act: BitPattern) -> str:
    if act.signed:
      x = self.node("Add", [x, self.const(np.asarray(128, np.int32))])
    return self.node("Cast", [x], to=2)       # UINT8

  def _conv(self, eqn, lhs, x, w, kwargs, act, w_shift, x_zp, w_zp):
    if kwargs.get("batch_group_count", 1) != 1:
      raise self.fail("batch_group_count != 1")
    lhs_dil = kwargs.get("lhs_dilation") or (1,) * (len(lhs.shape) - 2)
    if any(d != 1 for d in lhs_dil):
      raise self.fail("input dilation (transposed convolution)")
    dn = lax.conv_dimension_numbers(lhs.shape, w.shape, kwargs.get("dimension_numbers"))
    lhs_spec, rhs_spec, out_spec = (tuple(int(d) for d in s) for s in dn)
    if lhs_spec[0] != 0:
      raise self.fail("a convolution whose batch is not the first input axis")
    nsp = len(lhs_spec) - 2
    strides = tuple(kwargs.get("window_strides") or (1,) * nsp)
    rhs_dil = tuple(kwargs.get("rhs_dilation") or (1,) * nsp)
    in_sp = [lhs.shape[d] for d in lhs_spec[2:]]
    k_sp = [w.shape[d] for d in rhs_spec[2:]]
    padding = kwargs.get("padding", "VALID")
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(in_sp, [(k - 1) * d + 1 for k, d in zip(k_sp, rhs_dil)],
                                    strides, padding)
    padding = [tuple(int(v) for v in pd) for pd in padding]
    if any(lo < 0 or hi < 0 for lo, hi in padding):
      raise self.fail("negative convolution padding")
    if lhs_spec != tuple(range(len(lhs_spec))):
      x = self.node("Transpose", [x], perm=list(lhs_spec))
    if any(pd != (0, 0) for pd in padding):     # explicit zero padding of the levels
      pads = np.asarray([0, 0] + [lo for lo, _ in padding] + [0, 0] + [hi for _, hi in padding],
                        np.int64)
      x = self.node("Pad", [x, self.const(pads), self.const(np.asarray(0, np.int32))])
    x = self._encode_x(x, act)
    w_oi = np.transpose(w, rhs_spec)                        # (O, I/groups, spatial...)
    wq = self.const((w_oi + w_shift).astype(np.uint8))
    y = self.node("ConvInteger", [x, wq, x_zp, w_zp],
                  strides=list(strides), dilations=list(rhs_dil),
                  group=int(kwargs.get("feature_group_count", 1)))
    perm = [int(i) for i in np.argsort(out_spec)]
    if perm != list(range(len(perm))):
      y = self.node("Transpose", [y], perm=perm)
    bound_w = np.max(np.sum(np.abs(w_oi.reshape(w_oi.shape[0], -1)), axis=1))
    return y, bound_w

  def _dot(self, eqn, lhs, x, w, kwargs, act, w_shift, x_zp, w_zp):
    (lc, rc), (lb, rb) = kwargs["dimension_numbers"]
    if lb or rb or len(lc) != 1 or len(rc) != 1 or w.ndim != 2:
      raise self.fail("a dot_general other than (..., K) x (K, O) or (O, K)")
    lc, rc = int(lc[0]), int(rc[0])
    if lc == 0:
      raise self.fail("a contraction over the batch axis")
    nd = len(lhs.shape)
    if lc != nd - 1:
      x = self.node("Transpose", [x], perm=[d for d in range(nd) if d != lc] + [lc])
    w_ko = w if rc == 0 else w.T
    x = self._encode_x(x, act)
    y = self.node("MatMulInteger", [x, self.const((w_ko + w_shift).astype(np.uint8)), x_zp,
                                    w_zp])
    return y, np.max(np.sum(np.abs(w_ko), axis=0))


def _broadcast_compact(a, shape, bdims) -> np.ndarray:
  """``broadcast_in_dim`` of a constant, keeping size-1 dims (ONNX broadcasts them)."""
  a = np.asarray(a)
  r = [1] * len(shape)
  for j, d in enumerate(bdims):
    r[d] = a.shape[j]
  return a.reshape(r)


def _live_eqns(jaxpr) -> List[Any]:
  """The equations the outputs depend on, in order (dead code is dropped)."""
  live = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
  keep = []
  for eqn in reversed(jaxpr.eqns):
    if any(v in live for v in eqn.outvars if not isinstance(v, jcore.DropVar)):
      keep.append(eqn)
      live.update(v for v in eqn.invars if not isinstance(v, jcore.Literal))
  return keep[::-1]


def export_onnx(qm, example_x: jax.Array, path: Optional[str] = None):
  """Writes the integer program of ``qm`` as an ONNX model (integer operators only).

  Args:
    qm: a :class:`~ebsp_jax.ptq.QuantizedModel` (no float layers, ``mode='exact'``,
      activations and weights of at most 8 bits).
    example_x: a float input batch of the model (its batch size is not baked in: the graph's
      batch axis is dynamic).
    path: where to write the ``.onnx`` file (``None``: only return the model).

  Returns:
    The ``onnx.ModelProto``: input ``'input_levels'`` (int32, the shape of
    ``qm.quantize_input(x)``, dynamic batch), output ``'int_logits'`` (int32, the shape of
    ``qm.integer_codes(x)``), checked with ``onnx.checker`` (full check).

  Raises:
    ExportError: one line naming what has no integer-only ONNX form.
  """
  import onnx  # deferred heavy import (onnx): only export needs it
  from onnx import helper  # deferred heavy import (onnx): only export needs it
  closed, levels = integer_program(qm, example_x)
  conv = _Converter()
  out = conv.convert(closed, INPUT_NAME)
  if not isinstance(out, _Tensor):
    raise ExportError("export_onnx: the output does not depend on the input")
  conv.nodes.append(helper.make_node("Identity", [out.name], [OUTPUT_NAME]))
  in_shape = ["N"] + list(levels.shape[1:])
  out_shape = ["N"] + list(out.shape[1:])
  graph = helper.make_graph(
      conv.nodes, "ebsp_integer_program",
      [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.INT32, in_shape)],
      [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.INT32, out_shape)],
      initializer=conv.inits)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                            ir_version=IR_VERSION, producer_name="ebsp_jax.ptq")
  onnx.checker.check_model(model, full_check=True)
  if path is not None:
    onnx.save(model, path)
  return model
