"""conv_general_dilated: fast == reference == an independent int64 NumPy model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jax import lax

from ebsp_jax import arith
from ebsp_jax.arith import fast
from ebsp_jax.arith import numpy_reference as npref
from ebsp_jax.arith.geometry import conv_geometry
from ebsp_jax.arith._test_strategies import (act_array, act_formats, fast_settings, patterns,
                                             weight_array)
from ebsp_jax.numerics import BitPattern

LAYOUTS = {
    1: [None, ("NWC", "WIO", "NWC"), ("NCW", "OIW", "NWC")],
    2: [None, ("NHWC", "HWIO", "NHWC"), ("NCHW", "OIHW", "NCHW"), ("NHWC", "OIHW", "NCHW"),
        ("HWCN", "IOHW", "CHWN"), ("NHWC", "WHIO", "NHWC")],
}


def _shape(spec, sizes):
  """Physical shape from a layout string and a dict letter -> size."""
  return tuple(sizes[c] for c in spec)


@st.composite
def conv_problems(draw, max_spatial=6):
  nd = draw(st.sampled_from([1, 2]))
  layout = draw(st.sampled_from(LAYOUTS[nd]))
  n = draw(st.integers(1, 2))
  groups = draw(st.sampled_from([1, 1, 2, 3]))
  cg = draw(st.integers(1, 3))
  og = draw(st.integers(1, 3))
  depthwise = draw(st.booleans()) and groups > 1
  if depthwise:
    cg = 1
  sp = [draw(st.integers(1, max_spatial)) for _ in range(nd)]
  kern = [draw(st.integers(1, 3)) for _ in range(nd)]
  strides = tuple(draw(st.integers(1, 2)) for _ in range(nd))
  rdil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
  explicit = draw(st.booleans())
  if explicit:
    ldil = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(nd))
  else:
    ldil = (1,) * nd
    padding = draw(st.sampled_from(["SAME", "VALID", "SAME_LOWER"]))
  for i in range(nd):
    padded = (sp[i] - 1) * ldil[i] + 1 + (sum(padding[i]) if explicit else 0)
    eff = (kern[i] - 1) * rdil[i] + 1
    if not explicit and padding == "VALID":
      assume(padded >= eff)
    if explicit:
      assume(padded >= eff)
  c, o = cg * groups, og * groups
  sp_letters = "HW"[-nd:] if nd == 2 else "W"
  if layout is None:
    lshape, rshape = (n, c, *sp), (o, cg, *kern)
  else:
    lspec, rspec, _ = layout
    sizes = dict(N=n, C=c, O=o, I=cg, **{l: s for l, s in zip(sp_letters, sp)})
    lshape = _shape(lspec, sizes)
    ksizes = dict(sizes, **{l: k for l, k in zip(sp_letters, kern)})
    rshape = _shape(rspec, ksizes)
  ldil_arg = None if all(d == 1 for d in ldil) and draw(st.booleans()) else ldil
  return dict(lshape=lshape, rshape=rshape, window_strides=strides, padding=padding,
              lhs_dilation=ldil_arg, rhs_dilation=rdil, dimension_numbers=layout,
              feature_group_count=groups)


def geometry_args(prob):
  return {k: v for k, v in prob.items() if k not in ("lshape", "rshape")}


def expected(lhs, rhs, prob, kw, pattern):
  a = lhs.astype(np.int64)
  if kw.get("mode") == "dual_lod":
    a = npref.dual_lod_approx(a, pattern.length, kw.get("rounding", "truncate"))
  bits, overflow = kw.get("acc_bits", 32), kw.get("overflow", "wrap")
  if overflow == "saturate":      # per-add register: a Python loop in window order
    out, clamps = npref.conv_register(a, rhs, **geometry_args(prob), acc_bits=bits)
    return out, int(np.count_nonzero(clamps))
  s = npref.conv(a, rhs, **geometry_args(prob))
  return npref.accumulator(s, bits, "clip" if overflow == "clip" else "wrap")


def run_both(lhs, rhs, prob, methods=("fast", "reference"), **kw):
  out = {}
  for method in methods:
    res, stats = arith.conv_general_dilated(lhs, rhs, method=method, with_stats=True,
                                            **geometry_args(prob), **kw)
    assert res.dtype == jnp.int32
    out[method] = (np.asarray(res), int(stats["overflow_count"]))
  return out


@fast_settings(25)
@given(conv_problems(), st.integers(0, 2**31 - 1))
def test_numpy_model_agrees_with_lax(prob, seed):
  """The independent model has lax's semantics (checked in float32, exact for small ints)."""
  rng = np.random.default_rng(seed)
  lhs = rng.integers(-8, 9, prob["lshape"])
  rhs = rng.integers(-8, 9, prob["rshape"])
  want = lax.conv_general_dilated(lhs.astype(np.float32), rhs.astype(np.float32),
                                  **geometry_args(prob))
  np.testing.assert_array_equal(npref.conv(lhs, rhs, **geometry_args(prob)), np.asarray(want))


def _assert_methods_match_model(lhs, rhs, prob, pattern, **kw):
  """Both methods equal the int64 model, outputs and overflow counts."""
  kw = dict(kw, pattern=pattern)
  want, count = expected(lhs, rhs, prob, kw, pattern)
  for method, (res, n) in run_both(lhs, rhs, prob, **kw).items():
    np.testing.assert_array_equal(res, want, err_msg=method)
    assert n == count, method


@fast_settings(12)
@given(conv_problems(), patterns(max_bits=8), act_formats(max_bits=10), st.integers(2, 32),
       st.sampled_from(["wrap", "saturate", "clip"]), st.sampled_from(["exact", "dual_lod"]),
       st.sampled_from(["truncate", "round"]),
       st.sampled_from(["auto", "int32", "float32", "bfloat16", "onednn"]),
       st.integers(0, 2**31 - 1))
def test_conv_matches_int64_model(prob, pattern, act, acc_bits, overflow, mode, rounding,
                                  accumulation, seed):
  rng = np.random.default_rng(seed)
  bits, signed = act
  lhs = act_array(rng, prob["lshape"], bits, signed)
  rhs = weight_array(rng, prob["rshape"], pattern)
  _assert_methods_match_model(lhs, rhs, prob, pattern, acc_bits=acc_bits, overflow=overflow,
                              mode=mode, rounding=rounding, act_bits=bits, act_signed=signed,
                              accumulation=accumulation)


@st.composite
def pointwise_problems(draw):
  """1x1 ungrouped unpadded convolutions (run as one matmul by the fast method)."""
  nd = draw(st.sampled_from([1, 2]))
  layout = draw(st.sampled_from(LAYOUTS[nd]))
  n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
  sp = [draw(st.integers(1, 7)) for _ in range(nd)]
  strides = tuple(draw(st.integers(1, 3)) for _ in range(nd))
  padding = draw(st.sampled_from(["VALID", ((0, 0),) * nd]))
  sp_letters = "HW"[-nd:] if nd == 2 else "W"
  if layout is None:
    lshape, rshape = (n, c, *sp), (o, c) + (1,) * nd
  else:
    lspec, rspec, _ = layout
    sizes = dict(N=n, C=c, O=o, I=c, **{l: s for l, s in zip(sp_letters, sp)})
    lshape = _shape(lspec, sizes)
    rshape = _shape(rspec, dict(sizes, **{l: 1 for l in sp_letters}))
  return dict(lshape=lshape, rshape=rshape, window_strides=strides, padding=padding,
              lhs_dilation=None, rhs_dilation=tuple(draw(st.integers(1, 2)) for _ in range(nd)),
              dimension_numbers=layout, feature_group_count=1)


@fast_settings(12)
@given(pointwise_problems(), patterns(max_bits=8), act_formats(max_bits=10), st.integers(2, 32),
       st.sampled_from(["wrap", "saturate", "clip"]), st.sampled_from(["exact", "dual_lod"]),
       st.sampled_from(["auto", "int32", "float32", "bfloat16", "onednn"]),
       st.integers(0, 2**31 - 1))
def test_pointwise_conv_matches_int64_model(prob, pattern, act, acc_bits, overflow, mode,
                                            accumulation, seed):
  """The matmul route of 1x1 convolutions (strides, layouts) equals the int64 model."""
  geo = conv_geometry(prob["lshape"], prob["rshape"], prob["window_strides"],
                                     prob["padding"], None, prob["rhs_dilation"],
                                     prob["dimension_numbers"], 1)
  assert geo.pointwise
  rng = np.random.default_rng(seed)
  bits, signed = act
  lhs = act_array(rng, prob["lshape"], bits, signed)
  rhs = weight_array(rng, prob["rshape"], pattern)
  _assert_methods_match_model(lhs, rhs, prob, pattern, acc_bits=acc_bits, overflow=overflow,
                              mode=mode, act_bits=bits, act_signed=signed,
                              accumulation=accumulation)


RESNET_LIKE = dict(lshape=(2, 9, 9, 16), rshape=(3, 3, 16, 8), window_strides=(2, 2),
                   padding="SAME", lhs_dilation=None, rhs_dilation=(1, 1),
                   dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=1)


@pytest.mark.parametrize("accumulation", ["int32", "float32", "bfloat16", "onednn"])
def test_resnet_like_conv_with_overflow(accumulation):
  """3x3 / stride 2 / SAME, uint8 activations (offset plane + padding correction), overflow."""
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(7)
  lhs = act_array(rng, RESNET_LIKE["lshape"], 8, False, extreme=0.5)
  rhs = weight_array(rng, RESNET_LIKE["rshape"], pattern, extreme=0.5)
  rhs[..., :4] = np.abs(rhs[..., :4])
  kw = dict(pattern=pattern, acc_bits=16, overflow="saturate", accumulation=accumulation)
  want, count = expected(lhs, rhs, RESNET_LIKE, kw, pattern)
  assert count > 0
  for method, (res, n) in run_both(lhs, rhs, RESNET_LIKE, **kw).items():
    np.testing.assert_array_equal(res, want, err_msg=method)
    assert n == count


def test_depthwise_and_transposed_float32_chunked(monkeypatch):
  """Float32 path with channel chunks (bound lowered to force them), depthwise + lhs dilation."""
  monkeypatch.setattr(fast, "FLOAT32_BOUND", 1 << 12)
  pattern = BitPattern(8, 4)
  rng = np.random.default_rng(8)
  for prob in (dict(lshape=(1, 7, 7, 6), rshape=(3, 3, 1, 12), window_strides=(1, 1),
                    padding=((1, 2), (0, 1)), lhs_dilation=(2, 1), rhs_dilation=(1, 2),
                    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6),
               dict(lshape=(2, 24, 5), rshape=(4, 12, 3), window_strides=(2,), padding="SAME",
                    lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                    feature_group_count=2)):
    lhs = act_array(rng, prob["lshape"], 8, False, extreme=0.8)
    rhs = weight_array(rng, prob["rshape"], pattern, extreme=0.8)
    kw = dict(pattern=pattern, acc_bits=32, overflow="wrap")
    want, _ = expected(lhs, rhs, prob, kw, pattern)
    res, _ = run_both(lhs, rhs, prob, methods=("fast",), accumulation="float32", **kw)["fast"]
    np.testing.assert_array_equal(res, want)


def test_long_conv_contraction_beyond_int32():
  """16-bit activations x 16b(L15) weights over 3x3x64: |sum| > 2**31, acc 32 and 20 bits."""
  pattern = BitPattern(16, 15)
  prob = dict(lshape=(1, 4, 4, 64), rshape=(3, 3, 64, 2), window_strides=(1, 1), padding="SAME",
              lhs_dilation=None, rhs_dilation=None, dimension_numbers=("NHWC", "HWIO", "NHWC"),
              feature_group_count=1)
  rng = np.random.default_rng(9)
  lhs = act_array(rng, prob["lshape"], 16, True, extreme=0.9, dtype=np.int16)
  lhs[..., :32] = -(1 << 15)
  rhs = weight_array(rng, prob["rshape"], pattern, extreme=0.9)
  rhs[:, :, :32, 0] = -pattern.max_level
  for overflow, acc_bits in (("wrap", 32), ("saturate", 20), ("clip", 20)):
    kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow)
    want, count = expected(lhs, rhs, prob, kw, pattern)
    assert count > 0
    for method, (res, n) in run_both(lhs, rhs, prob, **kw).items():
      np.testing.assert_array_equal(res, want, err_msg=f"{method} {kw}")
      assert n == count


def test_conv_jit_vmap_and_checks():
  pattern = BitPattern(5, 2)
  rng = np.random.default_rng(10)
  lhs = act_array(rng, (3, 1, 6, 6, 4), 8, True)
  rhs = weight_array(rng, (2, 2, 4, 3), pattern)
  dn = ("NHWC", "HWIO", "NHWC")
  want = np.stack([npref.conv(lhs[i], rhs, (1, 1), "VALID", dimension_numbers=dn)
                   for i in range(3)])
  for method in ("fast", "reference"):
    f = jax.jit(jax.vmap(lambda x: arith.conv_general_dilated(
        x, rhs, (1, 1), "VALID", dimension_numbers=dn, pattern=pattern, method=method)))
    np.testing.assert_array_equal(np.asarray(f(lhs)), want)
  with pytest.raises(ValueError, match="not levels of 5b"):
    arith.conv_general_dilated(lhs[0], rhs + 1, (1, 1), "VALID", dimension_numbers=dn,
                               pattern=pattern)
  with pytest.raises(ValueError, match="feature_group_count=3 does not fit"):
    arith.conv_general_dilated(lhs[0], rhs, (1, 1), "VALID", dimension_numbers=dn,
                               feature_group_count=3, pattern=pattern)
  for groups in (0, -2):
    with pytest.raises(ValueError, match=rf"^feature_group_count must be >= 1 \(got {groups}\)$"):
      arith.conv_general_dilated(lhs[0], rhs, (1, 1), "VALID", dimension_numbers=dn,
                                 feature_group_count=groups, pattern=pattern)
  with pytest.raises(TypeError, match=r"^feature_group_count must be an int >= 1, got float 1.5$"):
    arith.conv_general_dilated(lhs[0], rhs, (1, 1), "VALID", dimension_numbers=dn,
                               feature_group_count=1.5, pattern=pattern)
  with pytest.raises(ValueError, match=r"^batch_group_count must be 1 \(got 0\): batch-grouped"):
    arith.conv_general_dilated(lhs[0], rhs, (1, 1), "VALID", dimension_numbers=dn,
                               batch_group_count=0, pattern=pattern)
  with pytest.raises(ValueError, match="string padding is not implemented with lhs_dilation"):
    arith.conv_general_dilated(lhs[0], rhs, (1, 1), "SAME", lhs_dilation=(2, 2),
                               dimension_numbers=dn, pattern=pattern)
  with pytest.raises(ValueError, match="padding="):
    arith.conv_general_dilated(lhs[0], rhs, (1, 1), "FULL", dimension_numbers=dn, pattern=pattern)


@pytest.mark.slow
@fast_settings(150)
@given(conv_problems(max_spatial=8), patterns(max_bits=16), act_formats(max_bits=16),
       st.integers(2, 32), st.sampled_from(["wrap", "saturate", "clip"]),
       st.sampled_from(["exact", "dual_lod"]), st.sampled_from(["truncate", "round"]),
       st.sampled_from(["int32", "float32", "bfloat16", "onednn"]),
       st.integers(0, 2**31 - 1))
def test_conv_matches_int64_model_many(prob, pattern, act, acc_bits, overflow, mode, rounding,
                                       accumulation, seed):
  bits, signed = act
  if (1 << bits) * pattern.max_level >= 1 << 31:
    return
  rng = np.random.default_rng(seed)
  lhs = act_array(rng, prob["lshape"], bits, signed, dtype=np.int32)
  rhs = weight_array(rng, prob["rshape"], pattern)
  _assert_methods_match_model(lhs, rhs, prob, pattern, acc_bits=acc_bits, overflow=overflow,
                              mode=mode, rounding=rounding, act_bits=bits, act_signed=signed,
                              accumulation=accumulation)


@fast_settings(20)
@given(conv_problems(), patterns(max_bits=8), act_formats(max_bits=12), st.integers(2, 32),
       st.sampled_from(["wrap", "saturate", "clip"]), st.integers(0, 2**31 - 1))
def test_im2col_with_xla_int8_gemm_matches_int64_model(prob, pattern, act, acc_bits, overflow,
                                                       seed):
  """The GPU route of ``accumulation="int32"`` (im2col + XLA int8 -> int32 dot), run here on
  the CPU backend: equal to the int64 model, incl. >8-bit activations (planes + ones term)."""
  from ebsp_jax.arith.config import make_config
  rng = np.random.default_rng(seed)
  bits, signed = act
  lhs = act_array(rng, prob["lshape"], bits, signed, dtype=np.int32)
  rhs = weight_array(rng, prob["rshape"], pattern)
  kw = dict(pattern=pattern, acc_bits=acc_bits, overflow=overflow, act_bits=bits,
            act_signed=signed)
  want, count = expected(lhs, rhs, prob, kw, pattern)
  geo = conv_geometry(lhs.shape, rhs.shape, prob["window_strides"], prob["padding"],
                      prob["lhs_dilation"], prob["rhs_dilation"], prob["dimension_numbers"],
                      prob["feature_group_count"])
  assume(geo.k and 0 not in geo.out_shape)
  cfg = make_config(lhs.dtype, rhs.dtype, mode="exact", method="fast", rounding="truncate",
                    with_stats=True, accumulation="int32", op="conv", **kw)
  out, overflowed, _ = fast.im2col_conv(jnp.asarray(lhs), jnp.asarray(rhs), geo, cfg)
  np.testing.assert_array_equal(np.asarray(out), want)
  assert int(np.sum(np.asarray(overflowed))) == count
