"""Static configuration of one arithmetic call, validated once, hashable for ``jax.jit``."""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from ebsp_jax.arith import dispatch, platform
from ebsp_jax.numerics import BitPattern

OVERFLOWS = ("wrap", "saturate", "clip", "error")
MODES = ("exact", "dual_lod")
METHODS = ("fast", "reference")
ROUNDINGS = ("truncate", "round")
ACCUMULATIONS = ("auto", "int32", "float32", "bfloat16", "onednn")
ACC_BITS_RANGE = (2, 32)
MAX_ACT_BITS = 16

# Default activation format per integer dtype when ``act_bits`` is not given.
_DTYPE_ACT = {
    np.dtype(np.int8): (8, True),
    np.dtype(np.uint8): (8, False),
    np.dtype(np.int16): (16, True),
    np.dtype(np.uint16): (16, False),
    np.dtype(np.int32): (16, True),
    np.dtype(np.uint32): (16, False),
    np.dtype(np.int64): (16, True),
    np.dtype(np.uint64): (16, False),
}


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything static about a datapath call (see :func:`ebsp_jax.arith.dot_general`)."""

  pattern: BitPattern
  acc_bits: int = 32
  overflow: str = "wrap"
  mode: str = "exact"
  rounding: str = "truncate"
  act_bits: int = 8
  act_signed: bool = False
  method: str = "fast"
  accumulation: str = "int32"
  with_stats: bool = False
  backend: str = "cpu"     # the target backend (:func:`ebsp_jax.arith.platform.backend`)

  @property
  def act_range(self) -> Tuple[int, int]:
    """Inclusive range of the integer activations accepted at the input."""
    if self.act_signed:
      return -(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1
    return 0, (1 << self.act_bits) - 1

  @property
  def datapath_act_range(self) -> Tuple[int, int]:
    """Inclusive range of the activation values the products use.

    Equal to :attr:`act_range`, except in ``dual_lod`` mode with ``rounding="round"``, where
    rounding the mantissa up can reach the next power of two (``2**act_bits`` unsigned,
    ``+2**(act_bits-1)`` signed).
    """
    lo, hi = self.act_range
    if self.mode == "dual_lod" and self.rounding == "round":
      hi = 1 << (self.act_bits - (1 if self.act_signed else 0))
    return lo, hi

  @property
  def max_abs_act(self) -> int:
    lo, hi = self.datapath_act_range
    return max(-lo, hi)

  @property
  def max_abs_product(self) -> int:
    return self.max_abs_act * self.pattern.max_level

  @property
  def needs_exact(self) -> bool:
    """Whether the exact sum (beyond its value modulo 2**32) is needed."""
    return self.overflow != "wrap" or self.with_stats


def _int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
  return int(value)


def _choice(name: str, value, allowed) -> str:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(allowed)}")
  return value


def validate_options(*, acc_bits, overflow: str, mode: str, method: str, rounding: str,
                     accumulation: str) -> None:
  """Checks the datapath options of a call (one-line ``ValueError``/``TypeError``).

  ``accumulation="onednn"`` is checked against this host and the target backend
  (:func:`ebsp_jax.arith.dispatch.check_accumulation`).
  """
  acc_bits = _int("acc_bits", acc_bits)
  lo, hi = ACC_BITS_RANGE
  if not lo <= acc_bits <= hi:
    raise ValueError(f"acc_bits={acc_bits} is out of range: allowed [{lo}, {hi}]")
  _choice("overflow", overflow, OVERFLOWS)
  _choice("mode", mode, MODES)
  _choice("method", method, METHODS)
  _choice("rounding", rounding, ROUNDINGS)
  _choice("accumulation", accumulation, ACCUMULATIONS)
  dispatch.check_accumulation(accumulation)


def make_config(lhs_dtype, rhs_dtype, *, pattern, acc_bits, overflow, mode, method, rounding,
                act_bits: Optional[int], act_signed: Optional[bool], with_stats: bool,
                accumulation: str, op: str, preferred_element_type=None,
                conv_group_in: int = 0, conv_k: int = 0,
                conv_pointwise: bool = False) -> Config:
  """Validates the arguments of a public call; one-line ``ValueError``/``TypeError`` otherwise.

  ``accumulation`` is resolved by :func:`ebsp_jax.arith.dispatch.resolve_accumulation`;
  ``conv_pointwise``: the convolution runs as a matmul (``fast.pointwise_conv``), so ``"auto"``
  resolves as for ``dot_general``.
  """
  if not isinstance(pattern, BitPattern):
    raise TypeError(f"pattern must be an ebsp_jax.BitPattern, got {type(pattern).__name__}")
  for name, dt in (("lhs", lhs_dtype), ("rhs", rhs_dtype)):
    dt = np.dtype(dt)
    if dt == np.bool_ or not np.issubdtype(dt, np.integer):
      raise TypeError(f"{name} must have an integer dtype (int8/uint8/int16/uint16/int32), "
                      f"got {dt}")
  validate_options(acc_bits=acc_bits, overflow=overflow, mode=mode, method=method,
                   rounding=rounding, accumulation=accumulation)
  acc_bits = int(acc_bits)
  if not isinstance(with_stats, (bool, np.bool_)):
    raise TypeError(f"with_stats must be a bool, got {with_stats!r}")
  if preferred_element_type is not None and np.dtype(preferred_element_type) != np.int32:
    raise ValueError(f"preferred_element_type={preferred_element_type} is not supported: the "
                     f"datapath result is int32 (pass None or jnp.int32)")
  default_bits, default_signed = _DTYPE_ACT[np.dtype(lhs_dtype)]
  if act_signed is None:
    act_signed = default_signed
  if not isinstance(act_signed, (bool, np.bool_)):
    raise TypeError(f"act_signed must be a bool or None, got {act_signed!r}")
  act_bits = default_bits if act_bits is None else _int("act_bits", act_bits)
  amin = 2 if act_signed else 1
  if not amin <= act_bits <= MAX_ACT_BITS:
    raise ValueError(f"act_bits={act_bits} is out of range: allowed [{amin}, {MAX_ACT_BITS}] "
                     f"for {'signed' if act_signed else 'unsigned'} activations")
  cfg = Config(pattern=pattern, acc_bits=acc_bits, overflow=overflow, mode=mode,
               rounding=rounding, act_bits=act_bits, act_signed=bool(act_signed), method=method,
               accumulation=dispatch.resolve_accumulation(
                   accumulation, "dot" if conv_pointwise else op, conv_group_in, conv_k),
               with_stats=bool(with_stats), backend=platform.backend())
  if cfg.max_abs_product >= 1 << 31:
    raise ValueError(f"a product does not fit the 32-bit datapath: max |activation| "
                     f"{cfg.max_abs_act} x max |weight| {pattern.max_level} >= 2**31; use fewer "
                     f"act_bits or a narrower pattern than {pattern}")
  return cfg
