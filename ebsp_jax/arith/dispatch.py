"""Which native path runs a datapath call: the one place that decides ``accumulation="auto"``.

Every path is bit-exact (:mod:`ebsp_jax.arith.fast`); the choice is about speed, per backend and
op, from the platform facts of :mod:`ebsp_jax.arith.platform` and the measured thresholds
below.
"""

from __future__ import annotations

from typing import Callable, Optional

from ebsp_jax.arith import onednn, platform

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


def check_accumulation(accumulation: str, target: Optional[str] = None) -> None:
  """Raises a one-line ``ValueError`` when an explicit ``"onednn"`` cannot run on ``target``
  (default: :func:`~ebsp_jax.arith.platform.backend`)."""
  if accumulation != "onednn":
    return
  target = target or platform.backend()
  if target != "cpu":
    raise ValueError(f"accumulation='onednn' runs on the CPU backend only (the target "
                     f"backend is {target}); use 'auto'")
  reason = onednn.status()
  if reason is not None:
    raise ValueError(f"accumulation='onednn' is unavailable here: {reason}")


def resolve_accumulation(accumulation: str, op: str, conv_group_in: int = 0, conv_k: int = 0,
                         native_ops: Optional[Callable[[str], int]] = None,
                         target: Optional[str] = None) -> str:
  """The native path of one call: ``accumulation`` itself unless it is ``"auto"``.

  ``"auto"``, per backend and op (``op``: ``"dot"``, or ``"conv"`` for a convolution that
  runs as one, i.e. not a 1x1 convolution):

  * GPU: int32 (int8 tensor cores) for dot_general; for convolutions float32 (int8 operands,
    float32 result: XLA:GPU has no int8 -> int32 convolution, cuDNN's int8 convolutions give
    float32) with at least ``GPU_INT8_CONV_MIN_CHANNELS`` input channels per group, else
    bfloat16 (9-bit digits in float32 operands, tensor-core tf32 convolution, exact). An
    explicit ``"int32"`` runs GPU convolutions as im2col + int8 -> int32 matmuls
    (:func:`ebsp_jax.arith.fast.im2col_conv`; exact, tested on CPU, not yet timed on a GPU).
  * CPU, convolutions: im2col + oneDNN's int8 GEMM (``"onednn"``) when its kernel is
    available and a window holds at least ``ONEDNN_CONV_MIN_K`` products (``conv_k`` = taps x
    input channels per group; depthwise convolutions stay on XLA), else int32, except float32
    with fewer than ``CPU_INT8_CONV_MIN_CHANNELS`` input channels per group (XLA:CPU's slow
    int8 path).
  * CPU, dot_general (and 1x1 convolutions, which run as one): oneDNN's int8 GEMM when its
    kernel is available (~3x XLA:CPU's float32 matmul; otherwise the fallback is logged once),
    else bfloat16 operands when the CPU has bf16 dot instructions and one native op suffices
    (XLA:CPU's bf16 matmul ~1.3x faster than its int8 matmul), else int32. That last test
    depends on the contraction length, known to the planner only: ``native_ops(accumulation)``
    (passed by :func:`ebsp_jax.arith.fast.plan`) gives the native ops of a candidate; without
    it the call stays ``"auto"`` (the static configuration leaves it to the planner).
  * Others (TPU): int32.

  ``target``: the backend to choose for (default :func:`~ebsp_jax.arith.platform.backend`;
  the planner passes the one in the call's static configuration).

  Raises:
    ValueError: an explicit ``"onednn"`` where it cannot run (:func:`check_accumulation`).
  """
  target = target or platform.backend()
  check_accumulation(accumulation, target)
  if accumulation != "auto":
    return accumulation
  if op == "conv" and target == "gpu":
    return "float32" if conv_group_in >= GPU_INT8_CONV_MIN_CHANNELS else "bfloat16"
  if op == "conv" and target == "cpu" and conv_k >= ONEDNN_CONV_MIN_K and onednn.available():
    return "onednn"
  if op == "conv" and target == "cpu" and conv_group_in < CPU_INT8_CONV_MIN_CHANNELS:
    return "float32"
  if op == "dot" and target == "cpu":
    if native_ops is None:
      return "auto"
    if onednn.available():
      return "onednn"
    onednn.warn_unavailable_once()
    if platform.cpu_has_bf16_dot() and native_ops("bfloat16") == 1:
      return "bfloat16"
  return "int32"
