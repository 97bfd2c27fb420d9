"""Pallas (Triton backend) int8 GEMM with the folded requantizer fused into its epilogue.

Issue 3 (integer ResNet-50 on H100/H200): after every conv/matmul XLA runs one elementwise
"requantization" fusion that reads the int32 GEMM result, applies
``clip((pre * M + C) >> n, lo, hi)`` in int64 (:func:`ebsp_jax.arith.requant.apply_folded`)
and writes int8. This module computes the same thing inside the GEMM kernel, on the int32
accumulator tile while it is still in registers, so the int32 intermediate never goes to
memory:

    out[m, n] = clip(((sum_k a[m, k] * b[k, n]) * M[n] + C[n]) >> n_[n], lo, hi)

* :func:`int8_matmul`: ``a @ b`` as int32 (no epilogue; the comparison point for XLA's int8
  dot, which is a cuBLASLt GEMM on NVIDIA GPUs).
* :func:`int8_matmul_requant`: the fused kernel; :func:`int8_matmul_folded` takes a
  :class:`~ebsp_jax.arith.requant.FoldedRequantizer` instead of the three arrays.

Backend. The kernels are ``pl.pallas_call`` s with
``compiler_params=pallas.triton.CompilerParams`` — which selects the Triton lowering explicitly
(the default Mosaic GPU backend refused int8 ``dot_general`` in an earlier check). ``interpret=True`` runs them
through Pallas' HLO interpreter on any backend (the CPU tests).

Tiling. A 1-D grid of ``(M/block_m) * (N/block_n)`` programs, in Triton's grouped order
(``group_m`` row blocks share the columns; ``group_m=1`` walks N fastest, so the programs that
read one row panel of ``a`` run together and ``a`` is read from DRAM about once). Each program
holds a ``[block_m, K]`` panel of ``a`` and a ``[K, block_n]`` panel of ``b`` (as refs, in global
memory) and loops over ``K / block_k`` blocks with ``lax.fori_loop`` (Triton pipelines the loop
over ``num_stages``), accumulating ``tt.dot(i8, i8) -> i32``. Shapes that are not block multiples
are zero-padded in the wrapper and the result sliced (zeros add nothing to the sums; padded
columns get ``M = C = n = 0``). Triton needs power-of-two block sizes; the int8 MMA needs
``block_m, block_n >= 16`` and ``block_k >= 32``. ``b_transposed=True`` takes ``b`` as
``[N, K]`` (K contiguous): Hopper's wgmma reads 8-bit operands only K-major from shared memory
(Triton's fp8 matmul tutorial pre-transposes B for that reason); weights are constants, so
storing them transposed is free. Padding copies the operands: the ResNet-50 shapes need none.

Exactness. (1) GEMM: every partial sum of ``K`` products of int8 values is bounded by
``K * 128 * 128 = K * 2**14``, so the int32 accumulation is exact for ``K <= 2**17 - 1``
(131071), in any summation order; beyond that the int32 sums wrap (not tested). (2) Epilogue: identical ops to ``apply_folded``: ``pre`` is
sign-extended to int64, multiplied by the int64 (sign-extended if int32) multiplier, the int64
offset is added and the sum shifted right arithmetically by ``n`` in ``[0, 62]`` (floor
division by ``2**n``), then clamped to ``[lo, hi]`` and cast. :func:`fold_requantizer`
guarantees that nothing overflows int64 for the ``pre`` it was folded for; for an int32
multiplier the product ``|pre * M| < 2**62`` always fits. The epilogue is written in i64
(``arith.extsi/muli/addi/shrsi/maxsi/minsi/trunci`` on i64 tensors in the Triton IR, checked
by the CUDA-lowering test): PTX has 64-bit integer multiply/add/shift/min/max, and
``sext(i32) * sext(i32)`` can be one ``mul.wide.s32``, so no 32-bit decomposition is used.
(Compiled and run on a GPU: not yet, at the time of writing; ``benchmarks/pallas_epilogue.py``
checks it bit-exact there.) The kernel is traced with 64-bit types enabled locally
(``jax.enable_x64``), like ``apply_folded``, so callers need no global x64.
"""

from __future__ import annotations

import functools
from typing import Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from ebsp_jax.arith import requant

# Largest K for which an int32 accumulation of int8 x int8 products cannot wrap.
MAX_EXACT_K = ((1 << 31) - 1) // (128 * 128)


def _cdiv(x: int, y: int) -> int:
  return -(-x // y)


def _is_pow2(x: int) -> bool:
  return x > 0 and (x & (x - 1)) == 0


def _check_blocks(block_m: int, block_n: int, block_k: int, group_m: int) -> None:
  for name, v in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
    if not _is_pow2(v):
      raise ValueError(f"pallas_gemm: {name} must be a power of two (Triton), got {v}")
  if group_m < 1:
    raise ValueError(f"pallas_gemm: group_m must be >= 1, got {group_m}")


def _tile_index(pid: jax.Array, num_m: int, num_n: int, group_m: int) -> Tuple[jax.Array,
                                                                                jax.Array]:
  """``(pid_m, pid_n)`` of program ``pid`` in Triton's grouped ("super-grouping") order."""
  group_m = min(group_m, num_m)
  in_group = group_m * num_n
  group = lax.div(pid, jnp.int32(in_group))
  first_m = group * group_m
  size_m = jnp.minimum(jnp.int32(num_m) - first_m, jnp.int32(group_m))
  local = lax.rem(pid, jnp.int32(in_group))
  pid_m = first_m + lax.rem(local, size_m)
  pid_n = lax.div(local, size_m)
  return pid_m, pid_n


def _pad2(x: jax.Array, rows: int, cols: int) -> jax.Array:
  r, c = x.shape
  if (r, c) == (rows, cols):
    return x
  return jnp.pad(x, ((0, rows - r), (0, cols - c)))


def _pad1(x: jax.Array, n: int) -> jax.Array:
  if x.shape[0] == n:
    return x
  return jnp.pad(x, (0, n - x.shape[0]))


def _accumulate(a_ref, b_ref, num_k: int, block_m: int, block_n: int, block_k: int,
                b_transposed: bool) -> jax.Array:
  """int32 ``[block_m, block_n]``: the exact product of the program's row and column panels.

  ``b_ref`` is ``[K, block_n]``, or ``[block_n, K]`` when ``b_transposed`` (K contiguous: the
  operand layout Hopper's 8-bit wgmma wants for B; Triton turns the transposed tile into a
  shared-memory view, no data movement).
  """

  def body(kk, acc):
    ks = pl.ds(pl.multiple_of(kk * block_k, block_k), block_k)
    a = a_ref[:, ks]
    if b_transposed:
      b, dims = b_ref[:, ks], (((1,), (1,)), ((), ()))
    else:
      b, dims = b_ref[ks, :], (((1,), (0,)), ((), ()))
    return acc + lax.dot_general(a, b, dims, preferred_element_type=jnp.int32)

  acc = jnp.zeros((block_m, block_n), jnp.int32)
  if num_k == 1:
    return body(jnp.int32(0), acc)
  # int32 bounds: the loop index stays int32 even when traced with 64-bit types enabled.
  return lax.fori_loop(jnp.int32(0), jnp.int32(num_k), body, acc)


def _epilogue(acc: jax.Array, mult: jax.Array, offset: jax.Array, shift: jax.Array, lo: int,
              hi: int, out_dtype) -> jax.Array:
  """``clip((acc * mult + offset) >> shift, lo, hi)`` in int64, cast to ``out_dtype``.

  Args:
    acc: int32 ``[bm, bn]``.
    mult: int32 or int64 ``[bn]``.
    offset: int64 ``[bn]``.
    shift: int32 or int64 ``[bn]``, values in ``[0, 62]``.
  """
  p = acc.astype(jnp.int64) * mult.astype(jnp.int64)[None, :]
  r = lax.shift_right_arithmetic(p + offset.astype(jnp.int64)[None, :],
                                 shift.astype(jnp.int64)[None, :])
  r = jnp.minimum(jnp.maximum(r, jnp.int64(lo)), jnp.int64(hi))
  return r.astype(out_dtype)


def _gemm_call(a: jax.Array, b: jax.Array, cols: Tuple[jax.Array, ...], epilogue, out_dtype,
               block_m: int, block_n: int, block_k: int, group_m: int, num_warps: int,
               num_stages: int, b_transposed: bool, interpret: bool, name: str) -> jax.Array:
  """Pads, runs the tiled kernel with ``epilogue(acc, *col_blocks)`` and slices."""
  m, k = a.shape
  n = b.shape[0] if b_transposed else b.shape[1]
  mp, np_ = _cdiv(m, block_m) * block_m, _cdiv(n, block_n) * block_n
  kp = _cdiv(k, block_k) * block_k
  a_p = _pad2(a, mp, kp)
  b_p = _pad2(b, np_, kp) if b_transposed else _pad2(b, kp, np_)
  cols_p = tuple(_pad1(c, np_) for c in cols)
  num_m, num_n, num_k = mp // block_m, np_ // block_n, kp // block_k

  def a_map(pid):
    pid_m, _ = _tile_index(pid, num_m, num_n, group_m)
    return pid_m, 0

  def b_map(pid):
    _, pid_n = _tile_index(pid, num_m, num_n, group_m)
    return (pid_n, 0) if b_transposed else (0, pid_n)

  def col_map(pid):
    _, pid_n = _tile_index(pid, num_m, num_n, group_m)
    return (pid_n,)

  def o_map(pid):
    return _tile_index(pid, num_m, num_n, group_m)

  def kernel(a_ref, b_ref, *refs):
    *col_refs, o_ref = refs
    acc = _accumulate(a_ref, b_ref, num_k, block_m, block_n, block_k, b_transposed)
    o_ref[...] = epilogue(acc, *(r[...] for r in col_refs))

  out = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((mp, np_), out_dtype),
      grid=(num_m * num_n,),
      in_specs=[pl.BlockSpec((block_m, kp), a_map),
                pl.BlockSpec((block_n, kp) if b_transposed else (kp, block_n), b_map)]
      + [pl.BlockSpec((block_n,), col_map) for _ in cols_p],
      out_specs=pl.BlockSpec((block_m, block_n), o_map),
      compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages),
      interpret=interpret,
      name=name,
  )(a_p, b_p, *cols_p)
  if (mp, np_) != (m, n):
    out = out[:m, :n]
  return out


def _check_operands(a: chex.Array, b: chex.Array, b_transposed: bool) -> int:
  """Checks ranks, dtypes and the contraction; returns N."""
  chex.assert_rank([a, b], 2)
  chex.assert_type([a, b], jnp.int8)
  kb = b.shape[1] if b_transposed else b.shape[0]
  if a.shape[1] != kb:
    raise ValueError(f"pallas_gemm: contraction mismatch, a {a.shape} @ b {b.shape} "
                     f"(b_transposed={b_transposed})")
  return b.shape[0] if b_transposed else b.shape[1]


@functools.partial(jax.jit, static_argnames=("block_m", "block_n", "block_k", "group_m",
                                             "num_warps", "num_stages", "b_transposed",
                                             "interpret"))
def int8_matmul(a: chex.Array, b: chex.Array, *, block_m: int = 128, block_n: int = 128,
                block_k: int = 64, group_m: int = 8, num_warps: int = 4, num_stages: int = 3,
                b_transposed: bool = False, interpret: bool = False) -> jax.Array:
  """``a @ b`` with int32 accumulation (exact for ``K <= MAX_EXACT_K``), Pallas/Triton.

  Args:
    a: int8 ``[M, K]``.
    b: int8 ``[K, N]``, or ``[N, K]`` when ``b_transposed``.
    block_m, block_n, block_k: tile sizes (powers of two).
    group_m: row blocks per program group (launch order; 1 = N fastest).
    num_warps, num_stages: Triton compiler parameters.
    b_transposed: ``b`` is given as ``[N, K]`` (K contiguous; weights can be stored so).
    interpret: run Pallas' interpreter (CPU tests) instead of compiling for the GPU.

  Returns:
    int32 ``[M, N]``.
  """
  n = _check_operands(a, b, b_transposed)
  _check_blocks(block_m, block_n, block_k, group_m)
  out = _gemm_call(a, b, (), lambda acc: acc, jnp.int32, block_m, block_n, block_k, group_m,
                   num_warps, num_stages, b_transposed, interpret, "int8_matmul")
  chex.assert_shape(out, (a.shape[0], n))
  chex.assert_type(out, jnp.int32)
  return out


def _column(x: chex.Array, n: int, dtype, what: str) -> jax.Array:
  """``x`` (shape ``()``, ``[N]`` or ``[1, N]``) as a ``[N]`` array of ``dtype``."""
  x = jnp.asarray(x)
  if x.ndim == 2:
    if x.shape[0] != 1:
      raise ValueError(f"pallas_gemm: {what} must be per-column ([N] or [1, N]), got {x.shape}")
    x = x[0]
  if x.ndim > 1 or (x.ndim == 1 and x.shape[0] not in (1, n)):
    raise ValueError(f"pallas_gemm: {what} must have shape (), [{n}] or [1, {n}], got {x.shape}")
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"pallas_gemm: {what} must be an integer array, got {x.dtype}")
  return jnp.broadcast_to(x.astype(dtype), (n,))


@functools.partial(jax.jit, static_argnames=("lo", "hi", "block_m", "block_n", "block_k",
                                             "group_m", "num_warps", "num_stages",
                                             "out_dtype", "b_transposed", "interpret"))
def _int8_matmul_requant(a, b, multiplier, offset, shift, lo, hi, block_m, block_n, block_k,
                         group_m, num_warps, num_stages, out_dtype, b_transposed, interpret):
  n = b.shape[0] if b_transposed else b.shape[1]
  wide = jnp.asarray(multiplier).dtype == jnp.int64
  mult = _column(multiplier, n, jnp.int64 if wide else jnp.int32, "multiplier")
  off = _column(offset, n, jnp.int64, "offset")
  sh = _column(shift, n, jnp.int32, "shift")
  epi = functools.partial(_epilogue, lo=lo, hi=hi, out_dtype=out_dtype)
  return _gemm_call(a, b, (mult, off, sh), epi, out_dtype, block_m, block_n, block_k,
                    group_m, num_warps, num_stages, b_transposed, interpret,
                    "int8_matmul_requant")


def int8_matmul_requant(a: chex.Array, b: chex.Array, multiplier: chex.Array,
                        offset: chex.Array, shift: chex.Array, lo: int, hi: int, *,
                        block_m: int = 128, block_n: int = 128, block_k: int = 64,
                        out_dtype=jnp.int8, group_m: int = 8, num_warps: int = 4,
                        num_stages: int = 3, b_transposed: bool = False,
                        interpret: bool = False) -> jax.Array:
  """``clip(((a @ b) * multiplier + offset) >> shift, lo, hi)``, requantizer fused in the GEMM.

  Bit-exact with ``requant.apply_folded(int32 a @ b, f).astype(out_dtype)`` for per-column
  ``f`` (see the module docstring; GEMM exact for ``K <= MAX_EXACT_K``).

  Args:
    a: int8 ``[M, K]``.
    b: int8 ``[K, N]``, or ``[N, K]`` when ``b_transposed``.
    multiplier: int32 or int64, shape ``()``, ``[N]`` or ``[1, N]`` (per output column).
    offset: int64 (or int32; any integer type, converted to int64), same shapes.
    shift: int32 or int64 in ``[0, 62]``, same shapes.
    lo, hi: the clamp (Python ints), within ``out_dtype``'s range.
    block_m, block_n, block_k, group_m, num_warps, num_stages, b_transposed, interpret: as
      :func:`int8_matmul`.
    out_dtype: int8 (default), int16 or int32.

  Returns:
    ``out_dtype`` ``[M, N]`` with values in ``[lo, hi]``.
  """
  n = _check_operands(a, b, b_transposed)
  _check_blocks(block_m, block_n, block_k, group_m)
  out_dtype = jnp.dtype(out_dtype)
  info = jnp.iinfo(out_dtype) if jnp.issubdtype(out_dtype, jnp.integer) else None
  if info is None or not jnp.issubdtype(out_dtype, jnp.signedinteger) or info.bits > 32:
    raise ValueError(f"pallas_gemm: out_dtype must be int8, int16 or int32, got {out_dtype}")
  lo, hi = int(lo), int(hi)
  if not info.min <= lo <= hi <= info.max:
    raise ValueError(f"pallas_gemm: need {info.min} <= lo <= hi <= {info.max}, got [{lo}, {hi}]")
  # 64-bit types on from the jit boundary in: int64 constants are not truncated on the way in.
  with jax.enable_x64(True):
    out = _int8_matmul_requant(a, b, multiplier, offset, shift, lo, hi, block_m, block_n,
                               block_k, group_m, num_warps, num_stages, out_dtype,
                               b_transposed, interpret)
  chex.assert_shape(out, (a.shape[0], n))
  chex.assert_type(out, out_dtype)
  return out


def int8_matmul_folded(a: chex.Array, b: chex.Array, f: requant.FoldedRequantizer,
                       **kwargs) -> jax.Array:
  """:func:`int8_matmul_requant` with the constants of a per-column ``FoldedRequantizer``.

  Args:
    a: int8 ``[M, K]``; b: int8 ``[K, N]`` (``[N, K]`` with ``b_transposed=True``).
    f: from :func:`~ebsp_jax.arith.requant.fold_requantizer`, arrays of shape ``()``, ``[N]``
      or ``[1, N]``.
    **kwargs: keyword arguments of :func:`int8_matmul_requant`.

  Returns:
    ``[M, N]`` of ``kwargs.get("out_dtype", int8)``.
  """
  mult = np.asarray(f.multiplier, np.int64 if f.wide else np.int32)
  return int8_matmul_requant(a, b, mult, np.asarray(f.offset, np.int64),
                             np.asarray(f.shift, np.int32), f.lo, f.hi, **kwargs)


def xla_int8_matmul(a: chex.Array, b: chex.Array) -> jax.Array:
  """XLA's ``int8 x int8 -> int32`` dot (cuBLASLt on NVIDIA GPUs): the baseline. ``[M, N]``."""
  return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32)


def xla_int8_matmul_requant(a: chex.Array, b: chex.Array, f: requant.FoldedRequantizer,
                            out_dtype=jnp.int8) -> jax.Array:
  """Baseline: XLA int8 dot, then ``requant.apply_folded`` (one XLA fusion), cast. ``[M, N]``."""
  return requant.apply_folded(xla_int8_matmul(a, b), f).astype(out_dtype)
