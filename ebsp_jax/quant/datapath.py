"""The one entry point from the integer mode to the emulated EBSP datapath.

:func:`int_op` runs ``dot_general`` / ``conv_general_dilated`` of integer activations and
integer on-grid weights through :mod:`ebsp_jax.arith` (the bit-exact LUT-plus-shift datapath),
with the options of a :class:`DatapathConfig` (checked once, when it is made).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from ebsp_jax import arith
from ebsp_jax.arith.config import validate_options
from ebsp_jax.numerics import BitPattern
from ebsp_jax.quant.ops import CONV, DOT_GENERAL

_ARITH_OPS = {DOT_GENERAL: arith.dot_general, CONV: arith.conv_general_dilated}


@dataclasses.dataclass(frozen=True)
class DatapathConfig:
  """Static options of the emulated datapath (passed through to ``ebsp_jax.arith``).

  Attributes:
    acc_bits: accumulator width (two's complement).
    overflow: ``'wrap'``, ``'saturate'`` (a register that clamps after every add, in the
      datapath's K order: for convolutions kernel tap by tap, within a tap the input channels
      ascending; see ``ebsp_jax.arith.dot_general``), ``'clip'`` (the exact sum clipped once)
      or ``'error'`` (computes as ``'wrap'``; the integer model's ``apply`` then raises
      ``OverflowError`` naming the layers that overflowed). The overflow counts
      (``with_stats``) are outputs whose exact sum did not fit, for ``'saturate'`` outputs
      whose register clamped at least once.
    mode: ``'exact'`` or ``'dual_lod'`` (approximate; see ``ebsp_jax.arith``).
    rounding: how ``'dual_lod'`` cuts an activation to the pattern's ``length`` significant
      bits: ``'truncate'`` or ``'round'``.
    method: ``'fast'`` or ``'reference'``.
    accumulation: native path of the fast method (``'auto'``, ``'int32'``, ``'float32'``,
      ``'bfloat16'``, ``'onednn'``; see ``ebsp_jax.arith.dot_general``). Every choice is
      bit-exact. ``'onednn'`` (CPU) runs every layer through oneDNN's int8 GEMM (other
      convolutions than 1x1 as im2col + GEMM, depthwise ones too); ``'auto'`` keeps
      depthwise convolutions on XLA.
  """

  acc_bits: int = 32
  overflow: str = "wrap"
  mode: str = "exact"
  method: str = "fast"
  accumulation: str = "auto"
  rounding: str = "truncate"

  def __post_init__(self):
    """Validates the options eagerly (one-line ``ValueError``/``TypeError``)."""
    validate_options(acc_bits=self.acc_bits, overflow=self.overflow, mode=self.mode,
                     method=self.method, rounding=self.rounding,
                     accumulation=self.accumulation)


def backend() -> str:
  """The module that runs the integer contractions: ``'ebsp_jax.arith'``."""
  return arith.__name__


def int_op(op: str, lhs: jax.Array, rhs: jax.Array, kwargs: Mapping[str, Any], *,
           pattern: BitPattern, act_pattern: Optional[BitPattern] = None,
           name: Optional[str] = None, config: DatapathConfig = DatapathConfig(),
           with_stats: bool = False):
  """Exact integer ``dot_general`` / ``conv_general_dilated``.

  Args:
    op: ``'dot_general'`` or ``'conv_general_dilated'``.
    lhs: int32 activations (levels of the activation format).
    rhs: int32 weights, levels of ``pattern``.
    kwargs: the ``lax`` arguments of the layer besides ``lhs``/``rhs`` (``dimension_numbers``
      for dot; ``window_strides``, ``padding``, dilations, ``dimension_numbers``,
      ``feature_group_count`` for conv). ``precision`` / ``preferred_element_type`` are dropped.
    pattern: the weights' ``BitPattern``.
    act_pattern: the activation format (its bits and signedness are the datapath's
      ``act_bits`` / ``act_signed``: the sign-magnitude range ``±(2**(b-1) - 1)`` lies inside
      the two's-complement range the datapath checks); ``None``: 16-bit signed.
    name: label of the call in ``ebsp_jax.arith.events.recording`` logs (the layer path).
    config: datapath options.
    with_stats: also return the number of outputs that overflowed the ``acc_bits``
      accumulator (int32 scalar; cheap where the plan bounds ``|sum| < 2**31``).

  Returns:
    int32 accumulator array (the ``lax`` output shape); with ``with_stats``,
    ``(accumulator, overflow_count)``.
  """
  kw = {k: v for k, v in kwargs.items() if k not in ("precision", "preferred_element_type")}
  fn = _ARITH_OPS[op]
  act = dict(act_bits=16, act_signed=True) if act_pattern is None else dict(
      act_bits=act_pattern.bits, act_signed=act_pattern.signed)
  # 'error' is reported by the caller from the count (under jit arith's own check is a
  # checkify debug check, which would be silent without checkify).
  overflow = "wrap" if config.overflow == "error" else config.overflow
  out = fn(jnp.asarray(lhs, jnp.int32), jnp.asarray(rhs, jnp.int32), pattern=pattern,
           acc_bits=config.acc_bits, overflow=overflow, mode=config.mode,
           method=config.method, rounding=config.rounding,
           accumulation=config.accumulation, name=name,
           with_stats=with_stats, **act, **kw)
  return (out[0], out[1]["overflow_count"]) if with_stats else out
