"""WAX (Gudaparthi et al., MICRO 2019): rows of 8-bit MACs beside a small SRAM subarray.

A tile is 32 MACs with W, A (shift) and P registers next to an 8 KB subarray of a larger
cache [wax_micro2019]; tiles are the array's columns (D1 = the 32 MACs of a tile).
"""

from __future__ import annotations

import dataclasses
import math

from ebsp_jax.hw import area as area_mod
from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs import eyeriss
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import (Accelerator, dram_level, register_level, shift_register_level,
                              sram_level)
from ebsp_jax.hw.tech import TechParams

SPATIAL = ((("K",), ("OY", "OX")), (("K",), ("C",)), (("K",), ("OX", "C")),
           (("G",), ("OY", "OX")))
#: MACs per tile [wax_micro2019].
TILE_MACS = 32
#: Subarray per tile, bytes [wax_micro2019].
SUBARRAY_BYTES = 8192
#: Bits per subarray access (derived: one 8-bit operand for each of the tile's 32 MACs per
#: access, the rate at which WAXFlow refills a tile's W or A row; the WAX paper's exact
#: subarray organisation is not available here). Replaces an uncited 128 b/cycle.
SUBARRAY_ROW_BITS = TILE_MACS * 8


def make_pe(f: Formats):
  return pe_mod.wax_pe(8, f.acc_bits)


def local_levels(pe, tech, f: Formats, opts):
  """W and P registers per MAC; the tile's A row, a 32-stage shift register (activations move
  one MAC per cycle, so a row of inputs is reused as the window slides: row reuse); the tile's
  8 KB subarray, read one :data:`SUBARRAY_ROW_BITS`-bit row per access."""
  del f
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  row = opts.get("wax_subarray_row_bits", SUBARRAY_ROW_BITS)
  return [register_level("reg_w", ("W",), 1, w, tech),
          shift_register_level("reg_a", ("I",), TILE_MACS, a, tech, ("D1",)),
          register_level("reg_p", ("O",), 1, p, tech),
          sram_level("subarray", ("W", "I", "O"), opts.get("wax_subarray_bytes", SUBARRAY_BYTES),
                     row, row, tech, ("D1",), "local_buffer")]




# ----------------------------------------------------------------------------------------------
# WAX against Eyeriss (MICRO 2019). Available here is the paper's abstract: tiles of 32 8-bit
# MACs with W/A/P registers beside an 8 KB subarray of a larger cache, shift-register row reuse,
# the WAXFlow dataflows, "2x performance and 2.6-4.4x less energy than Eyeriss". Not available:
# the node, clock, tile count, subarray organisation and DRAM model of its evaluation. Assumed
# (stated in docs/hardware.md): both at the Eyeriss chip's node, voltage and clock; WAX with as
# many tiles as fit the area of Eyeriss's 168-PE array (PEs with their scratchpads, this
# model's area tables); the same 108 KB buffer and DRAM interface for both, transfers
# overlapped with compute.

#: DRAM interface of the WAX comparison, bytes per cycle (assumption: one 64-bit DDR3-1066
#: channel, 8.5 GB/s, is ~42 B per 200 MHz cycle; the EBSP setting's 16 B/cycle is kept).
COMPARISON_DRAM_BYTES_PER_CYCLE = 16.0


def comparison_tech(node_nm: float = 65.0, vdd: float = 1.0, clock_mhz: float = 200.0):
  return TechParams(node_nm=node_nm, vdd=vdd, clock_mhz=clock_mhz,
                    dram_bytes_per_cycle=COMPARISON_DRAM_BYTES_PER_CYCLE)


def micro2019(*, tiles: int | None = None, eyeriss_pes: int = 168, **tech_kw) -> Accelerator:
  """WAX in the comparison with Eyeriss (see the section comment above).

  Args:
    tiles: 32-MAC tiles; default: as many as fit the area of ``eyeriss_pes`` Eyeriss PEs with
      their scratchpads.
    eyeriss_pes: the Eyeriss array the area is matched to.
    **tech_kw: ``node_nm``, ``vdd``, ``clock_mhz`` of :func:`comparison_tech`.
  """
  tech = comparison_tech(**tech_kw)
  f = Formats()
  pe = make_pe(f)
  local = local_levels(pe, tech, f, {})
  shares = [area_mod.LocalMemoryShare(m.name, m.kind, m.area_um2,
                                      TILE_MACS if "D1" in m.served else 1) for m in local]
  per_mac = area_mod.pe_area_um2(pe, shares, "pe+local")["total"]
  if tiles is None:
    epe = eyeriss.make_pe(f)
    eloc = eyeriss.local_levels(epe, tech, f, {})
    e_area = area_mod.pe_area_um2(
        epe, [area_mod.LocalMemoryShare(m.name, m.kind, m.area_um2, 1) for m in eloc],
        "pe+local")["total"]
    tiles = max(1, int(eyeriss_pes * e_area // (TILE_MACS * per_mac)))
  glb = sram_level("glb", ("W", "I", "O"), 108 * 1024, 64, 1024, tech, ("D1", "D2"), "buffer")
  acc = Accelerator(
      name="wax", pe=pe, array=(TILE_MACS, tiles), levels=tuple(local + [glb, dram_level(tech)]),
      spatial=SPATIAL, pe_count=TILE_MACS * tiles, pe_area_um2=per_mac,
      area_mm2=TILE_MACS * tiles * per_mac * 1e-6, area_scope="pe+local", tech=tech,
      label=f"8-bit, {tiles} tiles", setting="wax_micro2019")
  acc.validate()
  return acc


def eyeriss_micro2019(**tech_kw) -> Accelerator:
  """The Eyeriss of the WAX comparison: the calibrated JSSC 2017 chip model on WAX's platform
  (same node, clock, buffer and DRAM interface; DRAM transfers overlapped)."""
  tech = comparison_tech(**tech_kw)
  chip = eyeriss.jssc2017(node_nm=tech.node_nm, vdd=tech.vdd, clock_mhz=tech.clock_mhz)
  levels = tuple(dataclasses.replace(dram_level(tech)) if l.kind == "dram" else l
                 for l in chip.levels)
  return dataclasses.replace(chip, levels=levels, tech=tech, setting="wax_micro2019",
                             label="16-bit, JSSC 2017 chip on WAX's platform")


DESIGN = register(Design(
    name="wax", title="WAX (MICRO 2019)", source="wax_micro2019", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL, accumulated_product=lambda f: (8, 8),
    label=lambda f, pe: "8-bit", d1_fixed=TILE_MACS, paper_pes=102, paper_bits="8-bit",
    settings={"wax_micro2019": micro2019}))
