"""Tests of the area model and of the architectures built at equal area."""

import math

import pytest

from ebsp_jax.hw import arch, area, tech


def test_pe_count_and_errors():
  assert area.pe_count(0.32, 1000) == 320
  assert area.pe_count(0.32, 1e6 * 0.32) == 1
  with pytest.raises(area.AreaError):
    area.pe_count(0.32, 1e6)
  with pytest.raises(area.AreaError):
    area.pe_count(0.0, 100)
  assert area.array_shape(573) == (16, 35)
  assert area.array_shape(205, d1=32) == (32, 6)
  with pytest.raises(area.AreaError):
    area.array_shape(0)


def test_scopes_are_nested_and_counts_ordered():
  counts = {}
  for scope in area.AREA_SCOPES:
    counts[scope] = {n: arch.build_accelerator(n, area_scope=scope).pe_count
                     for n in arch.ACCELERATORS}
  for n in arch.ACCELERATORS:
    assert counts["arith"][n] >= counts["pe"][n] >= counts["pe+local"][n] >= 1
  # Eyeriss's 0.5 KB scratchpads dominate its PE; the paper's 224 PEs fit only if they are
  # left out of the budget.
  assert counts["pe+local"]["eyeriss"] < 100 < counts["arith"]["eyeriss"]


def test_build_all_designs_and_their_hierarchies():
  accs = arch.build_all()
  for n, a in accs.items():
    a.validate()
    assert a.mac_units <= a.pe_count * a.pe.macs_per_cycle + 1e-9
    assert a.hierarchy("W")[-1].name == "dram" and a.hierarchy("O")[-2].name == "glb"
    b = dict(a.pe_area_breakdown)
    assert b["total"] == pytest.approx(a.pe_area_um2)
    assert a.pe_count * a.pe_area_um2 <= a.area_mm2 * 1e6
  lut = accs["ebsp"].level("lut")
  assert lut.served == ("D2",) and lut.instances(accs["ebsp"].array) == accs["ebsp"].array[0]
  assert accs["wax"].level("subarray").instances(accs["wax"].array) == accs["wax"].array[1]
  assert math.isinf(accs["eyeriss"].level("dram").capacity_bits)


def test_paper_counts_and_node_scaling():
  a = arch.build_accelerator("ebsp", pe_count=area.PAPER_PE_COUNTS["ebsp"])
  assert a.pe_count == 4818 and a.mac_units <= 4818
  bf = arch.build_accelerator("bitfusion", pe_count=3168)
  assert bf.mac_units <= 3168 // 4
  bf8 = arch.build_accelerator("bitfusion", pe_count=3168, bitfusion_bits=8)
  assert bf8.mac_units <= 3168 // 16 and bf8.pe.weight_bits == 8
  small = arch.build_accelerator("ebsp", tech=tech.TechParams(node_nm=22, vdd=0.8))
  assert small.pe_count > 3 * arch.build_accelerator("ebsp").pe_count


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="tpu"), "unknown accelerator"),
    (dict(name="ebsp", area_mm2=1e-6), "smaller than one PE"),
    (dict(name="ebsp", glb_bandwidth_bits=0), "bandwidth"),
    (dict(name="ebsp", pattern_bits=6, pattern_length=7), "invalid EBSP pattern"),
    (dict(name="ebsp", area_scope="chip"), "area scope"),
    (dict(name="bitfusion", bitfusion_bits=3), "bitfusion_bits"),
    (dict(name="eyeriss", tech=tech.TechParams(dram_bytes_per_cycle=1e-9)), None),
    (dict(name="ebsp", activation_bits=40),
     r"activation_bits=40 is out of range: allowed \[1, 16\]"),
    (dict(name="ebsp", activation_bits=0), r"activation_bits=0 is out of range"),
    (dict(name="ebsp", acc_bits=4),
     r"acc_bits=4 is narrower than one 6x8-bit product of ebsp \(14 bits\); allowed: \[14, 64\]"),
    (dict(name="ebsp", acc_bits=14), None),
    (dict(name="ebsp", activation_bits=16, acc_bits=21), "narrower than one 6x16-bit product"),
    (dict(name="wax", acc_bits=15), "one 8x8-bit product of wax"),
    (dict(name="bitfusion", acc_bits=7), "one 4x4-bit product of bitfusion"),
    (dict(name="olaccel", acc_bits=8), None),
    (dict(name="eyeriss", acc_bits=4), None),     # Eyeriss keeps its own 16-bit psums
    (dict(name="ebsp", acc_bits=65), r"acc_bits=65 is out of range: allowed \[2, 64\]"),
    (dict(name="ebsp", acc_bits=32.0), "acc_bits must be an int"),
])
def test_config_errors(kwargs, match):
  name = kwargs.pop("name")
  if match is None:
    arch.build_accelerator(name, **kwargs)   # a tiny but positive bandwidth is legal
    return
  with pytest.raises(arch.ConfigError, match=match):
    arch.build_accelerator(name, **kwargs)


def test_olaccel_cycle_factor():
  assert arch.olaccel_cycle_factor(0.0) == pytest.approx(1.0)
  assert 1.0 < arch.olaccel_cycle_factor(0.03) < 1.2
  assert arch.olaccel_cycle_factor(0.2) > 1.5


def test_check_formats_names_the_widest_product():
  with pytest.raises(arch.ConfigError, match=r"acc_bits=13 .* one 8x8-bit product of wax \(16"):
    arch.check_formats(arch.ACCELERATORS, acc_bits=13)
  with pytest.raises(arch.ConfigError, match="one 6x16-bit product of ebsp"):
    arch.check_formats(arch.ACCELERATORS, activation_bits=16, acc_bits=16)
  with pytest.raises(arch.ConfigError, match="one 6x8-bit product of ebsp"):
    arch.check_formats(["bitfusion", "ebsp"], acc_bits=8)
  arch.check_formats(arch.ACCELERATORS, acc_bits=24)   # docs/hardware.md's --acc_bits=24
  with pytest.raises(arch.ConfigError, match="unknown accelerator 'tpu'"):
    arch.check_formats(["tpu"])
