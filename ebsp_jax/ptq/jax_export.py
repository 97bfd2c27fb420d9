"""``jax.export`` of an integer model (serializable StableHLO, loadable without this package).

Two things in the default integer program cannot be serialized as they are:

* on the CPU backend, ``accumulation='auto'`` (the default) runs the contractions through
  oneDNN's int8 GEMM, an XLA custom call without compatibility guarantees, which
  ``jax.export`` refuses; every ``accumulation`` of ``ebsp_jax.arith`` is bit-exact, so the
  exported program uses ``'int32'`` (XLA's own integer dot/convolution) instead of ``'auto'``
  or ``'onednn'``;
* ``ebsp_jax.arith`` guards its operands with ``checkify.debug_check`` (weights on the grid,
  activations in range), an effect ``jax.export`` cannot serialize. The exported function is
  the ``checkify``-discharged program with the error dropped: the checked invariants hold by
  construction in an integer model (weights from ``quantize_weights``, every layer input from
  ``quantize`` or the clamping requantizer).

:func:`export_jax` returns the ``jax.export.Exported``: ``exported.serialize()`` gives bytes,
``jax.export.deserialize(b).call(x)`` runs them (bit-identical to ``imodel.apply(x)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import jax
from jax import export as jax_export_api
from jax.experimental import checkify

from ebsp_jax.quant.integer import IntegerModel

#: Accumulations replaced by ``'int32'`` in an exported program (a custom call on CPU).
_NOT_SERIALIZABLE = ("auto", "onednn")
OUTPUTS = ("logits", "codes")


def portable(imodel: IntegerModel) -> IntegerModel:
  """The same integer model with ``accumulation='int32'`` where it was ``'auto'`` or
  ``'onednn'`` (bit-identical results, XLA ops only)."""
  dp = imodel.config.datapath
  if dp.accumulation not in _NOT_SERIALIZABLE:
    return imodel
  config = dataclasses.replace(imodel.config,
                               datapath=dataclasses.replace(dp, accumulation="int32"))
  return IntegerModel(imodel.model, imodel.variables, imodel.layers, imodel.weights,
                      imodel.apply_kwargs, config, imodel.float_inputs)


def export_jax(model: Any, example_x: jax.Array, *, output: str = "logits",
               platforms: Optional[Sequence[str]] = None) -> jax_export_api.Exported:
  """``jax.export`` of the integer model's forward pass.

  Args:
    model: a :class:`~ebsp_jax.ptq.QuantizedModel` or an
      :class:`~ebsp_jax.quant.integer.IntegerModel` (e.g. from ``quant.to_integer`` with its
      default arguments).
    example_x: an input batch (shape and dtype of the exported function's argument).
    output: ``'logits'`` (float32, as ``integer(x)`` / ``imodel.apply(x)``) or ``'codes'``
      (int32, as ``integer_codes(x)``; a ``QuantizedModel`` only).
    platforms: ``jax.export`` platforms (default: the current backend).

  Returns:
    The ``jax.export.Exported`` (``.serialize()``, ``.call(x)``).

  Raises:
    ValueError: an unknown ``output``, or ``'codes'`` of a plain ``IntegerModel``.
  """
  if output not in OUTPUTS:
    raise ValueError(f"output={output!r} is not supported; allowed: {', '.join(OUTPUTS)}")
  qm = None if isinstance(model, IntegerModel) else model
  imodel = model if qm is None else qm.integer_model
  if not isinstance(imodel, IntegerModel):
    raise TypeError(f"export_jax: model must be a QuantizedModel or an IntegerModel, got "
                    f"{type(model).__name__}")
  if output == "codes" and qm is None:
    raise ValueError("export_jax: output='codes' needs a ptq.QuantizedModel")
  exported_model = portable(imodel)

  def forward(x):
    if output == "codes":
      outs, _, _ = exported_model.interpret(x, raw=True)
      return qm._single_output(outs).q  # pylint: disable=protected-access
    outs, out_shape, _ = exported_model.interpret(x)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

  def discharged(x):
    return checkify.checkify(forward)(x)[1]

  x = jax.numpy.asarray(example_x)
  kw = {} if platforms is None else {"platforms": tuple(platforms)}
  return jax_export_api.export(jax.jit(discharged), **kw)(
      jax.ShapeDtypeStruct(x.shape, x.dtype))
