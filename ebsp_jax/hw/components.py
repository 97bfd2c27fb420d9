"""Datapath building blocks (adders, multipliers, muxes, shifters, LOD, registers) at 45 nm.

Each function returns a :class:`Component`: area in um^2 and energy per use in pJ, with the
source of both. Adders and multipliers come from Horowitz's table (``tech.int_add_*``,
``tech.int_mult_*``); the other blocks are counted in NanGate45 cells and costed at
:data:`ebsp_jax.hw.tech.LOGIC_FJ_PER_UM2` per um^2 per use (one toggle of every cell per use:
a deliberately simple, consistent activity model; it reproduces Horowitz's adder and
multiplier energies within about +-15%).
"""

from __future__ import annotations

import dataclasses
import math

from ebsp_jax.hw import tech


@dataclasses.dataclass(frozen=True)
class Component:
  """A hardware block.

  Attributes:
    name: readable name with its size, e.g. ``'add32'``.
    area_um2: area at 45 nm, um^2.
    energy_pj: energy per use at 45 nm, pJ.
    source: key of :data:`ebsp_jax.hw.tech.SOURCES` (``'derived'`` when built from cells).
    note: how the numbers were obtained.
  """

  name: str
  area_um2: float
  energy_pj: float
  source: str
  note: str = ""


def _logic(name: str, area_um2: float, note: str) -> Component:
  return Component(name, area_um2, area_um2 * tech.LOGIC_FJ_PER_UM2 * 1e-3, "derived", note)


def adder(bits: int) -> Component:
  """A ``bits``-wide integer adder (Horowitz 8/16/32-bit points, interpolated)."""
  _check_pos("bits", bits)
  return Component(f"add{bits}", tech.int_add_area_um2(bits), tech.int_add_energy_pj(bits),
                   "horowitz2014", "interpolated in width between 8/16/32 b")


def multiplier(bits_a: int, bits_b: int) -> Component:
  """An ``bits_a x bits_b`` integer multiplier (power law through Horowitz 8x8 and 32x32)."""
  _check_pos("bits_a", bits_a)
  _check_pos("bits_b", bits_b)
  return Component(f"mult{bits_a}x{bits_b}", tech.int_mult_area_um2(bits_a, bits_b),
                   tech.int_mult_energy_pj(bits_a, bits_b), "derived",
                   "power law in a*b through Horowitz 8x8 (0.2 pJ, 282 um^2) and 32x32")


def register(bits: int) -> Component:
  """A ``bits``-wide flip-flop register; energy is one write (``bits`` DFF_X1 toggles)."""
  _check_pos("bits", bits)
  return _logic(f"reg{bits}", bits * tech.cell_area_um2("DFF_X1"), f"{bits} x DFF_X1")


def mux(inputs: int, width: int) -> Component:
  """An ``inputs:1`` mux of ``width`` bits as a tree of ``(inputs-1)*width`` MUX2_X1.

  Energy per use: only the selected path switches, ``width * ceil(log2(inputs))`` MUX2_X1
  toggles (the data inputs of a LUT read mux are stable between fills).
  """
  _check_pos("inputs", inputs)
  _check_pos("width", width)
  cells = (inputs - 1) * width
  path = width * (math.ceil(math.log2(inputs)) if inputs > 1 else 0)
  return Component(f"mux{inputs}to1x{width}", cells * tech.cell_area_um2("MUX2_X1"),
                   path * tech.cell_energy_pj("MUX2_X1"), "derived",
                   f"{cells} x MUX2_X1; {path} toggle per use")


def barrel_shifter(width: int, max_shift: int, step: int = 1) -> Component:
  """Left barrel shifter by multiples of ``step`` up to ``max_shift``.

  ``ceil(log2(max_shift/step + 1))`` stages of ``width + max_shift`` MUX2_X1; every stage is on
  the data path, so every cell toggles per use. ``max_shift == 0`` is a wire (zero cost).
  """
  _check_pos("width", width)
  _check_pos("step", step)
  if max_shift < 0:
    raise ValueError(f"max_shift must be >= 0; got {max_shift}")
  stages = math.ceil(math.log2(max_shift // step + 1)) if max_shift > 0 else 0
  cells = stages * (width + max_shift)
  return _logic(f"shift{width}by{max_shift}", cells * tech.cell_area_um2("MUX2_X1"),
                f"{stages} stages x {width + max_shift} MUX2_X1")


def leading_one_detector(bits: int) -> Component:
  """Leading-one detector + binary encoder of a ``bits``-wide magnitude.

  Cells: a prefix-OR chain (``bits`` AND2_X1 + ``bits`` INV_X1) that one-hot marks the leading
  one, and an encoder of ``ceil(log2 bits) * bits / 2`` NAND2_X1.
  """
  _check_pos("bits", bits)
  enc = math.ceil(math.log2(bits)) * bits / 2 if bits > 1 else 0
  area = bits * (tech.cell_area_um2("AND2_X1") + tech.cell_area_um2("INV_X1")) \
      + enc * tech.cell_area_um2("NAND2_X1")
  return _logic(f"lod{bits}", area, "prefix-OR chain + encoder in NanGate cells")


def conditional_negate(bits: int) -> Component:
  """Sign handling: ``bits`` XOR2_X1 (the +1 of two's complement is the adder's carry-in)."""
  _check_pos("bits", bits)
  return _logic(f"neg{bits}", bits * tech.cell_area_um2("XOR2_X1"), f"{bits} x XOR2_X1")


def _check_pos(name: str, value: int) -> None:
  if not isinstance(value, (int,)) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive int; got {value!r}")
