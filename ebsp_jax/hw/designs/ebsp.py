"""EBSP (Liu et al., DAC 2022): LUT-plus-shift PEs for bit-sparsity-pattern weights.

Per product: LOD on the weight magnitude, mantissa mux, a read of the row-shared LUT of
activation multiples, a barrel shifter, a conditional negate and the accumulate adder
(:func:`ebsp_jax.hw.pe.ebsp_pe`). The LUT (filled once per activation) is the activation's
level-0 memory, shared along a row, so the spatial candidates put output channels (K) on D2.
"""

from __future__ import annotations

import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import ConfigError, lut_level, register_level

SPATIAL = ((("C",), ("K",)), (("OX", "OY"), ("K",)), (("C", "FX"), ("K",)),
           (("G", "OX"), ("K",)))


def make_pe(f: Formats):
  try:
    return pe_mod.ebsp_pe(f.pattern_bits, f.pattern_length, f.activation_bits, f.acc_bits,
                          f.weight_format)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"invalid EBSP pattern: {e}") from None


def local_levels(pe, tech, f: Formats, opts):
  del opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), lut_level(f.pattern_length, a, tech),
          register_level("reg_o", ("O",), 1, p, tech)]


DESIGN = register(Design(
    name="ebsp", title="EBSP (DAC 2022)", source="ebsp_dac2022", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL,
    accumulated_product=lambda f: (f.pattern_bits, f.activation_bits),
    label=lambda f, pe: pe.label, paper_pes=4818, paper_bits="6-bit (3)"))
