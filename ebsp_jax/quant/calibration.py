"""Activation calibration: the per-layer range statistics and the format they imply.

Every injected conv/dense keeps, in the ``'quant_stats'`` collection under its own scope
(``<layer>/act/{min,max,count}``), an exponential moving average (EMA) of the per-batch minimum
and maximum of its INPUT activation (the ``lhs``). The first update sets the statistics to the
batch values (so no bias correction is needed); later updates mix with ``ema_decay``.

The activation format follows from the statistics, one scale per tensor (docs/method.md §2):

* ``min >= 0`` (e.g. after a ReLU): unsigned ``uniform(bits, signed=False)``, levels
  ``0 .. 2**bits - 1``, ``scale = max / (2**bits - 1)``;
* ``min < 0`` (e.g. a normalised image, a residual sum without ReLU): signed sign-magnitude
  ``uniform(bits, signed=True)``, levels ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1``,
  ``scale = max(-min, max) / (2**(bits-1) - 1)``.

A degenerate range (all zeros, or never calibrated) gets scale 1. The same function,
:func:`activation_scale`, is used by the fake-quant modules during training and by the integer
conversion, so both modes quantize each activation identically.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics import BitPattern, path_str, uniform

STATS_COLLECTION = "quant_stats"
#: Name of the injected module inside each layer (so stats live at ``<layer>/act/...``).
ACT_MODULE_NAME = "act"


def activation_scale(amin: jax.Array, amax: jax.Array, bits: int) -> Tuple[jax.Array, jax.Array]:
  """Signedness and scale of an activation from its calibrated range.

  Args:
    amin: float32 scalar, calibrated minimum of the activation.
    amax: float32 scalar, calibrated maximum.
    bits: activation bits (sign included when signed).

  Returns:
    ``(signed, scale)``: a bool scalar (``amin < 0``) and a positive float32 scalar.
  """
  amin = jnp.asarray(amin, jnp.float32)
  amax = jnp.asarray(amax, jnp.float32)
  signed = amin < 0
  signed_scale = jnp.maximum(-amin, amax) / float((1 << (bits - 1)) - 1)
  unsigned_scale = jnp.maximum(amax, 0.0) / float((1 << bits) - 1)
  scale = jnp.where(signed, signed_scale, unsigned_scale)
  scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
  return signed, scale.astype(jnp.float32)


_activation_scale_jit = jax.jit(activation_scale, static_argnums=2)


def activation_pattern(signed: bool, bits: int) -> BitPattern:
  """The uniform activation format: ``uniform(bits, signed)``."""
  return uniform(bits, signed=bool(signed))


def ema_update(old: jax.Array, batch: jax.Array, count: jax.Array, decay: float) -> jax.Array:
  """``batch`` when ``count == 0`` (first calibration), else ``decay*old + (1-decay)*batch``."""
  return jnp.where(count == 0, batch, decay * old + (1.0 - decay) * batch)


def activation_formats(quant_stats: Mapping[str, Any], bits: int) -> Dict[str, Tuple[BitPattern, float]]:
  """Concrete activation format of every calibrated layer.

  Args:
    quant_stats: the ``'quant_stats'`` collection (a nested dict of
      ``{..., 'act': {'min', 'max', 'count'}}``), or a full variables dict holding it.
    bits: activation bits.

  Returns:
    ``{layer_path: (pattern, scale)}`` with ``layer_path`` like ``'stage1_block0/conv1'``
    (the layer that owns the injected module), ``pattern = uniform(bits, signed)``, ``scale``
    a Python float (the float32 value the fake-quant modules use).

  Raises:
    ValueError: when a layer was never calibrated (``count == 0``).
  """
  if STATS_COLLECTION in quant_stats:
    quant_stats = quant_stats[STATS_COLLECTION]
  out: Dict[str, Tuple[BitPattern, float]] = {}
  flat = jax.tree_util.tree_flatten_with_path(quant_stats)[0]
  leaves = {path_str(p): v for p, v in flat}
  for key in leaves:
    if not key.endswith(f"{ACT_MODULE_NAME}/count"):
      continue
    layer = key[: -len(f"/{ACT_MODULE_NAME}/count")]
    base = key[: -len("/count")]
    if int(np.asarray(leaves[key])) == 0:
      raise ValueError(f"activation of layer '{layer}' was never calibrated (quant_stats count 0): "
                       "run model.apply(..., train=True, mutable=['quant_stats']) on data first")
    signed, scale = _activation_scale_jit(leaves[f"{base}/min"], leaves[f"{base}/max"], bits)
    out[layer] = (activation_pattern(bool(signed), bits), float(np.asarray(scale)))
  return out
