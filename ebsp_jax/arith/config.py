"""Static configuration of one arithmetic call, validated once, hashable for ``jax.jit``."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Iterator, Optional, Tuple

import numpy as np

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
  backend: str = "cpu"     # the target backend (:func:`backend`): "cpu", "gpu" or another

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


# On XLA:CPU the int8 -> int32 convolution is fast with many input channels per group but
# falls onto a slow path with few (measured 2026-11-28, AMD EPYC, jax 0.10.2: 3x3 conv with 16
# channels 7.6x slower than float32, 7x7/3-channel stem 4x slower, depthwise 1.2-1.4x slower;
# with >= 32 channels 1.3-1.8x faster than float32). The float32-accumulation path runs at
# float32 speed there.
CPU_INT8_CONV_MIN_CHANNELS = 32
# On XLA:GPU (cuDNN) an int8 convolution with few input channels runs a slow non-tensor-core
# kernel (measured 2026-11-28, H200, jax 0.11.2: the ResNet-50 stem, 7x7 with 3 channels,
# batch 256, 3.6 ms as int8 -> f32 against 1.5 ms as tf32 on float operands holding the
# same integers).
GPU_INT8_CONV_MIN_CHANNELS = 16
# On CPU, im2col + oneDNN's int8 GEMM beats XLA's convolutions when each output sums at least
# this many products (measured 2026-11-28, AMD EPYC: 3x3 conv, 64 channels, 3.1x XLA float32
# and 1.7x XLA int8 in wall time); below it (depthwise) the GEMMs are too thin.
ONEDNN_CONV_MIN_K = 32


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
  """This CPU's feature flags (``/proc/cpuinfo``; empty where unavailable)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


_TARGET_BACKEND: Optional[str] = None
TARGET_BACKENDS = ("cpu", "gpu", "tpu")


def backend() -> str:
  """The backend the datapath compiles for: ``"cpu"``, ``"gpu"`` (CUDA or ROCm), or another.

  jax's default backend, unless :func:`target_backend` says otherwise.
  """
  if _TARGET_BACKEND is not None:
    return _TARGET_BACKEND
  import jax
  b = jax.default_backend()
  return "gpu" if b in ("gpu", "cuda", "rocm") else b


@contextlib.contextmanager
def target_backend(name: str) -> Iterator[None]:
  """Plans the datapath for backend ``name`` instead of jax's default one (inside the block).

  For lowering on a host without that backend, e.g. ``jax.jit(f).trace(...).lower(
  lowering_platforms=("cuda",))`` inside ``target_backend("gpu")``: ``accumulation="auto"``
  and the GPU-only choices of :mod:`ebsp_jax.arith.fast` (im2col for ``"int32"``
  convolutions, float32 operands for the bfloat16 path) then follow the GPU rules. The backend
  is part of every call's static configuration, so the datapath's own jit caches never mix the
  two (a caller's ``jax.jit`` around it caches its first trace: create it inside the block).
  Running such a program on the host's own backend computes the same (exact) values.
  """
  global _TARGET_BACKEND
  if name not in TARGET_BACKENDS:
    raise ValueError(f"target_backend: {name!r} is not one of {', '.join(TARGET_BACKENDS)}")
  prev, _TARGET_BACKEND = _TARGET_BACKEND, name
  try:
    yield
  finally:
    _TARGET_BACKEND = prev


def on_gpu() -> bool:
  """Whether the datapath compiles for a GPU (:func:`backend`)."""
  return backend() == "gpu"


def resolve_accumulation(accumulation: str, op: str, conv_group_in: int = 0,
                         conv_k: int = 0) -> str:
  """``auto``: the native path per backend and op.

  * GPU: int32 (int8 tensor cores) for dot_general; for convolutions float32 (int8 operands,
    float32 result: XLA:GPU has no int8 -> int32 convolution, cuDNN's int8 convolutions give
    float32) with at least ``GPU_INT8_CONV_MIN_CHANNELS`` input channels per group, else
    bfloat16 (9-bit digits in float32 operands, tensor-core tf32 convolution, exact). An
    explicit ``"int32"`` runs GPU convolutions as im2col + int8 -> int32 matmuls
    (:func:`ebsp_jax.arith.fast.im2col_conv`; exact, tested on CPU, not yet timed on a GPU).
  * CPU: convolutions: im2col + oneDNN's int8 GEMM (``"onednn"``) when its kernel is
    available and a window holds at least ``ONEDNN_CONV_MIN_K`` products (``conv_k`` = taps x
    input channels per group; depthwise convolutions stay on XLA), else int32, except float32
    with fewer than ``CPU_INT8_CONV_MIN_CHANNELS`` input channels per group (XLA:CPU's slow
    int8 path); dot_general (and 1x1 convolutions, which run as one): left ``"auto"``,
    resolved by :func:`ebsp_jax.arith.fast.plan` (oneDNN's int8 GEMM when it is available,
    else bfloat16 operands when the CPU has bf16 dot instructions and one native op suffices,
    else int32).
  * Others (TPU): int32.

  ``"onednn"`` (:mod:`ebsp_jax.arith.onednn`) is accepted on the CPU backend where the kernel
  is available; otherwise a one-line ``ValueError`` says why.
  """
  from ebsp_jax.arith import onednn
  target = backend()
  if accumulation == "onednn":
    if target != "cpu":
      raise ValueError(f"accumulation='onednn' runs on the CPU backend only (the target "
                       f"backend is {target}); use 'auto'")
    reason = onednn.status()
    if reason is not None:
      raise ValueError(f"accumulation='onednn' is unavailable here: {reason}")
  if accumulation != "auto":
    return accumulation
  if op == "conv" and target == "gpu":
    return "float32" if conv_group_in >= GPU_INT8_CONV_MIN_CHANNELS else "bfloat16"
  if op == "conv" and target == "cpu" and conv_k >= ONEDNN_CONV_MIN_K and onednn.available():
    return "onednn"
  if op == "conv" and target == "cpu" and conv_group_in < CPU_INT8_CONV_MIN_CHANNELS:
    return "float32"
  if op == "dot" and target == "cpu":
    return "auto"
  return "int32"


def make_config(lhs_dtype, rhs_dtype, *, pattern, acc_bits, overflow, mode, method, rounding,
                act_bits: Optional[int], act_signed: Optional[bool], with_stats: bool,
                accumulation: str, op: str, preferred_element_type=None,
                conv_group_in: int = 0, conv_k: int = 0,
                conv_pointwise: bool = False) -> Config:
  """Validates the arguments of a public call; one-line ``ValueError``/``TypeError`` otherwise.

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
  acc_bits = _int("acc_bits", acc_bits)
  lo, hi = ACC_BITS_RANGE
  if not lo <= acc_bits <= hi:
    raise ValueError(f"acc_bits={acc_bits} is out of range: allowed [{lo}, {hi}]")
  _choice("overflow", overflow, OVERFLOWS)
  _choice("mode", mode, MODES)
  _choice("method", method, METHODS)
  _choice("rounding", rounding, ROUNDINGS)
  _choice("accumulation", accumulation, ACCUMULATIONS)
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
               accumulation=resolve_accumulation(
                   accumulation, "dot" if conv_pointwise else op, conv_group_in, conv_k),
               with_stats=bool(with_stats), backend=backend())
  if cfg.max_abs_product >= 1 << 31:
    raise ValueError(f"a product does not fit the 32-bit datapath: max |activation| "
                     f"{cfg.max_abs_act} x max |weight| {pattern.max_level} >= 2**31; use fewer "
                     f"act_bits or a narrower pattern than {pattern}")
  return cfg
