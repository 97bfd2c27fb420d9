"""OLAccel (Park et al., ISCA 2018): 4-bit MACs with sparse 16-bit outliers.

Dense 4-bit weights and activations; outlier weights use one extra MAC per SIMD group of
lanes, outlier activations dedicated 16x16-bit MACs [olaccel_isca2018].
"""

from __future__ import annotations

import dataclasses
import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.area import array_shape as area_shape
from ebsp_jax.hw.components import Component
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.pe import Part
from ebsp_jax.hw.spec import Accelerator, dram_level, register_level, sram_level
from ebsp_jax.hw.tech import TechParams

SPATIAL = ((("C",), ("K",)), (("K",), ("OY", "OX")), (("C", "FX"), ("K",)),
           (("G",), ("OY", "OX")))


def cycle_factor(outlier_fraction: float, lanes: int = 16, act_group: int = 16) -> float:
  """Expected compute-cycle overhead of OLAccel's outliers (derived).

  A SIMD group of ``lanes`` has one extra MAC for outlier weights; ``k >= 2`` outlier weights
  in one cycle cost ``k - 1`` extra cycles: ``E[max(0, K-1)] = E[K] - 1 + P(K=0)`` with
  ``K ~ Binomial(lanes, f(1-f))``. Outlier activations go to dedicated MACs (one per
  ``act_group`` PEs), which keep up while ``f <= 1/act_group``; beyond that they stall the
  array in proportion.
  """
  f = outlier_fraction
  p = f * (1 - f)
  extra = lanes * p - 1 + (1 - p) ** lanes
  return max(1.0 + extra, f * act_group)


def make_pe(f: Formats):
  return pe_mod.olaccel_pe(4, 16, f.outlier_fraction, acc_bits=f.acc_bits,
                           outlier_index_bits=OUTLIER_INDEX_BITS)


def local_levels(pe, tech, f: Formats, opts):
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_i", ("I",), 1, a, tech),
          register_level("reg_o", ("O",), 1, p, tech)]




# ----------------------------------------------------------------------------------------------
# OLAccel against ZeNA, as in the OLAccel paper (ISCA 2018): 65 nm, 250 MHz, 4-bit MACs with
# ~3% 16-bit outliers, against ZeNA (a zero-aware accelerator, Kim et al., IEEE D&T 2018) at 16
# and 8 bits. All three skip zero activations. What the paper's full text would give and this
# model does not have (only its abstract is available here): the PE counts and buffer sizes of
# the three designs, their DRAM energy, the outlier storage format and ZeNA's weight pruning.
# Assumed here (one platform for all three, so the comparison isolates the datapath and the
# data widths): the same number of MAC units (:data:`PLATFORM_MACS`), the same 108 KB global
# buffer (Eyeriss's, the common reference of both papers' generation), dense weights.

#: MAC units of each design in the OLAccel comparison (assumption; see above).
PLATFORM_MACS = 256
#: Free parameter set from the calibration figures only (OLAccel vs ZeNA on AlexNet: 43.5% and
#: 27.0% energy saving [olaccel_isca2018]; see ``experiments/validate_baselines.py``): energy per
#: MAC spent on zero-skipping control and operand steering, the same for the three designs
#: (they share the zero-aware front end), pJ at 65 nm.
SKIP_CONTROL_PJ_PER_MAC = 31.22
#: Bits of the position stored with each sparse outlier (derived: the lane within a 16-lane
#: SIMD group, log2 16 = 4; the group is implied by the list's order).
OUTLIER_INDEX_BITS = 4


def comparison_platform(name: str, pe, *, node_nm: float = 65.0, vdd: float = 1.0,
                        clock_mhz: float = 250.0, macs: int | None = None,
                        glb_bytes: int = 108 * 1024, glb_bandwidth_bits: int = 1024,
                        control_pj_per_mac: float | None = None, cycle_factor: float = 1.0,
                        setting: str = "olaccel_isca2018") -> Accelerator:
  """One design of the OLAccel comparison on the shared platform (see above)."""
  macs = PLATFORM_MACS if macs is None else macs
  ctl = SKIP_CONTROL_PJ_PER_MAC if control_pj_per_mac is None else control_pj_per_mac
  tech = TechParams(node_nm=node_nm, vdd=vdd, clock_mhz=clock_mhz)
  if ctl:
    # Zero-skipping control: a per-MAC part (energy at 45 nm; the node scaling brings it to
    # the platform's node, where ``ctl`` is given).
    pe = dataclasses.replace(pe, parts=pe.parts + (Part(Component(
        "skip_control", 0.0, ctl / tech.energy_scale, "calibrated",
        "zero-skipping control, set from the AlexNet calibration")),))
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  local = [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_i", ("I",), 1, a, tech),
           register_level("reg_o", ("O",), 1, p, tech)]
  glb = sram_level("glb", ("W", "I", "O"), glb_bytes, 64, glb_bandwidth_bits, tech, ("D1", "D2"),
                   "buffer")
  array = area_shape(macs)
  acc = Accelerator(name=name, pe=pe, array=array, levels=tuple(local + [glb, dram_level(tech)]),
                    spatial=SPATIAL, pe_count=macs, pe_area_um2=0.0, area_mm2=0.0,
                    area_scope="pe", tech=tech, label=pe.label, setting=setting,
                    act_sparsity="skip", cycle_factor=cycle_factor)
  acc.validate()
  return acc


def isca2018(*, outlier_fraction: float = 0.03, outlier_index_bits: int | None = None,
             **kw) -> Accelerator:
  """OLAccel in its paper's comparison (4-bit MACs, 16-bit outliers, zero skipping)."""
  idx = OUTLIER_INDEX_BITS if outlier_index_bits is None else outlier_index_bits
  pe = pe_mod.olaccel_pe(4, 16, outlier_fraction, acc_bits=32, outlier_index_bits=idx)
  return comparison_platform("olaccel", pe, cycle_factor=cycle_factor(outlier_fraction), **kw)


DESIGN = register(Design(
    name="olaccel", title="OLAccel (ISCA 2018)", source="olaccel_isca2018", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL, accumulated_product=lambda f: (4, 4),
    label=lambda f, pe: "4 & 16-bit", cycle_factor=lambda f: cycle_factor(f.outlier_fraction),
    paper_pes=2499, paper_bits="4 & 16-bit", act_sparsity="skip",
    settings={"olaccel_isca2018": isca2018}))
