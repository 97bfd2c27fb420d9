"""Bit Fusion (Sharma et al., ISCA 2018): Fusion Units of 16 BitBricks, fused per precision.

The PE (the EBSP paper's count unit) is one BitBrick with its shifter and its share of the
Fusion Unit's adder tree; a ``b x b``-bit product uses ``ceil(b/2)^2`` bricks. Registers for
weight, input and psum; weight-stationary systolic array (C on D1, K on D2).
"""

from __future__ import annotations

import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import ConfigError, register_level

SPATIAL = ((("C",), ("K",)), (("C", "FX"), ("K",)), (("OX",), ("K",)), (("G",), ("OX",)))
#: Operating widths a Fusion Unit supports (2-bit bricks fused up to 16 bits).
WIDTHS = (2, 4, 8, 16)


def check_bits(bits: int) -> None:
  if bits not in WIDTHS:
    raise ConfigError(f"bitfusion_bits must be 2, 4, 8 or 16; got {bits}")


def make_pe(f: Formats):
  check_bits(f.bitfusion_bits)
  return pe_mod.bitfusion_pe(f.bitfusion_bits, f.bitfusion_bits, f.acc_bits)


def local_levels(pe, tech, f: Formats, opts):
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_i", ("I",), 1, a, tech),
          register_level("reg_o", ("O",), 1, p, tech)]


def _label(f: Formats, pe) -> str:
  return "4-bit" if f.bitfusion_bits == 4 else pe.label


def _product(f: Formats):
  check_bits(f.bitfusion_bits)
  return f.bitfusion_bits, f.bitfusion_bits


DESIGN = register(Design(
    name="bitfusion", title="Bit Fusion (ISCA 2018)", source="bitfusion_isca2018",
    make_pe=make_pe, local_levels=local_levels, spatial=SPATIAL, accumulated_product=_product,
    label=_label, paper_pes=3168, paper_bits="4-bit"))
