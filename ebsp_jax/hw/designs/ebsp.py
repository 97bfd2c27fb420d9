"""EBSP (Liu et al., DAC 2022): LUT-plus-shift PEs for bit-sparsity-pattern weights.

Per product: LOD on the weight magnitude, mantissa mux, a read of the row-shared LUT of
activation multiples, a barrel shifter, a conditional negate and the accumulate adder
(:func:`ebsp_jax.hw.pe.ebsp_pe`). The LUT (filled once per activation) is the activation's
level-0 memory, shared along a row, so the spatial candidates put output channels (K) on D2.

Per-layer formats: one design is built for the widest bits, the longest pattern and the
largest shift of all layers' formats (``pattern_max_shift``, :func:`ebsp_jax.hw.pe.ebsp_support`;
its area sets the PE count), and each layer runs on it through :func:`layer_view`: its own
weight width in every memory and in DRAM traffic, LUT fills of only the ``2^(l-1)`` entries its
pattern length ``l`` reads (the others clock-gated), and the shifter bypassed when its format
never shifts (uniform, ``l = bits - 1``); the rest of the datapath (LOD, muxes, negate, adder)
is the design's, sized for the widest format, and costs the same per MAC for every layer.
"""

from __future__ import annotations

import dataclasses
import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import Accelerator, ConfigError, lut_level, register_level

SPATIAL = ((("C",), ("K",)), (("OX", "OY"), ("K",)), (("C", "FX"), ("K",)),
           (("G", "OX"), ("K",)))


def make_pe(f: Formats):
  try:
    return pe_mod.ebsp_pe(f.pattern_bits, f.pattern_length, f.activation_bits, f.acc_bits,
                          f.weight_format, max_shift=f.pattern_max_shift)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"invalid EBSP pattern: {e}") from None


def local_levels(pe, tech, f: Formats, opts):
  del opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), lut_level(f.pattern_length, a, tech),
          register_level("reg_o", ("O",), 1, p, tech)]


def layer_view(acc: Accelerator, bits: int, length: int) -> Accelerator:
  """The EBSP design ``acc`` running one layer in signed ``BitPattern(bits, length)``.

  Same array, PE count, memories, area and leakage as ``acc``; what the layer's format
  changes: the weight precision (``bits``: every weight access and transfer), the LUT fill
  energy (``2^(length-1)`` entries written, :func:`ebsp_jax.hw.pe.ebsp_lut`'s
  ``filled_length``) and, for a format without shifts (``length = bits - 1``), no shifter
  energy. The view of the design's own format is ``acc`` itself (equal, same hash).

  Raises:
    ConfigError: ``acc`` is not an EBSP design, the format does not fit it (wider, longer or
      shifting further than it was built for), or ``acc`` stores index codes
      (``weight_format='code'``) and the format is not its own (one line each).
  """
  pe = acc.pe
  if pe.name != "ebsp" or pe.pattern is None:
    raise ConfigError(f"per-layer weight formats apply to EBSP designs only; {acc.name} has "
                      "fixed formats")
  from ebsp_jax.numerics.pattern import BitPattern  # pylint: disable=import-outside-toplevel
  try:
    fmt = BitPattern(bits, length)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"layer format {bits}b(L{length}): {e}") from None
  if not pe.supports(bits, length):
    b, l = pe.pattern
    raise ConfigError(f"layer format {fmt} does not fit the EBSP design built for <={b}b, "
                      f"L<={l}, shift<={pe.max_shift} (build it for every layer's format)")
  own = (bits, length) == pe.pattern
  if pe.weight_format != "raw" and not own:
    raise ConfigError(f"layer format {fmt} on an EBSP design for {pe.pattern[0]}b"
                      f"(L{pe.pattern[1]}) with weight_format={pe.weight_format}: per-layer "
                      "formats are modelled for weight_format=raw only")
  parts = pe.parts
  if fmt.max_shift == 0:     # never shifts: the shifter is bypassed (as for shift-0 products)
    parts = tuple(dataclasses.replace(p, uses_per_mac=0.0) if p.tag == "shifter" else p
                  for p in parts)
  view_pe = dataclasses.replace(
      pe, weight_bits=float(bits) if pe.weight_format == "raw" else pe.weight_bits,
      parts=parts, pattern=(bits, length),
      label=pe_mod.ebsp_label(bits, length, int(pe.act_bits)) if not own else pe.label)
  levels = []
  for m in acc.levels:
    if m.kind == "lut" and length != pe.pattern[1]:
      fill = pe_mod.ebsp_lut(pe.pattern[1], int(pe.act_bits), filled_length=length)
      m = dataclasses.replace(m, write_pj=fill.energy_pj)
    levels.append(m)
  return dataclasses.replace(acc, pe=view_pe, levels=tuple(levels))


DESIGN = register(Design(
    name="ebsp", title="EBSP (DAC 2022)", source="ebsp_dac2022", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL,
    accumulated_product=lambda f: (f.pattern_bits, f.activation_bits),
    label=lambda f, pe: pe.label, paper_pes=4818, paper_bits="6-bit (3)"))
