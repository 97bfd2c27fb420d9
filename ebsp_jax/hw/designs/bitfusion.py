"""Bit Fusion (Sharma et al., ISCA 2018): Fusion Units of 16 BitBricks, fused per precision.

The PE (the EBSP paper's count unit) is one BitBrick with its shifter and its share of the
Fusion Unit's adder tree; a ``b x b``-bit product uses ``ceil(b/2)^2`` bricks. Registers for
weight, input and psum; weight-stationary systolic array (C on D1, K on D2).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Mapping

from ebsp_jax.hw import dataflow
from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.components import Component
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.pe import Part, PEModel
from ebsp_jax.hw.spec import (Accelerator, ConfigError, MemLevel, dram_level, register_layer_cost,
                              register_level)
from ebsp_jax.hw.tech import TechParams

SPATIAL = ((("C",), ("K",)), (("C", "FX"), ("K",)), (("OX",), ("K",)), (("G",), ("OX",)))
#: Operating widths a Fusion Unit supports (2-bit bricks fused up to 16 bits).
WIDTHS = (2, 4, 8, 16)
#: BitBricks per Fusion Unit [bitfusion_isca2018].
BRICKS_PER_UNIT = 16


def check_bits(bits: int) -> None:
  if bits not in WIDTHS:
    raise ConfigError(f"bitfusion_bits must be 2, 4, 8 or 16; got {bits}")


def make_pe(f: Formats):
  """A BitBrick costed from the authors' synthesis of a Fusion Unit (:func:`fusion_unit_pe`)."""
  check_bits(f.bitfusion_bits)
  return fusion_unit_pe(f.bitfusion_bits)


def local_levels(pe, tech, f: Formats, opts):
  """Weight, input and psum registers; their area and energy are part of the synthesised
  Fusion Unit (:data:`FU_AREA_UM2`, :data:`FU_DYNAMIC_PJ_PER_CYCLE`), so they cost 0 here."""
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  free = dict(read_pj=0.0, write_pj=0.0, area_um2=0.0, leakage_mw=0.0,
              source="included in the Fusion Unit synthesis (bitfusion_artifact)")
  return [dataclasses.replace(register_level("reg_w", ("W",), 1, w, tech), **free),
          dataclasses.replace(register_level("reg_i", ("I",), 1, a, tech), **free),
          dataclasses.replace(register_level("reg_o", ("O",), 1, p, tech), **free)]


def _label(f: Formats, pe) -> str:
  return "4-bit" if f.bitfusion_bits == 4 else pe.label


def _product(f: Formats):
  check_bits(f.bitfusion_bits)
  return f.bitfusion_bits, f.bitfusion_bits




# ----------------------------------------------------------------------------------------------
# Bit Fusion as its authors evaluated it (ISCA 2018 artifact, github hsharma35/bitfusion).
#
# Configuration bf_e_conf.ini (the one compared with Eyeriss): a 16 x 32 array of Fusion Units
# (a = 16 inputs, c = 32 outputs), 2..8-bit operands, 500 MHz, weight / input / output buffers
# of 64 / 32 / 16 KB (each double-buffered: half usable per tile), a 192-bit DRAM interface.
# Costs: per Fusion-Unit cycle the synthesised dynamic energy (results/systolic_array_synth.csv,
# 4x4 units, 8/2-bit: 3,673,500 nW / 16 units at 500 MHz = 0.459 pJ; area 27,752.8 um^2 / 16 =
# 1,734.6 um^2 per unit), buffer energies per bit from the artifact's CACTI run (the notebook's
# printed "Energy costs for BitFusion"), DRAM 15 pJ/bit (simulator/stats.py, dram_cost).
#
# Cycles and buffer/DRAM traffic follow the rules of the artifact's simulator
# (src/optimizer/optimizer.py), re-derived here: power-of-two tiles of batch, square output
# tiles, input channels and output channels (multiples of the 32 columns), each tile's compute
# cycles ``b * ceil(oc/32) * oh * ow * kh * kw * ceil(ic / (16 * perf))`` (the first layer as an
# im2col matrix), where ``perf = (8 // in_bits) * (8 // w_bits)`` products per unit and cycle;
# buffer traffic grows by the tile count of every loop above the point where a tile stops
# fitting (half) its buffer; DRAM stalls = traffic beyond the first fill and last drain that the
# interface cannot move within the compute cycles, plus that fill and drain. The best of every
# loop order and tiling, by cycles then energy, is kept, as the artifact does.

#: Artifact configuration (bf_e_conf.ini).
ARTIFACT_CONFIG = {"rows": 16, "cols": 32, "pmax": 8, "pmin": 2, "wbuf_bytes": 65536,
                   "ibuf_bytes": 32768, "obuf_bytes": 16384, "if_width_bits": 192,
                   "clock_mhz": 500.0}
#: Per Fusion Unit, from results/systolic_array_synth.csv (N = M = 4, 8/2-bit row, / 16 units).
FU_DYNAMIC_PJ_PER_CYCLE = 3673500.0 / 16 / 500e6 * 1e3
FU_LEAKAGE_NW = 949240.0 / 16
FU_AREA_UM2 = 27752.83558 / 16
#: Buffer energies, pJ per bit (read, write), the artifact notebook's CACTI output.
ARTIFACT_BUFFER_PJ_PER_BIT = {"W": (0.021, 0.029), "I": (0.059, 0.114), "O": (0.033, 0.073)}
#: DRAM energy, pJ per bit (stats.py: dram_cost = 15e-3 nJ per bit).
ARTIFACT_DRAM_PJ_PER_BIT = 15.0
#: Partial-sum width in the output buffer, bits (optimizer.py: oprec = 32).
ARTIFACT_PSUM_BITS = 32
#: Operand widths per layer of the artifact's benchmarks (benchmarks.py): (input, weight) bits
#: where they differ from the network's width (the input image is 8-bit; AlexNet's last layer
#: and ResNet-18's stem have 8-bit weights).
ARTIFACT_LAYER_BITS = {
    "alexnet": {"conv1_a": (8, 8), "conv1_b": (8, 8), "conv1": (8, 8), "fc3": (8, 8)},
    "resnet18": {"conv1": (8, 8)},
    "lenet5": {},
}


def _ceil(a, b):
  return -(-a // b)


def _log2_ceil(x: int) -> int:
  return max(0, math.ceil(math.log2(x))) if x > 0 else 0


def _perf(iprec: int, wprec: int, pmax: int, pmin: int) -> int:
  return (pmax // max(iprec, pmin)) * (pmax // max(wprec, pmin))


def artifact_conv_stats(K: int, O: int, S: int, IC: int, OC: int, B: int, iprec: int,
                        wprec: int, im2col: bool, cfg=None) -> dict[str, float]:
  """Cached :func:`_artifact_conv_stats` (see there)."""
  items = tuple(sorted((cfg or ARTIFACT_CONFIG).items()))
  return dict(_artifact_conv_stats_cached(K, O, S, IC, OC, B, iprec, wprec, im2col, items))


@functools.lru_cache(maxsize=1024)
def _artifact_conv_stats_cached(K, O, S, IC, OC, B, iprec, wprec, im2col, items):
  return tuple(_artifact_conv_stats(K, O, S, IC, OC, B, iprec, wprec, im2col, dict(items)).items())


def _artifact_conv_stats(K: int, O: int, S: int, IC: int, OC: int, B: int, iprec: int,
                         wprec: int, im2col: bool, cfg=None) -> dict[str, float]:
  """One (group of a) layer on Bit Fusion under the artifact simulator's rules (see above).

  Args:
    K: square kernel; O: square output side; S: stride; IC, OC: channels; B: batch.
    iprec, wprec: input and weight bits; im2col: the first layer's im2col mode.
    cfg: :data:`ARTIFACT_CONFIG` or a variant.

  Returns:
    ``{'cycles', 'stall_cycles', 'compute_cycles', 'wbuf_r', 'wbuf_w', 'ibuf_r', 'ibuf_w',
    'obuf_r', 'obuf_w', 'dram_r', 'dram_w'}`` (bits for the traffic).
  """

  c = cfg or ARTIFACT_CONFIG
  N, M, pmax, pmin = c["rows"], c["cols"], c["pmax"], c["pmin"]
  half = {"wgt": c["wbuf_bytes"] * 4, "act": c["ibuf_bytes"] * 4, "out": c["obuf_bytes"] * 4}
  width = c["if_width_bits"]
  perf = _perf(iprec, wprec, pmax, pmin)
  oprec = ARTIFACT_PSUM_BITS
  dep = {"B": {"act": True, "wgt": False, "out": True}, "OW": {"act": True, "wgt": False, "out": True},
         "OH": {"act": True, "wgt": False, "out": True}, "IC": {"act": True, "wgt": True, "out": False},
         "OC": {"act": False, "wgt": True, "out": True}}
  e_core = FU_DYNAMIC_PJ_PER_CYCLE * N * M
  eb = ARTIFACT_BUFFER_PJ_PER_BIT

  def tile_stats(t, order):
    (nb, b), (no, o), (nic, ic), (noc, oc) = t["B"], t["O"], t["IC"], t["OC"]
    w = _ceil(K * K * ic, N * perf) * N * perf * oc * wprec
    if im2col:
      a = o * o * K * K * ic * b * iprec
    else:
      iw = K + (o - 1) * S
      a = iw * iw * ic * b * iprec
    out = o * o * _ceil(oc, M) * M * b * oprec
    if w > half["wgt"] or a > half["act"] or out > half["out"]:
      return None
    writes = {"wgt": w, "act": a, "out": out}
    reads = {"out": out}
    maxw = dict(writes)
    maxr = dict(reads)
    wp = {"wgt": True, "act": True, "out": True}
    rp = {"out": True}
    counts = {"B": nb, "OW": no, "OH": no, "IC": nic, "OC": noc}
    for loop in reversed(order):
      n = counts[loop]
      for ns in writes:
        if wp[ns]:
          if dep[loop][ns]:
            writes[ns] *= n
            if writes[ns] > half[ns]:
              wp[ns] = False
            else:
              maxw[ns] = writes[ns]
        else:
          writes[ns] *= n
      for ns in reads:
        if rp[ns]:
          if dep[loop][ns]:
            reads[ns] *= n
            if reads[ns] > half[ns]:
              rp[ns] = False
            else:
              maxr[ns] = writes[ns]
        else:
          reads[ns] *= n
    s = {"wbuf_w": writes["wgt"], "ibuf_w": writes["act"], "obuf_w": writes["out"],
         "obuf_r": reads["out"], "dram_r": sum(writes.values()), "dram_w": reads["out"]}
    if im2col:
      os_loop = _ceil(ic * K * K, N * perf) * N * perf
    else:
      os_loop = _ceil(ic, N * perf) * N * perf * K * K
    is_loop = _ceil(oc, M) * M
    ws_loop = b * o * o
    e_is = os_loop * ws_loop * (iprec + is_loop * (wprec + oprec))
    e_os = is_loop * ws_loop * (oprec + os_loop * (iprec + wprec))
    e_ws = os_loop * is_loop * (wprec + ws_loop * (iprec + oprec))
    tiles = nb * no * no * nic * noc
    macs_tile = K * K * ic * o * o * b
    if e_is == min(e_is, e_os, e_ws):
      s["ibuf_r"] = tiles * macs_tile * iprec
      s["obuf_r"] += tiles * macs_tile * oc * oprec
      s["obuf_w"] += tiles * macs_tile * oc * oprec
      s["wbuf_r"] = tiles * macs_tile * oc * wprec
    elif e_os == min(e_is, e_os, e_ws):
      s["ibuf_r"] = tiles * oc * o * o * b * K * K * ic * iprec
      s["obuf_r"] += tiles * oc * o * o * b * oprec
      s["obuf_w"] += tiles * oc * o * o * b * oprec
      s["wbuf_r"] = tiles * oc * o * o * b * K * K * ic * wprec
    else:
      s["ibuf_r"] = tiles * K * K * ic * oc * b * o * o * iprec
      s["obuf_r"] += tiles * K * K * ic * oc * b * o * o * oprec
      s["obuf_w"] += tiles * K * K * ic * oc * b * o * o * oprec
      s["wbuf_r"] = tiles * K * K * ic * oc * wprec
    first = sum(maxw.values())
    last = sum(maxr.values())
    latency = _ceil(first, width) + _ceil(last, width)
    middle = s["dram_r"] + s["dram_w"] - first - last
    if im2col:
      per_tile = b * o * o * _ceil(oc, M) * _ceil(K * K * ic, N * perf)
    else:
      per_tile = b * _ceil(oc, M) * o * o * K * K * _ceil(ic, N * perf)
    compute = tiles * per_tile
    stall = max(0, _ceil(middle, width) - compute) + latency
    s.update(cycles=compute + stall, stall_cycles=stall, compute_cycles=compute)
    energy = ((compute) * e_core + s["wbuf_r"] * eb["W"][0] + s["wbuf_w"] * eb["W"][1]
              + s["ibuf_r"] * eb["I"][0] + s["ibuf_w"] * eb["I"][1]
              + s["obuf_r"] * eb["O"][0] + s["obuf_w"] * eb["O"][1]
              + (s["dram_r"] + s["dram_w"]) * ARTIFACT_DRAM_PJ_PER_BIT)
    return s, energy

  def options(n, step=1, pow_from=0):
    del pow_from
    out = []
    for e in range(_log2_ceil(_ceil(n, step)) + 1):
      v = min((1 << e) * step, n)
      out.append((_ceil(n, v), v))
    return out

  oc_opts = options(OC) if im2col else options(OC, M)
  best = None
  for order in itertools.permutations(("B", "OW", "OH", "IC", "OC")):
    for tb in options(B):
      for to in options(O):
        for tic in options(IC):
          for toc in oc_opts:
            r = tile_stats({"B": tb, "O": to, "IC": tic, "OC": toc}, order)
            if r is None:
              continue
            key = (r[0]["cycles"], r[1])
            if best is None or key < best[0]:
              best = (key, r[0])
  if best is None:
    raise ValueError(f"no tiling of a {K}x{K} conv ({IC}->{OC}, {O}x{O}) fits Bit Fusion's buffers")
  return best[1]


def fusion_unit_pe(bits: int) -> PEModel:
  """A BitBrick costed as 1/16 of a synthesised Fusion Unit (the artifact's synthesis).

  Area: :data:`FU_AREA_UM2` / 16 per brick (the unit's bricks, shifters, adder tree and
  registers together); energy per MAC: the unit's dynamic energy per cycle
  (:data:`FU_DYNAMIC_PJ_PER_CYCLE`) over the products it completes per cycle at ``bits``.
  """
  check_bits(bits)
  per_product = math.ceil(bits / 2) ** 2
  products = BRICKS_PER_UNIT / per_product
  fu = Component("fusion_unit", FU_AREA_UM2, FU_DYNAMIC_PJ_PER_CYCLE, "bitfusion_artifact",
                 "results/systolic_array_synth.csv, 4x4 units 8/2-bit, per unit")
  return PEModel("bitfusion", float(bits), float(bits), float(bits), ARTIFACT_PSUM_BITS,
                 (Part(fu, count=1 / BRICKS_PER_UNIT, uses_per_mac=1 / products),),
                 macs_per_cycle=1.0 / per_product, label=f"Fusion Unit (synthesis), {bits}-bit")


def _layer_bits(acc, name: str) -> tuple[int, int]:
  default = (int(acc.pe.act_bits), int(acc.pe.weight_bits))
  return dict(acc.param("layer_bits", ())).get(name, default)


def artifact_layer_cost(layer, acc, activity):
  """:class:`~ebsp_jax.hw.dataflow.LayerCost` of ``layer`` under the artifact's rules.

  Grouped layers run group by group (the artifact's ``_a``/``_b`` halves); a layer with at
  most 4 input channels per group is the network's input layer and runs as an im2col matrix
  (the artifact: ``im2col`` for the layer fed by the input image). Energy: compute cycles x the
  array's synthesised dynamic energy, buffer bits x the artifact's CACTI energies, DRAM bits x
  15 pJ; no leakage (the artifact has none).
  """
  del activity
  if layer.r != layer.s or layer.p != layer.q or layer.stride[0] != layer.stride[1]:
    raise dataflow.MappingError(f"{layer.name}: Bit Fusion's artifact simulates square "
                                "kernels and outputs only")
  cfg = dict(acc.param("config", ()))
  iprec, wprec = _layer_bits(acc, layer.name)
  g = layer.groups
  st = artifact_conv_stats(layer.r, layer.p, layer.stride[0], layer.c // g, layer.m // g,
                           layer.n, iprec, wprec, im2col=(layer.c // g) <= 4, cfg=cfg)
  st = {k: v * g for k, v in st.items()}
  eb = ARTIFACT_BUFFER_PJ_PER_BIT
  buf = {"W": st["wbuf_r"] * eb["W"][0] + st["wbuf_w"] * eb["W"][1],
         "I": st["ibuf_r"] * eb["I"][0] + st["ibuf_w"] * eb["I"][1],
         "O": st["obuf_r"] * eb["O"][0] + st["obuf_w"] * eb["O"][1]}
  dram = (st["dram_r"] + st["dram_w"]) * ARTIFACT_DRAM_PJ_PER_BIT
  energy = {k: 0.0 for k in dataflow.ENERGY_CATEGORIES}
  energy["compute"] = st["compute_cycles"] * FU_DYNAMIC_PJ_PER_CYCLE * cfg["rows"] * cfg["cols"]
  energy["buffer"] = sum(buf.values())
  energy["dram"] = dram
  energy["total"] = sum(energy.values())
  accesses = tuple(
      dataflow.LevelAccess("glb", op, 0.0, 0.0, 0.0, 0.0, st[f"{n}_r"], st[f"{n}_w"], buf[op], 0.0)
      for op, n in (("W", "wbuf"), ("I", "ibuf"), ("O", "obuf")))
  accesses += (dataflow.LevelAccess("dram", "W", 0.0, 0.0, 0.0, 0.0, st["dram_r"], st["dram_w"],
                                    dram, 0.0),)
  units = acc.mac_units
  cycles = st["cycles"]
  return dataflow.LayerCost(
      layer=layer.name, accelerator=acc.name, macs=layer.macs,
      mapping=dataflow.Mapping((), (), ()), compute_cycles=st["compute_cycles"], cycles=cycles,
      bound="dram" if st["stall_cycles"] > 0.5 * cycles else "compute",
      utilization=layer.macs / (cycles * units) if cycles else 0.0,
      spatial_utilization=layer.macs / (st["compute_cycles"] * units) if cycles else 0.0,
      energy=energy, level_energy={"glb": energy["buffer"], "dram": dram}, accesses=accesses)


register_layer_cost("bitfusion_artifact", artifact_layer_cost)


def isca2018(*, bits: int = 4, layer_bits: Mapping[str, tuple[int, int]] | None = None,
             config: Mapping[str, float] | None = None) -> Accelerator:
  """Bit Fusion in the configuration its artifact compared with Eyeriss (bf_e_conf.ini).

  Args:
    bits: operand width of the layers not in ``layer_bits``.
    layer_bits: ``{layer name: (input bits, weight bits)}`` (the artifact's per-layer widths,
      :data:`ARTIFACT_LAYER_BITS`).
    config: :data:`ARTIFACT_CONFIG` overrides.
  """
  cfg = dict(ARTIFACT_CONFIG, **(config or {}))
  pe = fusion_unit_pe(bits)
  tech = TechParams(node_nm=45, vdd=0.9, clock_mhz=cfg["clock_mhz"], leakage_device="none",
                    dram_pj_per_64b=ARTIFACT_DRAM_PJ_PER_BIT * 64,
                    dram_bytes_per_cycle=cfg["if_width_bits"] / 8)
  eb = ARTIFACT_BUFFER_PJ_PER_BIT
  buffers = MemLevel(
      "glb", ("W", "I", "O"), (cfg["wbuf_bytes"] + cfg["ibuf_bytes"] + cfg["obuf_bytes"]) * 8,
      ("D1", "D2"), 1, eb["W"][0], eb["W"][1], 1e9, "sram", "buffer",
      source="bitfusion_artifact (notebook CACTI energies per bit)",
      operand_capacity_bits=(("W", cfg["wbuf_bytes"] * 4.0), ("I", cfg["ibuf_bytes"] * 4.0),
                             ("O", cfg["obuf_bytes"] * 4.0)),
      operand_energy=tuple((op, r, w) for op, (r, w) in eb.items()))
  units = cfg["rows"] * cfg["cols"]
  per_product = math.ceil(bits / 2) ** 2
  array = (cfg["rows"] * BRICKS_PER_UNIT // per_product, cfg["cols"])
  levels = (register_level("reg_o", ("O",), 1, ARTIFACT_PSUM_BITS, tech),
            register_level("reg_w", ("W",), 1, bits, tech),
            register_level("reg_i", ("I",), 1, bits, tech), buffers, dram_level(tech))
  return Accelerator(
      name="bitfusion", pe=pe, array=array, levels=levels, spatial=SPATIAL,
      pe_count=units * BRICKS_PER_UNIT, pe_area_um2=FU_AREA_UM2 / BRICKS_PER_UNIT,
      area_mm2=units * FU_AREA_UM2 * 1e-6, area_scope="pe", tech=tech,
      label=f"{bits}-bit, artifact", setting="bitfusion_isca2018",
      layer_cost="bitfusion_artifact",
      params=(("config", tuple(sorted(cfg.items()))),
              ("layer_bits", tuple(sorted((layer_bits or {}).items())))))


DESIGN = register(Design(
    name="bitfusion", title="Bit Fusion (ISCA 2018)", source="bitfusion_isca2018",
    make_pe=make_pe, local_levels=local_levels, spatial=SPATIAL, accumulated_product=_product,
    label=_label, paper_pes=3168, paper_bits="4-bit",
    settings={"bitfusion_isca2018": isca2018}))
