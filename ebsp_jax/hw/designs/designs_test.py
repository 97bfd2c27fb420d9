"""Tests of the design registry and of the designs' own paper settings."""

import pytest

from ebsp_jax.hw import arch, dataflow, designs, workload
from ebsp_jax.hw.designs import bitfusion, eyeriss
from ebsp_jax.hw.spec import ConfigError


def test_registry_lists_the_designs_and_rejects_unknown_names():
  assert list(designs.DESIGNS)[:5] == list(arch.ACCELERATORS)
  assert "zena" in designs.DESIGNS and "zena" not in arch.ACCELERATORS
  with pytest.raises(ConfigError, match="unknown accelerator 'tpu'; known: eyeriss"):
    designs.get("tpu")
  with pytest.raises(ValueError, match="already registered"):
    designs.register(designs.get("wax"))
  for d in designs.DESIGNS.values():
    for build in d.settings.values():
      build().validate()


def test_bitfusion_artifact_rules_reproduce_the_artifact_sweep():
  # results/bitfusion-eyeriss-sim-sweep.csv (192-bit interface), AlexNet-WRPN conv2_a (5x5,
  # 96 -> 256 channels at 27x27, batch 16, 4-bit): 5,018,849 cycles of which 1,249 memory
  # stalls; WBUF reads 41,104,179,200 bits; DRAM reads 671,219,712 bits, writes 205,520,896.
  s = bitfusion.artifact_conv_stats(5, 27, 1, 96, 256, 16, 4, 4, im2col=False)
  assert (s["cycles"], s["stall_cycles"]) == (5018849, 1249)
  assert (s["wbuf_r"], s["dram_r"], s["dram_w"]) == (41104179200, 671219712, 205520896)
  # LeNet-5 conv0 (5x5, 1 -> 32, 32x32, 2-bit, the input layer: im2col): 179,116 cycles,
  # 162,732 stalls; fc3 of AlexNet-WRPN (8192 -> 1000, 8-bit): 398,679 / 136,535.
  s = bitfusion.artifact_conv_stats(5, 32, 1, 1, 32, 16, 2, 2, im2col=True)
  assert (s["cycles"], s["stall_cycles"]) == (179116, 162732)
  s = bitfusion.artifact_conv_stats(1, 1, 1, 8192, 1000, 16, 8, 8, im2col=False)
  assert (s["cycles"], s["stall_cycles"]) == (398679, 136535)


def test_fusion_unit_costs_from_the_synthesis_table():
  # systolic_array_synth.csv, N = M = 4, 8/2-bit: 27,752.8 um^2, 3,673,500 nW dynamic at
  # 500 MHz for 16 units: 1,734.6 um^2 and 0.459 pJ per unit and cycle.
  assert bitfusion.FU_AREA_UM2 == pytest.approx(1734.6, abs=0.1)
  assert bitfusion.FU_DYNAMIC_PJ_PER_CYCLE == pytest.approx(0.4592, abs=1e-4)
  pe4 = bitfusion.fusion_unit_pe(4)
  # 16 bricks make 4 products of 4 x 4 bits per cycle: 0.459 / 4 pJ per MAC.
  assert pe4.energy_per_mac_pj() == pytest.approx(0.4592 / 4, rel=1e-3)
  assert pe4.macs_per_cycle == pytest.approx(1 / 4)


def test_row_stationary_placements_include_the_chips_alexnet_mappings():
  # JSSC 2017 Sec. IV-A / Fig. 5: CONV1's 11x55 set strip-mined to 11x7, two sets side by side
  # (t = 2): 154 PEs; CONV2's 5x27 set split into two segments stacked vertically: 135 PEs;
  # CONV3 3x13 sets, t = 4: 156 PEs; CONV4/5 r = t = 2: 156 PEs.
  wl = workload.paper_workload("alexnet_krizhevsky2012", 4, conv_only=True)
  layer = {l.name: l for l in wl.layers}

  def pes(name):
    return {math_prod(d1) * math_prod(d2) for d1, d2 in eyeriss.rs_placements(layer[name],
                                                                               (12, 14))}

  def has(name, d1, d2):
    return (d1, d2) in eyeriss.rs_placements(layer[name], (12, 14))

  assert has("conv1", (("FY", 11),), (("OY", 7), ("K", 2)))
  assert has("conv2", (("FY", 5), ("OY", 2)), (("OY", 14),))
  assert has("conv3", (("FY", 3), ("K", 4)), (("OY", 13),))
  assert has("conv4", (("FY", 3), ("C", 2), ("K", 2)), (("OY", 13),))
  assert max(pes("conv1")) <= 168 and 154 in pes("conv1")


def math_prod(loops):
  out = 1
  for _, f in loops:
    out *= f
  return out


def test_row_stationary_schedules_respect_the_spads():
  # Every candidate keeps p psums (<= 24), q windows of S inputs (q S <= 12) and p q S
  # weights (<= 224) in a PE: the spad sizes of the chip.
  layer = workload.paper_workload("alexnet_krizhevsky2012", 4, conv_only=True).layers[2]
  acc = eyeriss.jssc2017()
  n = 0
  for m in eyeriss.rs_mappings(layer, acc):
    t = list(m.temporal)
    assert t[0] == ("FX", 3)
    inner = t[:[d for d, _ in t].index("OX")]          # the loops inside a PE
    p = math_prod([l for l in inner if l[0] == "K"])
    q = math_prod([l for l in inner if l[0] == "C"])
    assert p <= 24 and q * 3 <= 12 and p * q * 3 <= 224
    n += 1
  assert n > 100
  cost = dataflow.best_mapping(layer, acc, "energy", 3)
  assert cost.mapping.temporal[0][0] == "FX"       # a row-stationary schedule was chosen


def test_ebsp_layer_views_on_one_design_for_several_formats():
  from ebsp_jax.hw import report
  from ebsp_jax.hw.designs import ebsp
  wl = workload.model_workload("lenet5", "fashion_mnist")
  own = arch.build_accelerator("ebsp", pattern_bits=6, pattern_length=3)
  # One format: the design is the single-format one and its view is itself.
  assert arch.build_ebsp_for([(6, 3)] * 5) == own
  assert ebsp.layer_view(own, 6, 3) == own
  fm = {"conv_init": (8, 5), "conv1": (8, 5), "fc1": (4, 3), "fc2": (4, 1), "head": (8, 7)}
  acc = arch.build_ebsp_for(fm.values())
  assert (acc.pe.pattern, acc.pe.max_shift) == ((8, 7), 2)
  assert acc.pe_count < arch.build_accelerator("ebsp", pattern_bits=8,
                                               pattern_length=5).pe_count
  v = ebsp.layer_view(acc, 4, 3)
  assert (v.array, v.pe_count, v.pe_area_um2) == (acc.array, acc.pe_count, acc.pe_area_um2)
  assert v.pe.weight_bits == 4 and v.precision["W"] == 4
  assert dataflow.leakage_mw(v) == dataflow.leakage_mw(acc)
  # Uniform 4b(L3): no shift, so no shifter energy; its LUT fills 4 of the 64 entries.
  assert v.pe.energy_per_mac_pj() < ebsp.layer_view(acc, 4, 1).pe.energy_per_mac_pj()
  assert v.level("lut").write_pj < acc.level("lut").write_pj
  assert v.level("lut").area_um2 == acc.level("lut").area_um2
  with pytest.raises(ConfigError, match="does not fit the EBSP design built for <=8b, L<=7, "
                     "shift<=2"):
    ebsp.layer_view(acc, 6, 1)
  with pytest.raises(ConfigError, match="EBSP designs only"):
    ebsp.layer_view(arch.build_accelerator("wax"), 6, 3)
  code = arch.build_accelerator("ebsp", pattern_bits=6, pattern_length=3, weight_format="code")
  with pytest.raises(ConfigError, match="weight_format=raw only"):
    ebsp.layer_view(code, 5, 3)
  with pytest.raises(ConfigError, match="weight_format=raw only"):
    arch.build_ebsp_for([(6, 3), (5, 3)], weight_format="code")
  with pytest.raises(ConfigError, match="set by the formats"):
    arch.build_ebsp_for([(6, 3)], pattern_bits=6)
  # The network: every layer in its own format on the one design; the report shows them.
  res = report.evaluate_network(wl, {"ebsp": acc, "wax": arch.build_accelerator("wax")},
                                search="fast", layer_formats=fm)
  one = report.evaluate_network(wl, {"ebsp": acc}, search="fast",
                                layer_formats={n: (8, 7) for n in fm})
  assert res.results["ebsp"].energy_pj < one.results["ebsp"].energy_pj
  out = report.report_json(res)
  assert out["layer_formats"] == {n: f"{b}b(L{l})" for n, (b, l) in fm.items()}
  assert [r["ebsp"]["format"] for r in out["layers"]] == list(out["layer_formats"].values())
  assert "format" not in out["layers"][0]["wax"]
  assert out["accelerators"]["ebsp"]["ebsp_design"] == {
      "bits": 8, "length": 7, "max_shift": 2, "lut_entries": 128, "weight_format": "raw"}
  assert any("per-layer weight formats" in n for n in res.notes)
  with pytest.raises(ValueError, match="layer_formats: no entry for layer"):
    report.evaluate_network(wl, {"ebsp": acc}, layer_formats={"conv_init": (8, 5)})
  with pytest.raises(ConfigError, match="does not fit"):
    report.evaluate_network(wl, {"ebsp": own}, layer_formats=fm)
