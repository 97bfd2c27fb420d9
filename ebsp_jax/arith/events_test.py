"""Event counts against a brute-force enumeration of every product slot (NumPy, int64)."""

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebsp_jax import arith
from ebsp_jax.arith import events
from ebsp_jax.arith import numpy_reference as npref
from ebsp_jax.arith._test_strategies import act_array, fast_settings, weight_array
from ebsp_jax.arith.conv_test import conv_problems, geometry_args
from ebsp_jax.numerics import BitPattern


def _bits(v: int) -> int:
  return v.bit_length() + 1 if v >= 0 else (~v).bit_length() + 1


def _shift(v: int, length: int) -> int:
  return max(0, abs(int(v)).bit_length() - length)


def brute_force(A, W, lhs, rhs, pattern, mode="exact", rounding="truncate", max_act_shift=0):
  """Events from explicit (outputs, K) slot arrays, per the events module definitions."""
  L = pattern.length
  if mode == "dual_lod":
    A = npref.dual_lod_approx(A, L, rounding)
  nz = W != 0
  ws = np.vectorize(lambda v: _shift(v, L))(W) if W.size else W
  tot = ws + (np.vectorize(lambda v: _shift(v, L))(A) if mode == "dual_lod" and A.size else 0)
  n_bins = pattern.max_shift + 1 + (max_act_shift if mode == "dual_lod" else 0)
  hist = np.bincount(tot[nz].reshape(-1), minlength=n_bins) if nz.any() else np.zeros(n_bins, int)
  prod = A * W
  pos = np.where(prod > 0, prod, 0).sum(axis=1)
  neg = np.where(prod < 0, -prod, 0).sum(axis=1)
  s = prod.sum(axis=1)
  seq = np.cumsum(prod, axis=1)
  fills = 0 if mode == "dual_lod" else int((lhs != 0).sum())
  return {
      "macs": A.size, "outputs": A.shape[0], "contraction": A.shape[1],
      "zero_weight_products": int((~nz).sum()),
      "zero_activation_products": int(((A == 0) & nz).sum()),
      "lut_reads": int(nz.sum()), "adds": int(nz.sum()),
      "shift_hist": [int(h) for h in hist],
      "lut_fills": fills, "lut_fill_adds": fills * ((1 << (L - 1)) - 1),
      "lod_uses_weights": rhs.size,
      "lod_uses_activations": lhs.size if mode == "dual_lod" else 0,
      "lod_uses": rhs.size + (lhs.size if mode == "dual_lod" else 0),
      "acc_high_water_bits": max([_bits(int(v)) for v in pos] + [_bits(-int(v)) for v in neg] + [1]),
      "acc_bits_needed": max([_bits(int(v)) for v in pos] + [_bits(-int(v)) for v in neg] + [1]),
      "acc_final_bits": max([_bits(int(v)) for v in s] + [1]),
      "_sequential": max([_bits(int(v)) for v in seq.reshape(-1)] + [1]),
  }


def check(ev, want, sequential=None):
  seq = want.pop("_sequential")
  assert ev == want
  if sequential is not None:
    assert sequential["acc_high_water_bits"] == seq


@pytest.mark.parametrize("mode,rounding", [("exact", "truncate"), ("dual_lod", "round")])
def test_dot_events_match_brute_force(mode, rounding):
  pattern = BitPattern(7, 2)
  rng = np.random.default_rng(0)
  lhs = act_array(rng, (2, 3, 7), 8, True, extreme=0.4)
  rhs = weight_array(rng, (2, 7, 4), pattern, zero=0.3)
  dims = (((2,), (1,)), ((0,), (0,)))
  kw = dict(pattern=pattern, mode=mode, rounding=rounding)
  ev = events.dot_general_events(lhs, rhs, dims, **kw)
  seq = events.dot_general_events(lhs, rhs, dims, high_water="sequential", **kw)
  A, W = npref.dot_slots(lhs, rhs, dims)
  check(ev, brute_force(A, W, lhs, rhs, pattern, mode, rounding, max_act_shift=8 - 2), seq)


@fast_settings(6)
@given(conv_problems(max_spatial=5), st.sampled_from(["exact", "dual_lod"]),
       st.integers(0, 2**31 - 1))
def test_conv_events_match_brute_force(prob, mode, seed):
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(seed)
  lhs = act_array(rng, prob["lshape"], 8, False, extreme=0.4)
  rhs = weight_array(rng, prob["rshape"], pattern, zero=0.3)
  ev = events.conv_general_dilated_events(lhs, rhs, **geometry_args(prob), pattern=pattern,
                                          mode=mode)
  A, W = npref.conv_slots(lhs, rhs, **geometry_args(prob))
  check(ev, brute_force(A, W, lhs, rhs, pattern, mode, max_act_shift=8 - 3))


def test_conv_sequential_high_water():
  pattern = BitPattern(8, 3)
  prob = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  rng = np.random.default_rng(1)
  lhs = act_array(rng, (1, 4, 4, 3), 8, False, extreme=0.6)
  rhs = weight_array(rng, (3, 3, 3, 2), pattern, extreme=0.6)
  seq = events.conv_general_dilated_events(lhs, rhs, **prob, pattern=pattern,
                                           high_water="sequential")
  A, W = npref.conv_slots(lhs, rhs, **prob)
  want = brute_force(A, W, lhs, rhs, pattern)
  assert seq["acc_high_water_bits"] == want["_sequential"]
  assert seq["acc_final_bits"] == want["acc_final_bits"] <= seq["acc_high_water_bits"]


def test_recording_collects_layers_eagerly_and_under_jit():
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(2)
  x = act_array(rng, (1, 5, 5, 2), 8, False)
  k = weight_array(rng, (3, 3, 2, 4), pattern)
  w = weight_array(rng, (4, 3), pattern)
  dn = ("NHWC", "HWIO", "NHWC")
  mm = (((1,), (0,)), ((), ()))

  def net(x):
    h = arith.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn, pattern=pattern,
                                   name="conv1")
    h = jax.numpy.clip(jax.numpy.max(h, axis=(1, 2)) >> 6, 0, 255).astype(np.uint8)
    return arith.dot_general(h, w, mm, pattern=pattern, name="fc"), h

  with events.recording() as log:
    _, h = jax.block_until_ready(jax.jit(net)(x))
  assert [e["name"] for e in log] == ["conv1", "fc"]
  assert log[0] == events.conv_general_dilated_events(x, k, (1, 1), "SAME", dimension_numbers=dn,
                                                      pattern=pattern) | {"name": "conv1"}
  with events.recording() as eager_log:
    arith.dot_general(np.asarray(h), w, mm, pattern=pattern)
  assert eager_log == [log[1] | {"name": "dot_general_0"}]
  tot = events.total(log)
  assert tot["macs"] == log[0]["macs"] + log[1]["macs"]
  assert tot["acc_high_water_bits"] == max(e["acc_high_water_bits"] for e in log)
  with pytest.raises(ValueError, match="high_water="):
    events.dot_general_events(w, w.T, mm, pattern=pattern, high_water="x")


def _sum_over_calls(evs):
  """Events of several calls added up (bit widths and contraction: the max), independently of
  ``events.total``."""
  out = dict(evs[0])
  for ev in evs[1:]:
    for k, v in ev.items():
      if k in ("acc_high_water_bits", "acc_bits_needed", "acc_final_bits", "contraction"):
        out[k] = max(out[k], v)
      elif isinstance(v, list):
        out[k] = [a + b for a, b in zip(out[k], v)]
      else:
        out[k] = out[k] + v
  return out


def _brute_dot(lhs, rhs, dims, pattern):
  want = brute_force(*npref.dot_slots(lhs, rhs, dims), lhs, rhs, pattern)
  want.pop("_sequential")
  return want


def test_recording_under_vmap_counts_every_batch_element():
  """vmap (eager, under jit, around jit, nested; one or both operands batched): one dict per
  call whose counts are the sum over the unbatched calls (brute force)."""
  pattern = BitPattern(6, 3)
  rng = np.random.default_rng(3)
  xs = act_array(rng, (3, 2, 5), 8, True, extreme=0.3)          # batch of 3 (2, 5) activations
  w = weight_array(rng, (5, 4), pattern, zero=0.3)               # shared weights
  ws = weight_array(rng, (3, 5, 4), pattern, zero=0.3)           # per-example weights
  mm = (((1,), (0,)), ((), ()))

  def f(x, w):
    return arith.dot_general(x, w, mm, pattern=pattern, name="fc")

  shared = _sum_over_calls([_brute_dot(x, w, mm, pattern) for x in xs])
  per_ex = _sum_over_calls([_brute_dot(x, v, mm, pattern) for x, v in zip(xs, ws)])
  assert shared["macs"] == 3 * 2 * 4 * 5 and shared["lod_uses_weights"] == 3 * w.size
  cases = [
      (jax.vmap(f, (0, None)), (xs, w), shared),
      (jax.jit(jax.vmap(f, (0, None))), (xs, w), shared),
      (jax.vmap(jax.jit(f), (0, None)), (xs, w), shared),
      (jax.jit(jax.vmap(f)), (xs, ws), per_ex),
      (jax.vmap(jax.vmap(f, (0, None)), (None, 0)), (xs, ws),     # 3 x 3 calls
       _sum_over_calls([_brute_dot(x, v, mm, pattern) for v in ws for x in xs])),
  ]
  for fn, args, want in cases:
    with events.recording() as log:
      out = jax.block_until_ready(fn(*args))
    jax.effects_barrier()
    assert len(log) == 1 and log[0].pop("name") == "fc"
    assert log[0] == want
    if args[1] is w:  # recording leaves the batched datapath's results alone
      np.testing.assert_array_equal(out, np.stack([np.asarray(f(x, w)) for x in xs]))

  # A convolution under vmap: its events equal the sum of the per-example calls.
  x4 = act_array(rng, (2, 1, 4, 4, 2), 8, False)
  k = weight_array(rng, (3, 3, 2, 3), pattern)
  conv = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  with events.recording() as log:
    jax.block_until_ready(jax.jit(jax.vmap(
        lambda x: arith.conv_general_dilated(x, k, **conv, pattern=pattern)))(x4))
  jax.effects_barrier()
  want = []
  for x in x4:
    b = brute_force(*npref.conv_slots(x, k, **conv), x, k, pattern)
    b.pop("_sequential")
    want.append(b)
  assert [e.pop("name") for e in log] == ["conv_0"] and log[0] == _sum_over_calls(want)
