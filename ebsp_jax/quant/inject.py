"""Injection modules for Flax's ``dot_general_cls`` / ``conv_general_dilated_cls`` hooks.

One model definition runs in three modes (AQT style), chosen by what is injected::

    model = models.get_model('lenet5', num_classes=10, **quant.float_injection())        # float
    model = models.get_model('lenet5', num_classes=10, **quant.fake_quant_injection(8))  # training

and the integer mode (emulated hardware) of :mod:`ebsp_jax.quant.integer`, which injects
modules of the same family and takes the variables trained in fake-quant mode.

Fake-quant mode: every ``nn.Dense`` / ``nn.Conv`` fake-quantizes its INPUT activation (``lhs``)
to ``activation_bits`` with one scale per tensor and a straight-through gradient
(:func:`ebsp_jax.fake_quant` with ``uniform(activation_bits, signed)``), and passes the weights
(``rhs``) through unchanged: the weights are projected outside the model (ADMM's
``tree_fake_quant`` / ``tree_project``). Signedness and scale come from the calibrated range in
the ``'quant_stats'`` collection (:mod:`ebsp_jax.quant.calibration`):

* ``model.init(...)`` creates ``<layer>/act/{min, max, count}`` (count 0: uncalibrated).
* ``model.apply(..., mutable=['quant_stats', ...])`` updates the EMA of the batch min/max first
  and quantizes with the updated range (the first update takes the batch values).
* ``model.apply(...)`` without ``'quant_stats'`` mutable uses the stored range; a layer that was
  never calibrated (count 0) falls back to the current batch's range (dynamic quantization).

Dual-LOD-aware training (``fake_quant_injection(bits, dual_lod_length=L, dual_lod_rounding=r)``):
the quantized activation level is further cut to its ``L`` significant bits exactly as the
approximate datapath does (``ebsp_jax.arith.datapath.act_approx``: the integer mode with
``mode='dual_lod', rounding=r``), with a straight-through gradient. The integer mode cuts
each layer's input to that layer's own pattern ``length``: give one ``L`` when every quantized
layer has the same length, or the
per-layer lengths ``dual_lod_lengths(rule, params)`` (``{layer: L or None}``; ``None`` for a
layer the rule keeps in float, whose input is not cut) when they differ, e.g. 8-bit first and
last layers.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ebsp_jax.arith import datapath
from ebsp_jax.numerics import fake_quant, uniform
from ebsp_jax.numerics.tree import PyTree, Rule, layer_patterns
from ebsp_jax.quant.calibration import (ACT_MODULE_NAME, STATS_COLLECTION, activation_scale,
                                        ema_update)
from ebsp_jax.quant.ops import CONV, DOT_GENERAL, LAX_OPS

DualLodLength = Union[None, int, Mapping[str, Optional[int]]]



def _check_bits(activation_bits: int) -> int:
  if isinstance(activation_bits, bool) or not isinstance(activation_bits, int):
    raise TypeError(f"activation_bits must be an int, got {activation_bits!r}")
  if not 2 <= activation_bits <= 16:
    raise ValueError(f"activation_bits={activation_bits} is out of range [2, 16]")
  return activation_bits


class ActivationStats(nn.Module):
  """Mixin: the calibrated input range of one layer in ``'quant_stats'``.

  Attributes:
    activation_bits: bits of the activation format (sign included when signed).
    ema_decay: EMA decay of the per-batch min/max (first update takes the batch values).
  """

  activation_bits: int = 8
  ema_decay: float = 0.99

  def calibrated_scale(self, x: jax.Array):
    """Creates/updates the stats of ``x`` and returns ``(signed, scale)`` (jax scalars).

    Args:
      x: float activation of any shape.

    Returns:
      ``(signed, scale)``: bool and positive float32 scalars, gradient-stopped.
    """
    amin_v = self.variable(STATS_COLLECTION, "min", lambda: jnp.zeros((), jnp.float32))
    amax_v = self.variable(STATS_COLLECTION, "max", lambda: jnp.zeros((), jnp.float32))
    count_v = self.variable(STATS_COLLECTION, "count", lambda: jnp.zeros((), jnp.int32))
    xs = lax.stop_gradient(jnp.asarray(x, jnp.float32))
    bmin, bmax = jnp.min(xs), jnp.max(xs)
    if self.is_mutable_collection(STATS_COLLECTION) and not self.is_initializing():
      amin_v.value = ema_update(amin_v.value, bmin, count_v.value, self.ema_decay)
      amax_v.value = ema_update(amax_v.value, bmax, count_v.value, self.ema_decay)
      count_v.value = count_v.value + 1
    calibrated = count_v.value > 0
    amin = jnp.where(calibrated, amin_v.value, bmin)
    amax = jnp.where(calibrated, amax_v.value, bmax)
    signed, scale = activation_scale(amin, amax, self.activation_bits)
    return lax.stop_gradient(signed), lax.stop_gradient(scale)


def fake_quant_activation(x: jax.Array, signed: jax.Array, scale: jax.Array, bits: int
                          ) -> jax.Array:
  """Fake-quantizes ``x`` to ``uniform(bits, signed)`` with a straight-through gradient.

  ``signed`` may be traced (it comes from calibration), so both formats are evaluated and
  selected; the result has ``x``'s shape and dtype.
  """
  fq_signed = fake_quant(x, uniform(bits, signed=True), scale)
  fq_unsigned = fake_quant(x, uniform(bits, signed=False), scale)
  return jnp.where(signed, fq_signed, fq_unsigned)


def dual_lod_activation(x_q: jax.Array, scale: jax.Array, length: int, rounding: str
                        ) -> jax.Array:
  """``x_q`` (a fake-quantized activation, levels times ``scale``) cut to ``length``
  significant bits per level as the dual-LOD datapath does; straight-through gradient."""
  levels = jnp.round(lax.stop_gradient(x_q) / scale).astype(jnp.int32)
  approx = datapath.act_approx(levels, length, rounding).astype(x_q.dtype) * scale
  return x_q + lax.stop_gradient(approx - x_q)


class FakeQuantOp(ActivationStats):
  """``lax.dot_general`` / ``lax.conv_general_dilated`` with a fake-quantized ``lhs``.

  Flax instantiates it (with no arguments, via :func:`fake_quant_injection`'s partials) inside
  each ``nn.Dense`` / ``nn.Conv`` and calls it with the layer's ``(lhs, rhs, ...)`` and the
  usual ``lax`` keyword arguments. ``rhs`` (the weights) is passed through unchanged.

  Attributes:
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    dual_lod_length: ``None``, or the ``L`` of dual-LOD-aware training (see the module doc):
      an int for every layer, or per layer a sorted tuple of ``(layer_path, L or None)`` pairs
      (:func:`fake_quant_injection` builds it from a mapping).
    dual_lod_rounding: ``'truncate'`` or ``'round'`` (with ``dual_lod_length``).
  """

  op: str = DOT_GENERAL
  dual_lod_length: Union[None, int, Tuple[Tuple[str, Optional[int]], ...]] = None
  dual_lod_rounding: str = "round"

  def _dual_lod_length(self) -> Optional[int]:
    """This layer's ``L`` (``None``: no cut); raises for a layer missing from a mapping."""
    if self.dual_lod_length is None or isinstance(self.dual_lod_length, int):
      return self.dual_lod_length
    layer = "/".join(self.scope.path[:-1])
    lengths = dict(self.dual_lod_length)
    if layer not in lengths:
      raise ValueError(f"dual_lod_length has no entry for layer '{layer}' (it has: "
                       f"{', '.join(sorted(lengths)) or 'none'}); build it with "
                       "dual_lod_lengths(rule, params), None for float layers")
    return lengths[layer]

  @nn.compact
  def __call__(self, lhs: jax.Array, rhs: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
    signed, scale = self.calibrated_scale(lhs)
    lhs_q = fake_quant_activation(lhs, signed, scale, self.activation_bits)
    # Optional (only when 'intermediates' is mutable): the integer levels of the input, to
    # compare with the integer mode layer by layer.
    self.sow("intermediates", "levels", jnp.round(lax.stop_gradient(lhs_q) / scale))
    length = self._dual_lod_length()
    if length is not None:
      lhs_q = dual_lod_activation(lhs_q, scale, length, self.dual_lod_rounding)
    return LAX_OPS[self.op](lhs_q, rhs, *args, **kwargs)


def _injection(module_cls, **kwargs) -> Dict[str, Any]:
  return dict(
      dot_general_cls=functools.partial(module_cls, op=DOT_GENERAL, name=ACT_MODULE_NAME, **kwargs),
      conv_general_dilated_cls=functools.partial(module_cls, op=CONV, name=ACT_MODULE_NAME,
                                                 **kwargs),
  )


def float_injection() -> Dict[str, Any]:
  """Plain float mode: no injection (``{}``), i.e. ``lax.dot_general`` / ``lax.conv``."""
  return {}


def dual_lod_lengths(rule: Rule, params: PyTree) -> Dict[str, Optional[int]]:
  """Per-layer ``L`` of dual-LOD-aware training: each layer's weight pattern ``length``.

  Args:
    rule: the weight rule ``(path, leaf) -> BitPattern | None`` (as for ADMM / ``to_integer``).
    params: the ``params`` collection (arrays or ``jax.ShapeDtypeStruct``s, e.g. from
      ``jax.eval_shape(model.init, ...)``).

  Returns:
    ``{layer_path: L}`` for every ``<layer_path>/kernel`` leaf, ``None`` where the rule keeps
    the kernel in float (that layer's input is not cut, as in the integer mode).
  """
  patterns = layer_patterns(params, rule)
  if not patterns:
    raise ValueError("dual_lod_lengths: params hold no '<layer>/kernel' leaf")
  return {k: None if p is None else int(p.length) for k, p in patterns.items()}


def trained_datapath(dual_lod: str, datapath: Mapping[str, Any]) -> Dict[str, Any]:
  """``to_integer`` options ``datapath`` with the defaults of a run trained with
  ``--dual_lod=dual_lod``: unless ``'off'``, ``mode='dual_lod'`` and, for that mode, the run's
  rounding (either may be given explicitly)."""
  out = dict(datapath)
  if dual_lod != "off":
    out.setdefault("mode", "dual_lod")
    if out["mode"] == "dual_lod":
      out.setdefault("rounding", dual_lod)
  return out


def _check_dual_lod_length(value: Any, hi: int, name: str, why: str) -> None:
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
    raise ValueError(f"{name}={value!r} must be None or an int in [1, {hi}]{why}")


def fake_quant_injection(activation_bits: int = 8, *, ema_decay: float = 0.99,
                         dual_lod_length: DualLodLength = None,
                         dual_lod_rounding: Optional[str] = None) -> Dict[str, Any]:
  """Fake-quant (training) mode: the hooks for ``models.get_model(..., **injection)``.

  Args:
    activation_bits: bits of every conv/dense input activation (unsigned after ReLU, signed
      where the calibrated minimum is negative; one scale per tensor).
    ema_decay: decay of the calibration EMA of the per-batch min/max.
    dual_lod_length: ``None`` (exact datapath); ``L``: also cut every activation level to
      ``L`` significant bits as the dual-LOD datapath does (the weight pattern's length); or
      ``{layer_path: L or None}`` (:func:`dual_lod_lengths`) when layers' lengths differ: a
      layer missing from it raises when the model runs.
    dual_lod_rounding: ``'truncate'`` or ``'round'``; required with ``dual_lod_length`` (no
      default, so that it cannot silently differ from the integer mode's ``rounding``).

  Returns:
    ``dict(dot_general_cls=..., conv_general_dilated_cls=...)``.
  """
  _check_bits(activation_bits)
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f"ema_decay={ema_decay} must be in [0, 1)")
  extra = check_dual_lod(dual_lod_length, dual_lod_rounding, activation_bits)
  return _injection(FakeQuantOp, activation_bits=activation_bits, ema_decay=ema_decay, **extra)


def check_dual_lod(dual_lod_length: DualLodLength, dual_lod_rounding: Optional[str],
                   activation_bits: int) -> Dict[str, Any]:
  """Validates the dual-LOD training options; returns the hook's keyword arguments.

  Returns:
    ``{}`` when ``dual_lod_length`` is ``None``, else ``dict(dual_lod_length=L or a sorted
    tuple of (layer, L or None) pairs, dual_lod_rounding=...)``.

  Raises:
    ValueError: a length out of range (an int: ``[1, activation_bits - 1]``; per layer
      ``[1, 31]``, since an 8-bit first layer has ``L = 7`` whatever the activation bits), a
      missing (``None`` with a length) or unknown rounding.
  """
  if dual_lod_length is None:
    if dual_lod_rounding is not None:
      raise ValueError(f"dual_lod_rounding={dual_lod_rounding!r} without dual_lod_length: "
                       "give both (dual-LOD-aware training) or neither")
    return {}
  if dual_lod_rounding is None:
    raise ValueError("dual_lod_length needs dual_lod_rounding='truncate' or 'round' (no "
                     "default: pass the same rounding to to_integer(mode='dual_lod'))")
  if isinstance(dual_lod_length, Mapping):
    for layer, length in dual_lod_length.items():
      _check_dual_lod_length(length, 31, f"dual_lod_length['{layer}']", "")
    dual_lod_length = tuple(sorted(dual_lod_length.items()))
  else:
    _check_dual_lod_length(dual_lod_length, activation_bits - 1, "dual_lod_length",
                           f" (activation_bits={activation_bits})")
  if dual_lod_rounding not in ("truncate", "round"):
    raise ValueError(f"dual_lod_rounding={dual_lod_rounding!r} is not supported; allowed: "
                     "truncate, round")
  return dict(dual_lod_length=dual_lod_length, dual_lod_rounding=dual_lod_rounding)
