"""``overflow="saturate"``: a register clamping at every add, in K order, against a Python loop.

The expected values come from :func:`numpy_reference.register`: plain Python integers, one add
at a time over the product slots of :func:`numpy_reference.dot_slots` / ``conv_slots`` (an
einsum / explicit-loop model that shares no code with the JAX implementation). Both methods
are checked, the fast one on all of its routes: no partial sum can leave the range (static
bound), unsafe outputs gathered and run add by add in one round, and in several rounds (more
unsafe outputs than the gather capacity).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebsp_jax import arith
from ebsp_jax.arith import fast
from ebsp_jax.arith import numpy_reference as npref
from ebsp_jax.arith.config import make_config
from ebsp_jax.arith._test_strategies import (act_array, act_formats, fast_settings, patterns,
                                             weight_array)
from ebsp_jax.arith.conv_test import conv_problems, geometry_args
from ebsp_jax.arith.dot_test import dot_problems
from ebsp_jax.numerics import BitPattern

MM = (((1,), (0,)), ((), ()))


def _set_capacity(monkeypatch, elements):
  """Sets the gather capacity; jit caches are cleared (the capacity is read when tracing)."""
  if elements is not None:
    monkeypatch.setattr(fast, "REGISTER_CAP_ELEMENTS", elements)
  jax.clear_caches()


def _python_register(a, w, acc_bits):
  """The register of the issue's example, written out: clamp after every add."""
  lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
  acc = clamps = 0
  for x, y in zip(a, w):
    acc += x * y
    if not lo <= acc <= hi:
      acc, clamps = min(max(acc, lo), hi), clamps + 1
  return acc, clamps


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_issue_example_register_vs_clip(method):
  """a = [100, 100, 100], w = [1, 1, -1], 8 bits: 100 -> 200 clamps to 127 -> 27."""
  a = np.array([[100, 100, 100]], np.int32)
  w = np.array([[1], [1], [-1]], np.int32)
  kw = dict(pattern=BitPattern(8, 7), acc_bits=8, act_bits=8, act_signed=True, method=method,
            with_stats=True)
  assert _python_register([100, 100, 100], [1, 1, -1], 8) == (27, 1)
  out, stats = arith.dot_general(a, w, MM, overflow="saturate", **kw)
  assert int(out[0, 0]) == 27
  assert int(stats["overflow_count"]) == 1 and int(stats["clamp_count"]) == 1
  out, stats = arith.dot_general(a, w, MM, overflow="clip", **kw)
  assert int(out[0, 0]) == 100 and int(stats["overflow_count"]) == 0
  assert "clamp_count" not in stats


def _check_dot(lhs, rhs, dims, **kw):
  bits = kw["acc_bits"]
  a = lhs.astype(np.int64)
  if kw.get("mode") == "dual_lod":
    a = npref.dual_lod_approx(a, kw["pattern"].length, kw.get("rounding", "truncate"))
  want, clamps = npref.dot_register(a, rhs, dims, bits)
  for method in ("fast", "reference"):
    out, stats = arith.dot_general(lhs, rhs, dims, overflow="saturate", method=method,
                                   with_stats=True, **kw)
    np.testing.assert_array_equal(np.asarray(out), want, err_msg=method)
    assert int(stats["overflow_count"]) == np.count_nonzero(clamps), method
    assert int(stats["clamp_count"]) == clamps.sum(), method
  return clamps


def _check_conv(lhs, rhs, prob, **kw):
  bits = kw["acc_bits"]
  a = lhs.astype(np.int64)
  if kw.get("mode") == "dual_lod":
    a = npref.dual_lod_approx(a, kw["pattern"].length, kw.get("rounding", "truncate"))
  want, clamps = npref.conv_register(a, rhs, **geometry_args(prob), acc_bits=bits)
  for method in ("fast", "reference"):
    out, stats = arith.conv_general_dilated(lhs, rhs, overflow="saturate", method=method,
                                            with_stats=True, **geometry_args(prob), **kw)
    np.testing.assert_array_equal(np.asarray(out), want, err_msg=method)
    assert int(stats["overflow_count"]) == np.count_nonzero(clamps), method
    assert int(stats["clamp_count"]) == clamps.sum(), method
  return clamps


@fast_settings(40)
@given(dot_problems(), patterns(max_bits=8), act_formats(max_bits=10), st.integers(2, 20),
       st.sampled_from(["exact", "dual_lod"]), st.sampled_from(["truncate", "round"]),
       st.sampled_from(["auto", "int32", "float32", "bfloat16"]), st.integers(0, 2**31 - 1))
def test_dot_register_matches_python_loop(problem, pattern, act, acc_bits, mode, rounding,
                                          accumulation, seed):
  lshape, rshape, dims = problem
  rng = np.random.default_rng(seed)
  bits, signed = act
  lhs = act_array(rng, lshape, bits, signed, extreme=0.6)
  rhs = weight_array(rng, rshape, pattern, extreme=0.6)
  _check_dot(lhs, rhs, dims, pattern=pattern, acc_bits=acc_bits, mode=mode, rounding=rounding,
             act_bits=bits, act_signed=signed, accumulation=accumulation)


@fast_settings(25)
@given(conv_problems(), patterns(max_bits=8), act_formats(max_bits=10), st.integers(2, 20),
       st.sampled_from(["exact", "dual_lod"]), st.sampled_from(["truncate", "round"]),
       st.sampled_from(["auto", "int32", "float32", "bfloat16", "onednn"]),
       st.integers(0, 2**31 - 1))
def test_conv_register_matches_python_loop(prob, pattern, act, acc_bits, mode, rounding,
                                           accumulation, seed):
  rng = np.random.default_rng(seed)
  bits, signed = act
  lhs = act_array(rng, prob["lshape"], bits, signed, extreme=0.6)
  rhs = weight_array(rng, prob["rshape"], pattern, extreme=0.6)
  _check_conv(lhs, rhs, prob, pattern=pattern, acc_bits=acc_bits, mode=mode, rounding=rounding,
              act_bits=bits, act_signed=signed, accumulation=accumulation)


def _mixed_sign_dot(rng, m, k, n):
  """Partial sums that leave an 10-bit range and come back: the register differs from clip."""
  lhs = rng.integers(0, 256, (m, k)).astype(np.uint8)
  rhs = np.where(np.arange(k)[:, None] < k // 2, 7, -7) * np.ones((1, n), np.int64)
  rhs = rhs * rng.choice([1, 1, 1, 0], size=(k, n))
  return lhs, rhs.astype(np.int32)


@pytest.mark.parametrize("cap", [None, 64, 1])
def test_every_fast_route(cap, monkeypatch):
  """Default capacity (the unsafe outputs gathered in one round), 64 outputs and one output
  per round (several rounds); plus a configuration the static bound proves clamp-free."""
  _set_capacity(monkeypatch, None if cap is None else cap * 40)
  rng = np.random.default_rng(4)
  lhs, rhs = _mixed_sign_dot(rng, 6, 40, 5)
  pattern = BitPattern(4, 3)
  clamps = _check_dot(lhs, rhs, MM, pattern=pattern, acc_bits=10)
  assert np.count_nonzero(clamps) > 1
  a = npref.dot(lhs, rhs, MM)
  clip, _ = npref.accumulator(a, 10, "clip")
  want, _ = npref.dot_register(lhs.astype(np.int64), rhs, MM, 10)
  assert (clip != want).any()            # the two semantics differ here
  # Static bound: 40 * 255 * 7 = 71400 <= 2**17 - 1: no clamp possible, nothing gathered.
  assert fast.register_static_safe(
      make_config(np.uint8, np.int32, pattern=pattern, acc_bits=18,
                               overflow="saturate", mode="exact", method="fast",
                               rounding="truncate", act_bits=None, act_signed=None,
                               with_stats=True, accumulation="int32", op="dot"), 40)
  assert not _check_dot(lhs, rhs, MM, pattern=pattern, acc_bits=18).any()
  jax.clear_caches()


@pytest.mark.parametrize("cap", [None, 1])
def test_conv_routes_and_window_order(cap, monkeypatch):
  """A 3x3 stride-2 SAME convolution with lhs/rhs dilation and groups, unsafe outputs: the
  gathered windows follow the window order (taps row-major, channels ascending)."""
  _set_capacity(monkeypatch, None if cap is None else cap * 36)
  rng = np.random.default_rng(5)
  prob = dict(lshape=(2, 7, 6, 8), rshape=(3, 3, 4, 6), window_strides=(2, 1),
              padding=((1, 1), (2, 0)), lhs_dilation=(1, 2), rhs_dilation=(2, 1),
              dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2)
  lhs = act_array(rng, prob["lshape"], 8, False, extreme=0.7)
  rhs = np.where(rng.random(prob["rshape"]) < 0.5, 7, -7).astype(np.int32)
  rhs[0] = 7                                   # the first taps push the sum up
  for accumulation in ("int32", "float32", "onednn"):
    clamps = _check_conv(lhs, rhs, prob, pattern=BitPattern(4, 3), acc_bits=11,
                         accumulation=accumulation)
    assert np.count_nonzero(clamps) > 0
  jax.clear_caches()


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_register_under_jit_and_vmap(method):
  """Batched: each vmapped call has its own unsafe outputs and gather rounds."""
  rng = np.random.default_rng(6)
  lhs = rng.integers(0, 256, (3, 4, 40)).astype(np.uint8)
  rhs = rng.choice([7, -7, 0], (40, 5)).astype(np.int32)
  rhs[:20] = 7
  f = jax.jit(jax.vmap(lambda x: arith.dot_general(x, rhs, MM, pattern=BitPattern(4, 3),
                                                   acc_bits=10, overflow="saturate",
                                                   method=method)))
  got = np.asarray(f(lhs))
  for i in range(3):
    want, clamps = npref.dot_register(lhs[i].astype(np.int64), rhs, MM, 10)
    assert clamps.any()
    np.testing.assert_array_equal(got[i], want)


@pytest.mark.parametrize("accumulation", ["auto", "int32", "float32", "bfloat16", "onednn"])
def test_register_with_no_outputs(accumulation):
  """A convolution with no output channels (found by the property above): the register has
  nothing to clamp, for every accumulation and both methods (it used to trace |a| x |q| sums
  on empty operands and fail)."""
  a = np.ones((1, 3, 4, 4), np.int32)            # unsigned 8-bit activations, NCHW
  w = np.zeros((0, 3, 3, 3), np.int32)           # OIHW, no output channel
  for method in ("fast", "reference"):
    out, stats = arith.conv_general_dilated(
        a, w, (1, 1), "VALID", pattern=BitPattern(6, 3), act_bits=8, act_signed=False,
        acc_bits=8, overflow="saturate", accumulation=accumulation, method=method,
        with_stats=True)
    assert out.shape == (1, 0, 2, 2), method
    assert int(stats["overflow_count"]) == 0 and int(stats["clamp_count"]) == 0, method
