"""Tests of the gate-level components and the five PE models."""

import pytest

from ebsp_jax.hw import components as comp
from ebsp_jax.hw import pe, tech
from ebsp_jax.numerics import BitPattern


def test_components_use_their_sources():
  assert comp.adder(32).energy_pj == pytest.approx(0.1)
  assert comp.adder(32).source == "horowitz2014"
  assert comp.multiplier(8, 8).area_um2 == pytest.approx(282)
  r = comp.register(10)
  assert r.area_um2 == pytest.approx(10 * 4.522)
  # The selected-path mux model: an 8:1 mux of 11 bits toggles 3 levels x 11 bits.
  m = comp.mux(8, 11)
  assert m.area_um2 == pytest.approx(77 * 1.862)
  assert m.energy_pj == pytest.approx(33 * tech.cell_energy_pj("MUX2_X1"))
  assert comp.barrel_shifter(8, 0).area_um2 == 0.0
  assert comp.barrel_shifter(8, 3).area_um2 == pytest.approx(2 * 11 * 1.862)
  assert comp.barrel_shifter(6, 12, step=2).area_um2 < comp.barrel_shifter(6, 12).area_um2
  with pytest.raises(ValueError):
    comp.adder(0)


def test_ebsp_pe_follows_the_pattern():
  p6 = pe.ebsp_pe(6, 3)
  assert p6.weight_bits == 6 and p6.act_bits == 8 and p6.psum_bits == 32
  names = [x["part"] for x in p6.breakdown()]
  assert names[0] == "lod5" and "mux8to1x11" in names and "shift11by2" in names
  # Longer patterns: bigger LUT mux; the uniform pattern (L = n) needs no shifter.
  assert pe.ebsp_pe(6, 4).area_um2() > p6.area_um2()
  assert not any(x["part"].startswith("shift") for x in pe.ebsp_pe(6, 5).breakdown())
  # Power-of-two (L = 1): a 2:1 LUT, the widest shifter.
  assert pe.ebsp_pe(6, 1).energy_per_mac_pj() < p6.energy_per_mac_pj()
  code = pe.ebsp_pe(6, 3, weight_format="code")
  assert code.weight_bits == BitPattern(6, 3).code_bits == 5
  with pytest.raises(ValueError):
    pe.ebsp_pe(6, 6)
  with pytest.raises(ValueError):
    pe.ebsp_pe(6, 3, weight_format="packed")


def test_activity_gates_ebsp_datapath():
  p = pe.ebsp_pe(6, 3)
  full = p.energy_per_mac_pj()
  half = p.energy_per_mac_pj(pe.Activity(nonzero_fraction=0.5, shifted_fraction=1.0))
  assert half == pytest.approx(full / 2)
  noshift = p.energy_per_mac_pj(pe.Activity(1.0, 0.0))
  shifter = next(x for x in p.breakdown() if x["part"].startswith("shift"))
  assert full - noshift == pytest.approx(shifter["energy_pj_per_mac"])


def test_lut_fill_costs_only_odd_multiples():
  assert pe.ebsp_lut(1, 8).energy_pj == pytest.approx(comp.register(9).energy_pj)  # {0, a}
  l3 = pe.ebsp_lut(3, 8)                                                            # 1,3,5,7 a
  assert l3.energy_pj == pytest.approx(4 * comp.register(11).energy_pj + 3 * comp.adder(11).energy_pj)


def test_baseline_pes():
  e = pe.eyeriss_pe()
  assert e.energy_per_mac_pj() == pytest.approx(tech.int_mult_energy_pj(16) + 0.05)
  bf4 = pe.bitfusion_pe(4, 4)
  assert bf4.macs_per_cycle == pytest.approx(1 / 4)
  assert pe.bitfusion_pe(8, 8).macs_per_cycle == pytest.approx(1 / 16)
  assert pe.bitfusion_pe(8, 8).energy_per_mac_pj() > bf4.energy_per_mac_pj()
  assert pe.wax_pe().energy_per_mac_pj() == pytest.approx(0.2 + 0.1)
  ol0 = pe.olaccel_pe(outlier_fraction=0.0)
  assert ol0.energy_per_mac_pj() == pytest.approx(tech.int_mult_energy_pj(4) + 0.1)
  ol = pe.olaccel_pe(outlier_fraction=0.03)
  assert ol.energy_per_mac_pj() > ol0.energy_per_mac_pj()
  assert ol.weight_bits == pytest.approx(4 + 0.03 * (16 + 4))   # 16-bit value + 4-bit lane
  with pytest.raises(ValueError):
    pe.olaccel_pe(outlier_fraction=1.0)


def test_ebsp_label_names_pattern_activation_bits_and_lut_entries():
  assert pe.ebsp_pe(6, 3).label == "6b(L3), a8, LUT 8"
  assert pe.ebsp_pe(6, 3, activation_bits=4).label == "6b(L3), a4, LUT 8"
  assert pe.ebsp_pe(5, 2, activation_bits=6).label == "5b(L2), a6, LUT 4"
  assert pe.ebsp_pe(6, 3).pattern == (6, 3) and pe.wax_pe().pattern is None


def test_ebsp_support_and_a_pe_for_several_formats():
  fmts = [BitPattern(8, 7), BitPattern(4, 1), BitPattern(6, 3)]
  assert pe.ebsp_support(fmts) == (8, 7, 2)
  assert pe.ebsp_support([(6, 3), (5, 4)]) == (6, 4, 2)
  mixed = pe.ebsp_pe(8, 7, max_shift=2)
  own = pe.ebsp_pe(8, 7)
  names = [x["part"] for x in mixed.breakdown()]
  # The uniform 8b(L7) PE has no shifter; the one that also runs 4b(L1) shifts by up to 2.
  assert not any(n.startswith("shift") for n in (x["part"] for x in own.breakdown()))
  assert "shift15by2" in names and mixed.area_um2() > own.area_um2()
  assert mixed.supports(4, 1) and mixed.supports(6, 3) and not mixed.supports(6, 2)
  assert own.supports(8, 7) and not own.supports(4, 1)
  assert mixed.label == "<=8b, L<=7, shift<=2, a8, LUT 128" and own.label.startswith("8b(L7)")
  assert pe.ebsp_pe(6, 3, max_shift=2) == pe.ebsp_pe(6, 3)       # its own shift: the same PE
  for bad, needle in ((1, r"must be an int in \[2, 4\]"), (5, r"\[2, 4\]")):
    with pytest.raises(ValueError, match=needle):
      pe.ebsp_pe(6, 3, max_shift=bad)
  with pytest.raises(ValueError, match="needs weight_format='raw'"):
    pe.ebsp_pe(6, 3, weight_format="code", max_shift=3)
  with pytest.raises(ValueError, match="signed patterns only"):
    pe.ebsp_support([BitPattern(4, 2, signed=False)])
  with pytest.raises(ValueError, match="no formats given"):
    pe.ebsp_support([])


def test_lut_fill_of_a_shorter_pattern_writes_only_its_entries():
  full = pe.ebsp_lut(5, 8)                       # 16 odd multiples of 13 bits, 15 adders
  part = pe.ebsp_lut(5, 8, filled_length=3)      # 4 entries, 3 adders of the same width
  reg, add = comp.register(13), comp.adder(13)
  assert full.energy_pj == pytest.approx(16 * reg.energy_pj + 15 * add.energy_pj)
  assert part.energy_pj == pytest.approx(4 * reg.energy_pj + 3 * add.energy_pj)
  assert part.area_um2 == full.area_um2
  assert pe.ebsp_lut(5, 8, filled_length=5) == full
  with pytest.raises(ValueError, match=r"filled_length must be in \[1, 5\]"):
    pe.ebsp_lut(5, 8, filled_length=6)
