"""The bit-exact EBSP datapath ("non-multiplication engine", docs/method.md §3) in ``jax.lax``.

Public API:

* :func:`dot_general`, :func:`conv_general_dilated` — ``lax``-compatible contractions of integer
  activations with pattern weights, int32 result, ``acc_bits`` accumulator with
  ``wrap``/``saturate`` (per-add clamping register)/``clip``/``error`` overflow,
  ``mode="exact"|"dual_lod"`` (``rounding``),
  ``method="fast"|"reference"`` (bit-identical), ``with_stats=True`` for overflow counts
  (see :mod:`ebsp_jax.arith.api` for the exact semantics).
* :mod:`ebsp_jax.arith.datapath` — the hardware pieces (LOD, weight split, LUT fill/read,
  barrel shift, accumulate, dual-LOD activation split and mantissa table).
* :mod:`ebsp_jax.arith.events` — per-layer event counts for the hardware model
  (:func:`events.dot_general_events`, :func:`events.conv_general_dilated_events`,
  :func:`events.recording`, :func:`events.total`).
* :mod:`ebsp_jax.arith.numpy_reference` — an independent int64 NumPy model (tests, golden checks).
* :mod:`ebsp_jax.arith.reference` / :mod:`ebsp_jax.arith.fast` — the two methods (the proof of
  the fast method's exactness is in its module docstring); :mod:`ebsp_jax.arith.wide` — exact
  64-bit sums from int32 words; :mod:`ebsp_jax.arith.onednn` — oneDNN's int8 GEMM (VNNI) as an
  XLA custom call, the fast method's native op on CPU for dots, 1x1 convolutions (one GEMM) and
  other convolutions (im2col + GEMM; with ``"auto"`` when a window holds >= 32 products).
* :mod:`ebsp_jax.arith.platform` — what the datapath runs on (target backend, CPU features);
  :mod:`ebsp_jax.arith.dispatch` — the one place that picks the native path
  (``accumulation="auto"``) from those facts and measured thresholds;
  :func:`ebsp_jax.arith.config.validate_options` — the check of the datapath options.
* :mod:`ebsp_jax.arith.requant` — integer requantization (multiplier and shift), used between
  layers by the integer mode and fused into :mod:`ebsp_jax.arith.pallas_gemm`.
"""

from ebsp_jax.arith import datapath, events, wide
from ebsp_jax.arith.api import conv_general_dilated, dot_general
from ebsp_jax.arith.config import ACC_BITS_RANGE, MODES, METHODS, OVERFLOWS, ROUNDINGS, Config

__all__ = ["dot_general", "conv_general_dilated", "datapath", "events", "wide", "Config",
           "OVERFLOWS", "MODES", "METHODS", "ROUNDINGS", "ACC_BITS_RANGE"]
