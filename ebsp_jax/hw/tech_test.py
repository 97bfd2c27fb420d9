"""Tests of the technology tables: anchors, derivations, interpolation, scaling, citations."""

import math

import pytest

from ebsp_jax.hw import tech


def test_horowitz_anchor_values_are_the_published_ones():
  e, a = tech.HOROWITZ_ENERGY_PJ, tech.HOROWITZ_AREA_UM2
  assert (e["int_add_8"], e["int_add_32"], e["int_mult_8"], e["int_mult_32"], e["fp_mult_32"]) \
      == (0.03, 0.1, 0.2, 3.1, 3.7)
  assert (a["int_add_8"], a["int_add_32"], a["int_mult_8"], a["int_mult_32"]) == (36, 137, 282, 3495)
  assert tech.HOROWITZ_SRAM64_PJ == {8192: 10.0, 32768: 20.0, 1048576: 100.0}
  assert tech.HOROWITZ_DRAM64_PJ == (1300.0, 2600.0)


def test_interpolations_hit_the_anchors():
  for bits, key in ((8, "int_add_8"), (16, "int_add_16"), (32, "int_add_32")):
    assert tech.int_add_energy_pj(bits) == pytest.approx(tech.HOROWITZ_ENERGY_PJ[key])
    assert tech.int_add_area_um2(bits) == pytest.approx(tech.HOROWITZ_AREA_UM2[key])
  assert tech.int_mult_energy_pj(8) == pytest.approx(0.2)
  assert tech.int_mult_energy_pj(32) == pytest.approx(3.1)
  assert tech.int_mult_area_um2(32) == pytest.approx(3495)
  # Derived 16x16 lies between, and the power law is monotone.
  assert 0.2 < tech.int_mult_energy_pj(16) < 3.1
  assert tech.int_mult_energy_pj(4) < tech.int_mult_energy_pj(4, 8) < tech.int_mult_energy_pj(8)


def test_nangate_cells_agree_with_horowitz_adder_areas():
  # A ripple adder is one FA_X1 per bit: an independent check of both area sources.
  for bits in (8, 16, 32):
    cells = bits * tech.cell_area_um2("FA_X1")
    assert cells == pytest.approx(tech.int_add_area_um2(bits), rel=0.06)


def test_logic_energy_density_is_the_geometric_mean_of_horowitz_ratios():
  # Horowitz 2014: (pJ, um^2) of int add 8/16/32 and int mult 8/32.
  pairs = [(0.03, 36), (0.05, 67), (0.1, 137), (0.2, 282), (3.1, 3495)]
  gmean = math.exp(sum(math.log(e * 1e3 / a) for e, a in pairs) / len(pairs))   # fJ/um^2
  assert tech.LOGIC_FJ_PER_UM2 == pytest.approx(gmean)
  assert gmean == pytest.approx(0.778, abs=1e-3)
  # A DFF_X1 (NanGate45 LEF: 4.522 um^2) toggles that density x its area.
  assert tech.cell_energy_pj("DFF_X1") == pytest.approx(4.522 * gmean * 1e-3)


def test_derived_multipliers_and_sram_follow_their_formulas():
  # Power law through Horowitz's 8x8 (0.2 pJ, 282 um^2) and 32x32 (3.1 pJ, 3495 um^2) in a*b:
  e_exp = math.log(3.1 / 0.2) / math.log(16)
  a_exp = math.log(3495 / 282) / math.log(16)
  assert tech.int_mult_energy_pj(16) == pytest.approx(0.2 * 4 ** e_exp)      # 0.787 pJ
  assert tech.int_mult_energy_pj(16) == pytest.approx(0.787, abs=1e-3)
  assert tech.int_mult_area_um2(4) == pytest.approx(282 * 0.25 ** a_exp)     # 80 um^2
  # SRAM between Horowitz's 32 KB (20 pJ) and 1 MB (100 pJ) points: log-log line.
  t = math.log(108 / 32) / math.log(1024 / 32)
  assert tech.sram_energy_pj_per_bit(108 * 1024) * 64 == pytest.approx(
      math.exp(math.log(20) + t * math.log(100 / 20)))                          # 35.2 pJ
  # Adders between Horowitz's 8/16/32-bit points: linear; 24 bits halfway 16 -> 32.
  assert tech.int_add_energy_pj(24) == pytest.approx((0.05 + 0.1) / 2)
  assert tech.int_add_area_um2(24) == pytest.approx((67 + 137) / 2)


def test_sram_energy_follows_horowitz_points_and_is_monotone():
  for size, e64 in tech.HOROWITZ_SRAM64_PJ.items():
    assert tech.sram_energy_pj_per_bit(size) * 64 == pytest.approx(e64)
  sizes = [256, 1024, 4096, 8192, 65536, 1 << 20, 4 << 20]
  e = [tech.sram_energy_pj_per_bit(s) for s in sizes]
  assert all(a < b for a, b in zip(e, e[1:]))
  # Below 8 KB: Horowitz's 8 KB point times CACTI's read-energy ratio; CACTI 7 at 45 nm
  # (itrs-hp, 64-bit port; cacti_test.py re-runs the binary) reads 1 KB at 1.61 pJ and 8 KB at
  # 6.048 pJ per 64-bit access.
  assert tech.sram_energy_pj_per_bit(1024) * 64 == pytest.approx(10 * 1.61 / 6.048)
  cacti = tech.TechParams(sram_energy="cacti")
  assert tech.sram_energy_pj_per_bit(8192, cacti) * 64 == pytest.approx(6.048)


def test_cacti_interpolation_and_leakage_choices():
  c = tech.cacti_sram(8192)
  assert c["area_um2"] == pytest.approx(0.0294e6)        # CACTI 7 output (cacti_test.py)
  assert tech.sram_leakage_mw(8192, tech.TechParams(leakage_device="itrs-hp")) > \
      10 * tech.sram_leakage_mw(8192, tech.TechParams(leakage_device="itrs-lop"))
  assert tech.sram_leakage_mw(8192, tech.TechParams(leakage_device="none")) == 0.0
  assert tech.logic_leakage_mw_per_um2(tech.TechParams(leakage_device="none")) == 0.0
  # Between table points the log-log interpolation is bracketed by the neighbours.
  lo, hi = tech.cacti_sram(8192)["read_pj"], tech.cacti_sram(16384)["read_pj"]
  assert lo < tech.cacti_sram(12000)["read_pj"] < hi


def test_dram_and_register_files():
  assert tech.dram_energy_pj_per_bit() == pytest.approx(1300 / 64)
  assert tech.regfile_read_pj(1, 16) == 0.0      # a single register is a wire
  assert tech.regfile_read_pj(16, 16) > tech.regfile_read_pj(2, 16) > 0
  assert tech.regfile_write_pj(4, 16) == pytest.approx(16 * tech.cell_energy_pj("DFF_X1"))
  assert tech.regfile_area_um2(1, 8) == pytest.approx(8 * 4.522 + 0.798)


def test_node_scaling():
  p = tech.TechParams()
  assert p.energy_scale == 1.0 and p.area_scale == 1.0
  p22 = tech.TechParams(node_nm=22, vdd=0.8)
  assert p22.area_scale == pytest.approx((22 / 45) ** 2)
  assert p22.energy_scale == pytest.approx(22 / 45 * (0.8 / 0.9) ** 2)
  # DRAM is off-chip: its energy per bit does not follow the logic node.
  assert tech.dram_energy_pj_per_bit(p22) == tech.dram_energy_pj_per_bit(p) == 1300 / 64


def test_derived_defaults():
  assert tech.DEFAULT_GLB_BANDWIDTH_BITS == 27 * 64        # Eyeriss's banks x 64 b
  assert tech.DEFAULT_ACC_BITS >= 16 + math.ceil(math.log2(3 * 3 * 512))


@pytest.mark.parametrize("kwargs", [dict(sram_energy="x"), dict(leakage_device="x"),
                                    dict(dram_bytes_per_cycle=0), dict(clock_mhz=0),
                                    dict(dram_pj_per_64b=-1), dict(node_nm=0),
                                    dict(clock_mhz=math.inf), dict(dram_bytes_per_cycle=math.nan),
                                    dict(vdd=math.inf)])
def test_tech_params_validation(kwargs):
  with pytest.raises(ValueError):
    tech.TechParams(**kwargs)


def test_every_table_row_cites_a_known_source():
  rows = tech.tech_table()
  assert len(rows) > 50
  for r in rows:
    assert r["source"] in tech.SOURCES, r
  assert all(math.isfinite(float(x)) for r in rows if isinstance(r["value"], float)
             for x in [r["value"]])
