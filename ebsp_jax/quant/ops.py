"""The ``lax`` contractions the quant package intercepts, and the marker they become in a jaxpr.

Flax's ``nn.Dense`` / ``nn.Conv`` (and ``nnx.Linear`` / ``nnx.Conv``) call ``lax.dot_general`` /
``lax.conv_general_dilated`` through a hook; every mode of the package replaces that hook. The
one home of those ops' identities:

* :data:`DOT_GENERAL`, :data:`CONV`: the op names (also the ``lax`` primitives' names);
  :data:`LAX_OPS`: name -> the ``lax`` function a hook stands in for.
* :func:`canonical_kwargs`: a hooked call's ``lax`` arguments as a sorted, hashable tuple.
* :data:`quantized_op_p`: the traced marker. The integer mode (``integer.TraceOp``,
  ``nnx.TraceOp``) and post-training quantization bind it once per conv/dense with the
  layer's path; it evaluates as the ``lax`` op (float semantics), and
  :class:`ebsp_jax.quant.lowering.Interpreter` lowers it to the integer datapath.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

import jax
from jax import lax
from jax.extend import core as jcore
from jax.interpreters import mlir

DOT_GENERAL = "dot_general"
CONV = "conv_general_dilated"
LAX_OPS: Dict[str, Callable[..., jax.Array]] = {
    DOT_GENERAL: lax.dot_general,
    CONV: lax.conv_general_dilated,
}

# The lax arguments a hook may receive positionally, after lhs and rhs.
_POSITIONAL = {DOT_GENERAL: ("dimension_numbers",), CONV: ("window_strides", "padding")}


def _hashable(v):
  if isinstance(v, list):
    return tuple(_hashable(x) for x in v)
  if isinstance(v, tuple) and not hasattr(v, "_fields"):
    return tuple(_hashable(x) for x in v)
  return v


def canonical_kwargs(op: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Tuple:
  """The ``lax`` arguments of a hooked call as a sorted, hashable tuple of ``(name, value)``."""
  kw = dict(zip(_POSITIONAL[op], args))
  kw.update(kwargs)
  kw.pop("precision", None)
  kw.pop("preferred_element_type", None)
  return tuple(sorted((k, _hashable(v)) for k, v in kw.items()))


quantized_op_p = jcore.Primitive("ebsp_quantized_op")


def _qop_impl(lhs, rhs, *, op, layer, kwargs):
  del layer
  return LAX_OPS[op](lhs, rhs, **dict(kwargs))


def _qop_abstract(lhs, rhs, *, op, layer, kwargs):
  del layer
  out = jax.eval_shape(lambda a, b: LAX_OPS[op](a, b, **dict(kwargs)),
                       jax.ShapeDtypeStruct(lhs.shape, lhs.dtype),
                       jax.ShapeDtypeStruct(rhs.shape, rhs.dtype))
  return jax.core.ShapedArray(out.shape, out.dtype)


quantized_op_p.def_impl(_qop_impl)
quantized_op_p.def_abstract_eval(_qop_abstract)
mlir.register_lowering(quantized_op_p, mlir.lower_fun(_qop_impl, multiple_results=False))
