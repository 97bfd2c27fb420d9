"""Tests of the loop-nest dataflow model: hand-counted accesses, bounds, ceilings, search."""

import math

import pytest

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
  assert dataflow.tensor_elems("I", {"OY": 8, "OX": 8, "FY": 3, "FX": 3, "C": 4}, layer) == 10 * 10 * 4


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
