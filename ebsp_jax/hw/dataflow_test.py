"""Tests of the loop-nest dataflow model: hand-counted accesses, bounds, ceilings, search."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebsp_jax.hw import arch, dataflow, pe, tech
from ebsp_jax.hw.arch import Accelerator, MemLevel
from ebsp_jax.hw.dataflow import Mapping
from ebsp_jax.hw.workload import Layer


def _toy(array=(1, 1), glb_bits=1e6, dram_bw=64.0) -> Accelerator:
  t = tech.TechParams(leakage_device="none", dram_bytes_per_cycle=dram_bw / 8)
  p = pe.wax_pe(8, 32)
  levels = (
      arch.register_level("reg_w", ("W",), 1, 8, t),
      arch.register_level("reg_i", ("I",), 1, 8, t),
      arch.register_level("reg_o", ("O",), 1, 32, t),
      MemLevel("glb", ("W", "I", "O"), glb_bits, ("D1", "D2"), 64, 6.4, 6.4, 1024, "sram",
               "buffer"),
      MemLevel("dram", ("W", "I", "O"), math.inf, ("D1", "D2"), 64, 640.0, 640.0, dram_bw,
               "dram", "dram"),
  )
  return Accelerator("toy", p, array, levels, ((("C",), ("K",)),), 1, 1.0, 1.0, "pe", tech=t)


def _acc(cost, level, op):
  return next(a for a in cost.accesses if a.level == level and a.operand == op)


def test_hand_counted_dense_layer():
  layer = Layer("fc", "dense", n=1, m=2, c=3)
  acc = _toy()
  cost = dataflow.evaluate_mapping(layer, acc, Mapping((), (), (("C", 3), ("K", 2))))
  # Weights: every MAC reads a new weight; all 6 come once from DRAM through the GLB.
  w0, wg, wd = _acc(cost, "reg_w", "W"), _acc(cost, "glb", "W"), _acc(cost, "dram", "W")
  assert (w0.rd_low, w0.wr_high, wg.rd_low, wg.wr_high, wd.rd_low) == (6, 6, 6, 6, 6)
  # Inputs: 3 distinct, re-read from the GLB for each of the 2 outputs.
  i0, ig, idr = _acc(cost, "reg_i", "I"), _acc(cost, "glb", "I"), _acc(cost, "dram", "I")
  assert (i0.rd_low, ig.rd_low, ig.wr_high, idr.rd_low) == (6, 6, 3, 3)
  # Outputs: the psum register accumulates C = 3 products (2 read-backs per output) and
  # sends 2 final outputs up, which end in DRAM.
  o0, og, od = _acc(cost, "reg_o", "O"), _acc(cost, "glb", "O"), _acc(cost, "dram", "O")
  assert (o0.wr_low, o0.rd_low, o0.rd_high, o0.wr_high) == (6, 4, 2, 0)
  assert og.wr_low == 2 and od.wr_low == 2
  # Energy: MACs x PE energy + words x per-word costs (+ no leakage here).
  assert cost.energy["compute"] == pytest.approx(6 * acc.pe.energy_per_mac_pj())
  dram_bits = 6 * 8 + 3 * 8 + 2 * 8          # W, I reads; final outputs (8-bit) written
  assert cost.energy["dram"] == pytest.approx(dram_bits / 64 * 640)
  assert cost.energy["leakage"] == 0.0
  assert cost.energy["total"] == pytest.approx(sum(v for k, v in cost.energy.items()
                                                   if k != "total"))
  assert cost.compute_cycles == 6 and cost.bound in ("compute", "dram")


def test_weight_stationary_order_reuses_the_register():
  layer = Layer("fc", "dense", n=4, m=2, c=3)
  acc = _toy()
  ws = dataflow.evaluate_mapping(layer, acc, Mapping((), (), (("B", 4), ("C", 3), ("K", 2))))
  # B is irrelevant to W and innermost: each weight is fetched once into its register.
  assert _acc(ws, "reg_w", "W").wr_high == 6
  os_ = dataflow.evaluate_mapping(layer, acc, Mapping((), (), (("C", 3), ("K", 2), ("B", 4))))
  assert _acc(os_, "reg_w", "W").wr_high == 24


def test_dram_bandwidth_bound():
  layer = Layer("fc", "dense", n=1, m=64, c=64)
  slow = _toy(dram_bw=1.0)
  cost = dataflow.best_mapping(layer, slow, objective="latency", lpf_limit=3)
  assert cost.bound == "dram"
  dram_bits = sum(a.bits_read + a.bits_written for a in cost.accesses if a.level == "dram")
  assert cost.cycles == pytest.approx(dram_bits / 1.0)
  assert dram_bits >= 64 * 64 * 8             # every weight at least once


def test_ceiling_effect_on_utilization():
  acc = arch.build_accelerator("ebsp", pe_count=32 * 4)       # 8 x 16 array
  assert acc.array == (8, 16)
  even = dataflow.best_mapping(Layer("a", "dense", n=1, m=32, c=64), acc, lpf_limit=3)
  odd = dataflow.best_mapping(Layer("b", "dense", n=1, m=33, c=64), acc, lpf_limit=3)
  assert even.spatial_utilization == pytest.approx(1.0)
  assert odd.spatial_utilization < 0.8       # 33 outputs need 3 passes of 11 columns (or padding)
  assert odd.compute_cycles > even.compute_cycles


def test_compulsory_traffic_and_all_designs():
  layer = Layer("conv", "conv", n=1, m=32, c=16, p=16, q=16, r=3, s=3, padding=((1, 1), (1, 1)),
                input_hw=(16, 16))
  for name, acc in arch.build_all().items():
    cost = dataflow.best_mapping(layer, acc, lpf_limit=3, refine_starts=1)
    dram = {op: _acc(cost, "dram", op) for op in "WIO"}
    assert dram["W"].rd_low >= layer.weight_count - 1e-6, name
    assert dram["I"].rd_low >= 16 * 16 * 16 * 0.99, name
    assert dram["O"].wr_low >= 32 * 16 * 16 - 1e-6, name
    assert 0 < cost.utilization <= 1.0 + 1e-9
    assert cost.energy["total"] > 0 and cost.cycles >= cost.compute_cycles - 1e-9


def test_sliding_window_counts_input_tiles():
  layer = Layer("conv", "conv", n=1, m=8, c=4, p=8, q=8, r=3, s=3, padding=((1, 1), (1, 1)),
                input_hw=(8, 8))
  acc = _toy()
  m = Mapping((), (), (("FX", 3), ("FY", 3), ("OX", 8), ("OY", 8), ("C", 4), ("K", 8)))
  tiled = dataflow.evaluate_mapping(layer, acc, m)
  naive = dataflow.evaluate_mapping(layer, acc, m, sliding_window=False)
  assert _acc(tiled, "dram", "I").rd_low < _acc(naive, "dram", "I").rd_low
  # A 4x4 output tile with 3x3 taps uses 6x6 inputs; the whole layer the 8x8 stored ones
  # (zero padding is not data).
  taps = {"FY": 3, "FX": 3, "C": 4}
  assert dataflow.tensor_elems("I", {"OY": 4, "OX": 4, **taps}, layer) == 6 * 6 * 4
  assert dataflow.tensor_elems("I", {"OY": 8, "OX": 8, **taps}, layer) == 8 * 8 * 4
  assert _acc(tiled, "dram", "I").rd_low == 8 * 8 * 4


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 14), st.integers(1, 7), st.integers(1, 5), st.integers(1, 4))
def test_input_extent_counts_distinct_indices(outputs, kernel, stride, dilation):
  used = {stride * o + dilation * f for o in range(outputs) for f in range(kernel)}
  assert dataflow.input_extent(outputs, kernel, stride, dilation) == len(used)


def test_input_tiles_hold_the_used_rows_of_the_unpadded_input():
  # 1x1 stride 2, 8x8 -> 4x4: a tile of n outputs uses n input rows (not the 2n - 1 it spans).
  proj = Layer("proj", "conv", n=1, m=4, c=2, p=4, q=4, r=1, s=1, stride=(2, 2),
               input_hw=(8, 8))
  assert dataflow.tensor_elems("I", {"OY": 4, "OX": 4, "C": 2}, proj) == 4 * 4 * 2
  assert dataflow.tensor_elems("I", {"OY": 3, "OX": 1}, proj) == 3
  # 3x3 stride 2: 2n + 1 rows, all used.
  s2 = Layer("s2", "conv", n=1, m=4, c=2, p=4, q=4, r=3, s=3, stride=(2, 2),
             padding=((1, 1), (1, 1)), input_hw=(8, 8))
  assert dataflow.tensor_elems("I", {"OY": 2, "OX": 3, "FY": 3, "FX": 3}, s2) == 5 * 7
  # 3x3 'same' on 4x4: the whole layer needs the 16 stored inputs, not the padded 6x6.
  same = Layer("same", "conv", n=1, m=4, c=1, p=4, q=4, r=3, s=3, padding=((1, 1), (1, 1)),
               input_hw=(4, 4))
  assert dataflow.tensor_elems("I", same.loop_dims(), same) == 16


def test_strided_projection_unrolled_on_ox_needs_one_input_per_pe():
  # 1x1 stride-2 conv, one input row of 8 -> 4 outputs, 2 filters; OX = 4 on the array (as
  # Bit Fusion, OLAccel and EBSP map it), K in time. Counted by hand: every PE uses one input
  # (x0, x2, x4, x6), kept in its register for both filters: 4 register fills (read once by
  # the MAC while it stays), 4 buffer reads, 4 DRAM reads. Spanning the stride gaps would
  # count 7 (x0..x6).
  layer = Layer("proj", "conv", n=1, m=2, c=1, p=1, q=4, r=1, s=1, stride=(2, 2),
                input_hw=(1, 8))
  acc = _toy(array=(4, 1))
  cost = dataflow.evaluate_mapping(layer, acc, Mapping((("OX", 4),), (), (("K", 2),)))
  reg, glb, dram = (_acc(cost, lv, "I") for lv in ("reg_i", "glb", "dram"))
  assert (reg.rd_low, reg.wr_high, glb.rd_low, glb.wr_high, dram.rd_low) == (4, 4, 4, 4, 4)


def test_uneven_unrolling_does_not_make_an_exact_fit_overflow():
  # 5 filters on 3 columns: K = 3 in space x 2 in time (one idle column in the second pass).
  # The weight buffer holds exactly the 5 x 8 bits of weights; the padded tile (6 weights)
  # would not fit. It fits, so the batch loop above it reuses the buffer: every weight is
  # read from DRAM once (5), not once per image (10).
  layer = Layer("fc", "dense", n=2, m=5, c=1)
  t = tech.TechParams(leakage_device="none")
  levels = (
      arch.register_level("reg_w", ("W",), 1, 8, t),
      arch.register_level("reg_i", ("I",), 1, 8, t),
      arch.register_level("reg_o", ("O",), 1, 32, t),
      MemLevel("wbuf", ("W",), 5 * 8.0, ("D1", "D2"), 8, 1.0, 1.0, 1024, "sram", "buffer"),
      MemLevel("glb", ("I", "O"), 1e6, ("D1", "D2"), 64, 6.4, 6.4, 1024, "sram", "buffer"),
      MemLevel("dram", ("W", "I", "O"), math.inf, ("D1", "D2"), 64, 640.0, 640.0, 64.0,
               "dram", "dram"),
  )
  acc = _toy2(levels, t)
  acc = dataclasses.replace(acc, array=(1, 3))
  cost = dataflow.evaluate_mapping(layer, acc, Mapping((), (("K", 3),), (("K", 2), ("B", 2))))
  assert _acc(cost, "dram", "W").rd_low == pytest.approx(5)
  assert _acc(cost, "wbuf", "W").wr_high == pytest.approx(5)


def test_uneven_unrolling_of_output_rows_reads_the_input_once():
  # 16 output rows of a 3-tap 'same' column on 6 PEs: OY = 6 in space x 3 in time (18, two
  # idle rows in the last pass). The whole padded loop covers the 16 stored inputs, once.
  layer = Layer("col", "conv", n=1, m=1, c=1, p=16, q=1, r=3, s=1, padding=((1, 1), (0, 0)),
                input_hw=(16, 1))
  cost = dataflow.evaluate_mapping(layer, _toy(array=(6, 1)),
                                   Mapping((("OY", 6),), (), (("FY", 3), ("OY", 3))))
  dram = _acc(cost, "dram", "I")
  assert dram.rd_low == pytest.approx(16) and dram.tile_elems == 16
  assert _acc(cost, "reg_i", "I").rd_low == pytest.approx(16 * 3)   # one per MAC


def test_mapping_error_and_objectives():
  layer = Layer("fc", "dense", n=1, m=2, c=3)
  with pytest.raises(dataflow.MappingError):
    dataflow.evaluate_mapping(layer, _toy(glb_bits=1), Mapping((), (), (("C", 3), ("K", 2))))
  with pytest.raises(ValueError):
    dataflow.best_mapping(layer, _toy(), objective="area")
  acc = arch.build_accelerator("bitfusion")
  l2 = Layer("conv", "conv", n=1, m=64, c=64, p=14, q=14, r=3, s=3, input_hw=(16, 16))
  e = dataflow.best_mapping(l2, acc, objective="energy", lpf_limit=3, refine_starts=1)
  lat = dataflow.best_mapping(l2, acc, objective="latency", lpf_limit=3, refine_starts=1)
  assert e.energy_pj <= lat.energy_pj + 1e-6 and lat.cycles <= e.cycles + 1e-6


def test_activity_and_leakage():
  layer = Layer("conv", "conv", n=1, m=32, c=32, p=8, q=8, r=3, s=3, input_hw=(10, 10))
  acc = arch.build_accelerator("ebsp")
  m = dataflow.best_mapping(layer, acc, lpf_limit=3, refine_starts=1).mapping
  full = dataflow.evaluate_mapping(layer, acc, m)
  half = dataflow.evaluate_mapping(layer, acc, m, pe.Activity(0.5, 1.0))
  assert half.energy["compute"] == pytest.approx(full.energy["compute"] / 2)
  assert half.energy["dram"] == pytest.approx(full.energy["dram"])
  seconds = full.cycles / (acc.tech.clock_mhz * 1e6)
  assert full.energy["leakage"] == pytest.approx(dataflow.leakage_mw(acc) * 1e-3 * seconds * 1e12)


def test_temporal_loops_and_spatial_options():
  layer = Layer("conv", "conv", n=1, m=64, c=64, p=56, q=56, r=3, s=3, input_hw=(56, 56))
  loops = dataflow.temporal_loops(layer, (("C", 16),), (("K", 32),), lpf_limit=4)
  # Factors are merged within a dim only: six dims left -> six loops, one per dim.
  assert loops == [("K", 2), ("C", 4), ("OY", 56), ("OX", 56), ("FY", 3), ("FX", 3)]
  loops8 = dataflow.temporal_loops(layer, (("C", 16),), (("K", 32),), lpf_limit=8)
  assert len(loops8) == 8 and math.prod(s for _, s in loops8) == 2 * 4 * 56 * 56 * 9
  opts = dataflow.spatial_options(layer, arch.build_accelerator("eyeriss"))
  assert opts and all(isinstance(o[0], tuple) for o in opts)


# ------------------------------------------------------------------------------------------
# Structural features of the paper settings, on layers small enough to count by hand.


def _toy_levels(t, spad_i_entries=1, sliding=False, dram_serial=(), dram_bw=64.0,
                glb_operand_bw=()):
  return (
      arch.register_level("reg_w", ("W",), 1, 8, t),
      arch.register_level("spad_i", ("I",), spad_i_entries, 8, t, sliding=sliding),
      arch.register_level("reg_o", ("O",), 1, 32, t),
      MemLevel("glb", ("W", "I", "O"), 1e6, ("D1", "D2"), 64, 6.4, 6.4, 1024, "sram", "buffer",
               operand_bandwidth_bits=glb_operand_bw),
      MemLevel("dram", ("W", "I", "O"), math.inf, ("D1", "D2"), 64, 640.0, 640.0, dram_bw,
               "dram", "dram", serial=dram_serial),
  )


def _toy2(levels, t, **kw) -> Accelerator:
  return Accelerator("toy", pe.wax_pe(8, 32), (1, 1), levels, ((("C",), ("K",)),), 1, 1.0, 1.0,
                     "pe", tech=t, **kw)


def test_sliding_window_spad_fetches_each_input_once_per_row():
  # 1-D convolution: 8 outputs, a 3-tap filter, 10 inputs. The ifmap spad holds one 3-wide
  # window; FX is innermost, OX slides the window. Without sliding reuse every window is
  # fetched whole (8 x 3 = 24 writes); a sliding spad fetches only the new input per step:
  # 3 + 7 = 10 = every input once.
  layer = Layer("row", "conv", n=1, m=1, c=1, p=1, q=8, r=1, s=3, input_hw=(1, 10))
  t = tech.TechParams(leakage_device="none")
  m = Mapping((), (), (("FX", 3), ("OX", 8)))
  plain = dataflow.evaluate_mapping(layer, _toy2(_toy_levels(t, 3), t), m)
  slide = dataflow.evaluate_mapping(layer, _toy2(_toy_levels(t, 3, sliding=True), t), m)
  assert _acc(plain, "spad_i", "I").wr_high == pytest.approx(24)
  assert _acc(slide, "spad_i", "I").wr_high == pytest.approx(10)
  assert _acc(slide, "glb", "I").rd_low == pytest.approx(10)
  # The MACs still read the spad once per product: 24 reads either way.
  assert _acc(slide, "spad_i", "I").rd_low == pytest.approx(24)


@pytest.mark.parametrize("taps,fills", [(3, 17), (1, 8)])
def test_sliding_window_with_stride_counts_the_used_inputs(taps, fills):
  # Stride 2, 8 outputs along a row of 17 inputs. A 3-tap window slides by 2: the windows
  # use every input x0..x16 (17 fills); a 1-tap window uses x0, x2, ..., x14 (8 fills: the
  # skipped inputs never enter the spad, as in the non-sliding count of the same tile).
  layer = Layer("row", "conv", n=1, m=1, c=1, p=1, q=8, r=1, s=taps, stride=(1, 2),
                input_hw=(1, 17))
  t = tech.TechParams(leakage_device="none")
  loops = (("FX", taps), ("OX", 8)) if taps > 1 else (("OX", 8),)
  m = Mapping((), (), loops)
  slide = dataflow.evaluate_mapping(layer, _toy2(_toy_levels(t, taps, sliding=True), t), m)
  assert _acc(slide, "spad_i", "I").wr_high == pytest.approx(fills)
  assert _acc(slide, "dram", "I").rd_low == pytest.approx(fills)
  plain = dataflow.evaluate_mapping(layer, _toy2(_toy_levels(t, taps), t), m)
  assert _acc(plain, "spad_i", "I").wr_high == pytest.approx(8 * taps)


def test_sliding_needs_the_sliding_loop_directly_above_the_tile():
  # K between the window and OX: the spad is reused for 2 filters, then slides; the merge
  # puts K (irrelevant to I) below, so OX is still the next loop: 10 writes. With C (relevant,
  # not sliding) directly above, each (c, ox) window is fetched whole: 2 x 8 x 3 = 48.
  layer = Layer("row", "conv", n=1, m=2, c=2, p=1, q=8, r=1, s=3, input_hw=(1, 10))
  t = tech.TechParams(leakage_device="none")
  a = _toy2(_toy_levels(t, 3, sliding=True), t)
  k_then_ox = dataflow.evaluate_mapping(layer, a, Mapping((), (), (("FX", 3), ("K", 2),
                                                                   ("OX", 8), ("C", 2))))
  assert _acc(k_then_ox, "spad_i", "I").wr_high == pytest.approx(2 * 10)
  c_then_ox = dataflow.evaluate_mapping(layer, a, Mapping((), (), (("FX", 3), ("C", 2),
                                                                   ("OX", 8), ("K", 2))))
  # The spad (3 entries) holds one window; C above it: 2 channels x 8 windows x 3, per filter
  # pass K=2 outermost: 2 x 48 = 96.
  assert _acc(c_then_ox, "spad_i", "I").wr_high == pytest.approx(2 * 2 * 8 * 3)


def test_serial_dram_and_per_operand_bandwidth():
  # Dense 1x4 -> 2: 8 MACs on one unit. DRAM at 64 b/cycle moves W (8 x 8 b) and I (4 x 8 b)
  # and O (2 x 8 b). With the I and O transfers serial (not overlapped), the cycles are the
  # compute cycles (8) plus (32 + 16) / 64 = 0.75.
  layer = Layer("fc", "dense", n=1, m=2, c=4)
  t = tech.TechParams(leakage_device="none")
  m = Mapping((), (), (("C", 4), ("K", 2)))
  a = _toy2(_toy_levels(t, 1, dram_serial=(("I", 1.0), ("O", 1.0))), t)
  cost = dataflow.evaluate_mapping(layer, a, m)
  assert cost.compute_cycles == 8 and cost.cycles == pytest.approx(8 + (32 + 16) / 64)
  # A per-operand port narrower than the traffic bounds the layer on its own: the GLB's
  # ifmap port at 1 b/cycle moves I 8 x 8 bits = 64 bits (reads to the array) + 32 (fill).
  b = _toy2(_toy_levels(t, 1, glb_operand_bw=(("I", 1.0),)), t)
  cost_b = dataflow.evaluate_mapping(layer, b, m)
  i_bits = _acc(cost_b, "glb", "I").bits_read + _acc(cost_b, "glb", "I").bits_written
  assert i_bits == pytest.approx(8 * 8 + 4 * 8)
  assert cost_b.bound == "glb:I" and cost_b.cycles == pytest.approx(i_bits)


def test_dram_energy_is_not_scaled_with_the_node():
  layer = Layer("fc", "dense", n=1, m=2, c=3)
  m = Mapping((), (), (("C", 3), ("K", 2)))
  e45 = dataflow.evaluate_mapping(layer, _toy(), m)
  t22 = tech.TechParams(leakage_device="none", node_nm=22, vdd=0.8)
  a22 = dataclasses.replace(_toy(), tech=t22)
  e22 = dataflow.evaluate_mapping(layer, a22, m)
  assert e22.energy["dram"] == pytest.approx(e45.energy["dram"])
  assert e22.energy["buffer"] == pytest.approx(e45.energy["buffer"] * t22.energy_scale)


def test_zero_activation_gating_and_skipping():
  layer = Layer("fc", "dense", n=1, m=4, c=8)
  t = tech.TechParams(leakage_device="none")
  m = Mapping((), (), (("C", 8), ("K", 4)))
  half = pe.Activity(act_density=0.5)
  base = _toy2(_toy_levels(t), t)
  for mode, cycles in (("none", 32), ("gate", 32), ("skip", 16)):
    a = dataclasses.replace(base, act_sparsity=mode)
    full = dataflow.evaluate_mapping(layer, a, m)
    sparse = dataflow.evaluate_mapping(layer, a, m, half)
    scale = 1.0 if mode == "none" else 0.5
    assert sparse.energy["compute"] == pytest.approx(full.energy["compute"] * scale), mode
    assert sparse.compute_cycles == pytest.approx(cycles), mode
    # The weight register is read once per non-zero activation (32 products -> 16).
    assert _acc(sparse, "reg_w", "W").rd_low == pytest.approx(32 * scale), mode


def test_rlc_ratio_and_dram_codec():
  # Three (5-bit run, 16-bit level) pairs per 64-bit word: 21.33 bits per non-zero value.
  assert dataflow.rlc_ratio(0.75) == pytest.approx(0.25 * 64 / 3 / 16 + 0.75 ** 32 * 64 / 3 / 16)
  assert dataflow.rlc_ratio(0.0) == 1.0        # would expand: stored raw
  assert dataflow.rlc_ratio(0.4) == pytest.approx(0.6 * 64 / 3 / 16, rel=1e-6)
  layer = Layer("fc", "dense", n=1, m=2, c=4)
  t = tech.TechParams(leakage_device="none")
  m = Mapping((), (), (("C", 4), ("K", 2)))
  a = dataclasses.replace(_toy2(_toy_levels(t), t), dram_codec="rlc")
  act = pe.Activity(act_density=0.25, out_density=0.25)
  cost = dataflow.evaluate_mapping(layer, a, m, act)
  raw = dataflow.evaluate_mapping(layer, a, m)
  # 8-bit values: four 13-bit pairs per 64-bit word, 16 bits per non-zero value: x0.5 here.
  assert dataflow.rlc_ratio(0.75, 8) == pytest.approx(0.5, rel=1e-3)
  assert _acc(cost, "dram", "I").rd_low == pytest.approx(4 * dataflow.rlc_ratio(0.75, 8))
  assert _acc(cost, "dram", "O").wr_low == pytest.approx(2 * dataflow.rlc_ratio(0.75, 8))
  assert _acc(cost, "dram", "W").rd_low == _acc(raw, "dram", "W").rd_low   # weights raw


def test_a_dim_on_both_array_axes_splits_a_wide_pe_set():
  # Eyeriss CONV2 of AlexNet: a 5 x 27 row-stationary PE set on 12 x 14 PEs is split into two
  # segments (5 x 14 and 5 x 13) stacked along D1 [JSSC 2017, Fig. 5]: FY 5 and OY 2 on D1,
  # OY 14 on D2, and no OY left in time.
  layer = Layer("conv2", "conv", n=1, m=8, c=4, p=27, q=27, r=5, s=5, input_hw=(31, 31))
  a = dataclasses.replace(arch.build_accelerator("eyeriss", pe_count=168), array=(12, 14),
                          spatial=((("FY", "OY"), ("OY",)),))
  (d1, d2), = dataflow.spatial_options(layer, a)
  assert d1 == (("FY", 5), ("OY", 2)) and d2 == (("OY", 14),)
  loops = dict(dataflow.temporal_loops(layer, d1, d2, lpf_limit=8))
  assert "OY" not in loops
