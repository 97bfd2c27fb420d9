"""Quantized execution modes of one Flax model definition: float, fake-quant, integer.

* :func:`float_injection` / :func:`fake_quant_injection` — hooks for
  ``models.get_model(name, **injection)`` (see :mod:`ebsp_jax.quant.inject`).
* :mod:`ebsp_jax.quant.calibration` — activation range statistics (``'quant_stats'``).
* :func:`to_integer` — the integer mode (emulated hardware): the same model and variables
  lowered to an integer-only network (:mod:`ebsp_jax.quant.lowering` documents every op),
  through the ``ebsp_jax.arith`` datapath, with integer requantization
  (:mod:`ebsp_jax.arith.requant`).
* :mod:`ebsp_jax.quant.nnx` — the same three modes for ``flax.nnx`` models built from standard
  ``nnx.Linear`` / ``nnx.Conv`` layers: ``quant.nnx.fake_quant(model, ...)``,
  ``quant.nnx.to_float(model)``, ``quant.nnx.to_integer(model, ...)``.

See ``ebsp_jax/quant/README.md`` for the design and the measured agreement.
"""

from ebsp_jax.quant.calibration import (STATS_COLLECTION, activation_formats, activation_pattern,
                                        activation_scale)
from ebsp_jax.quant.inject import (FakeQuantOp, dual_lod_lengths, fake_quant_activation,
                                   fake_quant_injection, float_injection, trained_datapath)
from ebsp_jax.quant.datapath import DatapathConfig
from ebsp_jax.quant.integer import (IntegerConfig, IntegerModel, integer_injection,
                                    quantize_weights, to_integer, trace_injection)
from ebsp_jax.quant.lowering import UnsupportedOp
from ebsp_jax.arith.requant import mul_shift_round, quantize_multiplier, requantize
from ebsp_jax.quant import nnx
