"""Eyeriss (Chen et al., JSSC 2017): 16-bit MACs with row-stationary scratchpads.

PE: a 16x16-bit multiplier and a 16-bit psum adder (the chip truncates products to 16 bits).
Local memories per PE: filter spad 224x16 b (SRAM), ifmap spad 12x16 b and psum spad 24x16 b
(registers) [eyeriss_jssc2017]. Spatial unrolling: the row-stationary PE sets (filter rows FY
down the columns, ofmap rows OY across; several sets side by side for channels C or filters K;
a set wider than the array split into segments stacked along D1).
"""

from __future__ import annotations

import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import register_level, sram_level

#: Row-stationary spatial candidates, in priority order [eyeriss_jssc2017, Fig. 5].
SPATIAL = ((("FY", "C"), ("OY", "K")), (("C",), ("K",)), (("FY", "K"), ("OY", "C")),
           (("G",), ("OY", "OX")))


def make_pe(f: Formats):
  del f
  return pe_mod.eyeriss_pe(16, 16)


def local_levels(pe, tech, f: Formats, opts):
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [
      sram_level("spad_w", ("W",), 224 * w / 8, w, 2 * w, tech, (), "rf"),
      register_level("spad_i", ("I",), 12, a, tech),
      register_level("spad_o", ("O",), 24, p, tech),
  ]


DESIGN = register(Design(
    name="eyeriss", title="Eyeriss (JSSC 2017)", source="eyeriss_jssc2017", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL, accumulated_product=lambda f: None,
    label=lambda f, pe: "16-bit", paper_pes=224, paper_bits="16-bit"))
