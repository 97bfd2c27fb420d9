"""Eyeriss (Chen et al., JSSC 2017): 16-bit MACs with row-stationary scratchpads.

PE: a 16x16-bit multiplier and a 16-bit psum adder (the chip truncates products to 16 bits).
Local memories per PE: filter spad 224x16 b (SRAM), ifmap spad 12x16 b and psum spad 24x16 b
(registers) [eyeriss_jssc2017]. Spatial unrolling: the row-stationary PE sets (filter rows FY
down the columns, ofmap rows OY across; several sets side by side for channels C or filters K;
a set wider than the array split into segments stacked along D1).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from ebsp_jax.hw import dataflow
from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw import tech as tech_mod
from ebsp_jax.hw.components import Component
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.pe import Part, PEModel
from ebsp_jax.hw.spec import (Accelerator, MemLevel, dram_level, register_level,
                              register_mapping_generator, sram_level)
from ebsp_jax.hw.tech import TechParams

#: Row-stationary spatial candidates, in priority order [eyeriss_jssc2017, Fig. 5].
SPATIAL = ((("FY", "C"), ("OY", "K")), (("C",), ("K",)), (("FY", "K"), ("OY", "C")),
           (("G",), ("OY", "OX")))


def make_pe(f: Formats):
  del f
  return pe_mod.eyeriss_pe(16, 16)


def local_levels(pe, tech, f: Formats, opts):
  """The PE's spads [eyeriss_jssc2017]; the ifmap spad slides (row-stationary reuse)."""
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [
      sram_level("spad_w", ("W",), 224 * w / 8, w, 2 * w, tech, (), "rf"),
      register_level("spad_i", ("I",), 12, a, tech, sliding=True),
      register_level("spad_o", ("O",), 24, p, tech),
  ]




# ----------------------------------------------------------------------------------------------
# Eyeriss as measured (JSSC 2017) and as Bit Fusion's artifact modelled it.
#
# The chip [eyeriss_jssc2017]: 65 nm, 1 V, 200 MHz core clock; 12 x 14 PEs; per-PE spads (filter
# 224 x 16 b SRAM, ifmap 12 x 16 b and psum 24 x 16 b registers); a 108 KB global buffer of
# which 100 KB (25 banks of 512 x 64 b) hold ifmaps and psums and 8 KB (two banks) filters;
# separate global input networks for filters and psums (64 b) and ifmaps (16 b), a 64 b global
# output network; a 64-bit DRAM bus on a 60 MHz link clock; fmaps stored run-length coded in
# DRAM (except the input image); zero ifmaps gate the MAC and the filter-spad read; the chip
# "does not perform processing while it is loading ifmap from DRAM or dumping ofmaps to DRAM",
# while filters are preloaded during a pass.

#: Row-stationary candidates at 12 x 14: filter rows (FY) down D1 with channel (C), filter (K)
#: or ofmap-row segments (OY) stacked, ofmap rows (OY) across D2 with filters (K) side by side
#: [eyeriss_jssc2017, Fig. 5: CONV1 11x7 sets x2 filters, CONV2 5x27 split into two segments,
#: CONV3 3x13 sets x4 filters, CONV4/5 r = t = 2]; C x K for fully-connected layers.
RS_SPATIAL = ((("FY", "C"), ("OY", "K")), (("FY", "K"), ("OY", "C")), (("FY", "OY"), ("OY", "K")),
              (("FY", "C", "K"), ("OY",)), (("FY", "K", "C"), ("OY",)), (("C",), ("K",)))

#: Free parameters of the chip model, set from the calibration figures only (AlexNet CONV1-5,
#: batch 4: 34.7 fps and 278 mW [eyeriss_jssc2017, Table V]; see
#: ``experiments/validate_baselines.py``): the energy per core cycle of everything the
#: bottom-up model has no part for (clock network, control, NoC wires), pJ at 65 nm / 1 V, and
#: the fraction of global-buffer-to-array transfer time that is not hidden under compute (the
#: ramp-up of each processing pass).
CHIP_OVERHEAD_PJ_PER_CYCLE = 1081.11
CHIP_RAMP_SERIAL_FRACTION = 0.0552


def _glb_level(tech, banks_io: int = 25, bank_bytes: int = 4096,
               ports=(("I", 16.0), ("O", 128.0)), serial: float = 0.0, energy=None):
  """The 100 KB ifmap/psum part of the global buffer: 25 banks of 4 KB (energies per access
  are a bank's), ports of the ifmap network (16 b) and the psum input + output networks
  (64 + 64 b). ``energy``: ``(read, write)`` pJ per 16-bit value instead of the SRAM tables."""
  ports = dict(ports)
  io = sram_level("glb", ("I", "O"), bank_bytes, 64, ports["I"] + ports["O"], tech, ("D1", "D2"),
                  "buffer", operand_bandwidth_bits=(("I", ports["I"]), ("O", ports["O"])),
                  serial=(("I", serial), ("O", serial)) if serial else ())
  io = dataclasses.replace(io, capacity_bits=float(banks_io * bank_bytes * 8),
                           area_um2=io.area_um2 * banks_io, leakage_mw=io.leakage_mw * banks_io)
  if energy is not None:
    io = dataclasses.replace(io, read_pj=energy[0] * 4, write_pj=energy[1] * 4)
  return io


def _filter_staging_pj_per_64b(tech) -> float:
  """Energy per 64-bit word of filters staged through the 8 KB filter part of the global buffer
  (one write and one read of a 4 KB bank, at the design's node). The filter buffer only
  prefetches the next pass's filters [eyeriss_jssc2017, Sec. V-A]; it holds no reusable tile,
  so filters go from DRAM to the spads with this cost added to their DRAM transfer."""
  b = tech_mod.sram_energy_pj_per_bit(4096, tech)
  return 64 * 2 * b * tech.energy_scale


def jssc2017(*, overhead_pj_per_cycle: float | None = None, ramp: float | None = None,
             array: tuple[int, int] = (12, 14), node_nm: float = 65.0, vdd: float = 1.0,
             clock_mhz: float = 200.0, link_mhz: float = 60.0,
             dram_pj_per_64b: float = tech_mod.HOROWITZ_DRAM64_PJ[0]) -> Accelerator:
  """The Eyeriss chip as measured in JSSC 2017 (see the section comment above).

  Args:
    overhead_pj_per_cycle: chip energy per core cycle outside the modelled parts (default:
      the calibrated :data:`CHIP_OVERHEAD_PJ_PER_CYCLE`).
    ramp: fraction of global-buffer transfer time not overlapped (default: the calibrated
      :data:`CHIP_RAMP_SERIAL_FRACTION`).
    array, node_nm, vdd, clock_mhz, link_mhz: the chip's (defaults: the measured chip).
    dram_pj_per_64b: DRAM energy (the chip's measured power excludes DRAM).
  """
  overhead = CHIP_OVERHEAD_PJ_PER_CYCLE if overhead_pj_per_cycle is None else overhead_pj_per_cycle
  ramp = CHIP_RAMP_SERIAL_FRACTION if ramp is None else ramp
  tech = TechParams(node_nm=node_nm, vdd=vdd, clock_mhz=clock_mhz,
                    dram_bytes_per_cycle=64 / 8 * link_mhz / clock_mhz,
                    dram_pj_per_64b=dram_pj_per_64b)
  pe = pe_mod.eyeriss_pe(16, 16)
  local = local_levels(pe, tech, Formats(), {})
  # The RS ifmap spad slides; FIFOs at the PE's ports (JSSC Fig. 12) carry psums and operands
  # to and from the network besides the MAC's one read and one write per spad and cycle
  # (assumption: a third access per cycle).
  local = [dataclasses.replace(l, bandwidth_bits=3 * l.word_bits) for l in local]
  e = tech_mod.dram_energy_pj_per_bit(tech) * 64
  dram = dram_level(tech, serial=(("I", 1.0), ("O", 1.0)),
                    operand_energy=(("W", e + _filter_staging_pj_per_64b(tech),
                                     e + _filter_staging_pj_per_64b(tech)),))
  levels = tuple(local + [_glb_level(tech, serial=ramp), dram])
  n = array[0] * array[1]
  acc = Accelerator(
      name="eyeriss", pe=pe, array=array, levels=levels, spatial=RS_SPATIAL, pe_count=n,
      pe_area_um2=0.0, area_mm2=0.0, area_scope="pe+local", tech=tech,
      label="16-bit, JSSC 2017 chip", setting="eyeriss_jssc2017", act_sparsity="gate",
      dram_codec="rlc", overhead_pj_per_cycle=overhead, mapping_generator="row_stationary")
  acc.validate()
  return acc


#: The artifact's Eyeriss energy model (bitfusion-generate-graphs.ipynb, get_eyeriss_energy):
#: every access count x 16 x 0.2 pJ = 3.2 pJ (a 16-bit MAC), times the normalised costs of
#: Eyeriss ISCA 2016 (ALU and RF 1, array/NoC 2, buffer 6, DRAM 200); DRAM further x 0.15
#: ("scaling due to technology"): 96 pJ per 16-bit word, 6 pJ/bit.
BF_ARTIFACT_UNIT_PJ = 16 * 0.2
BF_ARTIFACT_NORMALISED = {"alu": 1.0, "rf": 1.0, "noc": 2.0, "buffer": 6.0, "dram": 200 * 0.15}


def bitfusion2018(*, array: tuple[int, int] = (12, 16), clock_mhz: float = 500.0,
                  dram_bits_per_cycle: float = 192.0) -> Accelerator:
  """Eyeriss as Bit Fusion's artifact compared with it (45 nm, 500 MHz, "same area").

  The artifact's Eyeriss results (results/eyeriss_results.csv) peak at exactly 192 MACs per
  cycle (ALU / cycles of CONV3-5 and the FC layers), i.e. 12 x 16 PEs, not the chip's 168;
  its energies are the normalised costs above (:data:`BF_ARTIFACT_NORMALISED`), without
  leakage, zero gating or compression; its DRAM traffic never stalls the array. This builds the
  row-stationary model with those costs: RF = each spad access, buffer = each global-buffer
  access, NoC = each word between the buffer and the array (added to the buffer's reads and
  writes), DRAM 96 pJ per 16-bit word. The DRAM interface (not given) is Bit Fusion's 192 b;
  the network ports are not limited (the artifact's results show none). The artifact picks
  mappings by cycles, then energy (optimizer.py); the validation maps this Eyeriss the same way.
  """
  u = BF_ARTIFACT_UNIT_PJ
  c = BF_ARTIFACT_NORMALISED
  tech = TechParams(node_nm=45, vdd=0.9, clock_mhz=clock_mhz, leakage_device="none",
                    dram_pj_per_64b=c["dram"] * u * 4, dram_bytes_per_cycle=dram_bits_per_cycle / 8)
  alu = Component("alu_bf_artifact", 0.0, c["alu"] * u, "bitfusion_artifact", "1 x 3.2 pJ")
  pe = PEModel("eyeriss", 16.0, 16.0, 16.0, 16, (Part(alu),), label="INT16 MAC (artifact costs)")
  rf = c["rf"] * u
  local = [
      MemLevel("spad_w", ("W",), 224 * 16, (), 16, rf, rf, 48, "sram", "rf",
               source="bitfusion_artifact"),
      MemLevel("spad_i", ("I",), 12 * 16, (), 16, rf, rf, 48, "regfile", "rf",
               source="bitfusion_artifact", sliding=True),
      MemLevel("spad_o", ("O",), 24 * 16, (), 16, rf, rf, 48, "regfile", "rf",
               source="bitfusion_artifact"),
  ]
  # Buffer 6 + NoC 2 per 16-bit value on the way to / from the array; filters staged through
  # the buffer pay the same on top of DRAM.
  # The artifact's Eyeriss results reach 192 MACs/cycle on CONV3-5 and the FC layers: its
  # simulator has no network port limits, so neither has this buffer (ports of 1 kb/cycle).
  glb = _glb_level(tech, ports=(("I", 512.0), ("O", 512.0)),
                   energy=((c["buffer"] + c["noc"]) * u, (c["buffer"] + c["noc"]) * u))
  d = c["dram"] * u * 4
  stage = (c["buffer"] + c["noc"]) * u * 4
  levels = tuple(local + [glb, dram_level(tech, operand_energy=(("W", d + stage, d + stage),))])
  n = array[0] * array[1]
  acc = Accelerator(
      name="eyeriss", pe=pe, array=array, levels=levels, spatial=RS_SPATIAL, pe_count=n,
      pe_area_um2=0.0, area_mm2=5.87, area_scope="pe+local", tech=tech,
      label="16-bit, Bit Fusion's Eyeriss", setting="eyeriss_bitfusion2018",
      mapping_generator="row_stationary")
  acc.validate()
  return acc


DESIGN = register(Design(
    name="eyeriss", title="Eyeriss (JSSC 2017)", source="eyeriss_jssc2017", make_pe=make_pe,
    local_levels=local_levels, spatial=SPATIAL, accumulated_product=lambda f: None,
    label=lambda f, pe: "16-bit", paper_pes=224, paper_bits="16-bit", act_sparsity="gate",
    dram_codec="rlc", mapping_generator="row_stationary",
    settings={"eyeriss_jssc2017": jssc2017, "eyeriss_bitfusion2018": bitfusion2018}))


# ----------------------------------------------------------------------------------------------
# Row-stationary schedules [eyeriss_jssc2017, Sec. IV-A; Table II's mapping parameters].


def _chunks(n: int, cap: int) -> list[int]:
  """Candidate chunk sizes of a loop of ``n`` under ``cap``: divisors, powers of two and the
  largest fitting size (the four largest)."""
  cap = max(1, min(n, cap))
  cands = {cap, 1}
  cands |= {d for d in range(1, cap + 1) if n % d == 0}
  cands |= {1 << e for e in range(cap.bit_length()) if (1 << e) <= cap}
  out = sorted(cands, reverse=True)
  return out[:4]


def rs_placements(layer, array: tuple[int, int]):
  """Spatial placements of row-stationary PE sets on an ``array`` of (rows, columns) PEs.

  A PE set is FY rows x ``e`` ofmap rows (strip-mined: ``e <= columns``); the array stacks
  ``r`` sets vertically (different channels, filters, or further ofmap-row segments of a set
  wider than the array) and ``t`` sets horizontally (different filters or channels)
  [eyeriss_jssc2017, Sec. IV-A, Table II]. A set taller than the array is not supported by
  Eyeriss: such layers (and fully-connected ones) map channels down and filters across.
  """
  dims = layer.loop_dims()
  rows, cols = array
  fy = dims["FY"]
  out = []
  if fy > rows or (dims["OY"] == 1 and dims["FY"] == 1):
    out.append(((("C", min(dims["C"], rows)),), (("K", min(dims["K"], cols)),)))
  else:
    vert = rows // fy
    for e in range(min(dims["OY"], cols), 0, -1):     # every strip-mined set width
      left = math.ceil(dims["OY"] / e)
      stacks = [()]
      for extra, n_extra in (("C", dims["C"]), ("K", dims["K"]), ("OY", left)):
        if min(vert, n_extra) >= 2:
          stacks.append(((extra, min(vert, n_extra)),))
      for rc in range(2, vert // 2 + 1):       # channel and filter sets both stacked
        rk = vert // rc
        if rk >= 2 and dims["C"] >= rc and dims["K"] >= rk:
          stacks.append((("C", rc), ("K", rk)))
      for stack in stacks:
        extra = stack[0][0] if len(stack) == 1 else None
        d1 = (("FY", fy),) + stack
        for across in (None, "K", "C"):
          if (across is not None and across == extra) or (len(stack) == 2 and across):
            continue
          t = min(cols // e, dims.get(across, 1)) if across else 1
          if across and t < 2:
            continue
          d2 = (("OY", e),) + (((across, t),) if across else ())
          out.append((tuple((d, f) for d, f in d1 if f > 1), tuple((d, f) for d, f in d2 if f > 1)))
  return list(dict.fromkeys(out))


def rs_mappings(layer, acc, score=None):
  """Candidate row-stationary mappings of ``layer`` on ``acc``.

  For each spatial PE-set placement (:func:`rs_placements`): a PE runs ``p`` filters x ``q``
  channels of 1-D primitives (FX innermost: the ifmap spad slides along the row; p psums and
  p x q x S weights held in the psum and filter spads, so ``p <= psum spad``,
  ``q * S <= ifmap spad``, ``p * q * S <= filter spad``), the ofmap row (OX) next, then the
  remaining filters, channels, ofmap rows and batch of the processing passes, groups outermost;
  the batch either all outside or all inside the pass.

  With ``score`` (``mapping -> (score, cost) | None``) the search is staged: every placement
  and (p, q) with the passes in one order first, then every order of the passes for the best
  four; without it, every combination.
  """
  def build(d1, d2, head, tail, g):
    return dataflow.Mapping(d1, d2, tuple(l for l in head + list(tail) + g if l[1] > 1))

  cands = list(_rs_candidates(layer, acc))
  if score is None:
    return [build(d1, d2, h, perm, g) for d1, d2, h, t, g in cands
            for perm in itertools.permutations(t)]
  scored = []
  for i, (d1, d2, h, t, g) in enumerate(cands):
    r = score(build(d1, d2, h, t, g))
    if r is not None:
      scored.append((r[0], i))
  scored.sort()
  out = []
  for _, i in scored[:4]:
    d1, d2, h, t, g = cands[i]
    out.extend(build(d1, d2, h, perm, g) for perm in itertools.permutations(t))
  return out


def _rs_candidates(layer, acc):
  """``(d1, d2, head, pass loops, groups)`` of every placement, (p, q) and batch choice."""
  dims = layer.loop_dims()
  cap = {}
  for lvl in acc.levels:
    for op in lvl.operands:
      if op not in cap and lvl.kind != "dram":
        cap[op] = lvl.capacity_bits / acc.precision["O" if op == "O" else op]
  for d1, d2 in rs_placements(layer, acc.array):
    sp: dict[str, int] = {}
    for d, f in d1 + d2:
      sp[d] = sp.get(d, 1) * f
    rem = {d: math.ceil(dims[d] / sp.get(d, 1)) for d in dims}
    s = rem["FX"]
    for p in _chunks(rem["K"], int(cap["O"])):
      for q in _chunks(rem["C"], max(1, int(cap["I"] // max(1, s)))):
        if p * q * s > cap["W"]:
          continue
        inner = [("FX", s), ("K", p), ("C", q), ("OX", rem["OX"])]
        outer = [("K", math.ceil(rem["K"] / p)), ("C", math.ceil(rem["C"] / q)),
                 ("OY", rem["OY"]), ("FY", rem["FY"])]
        for batch_inside in (False, True):
          head = inner + ([("B", rem["B"])] if batch_inside else [])
          tail = outer + ([] if batch_inside else [("B", rem["B"])])
          # Groups are independent convolutions: outermost.
          yield d1, d2, head, [l for l in tail if l[1] > 1], [("G", rem["G"])]


register_mapping_generator("row_stationary", rs_mappings)
