"""The fast method on the GPU-relevant layer shapes: float ops at HIGHEST precision, bit-exact.

Two guards for issue 14 (GPU exactness):

* Every float dot/convolution the fast method emits requests ``HIGHEST`` precision (never
  TF32 or bf16 passes), asserted on the lowered StableHLO text: for the CPU backend and, under
  ``target_backend("gpu")``, lowered for CUDA on this host (no GPU needed).
* Bit-exactness on the layer shapes of ResNet-style networks (dot and convolution; uint8 and
  int8 activations; 6b(L3) and uniform 8-bit weights; 64, 256 and 2048 input channels; 1x1,
  3x3 stride 2 and depthwise 3x3) against the int64 NumPy model, for every native path the GPU
  rules choose. On a host without GPU the GPU plans run on the CPU backend (same programs, CPU
  arithmetic); on a GPU (``benchmarks/gpu.sh``) the same tests run the device's own ops, where
  TF32 would show: the weights are drawn so that the offset convolution's summed kernel exceeds
  2**11 (asserted), which TF32 cannot hold.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import arith
from ebsp_jax.arith import dispatch
from ebsp_jax.arith.platform import target_backend
from ebsp_jax.arith import numpy_reference as npref
from ebsp_jax.arith._test_strategies import act_array
from ebsp_jax.numerics import BitPattern, uniform

PATTERNS = {"6b(L3)": BitPattern(6, 3), "uniform8": uniform(8)}
ACTS = {"uint8": np.uint8, "int8": np.int8}
CHANNELS = (64, 256, 2048)
OPS = ("dot", "conv1x1", "conv3x3s2", "depthwise3x3")
NHWC = ("NHWC", "HWIO", "NHWC")
MM = (((1,), (0,)), ((), ()))
FLOAT_TYPES = ("f32", "bf16", "f16", "f64", "tf32")
ON_GPU = jax.default_backend() in ("gpu", "cuda", "rocm")
# Where the host is no GPU, the GPU plans run here under target_backend("gpu").
TARGET = "gpu"


def _conv_args(op: str, c: int):
  """``(lhs_shape, rhs_shape, lax kwargs)`` of a small NHWC layer with ``c`` input channels."""
  if op == "conv1x1":
    return (2, 3, 3, c), (1, 1, c, 8), dict(window_strides=(1, 1), padding="VALID")
  if op == "conv3x3s2":
    return (2, 5, 5, c), (3, 3, c, 8), dict(window_strides=(2, 2), padding="SAME")
  return (2, 5, 5, c), (3, 3, 1, c), dict(window_strides=(1, 1), padding="SAME",
                                          feature_group_count=c)


def _weights(rng: np.random.Generator, shape, pattern: BitPattern) -> np.ndarray:
  """Levels of ``pattern``; the first half of the output channels non-negative (large summed
  kernels: the offset term), the rest any sign."""
  levels = pattern.levels.astype(np.int64)
  w = rng.choice(levels, size=shape)
  half = shape[-1] // 2
  pos = levels[levels >= 0]
  w[..., :half] = rng.choice(pos[len(pos) // 2:], size=shape[:-1] + (half,))
  return w.astype(np.int32)


def _call(op: str, lhs, rhs, pattern, accumulation: str, kw):
  common = dict(pattern=pattern, accumulation=accumulation, with_stats=True)
  if op == "dot":
    return arith.dot_general(lhs, rhs, MM, **common)
  return arith.conv_general_dilated(lhs, rhs, dimension_numbers=NHWC, **kw, **common)


def _problem(op: str, act: str, c: int, pattern: BitPattern, seed: int = 0):
  rng = np.random.default_rng(seed + c)
  signed = act == "int8"
  if op == "dot":
    lshape, rshape, kw = (4, c), (c, 8), {}
  else:
    lshape, rshape, kw = _conv_args(op, c)
  lhs = act_array(rng, lshape, 8, signed)
  rhs = _weights(rng, rshape, pattern)
  if op == "dot":
    want = npref.dot(lhs, rhs, MM)
  else:
    want = npref.conv(lhs, rhs, dimension_numbers=NHWC, **kw)
  return lhs, rhs, kw, want


def _accumulations(op: str, c: int):
  """The native paths a GPU can run for this layer: what ``auto`` picks there, and the rest."""
  with target_backend(TARGET):
    group_in = 1 if op == "depthwise3x3" else c
    chosen = dispatch.resolve_accumulation("auto", "conv" if op.startswith(("conv", "depth"))
                                           and op != "conv1x1" else "dot", group_in)
  return (chosen,) + tuple(a for a in ("int32", "float32", "bfloat16") if a != chosen)


def _float_ops_without_highest(text: str):
  """Lines of StableHLO ``dot_general``/``convolution`` ops with a float result that do not
  request ``HIGHEST`` precision for both operands; and the number of float ops seen."""
  bad, seen = [], 0
  for line in text.splitlines():
    if not re.search(r"stablehlo\.(dot_general|convolution)\b", line):
      continue
    result = line.rsplit("->", 1)[-1]
    if not re.search(r"x(" + "|".join(FLOAT_TYPES) + r")>", result):
      continue
    seen += 1
    if len(re.findall(r"\bHIGHEST\b", line)) != 2:
      bad.append(line.strip()[:300])
  return bad, seen


def _lowered_text(op, lhs_shape, lhs_dtype, rhs_shape, pattern, accumulation, kw, platform):
  a = jax.ShapeDtypeStruct(lhs_shape, lhs_dtype)
  w = jax.ShapeDtypeStruct(rhs_shape, jnp.int32)
  fn = jax.jit(lambda x, y: _call(op, x, y, pattern, accumulation, kw))
  return fn.trace(a, w).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("target,platform", [("cpu", "cpu"), ("gpu", "cuda")])
@pytest.mark.parametrize("op", OPS)
def test_every_float_op_requests_highest_precision(target, platform, op):
  """The HLO guard: lowered for ``platform`` with the ``target`` rules, every float
  dot/convolution of every native path carries ``precision HIGHEST`` on both operands."""
  seen = 0
  for act, dtype in ACTS.items():
    for name, pattern in PATTERNS.items():
      for c in (64, 2048):
        if op == "dot":
          lshape, rshape, kw = (4, c), (c, 8), {}
        else:
          lshape, rshape, kw = _conv_args(op, c)
        accs = ["auto", "int32", "float32", "bfloat16"]
        for acc in accs:
          with target_backend(target):
            text = _lowered_text(op, lshape, dtype, rshape, pattern, acc, kw, platform)
          bad, n = _float_ops_without_highest(text)
          assert not bad, (f"{op} {act} {name} C={c} accumulation={acc} on {target}: float "
                           f"ops without HIGHEST precision:\n" + "\n".join(bad))
          seen += n
  assert seen > 0     # the guard looked at float ops (the float32/bfloat16 paths emit them)


def test_guard_detects_a_default_precision_op():
  """The checker itself: an f32 convolution at default precision is reported."""
  a = jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 3, 2), jnp.float32)
  conv = lambda x, y, p: jax.lax.conv_general_dilated(x, y, (1, 1), "SAME",
                                                      dimension_numbers=NHWC, precision=p)
  default = jax.jit(lambda x, y: conv(x, y, None)).trace(a, w).lower().as_text()
  highest = jax.jit(lambda x, y: conv(x, y, jax.lax.Precision.HIGHEST)).trace(a, w).lower()
  assert _float_ops_without_highest(default)[0]
  assert _float_ops_without_highest(highest.as_text()) == ([], 1)


def test_offset_convolution_needs_more_than_tf32():
  """The configurations below exercise the hole TF32 would open: with uint8 activations on
  the float32 path, the summed kernel of the offset convolution exceeds 2**11 (TF32 keeps 11
  significant bits) and is not a multiple of the spacing TF32 has there."""
  for name, pattern in PATTERNS.items():
    _, rhs, _, _ = _problem("conv3x3s2", "uint8", 256, pattern)
    summed = np.abs(rhs.astype(np.int64).sum(axis=2)).max()
    assert summed > 1 << 11, name
    spacing = 1 << (int(summed).bit_length() - 11)
    assert summed % spacing, name                     # TF32 would round it


def _exact_cases():
  for op in OPS:
    for act in ACTS:
      for name in PATTERNS:
        for c in CHANNELS:
          yield pytest.param(op, act, name, c, id=f"{op}-{act}-{name}-C{c}")


@pytest.mark.parametrize("op,act,name,c", list(_exact_cases()))
def test_gpu_plans_are_bit_exact(op, act, name, c):
  """Every native path a GPU may take (the ``auto`` choice first) equals the int64 model.

  On a GPU these run the device's own kernels; elsewhere the GPU plans run on the host's
  backend (``target_backend("gpu")``), so the programs are the ones a GPU compiles.
  """
  pattern = PATTERNS[name]
  lhs, rhs, kw, want = _problem(op, act, c, pattern)
  assert np.abs(want).max() < 1 << 31
  for acc in _accumulations(op, c):
    if ON_GPU:
      out, stats = _call(op, lhs, rhs, pattern, acc, kw)
    else:
      with target_backend(TARGET):
        out, stats = _call(op, lhs, rhs, pattern, acc, kw)
    np.testing.assert_array_equal(np.asarray(out), want, err_msg=f"accumulation={acc}")
    assert int(stats["overflow_count"]) == 0


def test_target_backend_is_static_configuration():
  """The GPU plan and the CPU plan of one call are separate jit entries, not a stale cache."""
  rng = np.random.default_rng(5)
  pattern = PATTERNS["6b(L3)"]
  lhs = act_array(rng, (1, 4, 4, 32), 8, False)
  rhs = _weights(rng, (3, 3, 32, 4), pattern)
  kw = dict(window_strides=(1, 1), padding="SAME")
  want = npref.conv(lhs, rhs, dimension_numbers=NHWC, **kw)
  with target_backend("gpu"):
    gpu_text = _lowered_text("conv3x3s2", lhs.shape, np.uint8, rhs.shape, pattern, "int32",
                             kw, "cpu")
    out_gpu, _ = _call("conv3x3s2", lhs, rhs, pattern, "int32", kw)
  with target_backend("cpu"):
    cpu_text = _lowered_text("conv3x3s2", lhs.shape, np.uint8, rhs.shape, pattern, "int32",
                             kw, "cpu")
    if not ON_GPU:        # XLA:GPU has no int8 -> int32 convolution to run the CPU plan with
      out_cpu, _ = _call("conv3x3s2", lhs, rhs, pattern, "int32", kw)
      np.testing.assert_array_equal(np.asarray(out_cpu), want)
  # GPU rules: an explicit int32 convolution runs as im2col + int8 matmuls (no convolution).
  assert "stablehlo.convolution" not in gpu_text and "stablehlo.dot_general" in gpu_text
  assert "stablehlo.convolution" in cpu_text
  np.testing.assert_array_equal(np.asarray(out_gpu), want)
  with pytest.raises(ValueError, match="not one of"):
    with target_backend("cuda"):
      pass
  with pytest.raises(ValueError, match="CPU backend only"):
    with target_backend("gpu"):
      dispatch.resolve_accumulation("onednn", "dot")
