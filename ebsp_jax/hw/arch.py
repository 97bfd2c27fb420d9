"""Accelerator architectures: PE array + memory hierarchy of EBSP and the four baselines.

An :class:`Accelerator` is a frozen (hashable) description in the terms of loop-nest cost
models such as ZigZag and Timeloop: an array of ``D1 x D2`` MAC units, and a list of memory
levels from the innermost (per-PE registers) to DRAM. Each level stores some of the operands
``W`` (weights), ``I`` (input activations), ``O`` (outputs/partial sums) and is instantiated
once per group of MAC units it *serves* (``served`` array dims: ``()`` = one per MAC unit,
``('D2',)`` = one per row, ``('D1', 'D2')`` = one for the whole array).

Designs (:func:`build_accelerator`; every number cited in :mod:`ebsp_jax.hw.tech` /
:mod:`ebsp_jax.hw.pe`):

=========  ===========================================================  ======================
design     per-PE / local storage                                       spatial unrolling
=========  ===========================================================  ======================
eyeriss    W spad 224x16b SRAM, I spad 12x16b, psum spad 24x16b          D1: FY(,C)  D2: OY(,K)
           (row-stationary [eyeriss_isca2016]; sliding-window reuse
           inside the spads is not modelled, as in ZigZag)
bitfusion  W, I and psum registers (weight-stationary systolic)         D1: C       D2: K
wax        W, A (shift) and P registers; 8 KB subarray per 32-MAC tile  D1: K (32)  D2: OY/OX/C
olaccel    W, I and psum registers (4-bit SIMD lanes)                   D1: C/K     D2: K/OX
ebsp       W register, psum register; the activation LUT (2^L entries    D1: C/OX    D2: K
           filled once per activation) shared by the PEs of a row
=========  ===========================================================  ======================

All designs share the global buffer (108 KB by default), its bandwidth and DRAM, so that the
equal-area comparison differs only in the PE arrays, as in the EBSP paper.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from ebsp_jax.hw import area as area_mod
from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw import tech as tech_mod
from ebsp_jax.hw.pe import PEModel
from ebsp_jax.hw.tech import TechParams

#: Accelerator names, in the paper's order.
ACCELERATORS = ("eyeriss", "bitfusion", "wax", "olaccel", "ebsp")
OPERANDS = ("W", "I", "O")
#: Energy-breakdown categories of memory levels.
CATEGORIES = ("rf", "lut", "local_buffer", "buffer", "dram")
#: EBSP activation widths, bits (the training and integer paths stop at 16 too).
ACTIVATION_BITS_RANGE = (1, 16)
#: Accumulator widths, bits; each design also needs at least one product's width
#: (:func:`accumulated_product`).
ACC_BITS_RANGE = (2, 64)


class ConfigError(ValueError):
  """An impossible or unknown accelerator configuration (one-line message)."""


@dataclasses.dataclass(frozen=True)
class MemLevel:
  """One memory level (one physical memory, possibly instantiated many times).

  Attributes:
    name: unique name, e.g. ``'glb'``.
    operands: operands it stores, subset of ``('W', 'I', 'O')``.
    capacity_bits: capacity of one instance, bits (``math.inf`` for DRAM).
    served: array dims one instance serves (``()``, ``('D1',)``, ``('D2',)``, both).
    word_bits: bits per access (the port width; the per-access energies refer to it).
    read_pj: energy per word read, pJ (45 nm).
    write_pj: energy per word write, pJ (45 nm).
    bandwidth_bits: bits per cycle one instance can move (reads + writes).
    kind: ``'register'``, ``'regfile'``, ``'sram'``, ``'lut'`` or ``'dram'``.
    category: energy-breakdown class, one of :data:`CATEGORIES`.
    area_um2: area of one instance, um^2 (45 nm; 0 for DRAM).
    leakage_mw: leakage of one instance, mW.
    source: where the energies come from.
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

  def instances(self, array: tuple[int, int]) -> int:
    """Number of instances in an array of ``(D1, D2)`` MAC units."""
    n = 1
    if "D1" not in self.served:
      n *= array[0]
    if "D2" not in self.served:
      n *= array[1]
    return n


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
      order, e.g. ``(('C',), ('K',))``.
    pe_count: PEs in the design's own unit (Bit Fusion: BitBricks), the paper's count unit.
    pe_area_um2: area of one PE in the chosen scope, um^2.
    area_mm2: area budget the PEs fill.
    area_scope: scope used for the PE count (:data:`ebsp_jax.hw.area.AREA_SCOPES`).
    pe_area_breakdown: ``{'arith', 'shared', 'registers', 'local_memory', 'total'}`` um^2.
    cycle_factor: multiplicative compute-cycle overhead (OLAccel's outlier serialisation).
    tech: technology parameters (node scaling, leakage, clock).
    label: bit width / format label for tables.
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

  @property
  def mac_units(self) -> int:
    """MAC units in the array (``D1 * D2``)."""
    return self.array[0] * self.array[1]

  @property
  def precision(self) -> dict[str, float]:
    """Bits per element: ``W``, ``I``, ``O`` (partial sum) and ``O_final``."""
    return {"W": self.pe.weight_bits, "I": self.pe.act_bits, "O": float(self.pe.psum_bits),
            "O_final": self.pe.out_bits}

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
                   kind: str | None = None) -> MemLevel:
  """A flip-flop register (file) of ``entries x width`` bits, one port pair (2 words/cycle)."""
  a = tech_mod.regfile_area_um2(entries, width)
  return MemLevel(name, operands, float(entries * width), served, width,
                  tech_mod.regfile_read_pj(entries, width), tech_mod.regfile_write_pj(entries, width),
                  2.0 * width, kind or ("register" if entries <= 4 else "regfile"), category,
                  a, _logic_leak(a, tech), "derived (NanGate45 DFF/MUX2 x logic energy density)")


def sram_level(name: str, operands: tuple[str, ...], size_bytes: float, word_bits: int,
               bandwidth_bits: float, tech: TechParams, served: tuple[str, ...],
               category: str) -> MemLevel:
  """An SRAM macro: energies per ``word_bits`` access from :func:`tech.sram_energy_pj_per_bit`."""
  src = ("horowitz2014 (+cacti7 below 8 KB)" if tech.sram_energy == "horowitz" else "cacti7")
  return MemLevel(name, operands, float(size_bytes * 8), served, word_bits,
                  tech_mod.sram_energy_pj_per_bit(size_bytes, tech) * word_bits,
                  tech_mod.sram_energy_pj_per_bit(size_bytes, tech, write=True) * word_bits,
                  float(bandwidth_bits), "sram", category, tech_mod.sram_area_um2(size_bytes),
                  tech_mod.sram_leakage_mw(size_bytes, tech), src)


def dram_level(tech: TechParams) -> MemLevel:
  """Off-chip DRAM: unbounded, 64-bit words, ``tech.dram_bytes_per_cycle`` bandwidth."""
  e = tech_mod.dram_energy_pj_per_bit(tech) * 64
  return MemLevel("dram", OPERANDS, math.inf, ("D1", "D2"), 64, e, e,
                  tech.dram_bytes_per_cycle * 8.0, "dram", "dram", 0.0, 0.0, "horowitz2014")


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


# ----------------------------------------------------------------------------------------------
# Designs.


def _local_levels(name: str, pe: PEModel, tech: TechParams, *, length: int = 3,
                  wax_subarray_bytes: int = 8192) -> list[MemLevel]:
  w, a, p = (math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits)
  if name == "eyeriss":
    return [
        sram_level("spad_w", ("W",), 224 * w / 8, w, 2 * w, tech, (), "rf"),
        register_level("spad_i", ("I",), 12, a, tech),
        register_level("spad_o", ("O",), 24, p, tech),
    ]
  if name in ("bitfusion", "olaccel"):
    return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_i", ("I",), 1, a, tech),
            register_level("reg_o", ("O",), 1, p, tech)]
  if name == "wax":
    return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_a", ("I",), 1, a, tech),
            register_level("reg_p", ("O",), 1, p, tech),
            sram_level("subarray", ("W", "I", "O"), wax_subarray_bytes, 64, 128, tech, ("D1",),
                       "local_buffer")]
  if name == "ebsp":
    return [register_level("reg_w", ("W",), 1, w, tech), lut_level(length, a, tech),
            register_level("reg_o", ("O",), 1, p, tech)]
  raise ConfigError(f"unknown accelerator {name!r}; known: {', '.join(ACCELERATORS)}")


_SPATIAL: Mapping[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "eyeriss": ((("FY", "C"), ("OY", "K")), (("C",), ("K",)), (("FY", "K"), ("OY", "C")),
                (("G",), ("OY", "OX"))),
    "bitfusion": ((("C",), ("K",)), (("C", "FX"), ("K",)), (("OX",), ("K",)),
                  (("G",), ("OX",))),
    "wax": ((("K",), ("OY", "OX")), (("K",), ("C",)), (("K",), ("OX", "C")),
            (("G",), ("OY", "OX"))),
    "olaccel": ((("C",), ("K",)), (("K",), ("OY", "OX")), (("C", "FX"), ("K",)),
                (("G",), ("OY", "OX"))),
    "ebsp": ((("C",), ("K",)), (("OX", "OY"), ("K",)), (("C", "FX"), ("K",)),
             (("G", "OX"), ("K",))),
}


def make_pe(name: str, *, pattern_bits: int = 6, pattern_length: int = 3,
            activation_bits: int = 8, acc_bits: int = 32, weight_format: str = "raw",
            outlier_fraction: float = 0.03, bitfusion_bits: int = 4) -> PEModel:
  """The PE of design ``name`` (baselines at their paper bit widths, EBSP as given).

  ``bitfusion_bits``: Bit Fusion's weight and activation width (the paper's table says 4; its
  accuracy slide calls Bit Fusion "full INT8").
  """
  if name == "eyeriss":
    return pe_mod.eyeriss_pe(16, 16)
  if name == "bitfusion":
    if bitfusion_bits not in (2, 4, 8, 16):
      raise ConfigError(f"bitfusion_bits must be 2, 4, 8 or 16; got {bitfusion_bits}")
    return pe_mod.bitfusion_pe(bitfusion_bits, bitfusion_bits, acc_bits)
  if name == "wax":
    return pe_mod.wax_pe(8, acc_bits)
  if name == "olaccel":
    return pe_mod.olaccel_pe(4, 16, outlier_fraction, acc_bits=acc_bits)
  if name == "ebsp":
    try:
      return pe_mod.ebsp_pe(pattern_bits, pattern_length, activation_bits, acc_bits,
                            weight_format)
    except (TypeError, ValueError) as e:
      raise ConfigError(f"invalid EBSP pattern: {e}") from None
  raise ConfigError(f"unknown accelerator {name!r}; known: {', '.join(ACCELERATORS)}")


def accumulated_product(name: str, *, pattern_bits: int = 6, activation_bits: int = 8,
                        bitfusion_bits: int = 4) -> tuple[int, int] | None:
  """``(weight_bits, activation_bits)`` of the products design ``name`` adds in its ``acc_bits``
  accumulator (``None``: Eyeriss keeps its own 16-bit psums).

  A signed ``w``-bit by ``a``-bit product needs ``w + a`` bits (EBSP: sign-magnitude weights of
  ``pattern_bits`` times unsigned activations); OLAccel's outlier products go to its outlier
  MACs, so its PE accumulates 4 x 4-bit products.
  """
  if name == "ebsp":
    return pattern_bits, activation_bits
  if name == "bitfusion":
    return bitfusion_bits, bitfusion_bits
  if name == "wax":
    return 8, 8
  if name == "olaccel":
    return 4, 4
  if name == "eyeriss":
    return None
  raise ConfigError(f"unknown accelerator {name!r}; known: {', '.join(ACCELERATORS)}")


def _check_int(what: str, value, lo: int, hi: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ConfigError(f"{what} must be an int in [{lo}, {hi}]; got {value!r}")
  if not lo <= value <= hi:
    raise ConfigError(f"{what}={value} is out of range: allowed [{lo}, {hi}]")


def check_formats(names: Sequence[str], *, pattern_bits: int = 6, pattern_length: int = 3,
                  activation_bits: int = 8, acc_bits: int = 32, weight_format: str = "raw",
                  bitfusion_bits: int = 4) -> None:
  """Checks that every design in ``names`` can be built with these number formats.

  The activation width must be in :data:`ACTIVATION_BITS_RANGE`, the accumulator width in
  :data:`ACC_BITS_RANGE` and at least as wide as one product of every design
  (:func:`accumulated_product`); EBSP's pattern and Bit Fusion's width must be valid.

  Raises:
    ConfigError: one line naming the value, the design that needs more and what is allowed.
  """
  _check_int("activation_bits", activation_bits, *ACTIVATION_BITS_RANGE)
  _check_int("acc_bits", acc_bits, *ACC_BITS_RANGE)
  widest = None
  for n in names:
    make_pe(n, pattern_bits=pattern_bits, pattern_length=pattern_length,
            activation_bits=activation_bits, acc_bits=acc_bits, weight_format=weight_format,
            bitfusion_bits=bitfusion_bits)  # unknown name, invalid pattern or width
    ops = accumulated_product(n, pattern_bits=pattern_bits, activation_bits=activation_bits,
                              bitfusion_bits=bitfusion_bits)
    if ops is not None and (widest is None or sum(ops) > sum(widest[1])):
      widest = (n, ops)
  if widest is not None and acc_bits < sum(widest[1]):
    n, (w, a) = widest
    raise ConfigError(f"acc_bits={acc_bits} is narrower than one {w}x{a}-bit product of {n} "
                      f"({w + a} bits); allowed: [{w + a}, {ACC_BITS_RANGE[1]}]")


def olaccel_cycle_factor(outlier_fraction: float, lanes: int = 16,
                         act_group: int = 16) -> float:
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


def build_accelerator(name: str, *, area_mm2: float = area_mod.PAPER_AREA_MM2,
                      area_scope: str = "pe+local", tech: TechParams = TechParams(),
                      pattern_bits: int = 6, pattern_length: int = 3, activation_bits: int = 8,
                      acc_bits: int = 32, weight_format: str = "raw",
                      glb_bytes: int = tech_mod.DEFAULT_GLB_BYTES, glb_bandwidth_bits: int = 1024,
                      outlier_fraction: float = 0.03, pe_count: int | None = None,
                      wax_subarray_bytes: int = 8192, bitfusion_bits: int = 4) -> Accelerator:
  """Builds design ``name`` at an equal area budget.

  Args:
    name: one of :data:`ACCELERATORS`.
    area_mm2: area budget for the PE array (scope ``area_scope``), mm^2.
    area_scope: what the budget covers (:data:`ebsp_jax.hw.area.AREA_SCOPES`).
    tech: technology parameters.
    pattern_bits, pattern_length, activation_bits, weight_format: EBSP's number format
      (ignored by the baselines, which use their papers' widths).
    acc_bits: accumulator width of the 4/6/8-bit designs (Eyeriss keeps its 16-bit psums).
    glb_bytes: shared global buffer capacity, bytes.
    glb_bandwidth_bits: global-buffer bandwidth, bits per cycle.
    outlier_fraction: OLAccel's outlier fraction.
    pe_count: force this many PEs (e.g. the paper's counts) instead of deriving it from area.
    wax_subarray_bytes: WAX subarray per 32-MAC tile.
    bitfusion_bits: Bit Fusion's operating width (4 in the paper's table).

  Raises:
    ConfigError: unknown name, invalid pattern, activation width outside
      :data:`ACTIVATION_BITS_RANGE`, an accumulator narrower than one product
      (:func:`check_formats`), zero bandwidth, or a budget below one PE.
  """
  if name not in ACCELERATORS:
    raise ConfigError(f"unknown accelerator {name!r}; known: {', '.join(ACCELERATORS)}")
  check_formats([name], pattern_bits=pattern_bits, pattern_length=pattern_length,
                activation_bits=activation_bits, acc_bits=acc_bits, weight_format=weight_format,
                bitfusion_bits=bitfusion_bits)
  if not glb_bandwidth_bits > 0:
    raise ConfigError(f"global-buffer bandwidth must be > 0 bits/cycle; got {glb_bandwidth_bits}")
  if not glb_bytes > 0:
    raise ConfigError(f"global-buffer size must be > 0 bytes; got {glb_bytes}")
  if area_scope not in area_mod.AREA_SCOPES:
    raise ConfigError(f"area scope must be one of {area_mod.AREA_SCOPES}; got {area_scope!r}")
  pe = make_pe(name, pattern_bits=pattern_bits, pattern_length=pattern_length,
               activation_bits=activation_bits, acc_bits=acc_bits, weight_format=weight_format,
               outlier_fraction=outlier_fraction, bitfusion_bits=bitfusion_bits)
  local = _local_levels(name, pe, tech, length=pattern_length,
                        wax_subarray_bytes=wax_subarray_bytes)
  glb = sram_level("glb", OPERANDS, glb_bytes, 64, glb_bandwidth_bits, tech, ("D1", "D2"),
                   "buffer")
  levels = tuple(local) + (glb, dram_level(tech))
  d1_fixed = 32 if name == "wax" else None

  def shares(array):
    out = []
    for m in local:
      served = 1
      if "D1" in m.served:
        served *= array[0]
      if "D2" in m.served:
        served *= array[1]
      out.append(area_mod.LocalMemoryShare(m.name, m.kind, m.area_um2, served))
    return out

  # The row LUT / subarray shares depend on the array shape, which depends on the count.
  array = (d1_fixed or 1, 1)
  breakdown = {}
  for _ in range(3):
    breakdown = area_mod.pe_area_um2(pe, shares(array), area_scope, tech.area_scale)
    try:
      n = pe_count if pe_count is not None else area_mod.pe_count(area_mm2, breakdown["total"])
    except area_mod.AreaError as e:
      raise ConfigError(f"{name}: {e}") from None
    if n < 1:
      raise ConfigError(f"{name}: pe_count must be >= 1; got {n}")
    units = int(math.floor(n * pe.macs_per_cycle + 1e-9))
    if units < 1:
      raise ConfigError(f"{name}: {n} PEs do not make one MAC unit")
    array = area_mod.array_shape(units, d1_fixed)
  factor = olaccel_cycle_factor(outlier_fraction) if name == "olaccel" else 1.0
  acc = Accelerator(name=name, pe=pe, array=array, levels=levels, spatial=_SPATIAL[name],
                    pe_count=n, pe_area_um2=breakdown["total"], area_mm2=area_mm2,
                    area_scope=area_scope, pe_area_breakdown=tuple(sorted(breakdown.items())),
                    cycle_factor=factor, tech=tech,
                    label=(pe.label if name in ("ebsp", "bitfusion") and
                           (name == "ebsp" or bitfusion_bits != 4)
                           else area_mod.PAPER_BITWIDTHS[name]))
  acc.validate()
  return acc


def build_all(names: Sequence[str] = ACCELERATORS, **kwargs) -> dict[str, Accelerator]:
  """:func:`build_accelerator` for each name (same keyword arguments)."""
  return {n: build_accelerator(n, **kwargs) for n in names}
