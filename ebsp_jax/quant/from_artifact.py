"""The integer-mode network of a run's quantized model (``ebsp_jax.numerics.artifact``).

    qm = artifact.read("runs/main")                      # quantized_model.safetensors
    imodel = from_artifact.integer_model(qm, acc_bits=16)
    logits = imodel.apply(images)

The network is :func:`ebsp_jax.quant.to_integer` of the artifact's variables, each kernel
``codes * scale`` with the artifact's scales and formats (exact names, no refit): the lowering
maps those kernels back to exactly the stored codes. Used by the golden-vector export and by
``ebsp_jax.train.export_model.integer_eval`` (``experiments/datapath_sweep.py``).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from ebsp_jax.numerics import artifact, layer_patterns
from ebsp_jax.quant.inject import trained_datapath
from ebsp_jax.quant.integer import IntegerModel, to_integer


def datapath_options(qm: artifact.QuantizedModel, datapath: Mapping[str, Any]) -> Dict[str, Any]:
  """``datapath`` with the run's own defaults (:func:`ebsp_jax.quant.inject.trained_datapath`
  of its ``--dual_lod``, as ``Experiment.integer_eval``)."""
  return trained_datapath(qm.dual_lod, datapath)


def integer_model(qm: artifact.QuantizedModel, **datapath: Any) -> IntegerModel:
  """The :class:`~ebsp_jax.quant.integer.IntegerModel` of ``qm``.

  Args:
    qm: the run's quantized model.
    **datapath: ``to_integer`` options (``acc_bits``, ``overflow``, ``mode``, ``rounding``,
      ...); defaults per :func:`datapath_options`. Layers the run kept in float run in float
      (``strict=False``), as in the run's own integer evaluation.
  """
  variables = qm.variable_tree()
  strict = all(p is not None for p in layer_patterns(variables["params"],
                                                      qm.weight_rule()).values())
  return to_integer(qm.model, variables, weight_rule=qm.weight_rule(),
                    weight_scales=qm.weight_scales(variables["params"]),
                    activation_bits=qm.activation_bits, strict=strict,
                    model_kwargs={"num_classes": qm.num_classes},
                    **datapath_options(qm, datapath))
