"""oneDNN int8 GEMM custom call: int32 results equal an int64 NumPy product modulo 2**32."""

import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebsp_jax import arith
from ebsp_jax.arith import fast, onednn
from ebsp_jax.arith._test_strategies import act_array, fast_settings, weight_array
from ebsp_jax.arith.config import Config
from ebsp_jax.numerics import BitPattern

MM = (((1,), (0,)), ((), ()))
needs_kernel = pytest.mark.skipif(not onednn.available(),
                                  reason=f"oneDNN kernel unavailable: {onednn.status()}")


def wrap32(x: np.ndarray) -> np.ndarray:
  return ((x.astype(np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def test_kernel_builds_where_the_requirements_install_it():
  """requirements.txt installs oneDNN on Linux x86-64: there the kernel must be usable (CI
  would otherwise silently benchmark the slower XLA path)."""
  if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
    pytest.skip("oneDNN wheel is pinned for Linux x86-64 only")
  assert onednn.status() is None
  assert onednn.max_exact_weight() in (127, 64)


@needs_kernel
@fast_settings(25)
@given(st.lists(st.integers(1, 3), min_size=0, max_size=2), st.integers(1, 9),
       st.integers(0, 70), st.integers(1, 9), st.booleans(), st.integers(0, 2**31 - 1),
       st.data())
def test_gemm_matches_int64_model(batch, m, k, n, unsigned, seed, data):
  rng = np.random.default_rng(seed)
  # Broadcast: each batch dim is on both sides, or 1 on one of them.
  modes = [data.draw(st.sampled_from(["both", "a1", "b1"])) for _ in batch]
  ab = [1 if mode == "a1" else d for d, mode in zip(batch, modes)]
  bb = [1 if mode == "b1" else d for d, mode in zip(batch, modes)]
  lo, hi = (0, 255) if unsigned else (-128, 127)
  a = rng.integers(lo, hi + 1, tuple(ab) + (m, k)).astype(np.uint8 if unsigned else np.int8)
  b = rng.integers(-128, 128, tuple(bb) + (k, n)).astype(np.int8)
  a.flat[: a.size // 3] = lo if rng.random() < 0.5 else hi        # extremes
  got = np.asarray(jax.jit(onednn.gemm)(jnp.asarray(a), jnp.asarray(b)))
  want = wrap32(np.matmul(a.astype(np.int64), b.astype(np.int64)))
  np.testing.assert_array_equal(got, want)


@needs_kernel
def test_gemm_wraps_modulo_2_32_on_long_contractions():
  """|sum| up to 255 * 128 * 2**17 ~ 2**32: the result is the exact sum modulo 2**32."""
  k = 1 << 17
  rng = np.random.default_rng(0)
  a = np.full((3, k), 255, np.uint8)
  a[2] = rng.integers(0, 256, k)
  b = np.full((k, 3), -128, np.int8)
  b[::3, 1] = 127
  b[:, 2] = rng.integers(-128, 128, k)
  want64 = a.astype(np.int64) @ b.astype(np.int64)
  assert np.abs(want64).max() >= 1 << 31                     # the sums do overflow int32
  np.testing.assert_array_equal(np.asarray(onednn.gemm(jnp.asarray(a), jnp.asarray(b))),
                                wrap32(want64))
  s = a.astype(np.int8)                                      # -1 everywhere: signed kernel
  np.testing.assert_array_equal(np.asarray(onednn.gemm(jnp.asarray(s), jnp.asarray(b))),
                                wrap32(s.astype(np.int64) @ b.astype(np.int64)))


@needs_kernel
def test_gemm_under_vmap_and_empty_shapes():
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (4, 5, 33)).astype(np.uint8)
  b = rng.integers(-128, 128, (33, 7)).astype(np.int8)
  got = jax.vmap(onednn.gemm, in_axes=(0, None))(jnp.asarray(a)[:, None], jnp.asarray(b)[None])
  np.testing.assert_array_equal(np.asarray(got)[:, 0], a.astype(np.int64) @ b.astype(np.int64))
  z = onednn.gemm(jnp.zeros((2, 3, 0), jnp.int8), jnp.zeros((2, 0, 4), jnp.int8))
  np.testing.assert_array_equal(np.asarray(z), np.zeros((2, 3, 4), np.int32))
  assert onednn.gemm(jnp.zeros((0, 3), jnp.uint8), jnp.zeros((3, 4), jnp.int8)).shape == (0, 4)


@needs_kernel
def test_auto_uses_the_kernel_on_cpu_and_stays_exact():
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(2)
  lhs = act_array(rng, (16, 300), 8, False, extreme=0.5)
  rhs = weight_array(rng, (300, 8), pattern, extreme=0.5)
  f = jax.jit(lambda x, y: arith.dot_general(x, y, MM, pattern=pattern))
  if jax.default_backend() == "cpu":
    assert "ebsp_onednn_gemm_u8s8s32" in f.lower(lhs, rhs).as_text()
  np.testing.assert_array_equal(np.asarray(f(lhs, rhs)),
                                lhs.astype(np.int64) @ rhs.astype(np.int64))


@needs_kernel
def test_plans_respect_the_no_vnni_weight_bound(monkeypatch):
  """Without int8 dot instructions oneDNN saturates pairs in int16: the planner must then cut
  weights into 7-bit digits (|digit| <= 63), and the result stays exact."""
  monkeypatch.setattr(onednn, "max_exact_weight", lambda: 64)
  pattern = BitPattern(8, 7)                                  # |q| <= 127
  cfg = Config(pattern=pattern, act_bits=8, act_signed=False, accumulation="onednn")
  p = fast.plan(cfg, 100)
  assert p.weight.digit_bits == 7 and max(p.weight.max_abs) <= 63 and p.weight.count == 2
  rng = np.random.default_rng(3)
  lhs = act_array(rng, (6, 100), 8, False, extreme=0.5)
  rhs = weight_array(rng, (100, 5), pattern, extreme=0.5)
  out = arith.dot_general(lhs, rhs, MM, pattern=pattern, accumulation="onednn")
  np.testing.assert_array_equal(np.asarray(out), lhs.astype(np.int64) @ rhs.astype(np.int64))


@needs_kernel
def test_im2col_conv_in_batch_chunks_matches_lax(monkeypatch):
  """ResNet-like 3x3 convs through im2col + oneDNN, the patches cut into batch chunks (bound
  lowered), against XLA's int32 convolution; auto picks this path on CPU (HLO check)."""
  monkeypatch.setattr(fast, "IM2COL_CHUNK_BYTES", 3 * 8 * 8 * 9 * 16)   # 3 images per chunk
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(4)
  x = act_array(rng, (7, 8, 8, 16), 8, False, extreme=0.5)
  w = weight_array(rng, (3, 3, 16, 24), pattern, extreme=0.5)
  dn = ("NHWC", "HWIO", "NHWC")
  # 8x8 outputs: 3 images per chunk -> 3 GEMMs; 3x4 outputs: all 7 images in one chunk.
  for strides, padding, dil, gemms in (((1, 1), "SAME", (1, 1), 3),
                                       ((2, 2), ((1, 0), (2, -1)), (2, 1), 1)):
    want = jax.lax.conv_general_dilated(jnp.asarray(x, jnp.int32), jnp.asarray(w, jnp.int32),
                                        strides, padding, rhs_dilation=dil,
                                        dimension_numbers=dn)
    f = jax.jit(lambda a, b: arith.conv_general_dilated(
        a, b, strides, padding, rhs_dilation=dil, dimension_numbers=dn, pattern=pattern))
    if jax.default_backend() == "cpu":
      assert f.lower(x, w).as_text().count("ebsp_onednn_gemm_u8s8s32") == gemms
    np.testing.assert_array_equal(np.asarray(f(x, w)), np.asarray(want))


def test_explicit_onednn_errors_are_one_line(monkeypatch):
  pattern = BitPattern(6, 3)
  monkeypatch.setattr(onednn, "status", lambda: "no library here")
  with pytest.raises(ValueError, match="unavailable here: no library here"):
    arith.dot_general(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.int8), MM,
                      pattern=pattern, accumulation="onednn")
  with pytest.raises(RuntimeError, match="no library here"):
    onednn.gemm(jnp.zeros((2, 3), jnp.uint8), jnp.zeros((3, 2), jnp.int8))


def test_build_error_names_the_missing_library(monkeypatch, tmp_path):
  monkeypatch.setenv("EBSP_JAX_DNNL", str(tmp_path / "missing.so"))
  assert onednn.library_path() is None
  with pytest.raises(RuntimeError, match="libdnnl.so.3\\) not found"):
    onednn.build()


def test_auto_without_the_kernel_logs_why_and_stays_exact(monkeypatch, caplog):
  monkeypatch.setattr(onednn, "status", lambda: "no library here")
  onednn.warn_unavailable_once.cache_clear()
  pattern = BitPattern(6, 3)
  cfg = Config(pattern=pattern, act_bits=8, act_signed=False, accumulation="auto")
  with caplog.at_level("WARNING"):
    p = fast.plan(cfg, 300)
  assert p.accumulation in ("bfloat16", "int32")
  assert any("no library here" in r.getMessage() for r in caplog.records)
  onednn.warn_unavailable_once.cache_clear()
  rng = np.random.default_rng(5)
  lhs = act_array(rng, (4, 300), 8, False, extreme=0.5)
  rhs = weight_array(rng, (300, 3), pattern, extreme=0.5)
  out = jax.jit(lambda x, y: arith.dot_general(x, y, MM, pattern=pattern))(lhs, rhs)
  assert "ebsp_onednn" not in jax.jit(
      lambda x, y: arith.dot_general(x, y, MM, pattern=pattern)).lower(lhs, rhs).as_text()
  np.testing.assert_array_equal(np.asarray(out), lhs.astype(np.int64) @ rhs.astype(np.int64))
