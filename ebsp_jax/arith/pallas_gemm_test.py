"""Tests of the Pallas int8 GEMM (+ fused requantizer): bit-exact vs independent int64 models.

The kernels run in Pallas' interpreter here (``interpret=True``, CPU). The references are
NumPy int64 (the GEMM and the folded epilogue) and Python integers (the unfolded requantizer
``clip(round((pre << k) + bias) * m / 2**n), lo, hi)`` that :func:`requant.fold_requantizer`
rewrites); none of them goes through JAX. A separate test lowers the kernels for CUDA on this
CPU-only machine and checks the Triton IR (``tt.dot`` of i8 operands into i32, the i64
epilogue).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebsp_jax.arith import pallas_gemm as pg
from ebsp_jax.arith._test_strategies import fast_settings
from ebsp_jax.arith import requant

INT32_MAX = (1 << 31) - 1


def _int8(rng: np.random.Generator, shape, extreme: float = 0.3) -> np.ndarray:
  """Random int8 with a fraction ``extreme`` at -128 / 127 (the largest products)."""
  x = rng.integers(-128, 128, size=shape, dtype=np.int64)
  pick = rng.random(shape)
  x = np.where(pick < extreme, np.where(rng.random(shape) < 0.5, -128, 127), x)
  return x.astype(np.int8)


def _matmul_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return a.astype(np.int64) @ b.astype(np.int64)


def _folded_ref(pre: np.ndarray, f: requant.FoldedRequantizer) -> np.ndarray:
  """NumPy int64 ``clip((pre * M + C) >> n, lo, hi)`` (per-column constants)."""
  mult = np.asarray(f.multiplier, np.int64).reshape(1, -1)
  p = pre.astype(np.int64) * mult + np.asarray(f.offset, np.int64).reshape(1, -1)
  r = np.right_shift(p, np.asarray(f.shift, np.int64).reshape(1, -1))
  return np.clip(r, f.lo, f.hi)


def _unfolded_ref(pre: np.ndarray, acc_shift: int, bias, mult, shift, lo: int,
                  hi: int) -> np.ndarray:
  """Python ints: ``clip(mul_shift_round((pre << k) + bias, m, n), lo, hi)`` per element."""
  out = np.empty(pre.shape, np.int64)
  for (i, j), v in np.ndenumerate(pre):
    x = (int(v) << acc_shift) + int(bias[j])
    out[i, j] = min(hi, max(lo, requant.rounding_shift_reference(x, int(mult[j]),
                                                                 int(shift[j]))))
  return out


def _random_requantizer(rng: np.random.Generator, n: int, k_dim: int, lo: int, hi: int,
                        wide: bool):
  """A per-column ``fold_requantizer`` valid for every ``|pre| <= k_dim * 2**14``.

  Returns ``(f, (acc_shift, bias, mult, shift))``. ``wide`` draws some real multipliers large
  enough that ``shift < acc_shift`` (an int64 folded multiplier).
  """
  bound = k_dim * (1 << 14)
  max_bias = int(rng.integers(0, 1 << 20))
  max_shift = int(np.floor(np.log2((INT32_MAX - max_bias) / bound)))
  assert max_shift >= 2
  acc_shift = int(rng.integers(2 if wide else 0, max_shift + 1))
  bias = rng.integers(-max_bias, max_bias + 1, size=n)
  # Real multipliers of the (pre << k) + bias sum: log-uniform around the value that maps a
  # typical |pre| (~ 80 * 80 * sqrt(K)) to ~64, so that outputs span the clamp; some exactly 0.
  centre = np.log2(64.0 / (6400.0 * np.sqrt(k_dim) * 2.0 ** acc_shift))
  real = np.exp2(rng.uniform(centre - 5.0, centre + 5.0, size=n))
  if wide:
    # A column is wide when its shift 31 - exponent falls below acc_shift, i.e. real >=
    # 2**(31 - acc_shift) (its outputs mostly saturate; bias-only columns do not).
    big = rng.random(n) < 0.4
    real = np.where(big, np.exp2(rng.uniform(31 - acc_shift, 30.9, size=n)), real)
    real[0] = 2.0 ** (31 - acc_shift) * 1.5
  real = np.where(rng.random(n) < 0.1, 0.0, real)
  mult, shift = requant.quantize_multiplier(real)
  f = requant.fold_requantizer(acc_shift, bias, mult, shift, lo, hi)
  return f, (acc_shift, bias, mult, shift)


_BLOCKS = st.sampled_from([(16, 16, 32), (32, 16, 32), (16, 32, 64), (32, 32, 32)])


@fast_settings(max_examples=20)
@given(m=st.integers(1, 70), n=st.integers(1, 70), k=st.integers(1, 300), blocks=_BLOCKS,
       group_m=st.sampled_from([1, 2, 8]), b_t=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_int8_matmul_matches_numpy_int64(m, n, k, blocks, group_m, b_t, seed):
  rng = np.random.default_rng(seed)
  a, b = _int8(rng, (m, k)), _int8(rng, (k, n))
  bm, bn, bk = blocks
  out = pg.int8_matmul(a, np.ascontiguousarray(b.T) if b_t else b, block_m=bm, block_n=bn,
                       block_k=bk, group_m=group_m, b_transposed=b_t, interpret=True)
  assert out.dtype == jnp.int32 and out.shape == (m, n)
  np.testing.assert_array_equal(np.asarray(out, np.int64), _matmul_ref(a, b))


@pytest.mark.parametrize("va,vb", [(-128, -128), (-128, 127), (127, 127)])
def test_int8_matmul_worst_case_magnitudes_k2048(va, vb):
  m, n, k = 5, 19, 2048
  a = np.full((m, k), va, np.int8)
  b = np.full((k, n), vb, np.int8)
  a[1, ::3] = -va if va != -128 else 127   # a mixed row: not every product of one sign
  out = pg.int8_matmul(a, b, block_m=16, block_n=16, block_k=256, interpret=True)
  np.testing.assert_array_equal(np.asarray(out, np.int64), _matmul_ref(a, b))


def test_int8_matmul_exact_at_int32_bound():
  """K = MAX_EXACT_K of (-128) * (-128): the sum 2147467264 is the largest without a wrap."""
  k = pg.MAX_EXACT_K
  assert k * (1 << 14) <= INT32_MAX < (k + 1) * (1 << 14)
  a = np.full((1, k), -128, np.int8)
  b = np.full((k, 1), -128, np.int8)
  out = pg.int8_matmul(a, b, block_m=16, block_n=16, block_k=4096, interpret=True)
  assert int(np.asarray(out)[0, 0]) == k * (1 << 14)


@fast_settings(max_examples=25)
@given(m=st.integers(1, 48), n=st.integers(1, 48), k=st.integers(1, 2048), blocks=_BLOCKS,
       clamp=st.sampled_from([(-128, 127), (0, 127), (-127, 127), (-3, 5), (0, 255)]),
       wide=st.booleans(), b_t=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_int8_matmul_requant_matches_int64_models(m, n, k, blocks, clamp, wide, b_t, seed):
  rng = np.random.default_rng(seed)
  a, b = _int8(rng, (m, k)), _int8(rng, (k, n))
  lo, hi = clamp
  out_dtype = jnp.int8 if hi <= 127 else jnp.int16
  f, (acc_shift, bias, mult, shift) = _random_requantizer(rng, n, k, lo, hi, wide)
  bm, bn, bk = blocks
  out = pg.int8_matmul_folded(a, np.ascontiguousarray(b.T) if b_t else b, f, block_m=bm,
                              block_n=bn, block_k=bk, out_dtype=out_dtype, b_transposed=b_t,
                              interpret=True)
  assert out.dtype == out_dtype and out.shape == (m, n)
  pre = _matmul_ref(a, b)
  got = np.asarray(out, np.int64)
  np.testing.assert_array_equal(got, _folded_ref(pre, f))
  rows = slice(0, min(m, 6))             # the Python-int model is slow: a few rows suffice
  np.testing.assert_array_equal(got[rows], _unfolded_ref(pre[rows], acc_shift, bias, mult,
                                                         shift, lo, hi))


def test_requant_wide_multiplier_and_int32_output():
  """int64 multipliers (``f.wide``), full int32 clamp and output, non-multiple shapes."""
  rng = np.random.default_rng(7)
  m, n, k = 37, 45, 1000
  a, b = _int8(rng, (m, k)), _int8(rng, (k, n))
  lo, hi = -(1 << 31), INT32_MAX
  f, (acc_shift, bias, mult, shift) = _random_requantizer(rng, n, k, lo, hi, wide=True)
  assert f.wide and f.multiplier.dtype == np.int64
  out = pg.int8_matmul_folded(a, b, f, block_m=16, block_n=32, block_k=64,
                              out_dtype=jnp.int32, interpret=True)
  pre = _matmul_ref(a, b)
  np.testing.assert_array_equal(np.asarray(out, np.int64), _folded_ref(pre, f))
  np.testing.assert_array_equal(np.asarray(out, np.int64)[:4],
                                _unfolded_ref(pre[:4], acc_shift, bias, mult, shift, lo, hi))


def test_requant_matches_xla_baseline_and_broadcast_constants():
  """Same as ``apply_folded`` after XLA's dot; scalar / ``[1, N]`` constants broadcast."""
  rng = np.random.default_rng(3)
  m, n, k = 33, 20, 96
  a, b = _int8(rng, (m, k)), _int8(rng, (k, n))
  f, _ = _random_requantizer(rng, n, k, -128, 127, wide=False)
  out = pg.int8_matmul_folded(a, b, f, block_m=16, block_n=16, block_k=32, interpret=True)
  base = pg.xla_int8_matmul_requant(jnp.asarray(a), jnp.asarray(b), f)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(base))
  # Scalar multiplier / shift and a [1, N] offset.
  m0, s0 = int(f.multiplier[0]), int(f.shift[0])
  off = np.asarray(f.offset, np.int64).reshape(1, n)
  out2 = pg.int8_matmul_requant(a, b, np.int32(m0), off, np.int32(s0), -128, 127,
                                block_m=16, block_n=16, block_k=32, interpret=True)
  f2 = requant.FoldedRequantizer(np.full(n, m0, np.int32), off[0], np.full(n, s0, np.int64),
                                 -128, 127, False)
  np.testing.assert_array_equal(np.asarray(out2, np.int64), _folded_ref(_matmul_ref(a, b), f2))


def test_argument_checks():
  a = np.zeros((4, 8), np.int8)
  b = np.zeros((8, 4), np.int8)
  with pytest.raises(ValueError, match="power of two"):
    pg.int8_matmul(a, b, block_m=48, interpret=True)
  with pytest.raises(ValueError, match="contraction"):
    pg.int8_matmul(a, np.zeros((7, 4), np.int8), interpret=True)
  with pytest.raises(ValueError, match="contraction"):
    pg.int8_matmul(a, b, b_transposed=True, interpret=True)
  with pytest.raises(AssertionError):
    pg.int8_matmul(a.astype(np.int32), b, interpret=True)
  z = np.zeros(4, np.int64)
  with pytest.raises(ValueError, match="lo <= hi"):
    pg.int8_matmul_requant(a, b, z, z, z, 0, 255, interpret=True)
  with pytest.raises(ValueError, match="per-column"):
    pg.int8_matmul_requant(a, b, np.zeros((2, 4), np.int32), z, z, 0, 127, interpret=True)
  with pytest.raises(ValueError, match="out_dtype"):
    pg.int8_matmul_requant(a, b, z, z, z, 0, 127, out_dtype=jnp.uint8, interpret=True)


def _custom_calls(lowered) -> list:
  mod = lowered.compiler_ir("stablehlo")
  found = []

  def walk(op):
    for region in op.regions:
      for block in region.blocks:
        for o in block.operations:
          if o.operation.name == "stablehlo.custom_call":
            found.append(o.operation)
          walk(o.operation)

  walk(mod.operation)
  return found


def _triton_ir_text(call) -> str:
  """The Triton module in a ``__gpu$xla.gpu.triton`` custom call (MLIR bytecode) as text."""
  from jax._src.lib.mlir import ir
  from jax._src.pallas.triton import lowering as triton_lowering
  cfg = call.attributes["mhlo.backend_config"]
  code = ir.StringAttr(cfg["ir"]).value_bytes
  with triton_lowering._new_ir_context(), ir.Location.unknown():  # registers the tt dialect
    return str(ir.Module.parse(code))


def _copy_kernel(x_ref, o_ref):
  o_ref[...] = x_ref[...] + 1


def _triton_lowering_of_this_jaxlib():
  """``(call target, None)`` of a trivial Pallas/Triton kernel lowered for CUDA, or
  ``(None, reason)`` when this jaxlib cannot lower Pallas for CUDA at all (an environment
  limit, unlike a failure of the kernels under test)."""
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as pltriton
  fn = jax.jit(lambda x: pl.pallas_call(
      _copy_kernel, out_shape=jax.ShapeDtypeStruct((16, 16), jnp.int32),
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1))(x))
  try:
    lowered = fn.trace(jax.ShapeDtypeStruct((16, 16), jnp.int32)).lower(
        lowering_platforms=("cuda",))
  except Exception as e:  # noqa: BLE001 - whatever this jaxlib raises: reported as the reason
    return None, f"this jaxlib does not lower Pallas for cuda: {e!r}"[:500]
  calls = _custom_calls(lowered)
  return (calls[0].attributes["call_target_name"].value if calls else None), None


def test_lowers_for_cuda_to_triton_int8_dot():
  """Lowering for CUDA on a CPU-only jaxlib: one Triton custom call; its IR has the i8 dot.

  ``jax.export`` refuses Pallas/Triton custom calls (no stability guarantee), so this uses
  ``jit(...).trace(...).lower(lowering_platforms=("cuda",))``, which needs no GPU. With jaxlib
  <= 0.10.2 the Triton module travels as MLIR bytecode in ``__gpu$xla.gpu.triton``'s backend
  config (decoded here); newer jaxlibs compile it with Triton during lowering (GPU machines).
  """
  m, n, k = 256, 256, 512
  a = jax.ShapeDtypeStruct((m, k), jnp.int8)
  b = jax.ShapeDtypeStruct((k, n), jnp.int8)
  mult, shift = requant.quantize_multiplier(np.full(n, 1e-3))
  f = requant.fold_requantizer(0, np.arange(n) - 100, mult, shift, -128, 127)
  b_t = jax.ShapeDtypeStruct((n, k), jnp.int8)
  blocks = dict(block_m=128, block_n=64, block_k=128)
  cases = []
  for transposed in (False, True):
    kw = dict(blocks, b_transposed=transposed)
    plain = jax.jit(lambda x, y, kw=kw: pg.int8_matmul(x, y, **kw))
    fused = jax.jit(lambda x, y, kw=kw: pg.int8_matmul_folded(x, y, f, **kw))
    cases += [(plain, False, transposed), (fused, True, transposed)]
  # Skips only for what this jaxlib cannot do with any kernel; a lowering failure of the
  # kernels under test fails the test.
  trivial_target, reason = _triton_lowering_of_this_jaxlib()
  if reason:
    pytest.skip(reason)
  for fn, epilogue, transposed in cases:
    lowered = fn.trace(a, b_t if transposed else b).lower(lowering_platforms=("cuda",))
    calls = _custom_calls(lowered)
    targets = [c.attributes["call_target_name"].value for c in calls]
    assert len(calls) == 1 and targets == [trivial_target], (targets, trivial_target)
    if trivial_target != "__gpu$xla.gpu.triton":
      continue                # newer jaxlibs: the Triton module is not inspectable here
    text = _triton_ir_text(calls[0])
    dots = re.findall(r"tt\.dot .*: tensor<(\d+)x(\d+)xi8> \* tensor<(\d+)x(\d+)xi8> -> "
                      r"tensor<(\d+)x(\d+)xi32>", text)
    assert dots == [("128", "128", "128", "64", "128", "64")], text
    assert "scf.for" in text                      # the K loop (4 blocks of 128)
    # [N, K] weights: a [64, 128] tile is loaded and transposed for the dot.
    assert bool(re.search(r"tt\.trans .*tensor<64x128xi8> -> tensor<128x64xi8>", text)) == \
        transposed, text
    if epilogue:
      assert re.search(r"arith\.muli .*tensor<128x64xi64>", text), text
      assert re.search(r"arith\.shrsi .*tensor<128x64xi64>", text), text
      assert re.search(r"arith\.trunci .*tensor<128x64xi64> to tensor<128x64xi8>", text), text
      assert "tt.ptr<i64>" in text                # the int64 offsets
    else:
      assert "xi64>" not in text
