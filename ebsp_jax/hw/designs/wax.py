"""WAX (Gudaparthi et al., MICRO 2019): rows of 8-bit MACs beside a small SRAM subarray.

A tile is 32 MACs with W, A (shift) and P registers next to an 8 KB subarray of a larger
cache [wax_micro2019]; tiles are the array's columns (D1 = the 32 MACs of a tile).
"""

from __future__ import annotations

import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import register_level, sram_level

SPATIAL = ((("K",), ("OY", "OX")), (("K",), ("C",)), (("K",), ("OX", "C")),
           (("G",), ("OY", "OX")))
#: MACs per tile [wax_micro2019].
TILE_MACS = 32
#: Subarray per tile, bytes [wax_micro2019].
SUBARRAY_BYTES = 8192


def make_pe(f: Formats):
  return pe_mod.wax_pe(8, f.acc_bits)


def local_levels(pe, tech, f: Formats, opts):
  del f
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_a", ("I",), 1, a, tech),
          register_level("reg_p", ("O",), 1, p, tech),
          sram_level("subarray", ("W", "I", "O"), opts.get("wax_subarray_bytes", SUBARRAY_BYTES),
                     64, 128, tech, ("D1",), "local_buffer")]


DESIGN = register(Design(
    name="wax", title="WAX (MICRO 2019)", source="wax_micro2019", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL, accumulated_product=lambda f: (8, 8),
    label=lambda f, pe: "8-bit", d1_fixed=TILE_MACS, paper_pes=102, paper_bits="8-bit"))
