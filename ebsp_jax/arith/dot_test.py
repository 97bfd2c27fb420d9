"""dot_general: fast == reference == an independent int64 NumPy model, on every input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify

from ebsp_jax import arith
from ebsp_jax.arith import fast
from ebsp_jax.arith import numpy_reference as npref
from ebsp_jax.arith._test_strategies import (act_array, act_formats, fast_settings, patterns,
                                             weight_array)
from ebsp_jax.arith.config import Config
from ebsp_jax.numerics import BitPattern
from ebsp_jax.numerics.reference_testing import int32_aliases

MM = (((1,), (0,)), ((), ()))


@st.composite
def dot_problems(draw):
  """Random dot_general geometry: batch, several contracting and free dims, permuted axes."""
  nb = draw(st.integers(0, 1))
  nc = draw(st.integers(1, 2))
  nl = draw(st.integers(0, 2))
  nr = draw(st.integers(0, 1))
  size = st.integers(1, 4)
  b = [draw(size) for _ in range(nb)]
  c = [draw(st.integers(1, 6)) for _ in range(nc)]
  lf = [draw(size) for _ in range(nl)]
  rf = [draw(size) for _ in range(nr)]
  lroles = [("b", i) for i in range(nb)] + [("c", i) for i in range(nc)] + [("f", i) for i in range(nl)]
  rroles = [("b", i) for i in range(nb)] + [("c", i) for i in range(nc)] + [("f", i) for i in range(nr)]
  lroles = draw(st.permutations(lroles))
  rroles = draw(st.permutations(rroles))
  sizes = {"b": b, "c": c}
  lshape = tuple((sizes.get(r, lf) if r != "f" else lf)[i] for r, i in lroles)
  rshape = tuple((sizes.get(r, rf) if r != "f" else rf)[i] for r, i in rroles)
  pos = lambda roles, kind: tuple(roles.index((kind, i)) for i in range(nb if kind == "b" else nc))
  dims = ((pos(lroles, "c"), pos(rroles, "c")), (pos(lroles, "b"), pos(rroles, "b")))
  return lshape, rshape, dims


def expected(lhs, rhs, dims, cfg_kw, pattern):
  a = lhs.astype(np.int64)
  if cfg_kw.get("mode") == "dual_lod":
    a = npref.dual_lod_approx(a, pattern.length, cfg_kw.get("rounding", "truncate"))
  bits, overflow = cfg_kw.get("acc_bits", 32), cfg_kw.get("overflow", "wrap")
  if overflow == "saturate":      # per-add register: a Python loop in K order
    out, clamps = npref.dot_register(a, rhs, dims, bits)
    return out, int(np.count_nonzero(clamps))
  s = npref.dot(a, rhs, dims)
  return npref.accumulator(s, bits, "clip" if overflow == "clip" else "wrap")


def run_both(lhs, rhs, dims, **kw):
  out = {}
  for method in ("fast", "reference"):
    res, stats = arith.dot_general(lhs, rhs, dims, method=method, with_stats=True, **kw)
    out[method] = (np.asarray(res), int(stats["overflow_count"]))
    assert res.dtype == jnp.int32
  return out


@fast_settings(12)
@given(dot_problems(), patterns(max_bits=8), act_formats(max_bits=12), st.integers(2, 32),
       st.sampled_from(["wrap", "saturate", "clip"]), st.sampled_from(["exact", "dual_lod"]),
       st.sampled_from(["truncate", "round"]),
       st.sampled_from(["auto", "int32", "float32", "bfloat16", "onednn"]),
       st.integers(0, 2**31 - 1))
def test_dot_general_matches_int64_model(problem, pattern, act, acc_bits, overflow, mode,
                                         rounding, accumulation, seed):
  lshape, rshape, dims = problem
  rng = np.random.default_rng(seed)
  bits, signed = act
  lhs = act_array(rng, lshape, bits, signed)
  rhs = weight_array(rng, rshape, pattern)
  kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow, mode=mode, rounding=rounding,
            act_bits=bits, act_signed=signed, accumulation=accumulation)
  want, count = expected(lhs, rhs, dims, kw, pattern)
  got = run_both(lhs, rhs, dims, **kw)
  for method, (res, n) in got.items():
    np.testing.assert_array_equal(res, want, err_msg=method)
    assert n == count, method


@pytest.mark.parametrize("pattern,acc_bits,overflow", [
    (BitPattern(16, 15), 32, "wrap"), (BitPattern(16, 3), 20, "saturate"),
    (BitPattern(12, 1), 24, "clip"), (BitPattern(16, 16, signed=False), 31, "saturate")])
def test_wide_patterns_and_16bit_activations(pattern, acc_bits, overflow):
  """Multi-plane weights (bands/digits) and multi-plane activations, worst-case magnitudes."""
  rng = np.random.default_rng(0)
  signed = pattern.signed
  bits = 16 if signed else 15
  lhs = act_array(rng, (5, 33), bits, signed, extreme=0.6, dtype=np.int32)
  rhs = weight_array(rng, (33, 4), pattern, extreme=0.6)
  kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow, act_bits=bits,
            act_signed=signed)
  want, count = expected(lhs, rhs, MM, kw, pattern)
  for method, (res, n) in run_both(lhs, rhs, MM, **kw).items():
    np.testing.assert_array_equal(res, want, err_msg=f"{method} {kw}")
    assert n == count


def test_long_contraction_overflows_beyond_int32():
  """|sum| ~ 2**42: wrap, clip, saturate and the overflow count need the exact 64-bit sum."""
  pattern = BitPattern(16, 15)
  k = 4096
  lhs = np.full((3, k), -(1 << 15), np.int16)
  lhs[1, ::2] = (1 << 15) - 1
  lhs[2] = np.random.default_rng(1).integers(-(1 << 15), 1 << 15, k)
  rhs = np.full((k, 2), -pattern.max_level, np.int32)
  rhs[::3, 1] = pattern.max_level
  for overflow, acc_bits in (("wrap", 32), ("saturate", 24), ("clip", 24), ("saturate", 32)):
    kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow)
    want, count = expected(lhs, rhs, MM, kw, pattern)
    assert count >= 4
    for method, (res, n) in run_both(lhs, rhs, MM, **kw).items():
      np.testing.assert_array_equal(res, want, err_msg=f"{method} {kw}")
      assert n == count


def test_small_accumulator_overflows_in_int32_range():
  pattern = BitPattern(8, 3)
  rng = np.random.default_rng(2)
  lhs = act_array(rng, (4, 3, 300), 8, False, extreme=0.5)
  rhs = weight_array(rng, (4, 300, 5), pattern, extreme=0.5)
  dims = (((2,), (1,)), ((0,), (0,)))
  for overflow in ("wrap", "saturate", "clip"):
    kw = dict(pattern=pattern, acc_bits=16, overflow=overflow)
    want, count = expected(lhs, rhs, dims, kw, pattern)
    assert count > 10
    for method, (res, n) in run_both(lhs, rhs, dims, **kw).items():
      np.testing.assert_array_equal(res, want, err_msg=method)
      assert n == count


def test_float32_accumulation_is_exact_with_chunks():
  """The GPU path (int8 x int8 -> f32, every partial sum <= 2**24), forced on CPU."""
  pattern = BitPattern(8, 7)
  cfg = Config(pattern=pattern, act_bits=8, act_signed=False, accumulation="float32")
  p = fast.plan(cfg, 5000)     # 5000 * 128 * 127 > 2**24: split into more native ops
  assert p.native_ops > 1 and p.chunk_units * max(p.act.max_abs) * max(p.weight.max_abs) <= 2**24
  rng = np.random.default_rng(3)
  lhs = act_array(rng, (3, 5000), 8, False, extreme=0.9)
  lhs[0] = 255
  rhs = weight_array(rng, (5000, 4), pattern, extreme=0.9)
  rhs[:, 0] = 127
  for overflow, acc_bits in (("wrap", 32), ("saturate", 24), ("clip", 24)):
    kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow)
    want, count = expected(lhs, rhs, MM, kw, pattern)
    res, stats = arith.dot_general(lhs, rhs, MM, accumulation="float32", with_stats=True, **kw)
    np.testing.assert_array_equal(np.asarray(res), want)
    assert int(stats["overflow_count"]) == count


def test_float32_chunked_contraction_is_exact(monkeypatch):
  """Chunking of the contraction (needed for long ones under 2**24), forced by a lower bound."""
  monkeypatch.setattr(fast, "FLOAT32_BOUND", 1 << 10)
  pattern = BitPattern(8, 7)
  cfg = Config(pattern=pattern, act_bits=8, act_signed=False, accumulation="float32")
  p = fast.plan(cfg, 997)
  assert p.chunks > 1 and p.chunk_units * max(p.act.max_abs) * max(p.weight.max_abs) <= 1 << 10
  rng = np.random.default_rng(13)
  lhs = act_array(rng, (2, 997), 8, False, extreme=0.9)
  rhs = weight_array(rng, (997, 3), pattern, extreme=0.9)
  kw = dict(pattern=pattern, acc_bits=22, overflow="saturate")
  want, count = expected(lhs, rhs, MM, kw, pattern)
  res, stats = arith.dot_general(lhs, rhs, MM, accumulation="float32", with_stats=True, **kw)
  np.testing.assert_array_equal(np.asarray(res), want)
  assert int(stats["overflow_count"]) == count


def test_plans():
  p = fast.plan(Config(pattern=BitPattern(6, 3), act_bits=8, act_signed=False), 1024)
  assert p.native_ops == 1 and p.act.offset == 128 and p.weight.kind == "direct"
  p = fast.plan(Config(pattern=BitPattern(8, 4), act_bits=8, act_signed=True), 1024)
  assert p.native_ops == 1 and p.act.offset == 0
  p = fast.plan(Config(pattern=BitPattern(16, 3), act_bits=8, act_signed=True), 64)
  assert p.weight.kind == "bands" and p.weight.count == 3
  p = fast.plan(Config(pattern=BitPattern(16, 15), act_bits=16, act_signed=True), 64)
  assert p.act.count == 2 and p.weight.count == 3 and not p.exact_int32
  p = fast.plan(Config(pattern=BitPattern(6, 3), act_bits=8, act_signed=False,
                       accumulation="bfloat16"), 1024)    # uint8 is exact in bf16: no offset
  assert p.native_ops == 1 and p.act.offset == 0 and p.act.direct


def test_jit_and_vmap():
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(4)
  lhs = act_array(rng, (3, 4, 20), 8, False)
  rhs = weight_array(rng, (3, 20, 5), pattern)
  want = np.stack([npref.dot(lhs[i], rhs[i], MM) for i in range(3)])
  for method in ("fast", "reference"):
    f = jax.jit(jax.vmap(lambda a, w: arith.dot_general(a, w, MM, pattern=pattern, method=method)))
    np.testing.assert_array_equal(np.asarray(f(lhs, rhs)), want)
    g = jax.vmap(lambda a: arith.dot_general(a, rhs[0], MM, pattern=pattern, method=method,
                                             acc_bits=12, with_stats=True))
    res, stats = g(lhs)
    want_i = [npref.accumulator(npref.dot(lhs[i], rhs[0], MM), 12, "wrap") for i in range(3)]
    np.testing.assert_array_equal(np.asarray(res), np.stack([w for w, _ in want_i]))
    np.testing.assert_array_equal(np.asarray(stats["overflow_count"]), [c for _, c in want_i])


def test_eager_checks_raise_value_error():
  p = BitPattern(6, 3)
  lhs = np.ones((2, 3), np.uint8)
  w = np.ones((3, 2), np.int32)
  with pytest.raises(ValueError, match=r"rhs: 1 weight\(s\) are not levels of 6b\(L3\) \(first: 9\)"):
    arith.dot_general(lhs, np.array([[1, 1], [9, 1], [1, 1]]), MM, pattern=p)
  with pytest.raises(ValueError, match=r"lhs: .* outside the unsigned 4-bit range \[0, 15\]"):
    arith.dot_general(lhs * 16, w, MM, pattern=p, act_bits=4)
  with pytest.raises(ValueError, match="acc_bits=33 is out of range"):
    arith.dot_general(lhs, w, MM, pattern=p, acc_bits=33)
  for kw, msg in ((dict(overflow="clamp"), "overflow='clamp'"), (dict(mode="approx"), "mode="),
                  (dict(method="slow"), "method="), (dict(rounding="up"), "rounding="),
                  (dict(accumulation="f16"), "accumulation="), (dict(act_bits=17), "act_bits=17")):
    with pytest.raises(ValueError, match=msg):
      arith.dot_general(lhs, w, MM, pattern=p, **kw)
  with pytest.raises(TypeError, match="lhs must have an integer dtype"):
    arith.dot_general(lhs.astype(np.float32), w, MM, pattern=p)
  with pytest.raises(ValueError, match="does not fit the 32-bit datapath"):
    arith.dot_general(lhs.astype(np.uint16), w, MM, pattern=BitPattern(16, 16, signed=False))
  with pytest.raises(ValueError, match="contracting dims differ"):
    arith.dot_general(lhs, w[:2], MM, pattern=p)


def test_checkify_under_jit():
  p = BitPattern(6, 3)
  f = checkify.checkify(jax.jit(lambda a, w: arith.dot_general(a, w, MM, pattern=p, act_bits=4)),
                        errors=checkify.user_checks)
  ok = np.ones((2, 3), np.uint8)
  err, _ = f(ok, np.ones((3, 2), np.int32))
  assert err.get() is None
  err, _ = f(ok, np.full((3, 2), 9, np.int32))
  assert "not levels of 6b(L3)" in err.get()
  err, _ = f(ok * 99, np.ones((3, 2), np.int32))
  assert "outside [0, 15]" in err.get()
  # Plain jit: no checks, no error (the checks cost nothing).
  jax.jit(lambda a, w: arith.dot_general(a, w, MM, pattern=p))(ok, np.full((3, 2), 9, np.int32))


@fast_settings(12)
@given(pattern=patterns(max_bits=8), data=st.data())
def test_checkify_catches_values_that_wrap_in_int32(pattern, data):
  """Property: an off-grid weight / out-of-range activation that int32 arithmetic mistakes for
  a valid one (INT32_MIN, whose abs wraps; uint32 / int64 / uint64 values congruent to a
  valid one modulo 2**32) fails the traced checks under checkify(jit), as it fails eagerly.
  They used to pass: the product was silently dropped or computed from the wrapped value."""
  act_bits, act_signed = 8, data.draw(st.booleans())
  lo, hi = (-128, 127) if act_signed else (0, 255)
  f = checkify.checkify(jax.jit(lambda a, w: arith.dot_general(
      a, w, MM, pattern=pattern, act_bits=act_bits, act_signed=act_signed)),
                        errors=checkify.user_checks)
  with jax.enable_x64(True):
    value, dtype = data.draw(int32_aliases(pattern.levels, x64=True))
    w = jnp.asarray(np.array([[value], [0]], dtype))
    assert w.dtype == dtype
    a = np.ones((1, 2), np.int8)
    err, _ = f(a, w)
    assert err.get() is not None and "not levels of" in err.get(), (value, dtype)
    with pytest.raises(ValueError, match="not levels of"):
      arith.dot_general(a, w, MM, pattern=pattern, act_bits=act_bits, act_signed=act_signed)
    value, dtype = data.draw(int32_aliases(range(lo, hi + 1), x64=True))
    a = jnp.asarray(np.array([[value, 0]], dtype))
    assert a.dtype == dtype
    w = np.zeros((2, 1), np.int32)
    err, _ = f(a, w)
    assert err.get() is not None and "outside" in err.get(), (value, dtype)
    with pytest.raises(ValueError, match="outside"):
      arith.dot_general(a, w, MM, pattern=pattern, act_bits=act_bits, act_signed=act_signed)


def test_int32_min_weight_fails_checkify_and_encode_without_x64():
  """The audit's repro: -2**31 passed on_grid (abs wraps) and its product was dropped."""
  p = BitPattern(16, 4)
  f = checkify.checkify(jax.jit(lambda a, w: arith.dot_general(a, w, MM, pattern=p)),
                        errors=checkify.user_checks)
  err, _ = f(jnp.ones((1, 2), jnp.int16), jnp.array([[-2**31], [8]], jnp.int32))
  assert "not levels of 16b(L4)" in err.get()
  err, _ = f(jnp.ones((1, 2), jnp.int16), jnp.array([[2**31], [8]], jnp.uint32))
  assert "not levels of 16b(L4)" in err.get()
  # uint32 2**32 - 5 casts to -5: inside the signed range, but not a signed 16-bit value.
  err, _ = checkify.checkify(jax.jit(lambda a: arith.dot_general(
      a, jnp.full((1, 1), 8, jnp.int32), MM, pattern=p, act_signed=True)),
                             errors=checkify.user_checks)(jnp.array([[2**32 - 5]], jnp.uint32))
  assert "outside [-32768, 32767]" in err.get()


def test_64bit_numpy_activations_keep_their_default_format():
  """uint64 used to be cast to int32 before the defaults were read: signed, so 40000 failed."""
  p = BitPattern(6, 3)
  for dt in (np.uint32, np.uint64):
    np.testing.assert_array_equal(
        np.asarray(arith.dot_general(np.array([[40000, 65535]], dt), np.int8([[8], [-1]]), MM,
                                     pattern=p)), [[40000 * 8 - 65535]])
  with pytest.raises(ValueError, match=r"outside the signed 16-bit range"):
    arith.dot_general(np.array([[40000]], np.int64), np.int8([[8]]), MM, pattern=p)
  with pytest.raises(ValueError, match=r"outside the unsigned 16-bit range"):
    arith.dot_general(np.array([[70000]], np.uint64), np.int8([[8]]), MM, pattern=p)
  out = arith.conv_general_dilated(np.full((1, 1, 3), 40000, np.uint64), np.int8([[[1, 2, 4]]]),
                                   (1,), "VALID", pattern=p)
  np.testing.assert_array_equal(np.asarray(out), [[[280000]]])


def test_eager_vmap_skips_the_checks_as_documented():
  """Plain eager vmap traces: the checks are checkify checks there, skipped silently; the
  docstrings say so prominently."""
  p = BitPattern(6, 3)
  a, w = np.ones((2, 1, 3), np.uint8), np.full((2, 3, 1), 9, np.int32)   # 9: off grid
  f = jax.vmap(lambda a, w: arith.dot_general(a, w, MM, pattern=p))
  f(a, w)                                                                # no error
  err, _ = checkify.checkify(f, errors=checkify.user_checks)(a, w)
  assert "not levels of 6b(L3)" in err.get()
  for fn in (arith.dot_general, arith.conv_general_dilated):
    doc = " ".join(fn.__doc__.split())
    assert "eager ``jax.vmap``" in doc and "skipped silently" in doc, fn.__name__
  assert "skipped silently" in " ".join(arith.api.__doc__.split())


def test_overflow_error_mode():
  p = BitPattern(8, 7)
  lhs = np.full((1, 8), 255, np.uint8)
  w = np.full((8, 1), 127, np.int32)
  assert int(arith.dot_general(lhs, w, MM, pattern=p, acc_bits=20, overflow="error")[0, 0]) == 8 * 255 * 127
  with pytest.raises(OverflowError, match="1 output"):
    arith.dot_general(lhs, w, MM, pattern=p, acc_bits=16, overflow="error")
  f = checkify.checkify(jax.jit(lambda a: arith.dot_general(a, w, MM, pattern=p, acc_bits=16,
                                                            overflow="error")),
                        errors=checkify.user_checks)
  err, _ = f(lhs)
  assert "overflow" in err.get()


def test_flax_style_call():
  """Drop-in use: precision/preferred_element_type keywords, int32 activations with act_bits;
  without stats (the plain int32 result path) for both methods."""
  p = BitPattern(6, 3)
  lhs = jnp.arange(12, dtype=jnp.int32).reshape(3, 4) * 20
  w = jnp.asarray(weight_array(np.random.default_rng(5), (4, 2), p))
  for method in ("fast", "reference"):
    out = arith.dot_general(lhs, w, MM, pattern=p, act_bits=8, act_signed=False, precision=None,
                            preferred_element_type=jnp.int32, method=method, acc_bits=12)
    want, _ = npref.accumulator(np.asarray(lhs) @ np.asarray(w), 12, "wrap")
    np.testing.assert_array_equal(np.asarray(out), want)


@pytest.mark.slow
@fast_settings(150)
@given(dot_problems(), patterns(max_bits=16), act_formats(max_bits=16), st.integers(2, 32),
       st.sampled_from(["wrap", "saturate", "clip"]), st.sampled_from(["exact", "dual_lod"]),
       st.sampled_from(["truncate", "round"]),
       st.sampled_from(["int32", "float32", "bfloat16", "onednn"]), st.integers(0, 2**31 - 1))
def test_dot_general_matches_int64_model_many(problem, pattern, act, acc_bits, overflow, mode,
                                              rounding, accumulation, seed):
  lshape, rshape, dims = problem
  rng = np.random.default_rng(seed)
  bits, signed = act
  if (1 << bits) * pattern.max_level >= 1 << 31:
    return
  lhs = act_array(rng, lshape, bits, signed, dtype=np.int32)
  rhs = weight_array(rng, rshape, pattern)
  kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow, mode=mode, rounding=rounding,
            act_bits=bits, act_signed=signed, accumulation=accumulation)
  want, count = expected(lhs, rhs, dims, kw, pattern)
  for method, (res, n) in run_both(lhs, rhs, dims, **kw).items():
    np.testing.assert_array_equal(res, want, err_msg=method)
    assert n == count


def _all_patterns(max_bits=8):
  return [BitPattern(b, l, s) for s in (True, False) for b in range(2 if s else 1, max_bits + 1)
          for l in range(1, (b - 1 if s else b) + 1)]


def test_planes_reconstruct_every_pattern_and_format():
  """Every (bits <= 8, length, signed) pattern — uniform and power-of-two included — and every
  activation format: the int8 planes of the fast method recompose the operands exactly."""
  for pattern in _all_patterns(8) + [BitPattern(16, 3), BitPattern(16, 15), BitPattern(12, 1)]:
    levels = pattern.levels.astype(np.int64)
    q = np.resize(levels, 512)                       # fixed shape: eager ops compile once
    for accumulation in ("int32", "float32", "bfloat16", "onednn"):
      p = fast.plan(Config(pattern=pattern, act_bits=8, act_signed=False,
                           accumulation=accumulation), 64)
      planes = [np.asarray(t) for t in fast.weight_planes(q, p.weight, pattern)]
      cap = (1 << (p.weight.digit_bits - 1)) - 1
      assert all(np.abs(t).max() <= min(cap, m) for t, m in zip(planes, p.weight.max_abs))
      np.testing.assert_array_equal(
          sum(t.astype(np.int64) << f for t, f in zip(planes, p.weight.shifts)), q, str(pattern))
  for signed in (True, False):
    for bits in range(2 if signed else 1, 17):
      for rounding in ("truncate", "round"):
        cfg = Config(pattern=BitPattern(8, 3), act_bits=bits, act_signed=signed,
                     mode="dual_lod", rounding=rounding)
        lo, hi = cfg.datapath_act_range
        a = np.resize(np.arange(lo, hi + 1), 1024)
        a[:2] = lo, hi
        for d in (9, 8, 5, 2):
          ap = fast.act_plan(lo, hi, d)
          planes = [np.asarray(t) for t in fast.act_planes(a, ap)]
          assert all(np.abs(t).max() <= m <= (1 << (d - 1)) for t, m in zip(planes, ap.max_abs))
          np.testing.assert_array_equal(
              sum(t.astype(np.int64) << e for t, e in zip(planes, ap.shifts)) + ap.offset, a)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", _all_patterns(8), ids=str)
def test_every_small_pattern_end_to_end(pattern):
  rng = np.random.default_rng(hash(str(pattern)) % 2**32)
  lhs = act_array(rng, (3, 2, 40), 8, False, extreme=0.5)
  rhs = weight_array(rng, (3, 40, 4), pattern, extreme=0.5)
  dims = (((2,), (1,)), ((0,), (0,)))
  for overflow, acc_bits in (("wrap", 14), ("saturate", 15)):
    kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow)
    want, count = expected(lhs, rhs, dims, kw, pattern)
    for method, (res, n) in run_both(lhs, rhs, dims, **kw).items():
      np.testing.assert_array_equal(res, want, err_msg=method)
      assert n == count
