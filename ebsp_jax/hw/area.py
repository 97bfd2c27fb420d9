"""Area model: PE area by scope and the PE count that fits an equal-area budget.

The EBSP paper compares five designs "at equal area, 0.32 mm^2" with PE counts 224 (Eyeriss),
3168 (Bit Fusion), 102 (WAX), 2499 (OLAccel) and 4818 (EBSP) [ebsp_dac2022]. What the budget
covers is not stated; the counts imply ~1430, 101, 3140, 128 and 66 um^2 per PE. This module
makes the choice explicit with an *area scope*:

* ``'arith'``: the PE's arithmetic only (multiplier or LUT logic, shifter, accumulate adder);
* ``'pe'``: + structures shared by a few PEs (Bit Fusion's adder tree, OLAccel's outlier MACs,
  EBSP's row LUT) + the PE's registers (weight/activation/psum registers);
* ``'pe+local'`` (default): + the PE's local memories (Eyeriss's 0.5 KB scratchpads, WAX's
  share of its tile's 8 KB subarray).

The global buffer is outside the budget (every design gets the same one).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

from ebsp_jax.hw.pe import PEModel

#: Area scopes, smallest first.
AREA_SCOPES = ("arith", "pe", "pe+local")
#: Equal-area budget of the EBSP paper, mm^2 [ebsp_dac2022].
PAPER_AREA_MM2 = 0.32
#: PE counts of the EBSP paper's Table at 0.32 mm^2 [ebsp_dac2022].
PAPER_PE_COUNTS: Mapping[str, int] = {
    "eyeriss": 224, "bitfusion": 3168, "wax": 102, "olaccel": 2499, "ebsp": 4818}
#: Bit widths of the paper's Table [ebsp_dac2022].
PAPER_BITWIDTHS: Mapping[str, str] = {
    "eyeriss": "16-bit", "bitfusion": "4-bit", "wax": "8-bit", "olaccel": "4 & 16-bit",
    "ebsp": "6-bit (3)"}


class AreaError(ValueError):
  """The budget cannot hold a single PE, or an area argument is invalid."""


@dataclasses.dataclass(frozen=True)
class LocalMemoryShare:
  """A memory instance counted in the PE's area, with how many MAC units share it.

  Attributes:
    name: memory name.
    kind: ``'register'``, ``'lut'`` (counted from scope ``'pe'``), ``'regfile'`` or
      ``'sram'`` (counted in ``'pe+local'``).
    area_um2: area of one instance, um^2.
    macs_per_instance: MAC units served by one instance (1 = private; a row; a tile).
  """

  name: str
  kind: str
  area_um2: float
  macs_per_instance: float


def pe_area_um2(pe: PEModel, memories: Sequence[LocalMemoryShare], scope: str = "pe+local",
                area_scale: float = 1.0) -> dict[str, float]:
  """Area of one PE (in the design's PE unit) by component class, um^2.

  Args:
    pe: the PE arithmetic.
    memories: PE-level memories (registers, LUT, scratchpads, subarrays) with their sharing.
    scope: one of :data:`AREA_SCOPES`.
    area_scale: node scaling factor applied to every area (1 at 45 nm).

  Returns:
    ``{'arith', 'shared', 'registers', 'local_memory', 'total'}`` (um^2 per PE); ``total``
    includes only what ``scope`` counts.
  """
  if scope not in AREA_SCOPES:
    raise AreaError(f"area scope must be one of {AREA_SCOPES}; got {scope!r}")
  arith = pe.area_um2(["arith"])
  shared = pe.area_um2(["shared"])
  # Memories are per MAC unit; a PE does pe.macs_per_cycle MAC units' worth of work.
  regs = sum(m.area_um2 / m.macs_per_instance for m in memories
             if m.kind in ("register", "lut")) * pe.macs_per_cycle
  local = sum(m.area_um2 / m.macs_per_instance for m in memories
              if m.kind in ("regfile", "sram")) * pe.macs_per_cycle
  total = arith
  if scope in ("pe", "pe+local"):
    total += shared + regs
  if scope == "pe+local":
    total += local
  s = area_scale
  return {"arith": arith * s, "shared": shared * s, "registers": regs * s,
          "local_memory": local * s, "total": total * s}


def pe_count(area_budget_mm2: float, pe_area: float) -> int:
  """Number of PEs of ``pe_area`` um^2 that fit ``area_budget_mm2``.

  Raises:
    AreaError: non-positive inputs, or the budget is smaller than one PE.
  """
  if not (area_budget_mm2 > 0 and math.isfinite(area_budget_mm2)):
    raise AreaError(f"area budget must be a finite number > 0 mm^2; got {area_budget_mm2}")
  if not pe_area > 0:
    raise AreaError(f"PE area must be > 0 um^2; got {pe_area}")
  n = int(math.floor(area_budget_mm2 * 1e6 / pe_area + 1e-9))
  if n < 1:
    raise AreaError(f"area budget {area_budget_mm2:g} mm^2 is smaller than one PE "
                    f"({pe_area / 1e6:.3g} mm^2)")
  return n


def array_shape(mac_units: int, d1: int | None = None) -> tuple[int, int]:
  """A 2-D array of at most ``mac_units`` MAC units: ``(D1, D2)``.

  ``D1`` is ``d1`` when given (e.g. WAX's 32 MACs per tile) else the largest power of two
  <= sqrt(mac_units); ``D2 = mac_units // D1``. Leftover units (at most D1 - 1) stay idle.
  """
  if mac_units < 1:
    raise AreaError(f"need at least one MAC unit; got {mac_units}")
  if d1 is None:
    d1 = 1 << int(math.floor(math.log2(math.sqrt(mac_units))))
  d1 = max(1, min(d1, mac_units))
  return d1, mac_units // d1
