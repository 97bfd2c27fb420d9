"""Post-training quantization of any Flax model ("bring your own model").

* :func:`quantize` — calibrate and quantize an unmodified linen or nnx model (no training):
  a :class:`QuantizedModel` with ``fake_quant``, ``integer`` (the bit-exact EBSP datapath),
  ``quantize_input``, ``integer_codes``.
* :mod:`ebsp_jax.ptq.calibrate` — activation calibration (``minmax``, ``percentile``,
  ``mse``); :mod:`ebsp_jax.ptq.hooks` — how the conv/dense calls of an unmodified model are
  reached.
* :func:`export_onnx` — the integer program as an integer-only ONNX graph (checked bit for bit
  with ONNX Runtime); :func:`export_jax` — ``jax.export`` of the integer model.
"""

from ebsp_jax.ptq.calibrate import METHODS as CALIBRATION_METHODS
from ebsp_jax.ptq.hooks import CannotQuantize
from ebsp_jax.ptq.quantize import LayerQuant, QuantizedModel, quantize, weight_rule
from ebsp_jax.ptq.onnx_export import ExportError, export_onnx
from ebsp_jax.ptq.jax_export import export_jax
