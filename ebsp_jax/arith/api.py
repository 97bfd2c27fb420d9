"""Public entry points: ``dot_general`` and ``conv_general_dilated`` on the EBSP datapath.

Both follow ``jax.lax`` conventions exactly (dimension numbers, strides, padding, dilations,
feature groups) with integer activations ``lhs`` and integer pattern weights ``rhs``, and return
int32. Semantics, for every method:

* Products are exact: ``p = a * q`` (``mode="exact"``) or ``p = â * q`` with ``â`` the
  dual-LOD approximation of ``a`` (``mode="dual_lod"``, see
  :func:`ebsp_jax.arith.datapath.act_split`).
* The accumulator has ``acc_bits`` bits, two's complement. With ``S`` the exact sum of the
  products of an output:

  - ``overflow="wrap"``: ``S`` modulo ``2**acc_bits``, centred (the low ``acc_bits`` bits,
    sign-extended). Order-independent: a register that wraps at every add holds the exact
    partial sum modulo ``2**acc_bits`` after every step (two's-complement addition is addition
    in ``Z / 2**acc_bits``), so its final value is ``S mod 2**acc_bits`` whatever the order.
  - ``overflow="saturate"``: a saturating register: ``acc = clip(acc + p_k, -2**(acc_bits-1),
    2**(acc_bits-1) - 1)`` after every add, from ``acc = 0``, in the datapath's K order:
    for dot_general the contracting dims flattened row-major in the order the dimension
    numbers list them; for convolutions kernel tap by tap (row-major over the kernel's
    spatial dims, in ``rhs_spec`` order), within a tap the group's input channels ascending.
    The result depends on that order where a partial sum leaves the range: for
    ``a = [100, 100, 100]``, ``w = [1, 1, -1]``, ``acc_bits = 8`` the register clamps at 200
    -> 127 and ends at 27 (S = 100). A *clamp event* is an add whose exact result was outside
    the range.
  - ``overflow="clip"``: ``clip(S, -2**(acc_bits-1), 2**(acc_bits-1) - 1)``: exact adds with
    guard bits, one saturation when the result is written out (order-independent; what
    ``"saturate"`` computed in earlier versions).
  - ``overflow="error"``: as ``wrap``, and an overflow raises ``OverflowError`` eagerly or a
    ``checkify`` error under ``checkify.checkify``.

  An *overflow* is an output whose exact ``S`` does not fit ``acc_bits`` bits (exactly the
  outputs where the wrap/clip result differs from ``S``); with ``saturate``, an output whose
  register clamped at least once. ``with_stats=True`` returns their number
  (``overflow_count``) and, with ``saturate``, the number of clamp events (``clamp_count``).
* Checks: weights must be levels of ``pattern`` and activations must lie in the range of
  ``act_bits``/``act_signed``. Eagerly (concrete inputs) a violation raises ``ValueError``;
  on traced inputs (under ``jax.jit``, ``jax.vmap`` -- eager ``vmap`` included --, ``lax.scan``
  and other transformations) the same checks are ``checkify`` checks
  (``checkify.debug_check``): they raise only through ``checkify.checkify(f)`` and otherwise
  are skipped silently, so an off-grid weight or out-of-range activation then gives a
  meaningless result without an error. The checks run in the operands' own dtype, before any
  cast to int32 (``uint32``, and ``int64``/``uint64`` under ``jax_enable_x64``, do not wrap
  into range).
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from ebsp_jax.arith import events, fast, reference
from ebsp_jax.arith.config import Config, make_config
from ebsp_jax.arith.geometry import (ConvGeometry, DotGeometry, conv_geometry, dot_canonical,
                                     dot_geometry, normalize_dot_dims)
from ebsp_jax.numerics import BitPattern, on_grid
from ebsp_jax.numerics.codes import in_range

Stats = Dict[str, jax.Array]


def _is_tracer(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _dtype_of(x) -> np.dtype:
  """The dtype of ``x`` as given (before :func:`_as_int_array` narrows 64-bit NumPy input)."""
  dt = getattr(x, "dtype", None)
  return np.dtype(dt) if dt is not None else np.asarray(x).dtype


def _as_int_array(name: str, x):
  """Keeps jax arrays/tracers; converts numpy/Python input after an eager int32 range check."""
  if isinstance(x, jax.Array):
    return x
  x = np.asarray(x)
  if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
    raise TypeError(f"{name} must have an integer dtype (int8/uint8/int16/uint16/int32), "
                    f"got {x.dtype}")
  if x.dtype.itemsize > 4:
    if x.size and (x.min() < -(1 << 31) or x.max() >= (1 << 31)):
      raise ValueError(f"{name} holds values outside int32")
    x = x.astype(np.int32)
  return jnp.asarray(x)


def _eager_checks(lhs, rhs, cfg: Config):
  if not _is_tracer(rhs):
    w = np.asarray(rhs)
    ok = np.isin(w, cfg.pattern.levels)       # NumPy: no per-shape compilation when eager
    if not ok.all():
      bad = w[~ok]
      raise ValueError(f"rhs: {bad.size} weight(s) are not levels of {cfg.pattern} (first: "
                       f"{int(bad[0])}); allowed magnitudes: {cfg.pattern.magnitudes.tolist()}")
  if not _is_tracer(lhs):
    lo, hi = cfg.act_range
    a = np.asarray(lhs)
    bad_mask = (a < lo) | (a > hi)
    if bad_mask.any():
      bad = a[bad_mask]
      kind = "signed" if cfg.act_signed else "unsigned"
      raise ValueError(f"lhs: {bad.size} activation(s) are outside the {kind} {cfg.act_bits}-bit "
                       f"range [{lo}, {hi}] (first: {int(bad[0])}); set act_bits/act_signed")


def _traced_checks(lhs, rhs, cfg: Config):
  lo, hi = cfg.act_range
  # Both checks run in the operands' own dtypes: a cast to int32 first would wrap uint32 and
  # (with jax_enable_x64) int64/uint64 values into range, e.g. 2**32 + 5 -> 5.
  checkify.debug_check(jnp.all(on_grid(rhs, cfg.pattern)),
                       f"rhs: some weights are not levels of {cfg.pattern}")
  checkify.debug_check(jnp.all(in_range(lhs, lo, hi)),
                       f"lhs: some activations are outside [{lo}, {hi}] "
                       f"({'signed' if cfg.act_signed else 'unsigned'} {cfg.act_bits}-bit)")


def _count(overflowed) -> jax.Array:
  return jnp.sum(overflowed, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames=("geo", "cfg"))
def _dot_impl(lhs, rhs, geo: DotGeometry, cfg: Config):
  _traced_checks(lhs, rhs, cfg)
  a, w = dot_canonical(lhs, rhs, geo)
  if cfg.method == "reference":
    out, overflowed, state = reference.dot(a, w, cfg)
    clamps = state.get("clamps")
  else:
    out, overflowed, clamps = fast.dot(a, w, cfg)
  return _finish(out.reshape(geo.out_shape), overflowed, clamps, geo, cfg)


def _finish(out, overflowed, clamps, geo, cfg: Config):
  """Shared epilogue of the dot and conv implementations: shape/dtype checks, overflow and
  clamp counts."""
  chex.assert_shape(out, geo.out_shape)
  chex.assert_type(out, jnp.int32)
  count = None if overflowed is None else _count(overflowed)
  if cfg.overflow == "error":
    checkify.debug_check(count == 0, "overflow: {n} output(s) overflow the accumulator", n=count)
  clamp_count = None if clamps is None else jnp.sum(clamps, dtype=jnp.int32)
  return out, (count, clamp_count)


@functools.partial(jax.jit, static_argnames=("geo", "cfg"))
def _conv_impl(lhs, rhs, geo: ConvGeometry, cfg: Config):
  _traced_checks(lhs, rhs, cfg)
  if cfg.method == "reference":
    out, overflowed, state = reference.conv(lhs, rhs, geo, cfg)
    clamps = state.get("clamps")
  else:
    out, overflowed, clamps = fast.conv(lhs, rhs, geo, cfg)
  return _finish(out, overflowed, clamps, geo, cfg)


def _result(out, counts, cfg: Config):
  count, clamp_count = counts
  if cfg.overflow == "error" and count is not None and not _is_tracer(count) and int(count) > 0:
    raise OverflowError(f"overflow: {int(count)} output(s) do not fit the {cfg.acc_bits}-bit "
                        f"accumulator (overflow='error')")
  if cfg.with_stats:
    stats = {"overflow_count": count}
    if cfg.overflow == "saturate":
      stats["clamp_count"] = clamp_count
    return out, stats
  return out


def dot_general(lhs, rhs, dimension_numbers, *, pattern: BitPattern, acc_bits: int = 32,
                overflow: str = "wrap", mode: str = "exact", method: str = "fast",
                rounding: str = "truncate", act_bits: Optional[int] = None,
                act_signed: Optional[bool] = None, with_stats: bool = False,
                accumulation: str = "auto", name: Optional[str] = None, precision: Any = None,
                preferred_element_type: Any = None) -> Union[jax.Array, Tuple[jax.Array, Stats]]:
  """``lax.dot_general`` on the EBSP datapath: integer activations x pattern weights -> int32.

  Args:
    lhs: integer activations, any shape; range given by ``act_bits``/``act_signed``.
    rhs: integer weights, every element a level of ``pattern``.
    dimension_numbers: ``((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch))`` as in
      ``lax.dot_general``.
    pattern: the weights' ``BitPattern``.
    acc_bits: accumulator width in bits, 2..32 (two's complement).
    overflow: ``"wrap"``, ``"saturate"`` (a register clamping at every add, in K order),
      ``"clip"`` (the exact sum clipped once) or ``"error"`` (see the module docstring).
    mode: ``"exact"`` (LUT datapath, ``a * q``) or ``"dual_lod"`` (approximate: the activation
      keeps its ``pattern.length`` significant bits, constant mantissa-product LUT).
    method: ``"fast"`` (native int8 matmuls, provably identical) or ``"reference"`` (the
      datapath literally, product by product; slow, memory-bounded).
    rounding: dual-LOD activation rounding, ``"truncate"`` or ``"round"``.
    act_bits: activation bits (1..16); default from ``lhs.dtype``: 8 for int8/uint8, 16 for
      int16/uint16 and for wider dtypes.
    act_signed: signed (two's complement) activations; default: the signedness of
      ``lhs.dtype``.
    with_stats: also return ``{"overflow_count": int32 scalar}``, the number of outputs whose
      exact sum does not fit ``acc_bits`` bits (``saturate``: whose register clamped at
      least once), and with ``saturate`` ``"clamp_count"``, the number of clamping adds.
    accumulation: native path of ``method="fast"``: ``"int32"`` (int8 x int8 -> int32),
      ``"float32"`` (int8 x int8 -> float32, exact by the 2**24 bound, see
      :mod:`ebsp_jax.arith.fast`), ``"bfloat16"`` (the int8 planes as bf16 operands, float32
      accumulation, same bound), ``"onednn"`` (CPU: oneDNN's u8/s8 x s8 -> int32 GEMM as an
      XLA custom call, :mod:`ebsp_jax.arith.onednn`; convolutions as im2col + GEMM) or
      ``"auto"``: the fastest exact path measured per backend — GPU: int32 for dots, float32
      for convolutions; CPU, where oneDNN's kernel is available: oneDNN for dots and for
      convolutions whose window sums >= 32 products; otherwise bfloat16 operands for dots when
      the CPU has bf16 dot instructions and one native op suffices (else int32), and int32 for
      convolutions with >= 32 input channels per group (else float32); see
      :func:`ebsp_jax.arith.dispatch.resolve_accumulation`. Every choice is bit-exact.
    name: label of this call in :func:`ebsp_jax.arith.events.recording` logs.
    precision: accepted for drop-in use as a Flax ``dot_general``; ignored.
    preferred_element_type: None or int32 (drop-in use); the result is always int32.

  Returns:
    int32 array of shape ``batch + lhs_free + rhs_free`` (as ``lax.dot_general``), and the
    stats dict when ``with_stats``.

  Raises:
    ValueError / TypeError: bad arguments, off-grid weights, out-of-range activations (eagerly).
    OverflowError: ``overflow="error"`` and an output overflows (eagerly).

  Note:
    The value checks (off-grid weights, out-of-range activations, ``overflow="error"``) raise
    only on concrete inputs. On traced inputs -- under ``jax.jit``, and also under a plain
    eager ``jax.vmap`` or ``lax.scan`` -- they are ``checkify`` checks, skipped silently
    unless the caller wraps the function in ``checkify.checkify`` (e.g.
    ``checkify.checkify(jax.vmap(f), errors=checkify.user_checks)``); without it a bad input
    gives a meaningless result and no error.
  """
  del precision
  # The activation defaults come from the dtype as given: uint64 NumPy input is unsigned.
  lhs_dtype, rhs_dtype = _dtype_of(lhs), _dtype_of(rhs)
  lhs, rhs = _as_int_array("lhs", lhs), _as_int_array("rhs", rhs)
  cfg = make_config(lhs_dtype, rhs_dtype, pattern=pattern, acc_bits=acc_bits, overflow=overflow,
                    mode=mode, method=method, rounding=rounding, act_bits=act_bits,
                    act_signed=act_signed, with_stats=with_stats, accumulation=accumulation,
                    op="dot", preferred_element_type=preferred_element_type)
  dims = normalize_dot_dims(dimension_numbers, lhs.ndim, rhs.ndim)
  geo = dot_geometry(lhs.shape, rhs.shape, dims)
  _eager_checks(lhs, rhs, cfg)
  events.maybe_record("dot", lhs, rhs, name, (dims,),
                      dict(pattern=pattern, mode=mode, rounding=rounding, act_bits=cfg.act_bits,
                           act_signed=cfg.act_signed))
  out, counts = _dot_impl(lhs, rhs, geo=geo, cfg=cfg)
  return _result(out, counts, cfg)


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int],
                         padding: Union[str, Sequence[Tuple[int, int]]],
                         lhs_dilation: Optional[Sequence[int]] = None,
                         rhs_dilation: Optional[Sequence[int]] = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, *,
                         pattern: BitPattern, acc_bits: int = 32, overflow: str = "wrap",
                         mode: str = "exact", method: str = "fast", rounding: str = "truncate",
                         act_bits: Optional[int] = None, act_signed: Optional[bool] = None,
                         with_stats: bool = False, accumulation: str = "auto",
                         name: Optional[str] = None, precision: Any = None,
                         preferred_element_type: Any = None,
                         batch_group_count: int = 1
                         ) -> Union[jax.Array, Tuple[jax.Array, Stats]]:
  """``lax.conv_general_dilated`` on the EBSP datapath: integer activations x pattern weights.

  Same conventions as ``lax.conv_general_dilated`` (``dimension_numbers`` None = NCHW/OIHW, a
  tuple of layout strings or ``ConvDimensionNumbers``; ``padding`` ``'SAME'``,
  ``'SAME_LOWER'``, ``'VALID'`` or explicit (low, high) pairs, negative allowed;
  ``feature_group_count`` for grouped/depthwise convolution). The datapath keywords are those
  of :func:`dot_general`. ``batch_group_count`` must be 1 (accepted for drop-in use).

  Returns:
    int32 array in the ``out_spec`` layout, and the stats dict when ``with_stats``.

  Raises:
    ValueError / TypeError: bad arguments, off-grid weights, out-of-range activations (eagerly).
    OverflowError: ``overflow="error"`` and an output overflows (eagerly).

  Note:
    As for :func:`dot_general`, the value checks raise only on concrete inputs. On traced
    inputs -- under ``jax.jit``, and also under a plain eager ``jax.vmap`` or ``lax.scan`` --
    they are ``checkify`` checks, skipped silently unless the caller wraps the function in
    ``checkify.checkify``; without it a bad input gives a meaningless result and no error.
  """
  del precision
  if isinstance(batch_group_count, bool) or batch_group_count != 1:
    raise ValueError(f"batch_group_count must be 1 (got {batch_group_count!r}): batch-grouped "
                     f"convolutions are not supported")
  lhs_dtype, rhs_dtype = _dtype_of(lhs), _dtype_of(rhs)
  lhs, rhs = _as_int_array("lhs", lhs), _as_int_array("rhs", rhs)
  geo = conv_geometry(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                      dimension_numbers, feature_group_count)
  cfg = make_config(lhs_dtype, rhs_dtype, pattern=pattern, acc_bits=acc_bits, overflow=overflow,
                    mode=mode, method=method, rounding=rounding, act_bits=act_bits,
                    act_signed=act_signed, with_stats=with_stats, accumulation=accumulation,
                    op="conv", preferred_element_type=preferred_element_type,
                    conv_group_in=geo.group_in, conv_k=geo.k,
                    conv_pointwise=geo.pointwise and method == "fast")
  _eager_checks(lhs, rhs, cfg)
  events.maybe_record("conv", lhs, rhs, name,
                      (window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count),
                      dict(pattern=pattern, mode=mode, rounding=rounding, act_bits=cfg.act_bits,
                           act_signed=cfg.act_signed))
  out, counts = _conv_impl(lhs, rhs, geo=geo, cfg=cfg)
  return _result(out, counts, cfg)
