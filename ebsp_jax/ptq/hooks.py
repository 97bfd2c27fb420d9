"""Hooks into unmodified Flax models: every conv/dense call goes through one handler.

Post-training quantization must work on a model as its author wrote it, without the
``dot_general_cls`` / ``conv_general_dilated_cls`` fields the registry's models declare. This
module reaches the contractions of

* **linen** models through ``flax.linen.intercept_methods``: each ``nn.Dense`` / ``nn.Conv``
  call is re-run as a clone of the layer whose ``dot_general`` / ``conv_general_dilated``
  field is a :class:`Hook` (same variables, same arguments: the layer's own code computes
  padding, masks, dtype promotion and bias);
* **nnx** models through the layers' own attributes: a clone of the model whose
  ``nnx.Linear`` / ``nnx.Conv`` layers hold a :class:`Hook` in their ``dot_general`` /
  ``conv_general_dilated`` attribute, in eval mode.

A :class:`Hook` calls the *current handler* (:func:`handling`), a function
``handler(layer, op, lhs, rhs, args, kwargs) -> output`` that may observe the call
(calibration), fake-quantize it, or mark it for the integer lowering
(``ebsp_quantized_op``); with no handler it is the plain ``lax`` op. Layer names are the
``'/'``-joined module paths (linen: the ``params`` path, e.g. ``'Conv_0'``,
``'stage1_block0/conv1'``; nnx: the graph path, e.g. ``'layers/0'``), so weight rules see
``'<layer>/kernel'`` as everywhere else in the project.

Only these layer types are hooked; a hooked layer with its own ``dot_general`` /
``conv_general_dilated`` (e.g. already quantized by another library) is refused with a
one-line error naming it. A contraction anywhere else (``nn.Einsum``, ``nn.DenseGeneral``,
attention, ``nnx.LinearGeneral``, ...) is not hooked: the integer lowering then refuses it,
naming the module (linen) or, for nnx, :func:`adapt` refuses such a module up front.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import flax.linen as nn
import jax
from flax import nnx

from ebsp_jax.quant.ops import CONV, DOT_GENERAL, LAX_OPS, canonical_kwargs

#: ``handler(layer, op, lhs, rhs, args, kwargs) -> output`` (the value the layer continues with).
Handler = Callable[[str, str, jax.Array, jax.Array, Tuple[Any, ...], Dict[str, Any]], jax.Array]

_HANDLER: contextvars.ContextVar[Optional[Handler]] = contextvars.ContextVar(
    "ebsp_ptq_handler", default=None)

#: linen layer types that are hooked, and the field holding their lax op.
LINEN_LAYERS: Tuple[Tuple[type, str, str], ...] = (
    (nn.Dense, "dot_general", DOT_GENERAL),
    (nn.Conv, "conv_general_dilated", CONV),
)
#: nnx layer types that are hooked, and the attribute holding their lax op.
NNX_LAYERS: Tuple[Tuple[type, str, str], ...] = (
    (nnx.Linear, "dot_general", DOT_GENERAL),
    (nnx.Conv, "conv_general_dilated", CONV),
)
#: nnx modules with contractions the hooks do not reach (refused by :func:`adapt`).
NNX_UNHOOKED: Tuple[type, ...] = tuple(
    getattr(nnx, n) for n in ("LinearGeneral", "Einsum", "ConvTranspose", "MultiHeadAttention")
    if hasattr(nnx, n))


@contextlib.contextmanager
def handling(handler: Optional[Handler]) -> Iterator[None]:
  """Routes every :class:`Hook` call inside the block to ``handler`` (trace time)."""
  token = _HANDLER.set(handler)
  try:
    yield
  finally:
    _HANDLER.reset(token)


@dataclasses.dataclass(frozen=True)
class Hook:
  """The callable installed as a layer's ``dot_general`` / ``conv_general_dilated``.

  Attributes:
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    layer: the layer's path.
  """

  op: str
  layer: str

  def __call__(self, lhs, rhs, *args, **kwargs):
    if kwargs.get("out_sharding", 0) is None:    # nnx passes it; the lowering takes no sharding
      kwargs.pop("out_sharding")
    handler = _HANDLER.get()
    if handler is None:
      return LAX_OPS[self.op](lhs, rhs, *args, **kwargs)
    return handler(self.layer, self.op, lhs, rhs, args, kwargs)


class CannotQuantize(ValueError):
  """A model or layer that post-training quantization cannot handle (one-line message)."""


def _custom_op_error(layer: str, kind: str, attr: str, value: Any) -> CannotQuantize:
  return CannotQuantize(f"ptq: layer '{layer}' ({kind}) has its own {attr}={value!r}; only "
                        "layers using the default lax op can be quantized")


# ----------------------------------------------------------------------------------------------
class LinenModel:
  """An unmodified linen model whose ``nn.Dense`` / ``nn.Conv`` calls go through hooks.

  ``apply(variables, x, **kwargs)`` is ``model.apply`` under ``nn.intercept_methods``.
  """

  kind = "linen"

  def __init__(self, model: nn.Module, variables: Mapping[str, Any]):
    self.model = model
    self.variables = variables

  def _interceptor(self, next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    for cls, attr, op in LINEN_LAYERS:
      if type(module) is cls:   # pylint: disable=unidiomatic-typecheck
        current = getattr(module, attr)
        if isinstance(current, Hook):           # the hooked clone itself
          return next_fun(*args, **kwargs)
        layer = "/".join(module.path)
        if current is not None:
          raise _custom_op_error(layer, cls.__name__, attr, current)
        cls_attr = f"{attr}_cls"
        if getattr(module, cls_attr) is not None:
          raise _custom_op_error(layer, cls.__name__, cls_attr, getattr(module, cls_attr))
        hooked = module.clone(parent=None, **{attr: Hook(op, layer)})
        return hooked.apply({"params": module.variables["params"]}, *args, **kwargs)
    return next_fun(*args, **kwargs)

  def apply(self, variables, x, **kwargs):
    with nn.intercept_methods(self._interceptor):
      return self.model.apply(variables, x, **kwargs)


class NnxModel:
  """An eval-mode clone of an nnx model whose ``nnx.Linear`` / ``nnx.Conv`` hold hooks.

  ``apply(state, x, **kwargs)`` merges the clone's graph with ``state`` and calls it;
  ``variables`` is the clone's state.
  """

  kind = "nnx"

  def __init__(self, model: nnx.Module):
    clone = nnx.clone(model)
    found = 0
    for path, module in nnx.iter_modules(clone):
      name = "/".join(str(p) for p in path)
      if isinstance(module, NNX_UNHOOKED):
        raise CannotQuantize(f"ptq: layer '{name}' is an nnx.{type(module).__name__}, which is "
                             "not hooked (only nnx.Linear and nnx.Conv are)")
      for cls, attr, op in NNX_LAYERS:
        if type(module) is cls:   # pylint: disable=unidiomatic-typecheck
          current = getattr(module, attr)
          if current is not LAX_OPS[op]:
            raise _custom_op_error(name, f"nnx.{cls.__name__}", attr, current)
          setattr(module, attr, nnx.static(Hook(op, name)))
          found += 1
    if not found:
      raise CannotQuantize(f"ptq: {type(model).__name__} has no nnx.Linear / nnx.Conv layer "
                           "(nothing to quantize)")
    clone.eval()
    self.graphdef, self.variables = nnx.split(clone)

  def apply(self, state, x, **kwargs):
    return nnx.merge(self.graphdef, state)(x, **kwargs)


def _accepts(fn: Callable[..., Any], arg: str) -> bool:
  try:
    return arg in inspect.signature(fn).parameters
  except (TypeError, ValueError):  # pragma: no cover
    return False


def adapt(model: Any, variables: Optional[Mapping[str, Any]],
          apply_kwargs: Optional[Mapping[str, Any]] = None):
  """The hooked form of ``model`` and the keyword arguments of its calls.

  Args:
    model: a ``flax.linen.Module`` (with ``variables`` from ``model.init``) or a
      ``flax.nnx.Module`` (``variables=None``).
    variables: the linen variables (``params``, ``batch_stats``, ...), or ``None`` for nnx.
    apply_kwargs: extra keyword arguments of every call; default ``train=False`` when the
      model's ``__call__`` takes a ``train`` argument.

  Returns:
    ``(hooked, apply_kwargs)``: a :class:`LinenModel` or :class:`NnxModel` and the kwargs.

  Raises:
    CannotQuantize: wrong ``variables`` for the model kind, a hooked layer with a custom op,
      an unhooked nnx contraction module, no layer to quantize (nnx), or another object.
  """
  if isinstance(model, nn.Module):
    if variables is None or "params" not in variables:
      raise CannotQuantize("ptq: a linen model needs variables=model.init(...) (with 'params')")
    hooked = LinenModel(model, variables)
    call = model.__call__
  elif isinstance(model, nnx.Module):
    if variables is not None:
      raise CannotQuantize("ptq: an nnx model carries its own state: pass variables=None")
    hooked = NnxModel(model)
    call = model.__call__
  else:
    raise CannotQuantize(f"ptq: model must be a flax.linen or flax.nnx Module, got "
                         f"{type(model).__name__}")
  if apply_kwargs is None:
    apply_kwargs = {"train": False} if _accepts(call, "train") else {}
  return hooked, dict(apply_kwargs)


@dataclasses.dataclass
class LayerCall:
  """Static facts of one hooked call, recorded at trace time.

  Attributes:
    layer: the layer path.
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    kwargs: the ``lax`` arguments besides the operands.
    lhs_shape, rhs_shape, out_shape: operand and result shapes.
  """

  layer: str
  op: str
  kwargs: Dict[str, Any]
  lhs_shape: Tuple[int, ...]
  rhs_shape: Tuple[int, ...]
  out_shape: Tuple[int, ...]


def lax_call(op: str, lhs, rhs, args: Tuple[Any, ...], kwargs: Mapping[str, Any]):
  """The plain ``lax`` op of a hooked call."""
  return LAX_OPS[op](lhs, rhs, *args, **kwargs)


def layer_calls(hooked, apply_kwargs: Mapping[str, Any], x: jax.ShapeDtypeStruct
                ) -> List[LayerCall]:
  """Every hooked call of one forward pass on an input like ``x``, in call order (traced
  abstractly: no computation)."""
  calls: List[LayerCall] = []

  def handler(layer, op, lhs, rhs, args, kwargs):
    out = lax_call(op, lhs, rhs, args, kwargs)
    calls.append(LayerCall(layer, op, dict(canonical_kwargs(op, args, kwargs)),
                           tuple(lhs.shape), tuple(rhs.shape), tuple(out.shape)))
    return out

  with handling(handler):
    jax.eval_shape(lambda xx: hooked.apply(hooked.variables, xx, **apply_kwargs), x)
  return calls
