"""OLAccel (Park et al., ISCA 2018): 4-bit MACs with sparse 16-bit outliers.

Dense 4-bit weights and activations; outlier weights use one extra MAC per SIMD group of
lanes, outlier activations dedicated 16x16-bit MACs [olaccel_isca2018].
"""

from __future__ import annotations

import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import register_level

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
  return pe_mod.olaccel_pe(4, 16, f.outlier_fraction, acc_bits=f.acc_bits)


def local_levels(pe, tech, f: Formats, opts):
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_i", ("I",), 1, a, tech),
          register_level("reg_o", ("O",), 1, p, tech)]


DESIGN = register(Design(
    name="olaccel", title="OLAccel (ISCA 2018)", source="olaccel_isca2018", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL, accumulated_product=lambda f: (4, 4),
    label=lambda f, pe: "4 & 16-bit", cycle_factor=lambda f: cycle_factor(f.outlier_fraction),
    paper_pes=2499, paper_bits="4 & 16-bit"))
