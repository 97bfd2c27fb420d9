"""Hardware description types: memory levels, accelerators and the level constructors.

An :class:`Accelerator` is a frozen (hashable) description in the terms of loop-nest cost
models such as ZigZag and Timeloop: an array of ``D1 x D2`` MAC units, and a list of memory
levels from the innermost (per-PE registers) to DRAM. Each level stores some of the operands
``W`` (weights), ``I`` (input activations), ``O`` (outputs/partial sums) and is instantiated
once per group of MAC units it *serves* (``served`` array dims: ``()`` = one per MAC unit,
``('D2',)`` = one per row, ``('D1', 'D2')`` = one for the whole array).

The designs themselves (which PE, which levels, which spatial unrollings) live in
:mod:`ebsp_jax.hw.designs`, one module per design; :mod:`ebsp_jax.hw.arch` builds them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw import tech as tech_mod
from ebsp_jax.hw.pe import PEModel
from ebsp_jax.hw.tech import TechParams

OPERANDS = ("W", "I", "O")
#: Energy-breakdown categories of memory levels.
CATEGORIES = ("rf", "lut", "local_buffer", "buffer", "dram")
#: How a design uses zero input activations: ``'none'``; ``'gate'`` (Eyeriss: the MAC datapath
#: and the weight-spad read are gated, the cycle is spent); ``'skip'`` (ZeNA, OLAccel: zero
#: activations are not scheduled, saving the cycle and the energy).
ACT_SPARSITY_MODES = ("none", "gate", "skip")
#: DRAM compression of activations: ``'none'`` or ``'rlc'`` (Eyeriss's run-length code: 5-bit
#: run + 16-bit level, three pairs per 64-bit word [eyeriss_jssc2017]).
DRAM_CODECS = ("none", "rlc")


class ConfigError(ValueError):
  """An impossible or unknown accelerator configuration (one-line message)."""


@dataclasses.dataclass(frozen=True)
class MemLevel:
  """One memory level (one physical memory, possibly instantiated many times).

  Attributes:
    name: unique name, e.g. ``'glb'``.
    operands: operands it stores, subset of ``('W', 'I', 'O')``.
    capacity_bits: capacity of one instance, bits (``math.inf`` for DRAM); a shared level may
      give per-operand capacities in ``operand_capacity_bits`` instead (separate buffers).
    served: array dims one instance serves (``()``, ``('D1',)``, ``('D2',)``, both).
    word_bits: bits per access (the port width; the per-access energies refer to it).
    read_pj: energy per word read, pJ (at the design's node unless ``kind == 'dram'``).
    write_pj: energy per word write, pJ.
    bandwidth_bits: bits per cycle one instance can move (reads + writes).
    kind: ``'register'``, ``'regfile'``, ``'sram'``, ``'lut'`` or ``'dram'``.
    category: energy-breakdown class, one of :data:`CATEGORIES`.
    area_um2: area of one instance, um^2 (45 nm; 0 for DRAM).
    leakage_mw: leakage of one instance, mW.
    source: where the energies come from.
    operand_bandwidth_bits: optional per-operand port limits ``((op, bits/cycle), ...)``
      (Eyeriss's separate filter/ifmap/psum networks); each bounds the cycles on its own.
    operand_capacity_bits: optional per-operand capacities ``((op, bits), ...)`` (separate
      buffers sharing one level, e.g. Bit Fusion's WBUF/IBUF/OBUF); replaces the shared
      ``capacity_bits`` for the allocation.
    operand_energy: optional per-operand ``((op, read_pj, write_pj), ...)`` per word.
    sliding: input windows slide through this level (a shift register or a sliding-window
      scratchpad): when the loop just above a tile slides along OX/OY, only the new columns
      (rows) are fetched, not the whole overlapping window (Eyeriss's RS ifmap spad, WAX's
      A-register row).
    serial: ``((op, fraction), ...)``: the fraction of this level's transfer time of ``op``
      that is *not* hidden under compute (0 = double-buffered; Eyeriss's chip does not compute
      while it loads ifmaps from / writes ofmaps to DRAM [eyeriss_jssc2017]).
  """

  name: str
  operands: tuple[str, ...]
  capacity_bits: float
  served: tuple[str, ...]
  word_bits: int
  read_pj: float
  write_pj: float
  bandwidth_bits: float
  kind: str
  category: str
  area_um2: float = 0.0
  leakage_mw: float = 0.0
  source: str = ""
  operand_bandwidth_bits: tuple[tuple[str, float], ...] = ()
  operand_capacity_bits: tuple[tuple[str, float], ...] = ()
  operand_energy: tuple[tuple[str, float, float], ...] = ()
  sliding: bool = False
  serial: tuple[tuple[str, float], ...] = ()

  def __post_init__(self):
    if not set(self.operands) <= set(OPERANDS) or not self.operands:
      raise ConfigError(f"memory {self.name}: operands must be a non-empty subset of W, I, O")
    if not set(self.served) <= {"D1", "D2"}:
      raise ConfigError(f"memory {self.name}: served dims must be D1/D2")
    if not self.bandwidth_bits > 0:
      raise ConfigError(f"memory {self.name}: bandwidth must be > 0 bits/cycle "
                        f"(got {self.bandwidth_bits})")
    if not self.capacity_bits > 0:
      raise ConfigError(f"memory {self.name}: capacity must be > 0 bits")
    if self.category not in CATEGORIES:
      raise ConfigError(f"memory {self.name}: category must be one of {CATEGORIES}")
    for op, bw in self.operand_bandwidth_bits:
      if op not in self.operands or not bw > 0:
        raise ConfigError(f"memory {self.name}: operand bandwidth {op}={bw} is invalid")
    for op, cap in self.operand_capacity_bits:
      if op not in self.operands or not cap > 0:
        raise ConfigError(f"memory {self.name}: operand capacity {op}={cap} is invalid")
    for op, frac in self.serial:
      if op not in self.operands or not 0.0 <= frac <= 1.0:
        raise ConfigError(f"memory {self.name}: serial fraction {op}={frac} must be in [0, 1]")

  def instances(self, array: tuple[int, int]) -> int:
    """Number of instances in an array of ``(D1, D2)`` MAC units."""
    n = 1
    if "D1" not in self.served:
      n *= array[0]
    if "D2" not in self.served:
      n *= array[1]
    return n

  def capacity_for(self, op: str) -> float | None:
    """The separate capacity of ``op`` (bits), or ``None`` when operands share the level."""
    for o, cap in self.operand_capacity_bits:
      if o == op:
        return cap
    return None

  def energy_for(self, op: str) -> tuple[float, float]:
    """``(read_pj, write_pj)`` per word for ``op``."""
    for o, r, w in self.operand_energy:
      if o == op:
        return r, w
    return self.read_pj, self.write_pj

  def serial_fraction(self, op: str) -> float:
    """Fraction of ``op``'s transfer time at this level that stalls compute."""
    return dict(self.serial).get(op, 0.0)


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """A design ready for the dataflow model (hashable: usable as a cache key).

  Attributes:
    name: design name.
    pe: PE arithmetic.
    array: ``(D1, D2)`` MAC units.
    levels: memory levels, innermost first (each operand's levels in this order form its
      hierarchy; the last level of every operand is DRAM).
    spatial: candidate spatial unrollings: pairs ``(dims on D1, dims on D2)`` in priority
      order, e.g. ``(('C',), ('K',))``. A dim may appear on both axes (Eyeriss splits a wide
      row-stationary PE set into segments stacked along D1).
    pe_count: PEs in the design's own unit (Bit Fusion: BitBricks), the paper's count unit.
    pe_area_um2: area of one PE in the chosen scope, um^2.
    area_mm2: area budget the PEs fill.
    area_scope: scope used for the PE count (:data:`ebsp_jax.hw.area.AREA_SCOPES`).
    pe_area_breakdown: ``{'arith', 'shared', 'registers', 'local_memory', 'total'}`` um^2.
    cycle_factor: multiplicative compute-cycle overhead (OLAccel's outlier serialisation).
    tech: technology parameters (node scaling, leakage, clock).
    label: bit width / format label for tables.
    setting: the setting the design was built for (``'equal_area'``, ``'paper_table'`` or a
      paper setting such as ``'eyeriss_jssc2017'``).
    act_sparsity: use of zero input activations, one of :data:`ACT_SPARSITY_MODES`.
    dram_codec: DRAM compression of activations, one of :data:`DRAM_CODECS`.
    overhead_pj_per_cycle: energy per clock cycle not tied to any access (clock tree and
      control of the whole chip, at the design's node); 0 unless calibrated.
    layer_cost: name of a design-specific cost function (registered in
      :mod:`ebsp_jax.hw.designs`) that replaces the generic loop-nest model, or ``''``.
    mapping_generator: name of a design-specific generator of candidate mappings (e.g. the
      row-stationary schedules of Eyeriss) that the mapper evaluates besides its generic
      search, or ``''``.
    params: extra design parameters ``((key, value), ...)`` read by ``layer_cost``.
  """

  name: str
  pe: PEModel
  array: tuple[int, int]
  levels: tuple[MemLevel, ...]
  spatial: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
  pe_count: int
  pe_area_um2: float
  area_mm2: float
  area_scope: str
  pe_area_breakdown: tuple[tuple[str, float], ...] = ()
  cycle_factor: float = 1.0
  tech: TechParams = TechParams()
  label: str = ""
  setting: str = "equal_area"
  act_sparsity: str = "none"
  dram_codec: str = "none"
  overhead_pj_per_cycle: float = 0.0
  layer_cost: str = ""
  mapping_generator: str = ""
  params: tuple[tuple[str, object], ...] = ()

  def __post_init__(self):
    if self.act_sparsity not in ACT_SPARSITY_MODES:
      raise ConfigError(f"{self.name}: act_sparsity must be one of {ACT_SPARSITY_MODES}")
    if self.dram_codec not in DRAM_CODECS:
      raise ConfigError(f"{self.name}: dram_codec must be one of {DRAM_CODECS}")

  @property
  def mac_units(self) -> int:
    """MAC units in the array (``D1 * D2``)."""
    return self.array[0] * self.array[1]

  @property
  def precision(self) -> dict[str, float]:
    """Bits per element: ``W``, ``I``, ``O`` (partial sum) and ``O_final``."""
    return {"W": self.pe.weight_bits, "I": self.pe.act_bits, "O": float(self.pe.psum_bits),
            "O_final": self.pe.out_bits}

  def param(self, key: str, default=None):
    """The design parameter ``key`` (see ``params``)."""
    return dict(self.params).get(key, default)

  def hierarchy(self, operand: str) -> tuple[MemLevel, ...]:
    """The levels holding ``operand``, innermost first."""
    return tuple(m for m in self.levels if operand in m.operands)

  def level(self, name: str) -> MemLevel:
    """The level called ``name``."""
    for m in self.levels:
      if m.name == name:
        return m
    raise KeyError(name)

  def validate(self) -> None:
    """Checks the hierarchy (every operand ends in a level serving the whole array)."""
    for op in OPERANDS:
      h = self.hierarchy(op)
      if not h:
        raise ConfigError(f"{self.name}: no memory holds operand {op}")
      if set(h[-1].served) != {"D1", "D2"} or not math.isinf(h[-1].capacity_bits):
        raise ConfigError(f"{self.name}: the top level of {op} must be unbounded and serve "
                          f"the whole array")
      for lo, hi in zip(h, h[1:]):
        if not set(lo.served) <= set(hi.served):
          raise ConfigError(f"{self.name}: {hi.name} must serve at least the dims "
                            f"{lo.name} serves")


# ----------------------------------------------------------------------------------------------
# Memory constructors.


def _logic_leak(area_um2: float, tech: TechParams) -> float:
  return area_um2 * tech_mod.logic_leakage_mw_per_um2(tech)


def register_level(name: str, operands: tuple[str, ...], entries: int, width: int,
                   tech: TechParams, served: tuple[str, ...] = (), category: str = "rf",
                   kind: str | None = None, **extra) -> MemLevel:
  """A flip-flop register (file) of ``entries x width`` bits, one port pair (2 words/cycle)."""
  a = tech_mod.regfile_area_um2(entries, width)
  return MemLevel(name, operands, float(entries * width), served, width,
                  tech_mod.regfile_read_pj(entries, width), tech_mod.regfile_write_pj(entries, width),
                  2.0 * width, kind or ("register" if entries <= 4 else "regfile"), category,
                  a, _logic_leak(a, tech), "derived (NanGate45 DFF/MUX2 x logic energy density)",
                  **extra)


def shift_register_level(name: str, operands: tuple[str, ...], entries: int, width: int,
                         tech: TechParams, served: tuple[str, ...], category: str = "rf",
                         **extra) -> MemLevel:
  """A shift register of ``entries x width`` bits shared by the MACs it serves (WAX's A row).

  Each MAC reads its own stage (a wire: read energy 0; every stage readable each cycle, plus one
  element shifted in: ``(entries + 1) * width`` bits per cycle); every element shifted in moves
  all ``entries`` stages (``entries * width`` DFF toggles per write). No read mux (area: the
  DFFs).
  Sliding (consecutive windows overlap) unless ``sliding=False`` is given.
  """
  a = entries * width * tech_mod.cell_area_um2("DFF_X1")
  extra.setdefault("sliding", True)
  return MemLevel(name, operands, float(entries * width), served, width, 0.0,
                  entries * width * tech_mod.cell_energy_pj("DFF_X1"),
                  float((entries + 1) * width), "register",
                  category, a, _logic_leak(a, tech),
                  "derived (NanGate45 DFF x logic energy density; shift of every stage)", **extra)


def sram_level(name: str, operands: tuple[str, ...], size_bytes: float, word_bits: int,
               bandwidth_bits: float, tech: TechParams, served: tuple[str, ...],
               category: str, **extra) -> MemLevel:
  """An SRAM macro: energies per ``word_bits`` access from :func:`tech.sram_energy_pj_per_bit`."""
  src = ("horowitz2014 (+cacti7 below 8 KB)" if tech.sram_energy == "horowitz" else "cacti7")
  return MemLevel(name, operands, float(size_bytes * 8), served, word_bits,
                  tech_mod.sram_energy_pj_per_bit(size_bytes, tech) * word_bits,
                  tech_mod.sram_energy_pj_per_bit(size_bytes, tech, write=True) * word_bits,
                  float(bandwidth_bits), "sram", category, tech_mod.sram_area_um2(size_bytes),
                  tech_mod.sram_leakage_mw(size_bytes, tech), src, **extra)


def dram_level(tech: TechParams, **extra) -> MemLevel:
  """Off-chip DRAM: unbounded, 64-bit words, ``tech.dram_bytes_per_cycle`` bandwidth.

  Its energy per bit is ``tech.dram_pj_per_64b / 64`` whatever the logic node (a DRAM's
  interface and array energy do not scale with the accelerator's process).
  """
  e = tech_mod.dram_energy_pj_per_bit(tech) * 64
  return MemLevel("dram", OPERANDS, math.inf, ("D1", "D2"), 64, e, e,
                  tech.dram_bytes_per_cycle * 8.0, "dram", "dram", 0.0, 0.0, "horowitz2014",
                  **extra)


def lut_level(length: int, activation_bits: int, tech: TechParams) -> MemLevel:
  """EBSP's row LUT as the activation's level-0 memory (one per row, shared along D2).

  Holds one activation; a *write* is a LUT fill (``pe.ebsp_lut`` energy: odd-multiple adders +
  registers); reads are the PEs' 2^L:1 muxes, already in the PE's energy per MAC (read cost 0).
  Bandwidth: one fill and one (broadcast) read per cycle.
  """
  c = pe_mod.ebsp_lut(length, activation_bits)
  return MemLevel("lut", ("I",), float(activation_bits), ("D2",), activation_bits, 0.0,
                  c.energy_pj, 2.0 * activation_bits, "lut", "lut", c.area_um2,
                  _logic_leak(c.area_um2, tech), "derived (ebsp_jax.hw.pe.ebsp_lut)")


#: Signature of a design-specific layer cost function (see ``Accelerator.layer_cost``).
LayerCostFn = Callable[..., object]
#: Registered design-specific layer cost functions, by name (filled by ``hw.designs``).
LAYER_COSTS: dict[str, LayerCostFn] = {}


def register_layer_cost(name: str, fn: LayerCostFn) -> None:
  """Registers ``fn`` as the design-specific layer cost function ``name``."""
  LAYER_COSTS[name] = fn


#: Registered design-specific mapping generators ``(layer, acc) -> iterable of Mapping``.
MAPPING_GENERATORS: dict[str, Callable[..., object]] = {}


def register_mapping_generator(name: str, fn: Callable[..., object]) -> None:
  """Registers ``fn`` as the candidate-mapping generator ``name``."""
  MAPPING_GENERATORS[name] = fn
