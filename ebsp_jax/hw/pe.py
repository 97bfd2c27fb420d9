"""Processing-element (PE) models: EBSP and the four baselines, costed from their parts.

A :class:`PEModel` holds the *arithmetic* of one PE (the parts used once per multiply-accumulate,
MAC) plus structures shared by several PEs (amortised per PE). Storage that the dataflow reads
and writes (operand registers, Eyeriss's scratchpads, WAX's subarrays, EBSP's activation LUT) is
not part of the PE model: it is a memory level of the accelerator (:mod:`ebsp_jax.hw.arch`),
costed per access by the dataflow model, and its area is added to the PE by
:func:`ebsp_jax.hw.area.pe_area_um2` according to the chosen area scope.

Designs (bit widths from the EBSP paper's Table, [ebsp_dac2022]):

* **EBSP** (:func:`ebsp_pe`): per product ``q * a`` with ``q = +-m 2^s``: leading-one detector
  on the weight magnitude, mux that extracts the L-bit mantissa, a read of the 2^L-entry LUT
  (a 2^L:1 mux over the row's shared LUT registers), barrel shifter (max shift
  ``magnitude_bits - L``), conditional negate and the accumulate adder (docs/method.md §3). The LUT
  itself (filled once per activation with shifts and adds) is shared by the PEs of a row; it
  is the activation's level-0 memory in :mod:`ebsp_jax.hw.arch`.
* **Eyeriss** (:func:`eyeriss_pe`) [eyeriss_jssc2017]: 16-bit fixed-point multiplier and 16-bit
  psum adder (the psum scratchpad is 16 bits wide).
* **Bit Fusion** (:func:`bitfusion_pe`) [bitfusion_isca2018]: a bottom-up BitBrick
  (a 2-bit signed/unsigned multiplier, built as 3x3 with the sign-extension bit) with its
  variable shifter and its share of the Fusion Unit's adder tree (15 adders per 16 bricks);
  a ``wb x ab`` product uses ``ceil(wb/2) * ceil(ab/2)`` bricks, so one brick does
  ``1/(that)`` MACs per cycle. The design registry costs Bit Fusion from its authors'
  synthesis instead (:func:`ebsp_jax.hw.designs.bitfusion.fusion_unit_pe`, 5.6x cheaper per
  MAC); this gate-level estimate is kept for comparison.
* **WAX** (:func:`wax_pe`) [wax_micro2019]: 8-bit fixed-point multiplier + accumulate adder.
* **OLAccel** (:func:`olaccel_pe`) [olaccel_isca2018]: 4-bit MAC for the dense data, one extra
  MAC per SIMD group of ``lanes`` PEs for outlier weights (16-bit weight x 4-bit activation)
  and dedicated 16x16-bit MACs (one per ``act_group`` PEs) for outlier activations; outliers
  are a fraction ``outlier_fraction`` of weights and of activations (3% in the OLAccel paper).

All integer designs accumulate in ``acc_bits`` (32 by default; Eyeriss: 16).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from ebsp_jax.hw import components as comp
from ebsp_jax.hw.components import Component

#: Part roles: ``'arith'`` is per-PE arithmetic; ``'shared'`` is a structure shared by several
#: PEs (its ``count`` is fractional).
ROLES = ("arith", "shared")
#: Data-aware tags: ``'gated'`` parts do no work for a zero-weight product (operand isolation),
#: ``'shifter'`` parts are also bypassed when the weight's shift is 0.
TAGS = ("always", "gated", "shifter")


@dataclasses.dataclass(frozen=True)
class Part:
  """One block of a PE.

  Attributes:
    component: the block (area, energy per use).
    count: instances per PE (``1/k`` when one instance serves ``k`` PEs).
    uses_per_mac: uses of this part (any instance) per MAC computed by the PE; the energy per
      MAC is ``component.energy_pj * uses_per_mac`` whatever ``count`` is.
    role: ``'arith'`` or ``'shared'``.
    tag: data-aware activity class, one of :data:`TAGS`.
  """

  component: Component
  count: float = 1.0
  uses_per_mac: float = 1.0
  role: str = "arith"
  tag: str = "always"

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f"role must be one of {ROLES}; got {self.role!r}")
    if self.tag not in TAGS:
      raise ValueError(f"tag must be one of {TAGS}; got {self.tag!r}")


@dataclasses.dataclass(frozen=True)
class Activity:
  """Data-dependent activity of a layer (1.0 = every product does full work).

  Attributes:
    nonzero_fraction: fraction of products whose weight is non-zero (EBSP's data-aware mode).
    shifted_fraction: fraction of non-zero products whose shift is > 0.
    act_density: fraction of the layer's input activations that are non-zero; used only by
      designs that exploit zero activations (``Accelerator.act_sparsity``: Eyeriss gates, ZeNA
      and OLAccel skip) and by DRAM codecs (Eyeriss's run-length code).
    out_density: fraction of the layer's output activations that are non-zero (after its
      ReLU: the next layer's ``act_density``); used by DRAM codecs only.
    compress_input: whether the input may be stored compressed in DRAM (Eyeriss stores every
      fmap run-length coded except the network's input image [eyeriss_jssc2017]).
  """

  nonzero_fraction: float = 1.0
  shifted_fraction: float = 1.0
  act_density: float = 1.0
  out_density: float = 1.0
  compress_input: bool = True

  def __post_init__(self):
    for k in ("nonzero_fraction", "shifted_fraction", "act_density", "out_density"):
      v = getattr(self, k)
      if not 0.0 <= v <= 1.0:
        raise ValueError(f"Activity.{k} must be in [0, 1]; got {v}")


@dataclasses.dataclass(frozen=True)
class PEModel:
  """Arithmetic of one PE of a design.

  Attributes:
    name: design name (``'ebsp'``, ``'eyeriss'``, ...).
    weight_bits: bits per weight as stored and moved (may be fractional for OLAccel's
      average with sparse outliers).
    act_bits: bits per input activation as stored and moved.
    out_bits: bits per final output activation (the next layer's input format).
    psum_bits: bits of a partial sum (accumulator width).
    parts: the blocks.
    macs_per_cycle: MACs one PE completes per cycle (1, or 1/4 for a Bit Fusion brick at 4x4).
    label: short description for tables, e.g. ``'6b(L3), a8, LUT 8'`` (weight pattern,
      activation bits, LUT entries).
    pattern: EBSP weight pattern ``(bits, length)``; ``None`` for the other designs. A PE
      built for several per-layer formats (:func:`ebsp_support`) holds the widest bits and
      the longest length here and its shifter range in ``max_shift``.
    max_shift: EBSP: the largest shift its barrel shifter performs (the pattern's own
      ``max_shift`` unless built for several formats); ``None`` for the other designs.
    weight_format: EBSP's weight storage, ``'raw'`` or ``'code'``; ``None`` for the others.
  """

  name: str
  weight_bits: float
  act_bits: float
  out_bits: float
  psum_bits: int
  parts: tuple[Part, ...]
  macs_per_cycle: float = 1.0
  label: str = ""
  pattern: tuple[int, int] | None = None
  max_shift: int | None = None
  weight_format: str | None = None

  def supports(self, bits: int, length: int) -> bool:
    """Whether this EBSP PE runs signed ``BitPattern(bits, length)`` weights: no wider than
    its LOD and weight register, no longer than its LUT, no shift beyond its shifter."""
    if self.pattern is None or self.max_shift is None:
      return False
    b, l = self.pattern
    return bits <= b and length <= l and bits - 1 - length <= self.max_shift

  def area_um2(self, roles: Iterable[str] = ROLES) -> float:
    """Area of the PE's parts with the given roles, um^2 (shared parts amortised)."""
    roles = tuple(roles)
    return sum(p.component.area_um2 * p.count for p in self.parts if p.role in roles)

  def energy_per_mac_pj(self, activity: Activity = Activity()) -> float:
    """Arithmetic energy per MAC, pJ (datapath only; storage is costed by the dataflow)."""
    return sum(_part_energy_pj(p, activity) for p in self.parts)

  def breakdown(self, activity: Activity = Activity()) -> list[dict[str, object]]:
    """Per-part rows ``{'part', 'count', 'area_um2', 'energy_pj_per_mac', 'source'}``."""
    rows = []
    for p in self.parts:
      e = _part_energy_pj(p, activity)
      rows.append({"part": p.component.name, "role": p.role, "count": p.count,
                   "area_um2": p.component.area_um2 * p.count, "energy_pj_per_mac": e,
                   "source": p.component.source, "note": p.component.note})
    return rows


# ----------------------------------------------------------------------------------------------
# EBSP.


def ebsp_pe(bits: int = 6, length: int = 3, activation_bits: int = 8, acc_bits: int = 32,
            weight_format: str = "raw", signed: bool = True,
            max_shift: int | None = None) -> PEModel:
  """The EBSP LUT-plus-shift PE for weights ``BitPattern(bits, length)`` (docs/method.md §3).

  Args:
    bits: weight bits (sign included when ``signed``).
    length: pattern length L (LUT of 2^L entries).
    activation_bits: unsigned activation bits a.
    acc_bits: accumulator width.
    weight_format: ``'raw'``: weights stored as ``bits``-bit sign-magnitude, the PE's LOD and
      mux find ``(s, m)`` (the paper's steering logic); ``'code'``: weights stored as
      ``BitPattern.code_bits`` (sign + index into the magnitudes) and decoded by a small
      table (``num_magnitudes:1`` mux of constants) instead of the LOD.
    signed: sign-magnitude weights (the sign costs the conditional negate).
    max_shift: the shifter's range (default: the pattern's own ``max_shift``). A PE that runs
      several per-layer formats is built for the widest ``bits``, the longest ``length`` and
      the largest shift among them (:func:`ebsp_support`), which may exceed the shift of
      ``BitPattern(bits, length)`` itself (e.g. ``8b(L7)`` and ``4b(L1)``: shift 2);
      ``weight_format='raw'`` only.

  Returns:
    The PE model. ``weight_bits`` is ``bits`` (raw) or ``code_bits`` (code).
  """
  from ebsp_jax.numerics.pattern import BitPattern  # pylint: disable=import-outside-toplevel
  pattern = BitPattern(bits, length, signed)
  if weight_format not in ("raw", "code"):
    raise ValueError(f"weight_format must be 'raw' or 'code'; got {weight_format!r}")
  if activation_bits < 1 or acc_bits < 2:
    raise ValueError("activation_bits must be >= 1 and acc_bits >= 2")
  n, L, a = pattern.magnitude_bits, pattern.length, activation_bits
  s_max = pattern.max_shift
  if max_shift is not None and max_shift != s_max:
    if weight_format != "raw":
      raise ValueError("a shifter range other than the pattern's own (several per-layer "
                       "formats on one PE) needs weight_format='raw'")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or not (
        s_max <= max_shift <= n - 1):
      raise ValueError(f"max_shift={max_shift!r} for {pattern}: must be an int in "
                       f"[{s_max}, {n - 1}] (the pattern's own shift up to that of "
                       f"{BitPattern(bits, 1, signed) if n > 1 else pattern})")
    s_max = max_shift
  lut_width = a + L  # j * a for j < 2^L
  parts: list[Part] = []
  if weight_format == "raw":
    parts.append(Part(comp.leading_one_detector(n), tag="gated"))
    if s_max > 0:
      parts.append(Part(comp.mux(s_max + 1, L), tag="gated"))
    wbits = float(bits)
  else:
    shift_bits = max(1, math.ceil(math.log2(s_max + 1))) if s_max > 0 else 0
    parts.append(Part(comp.mux(pattern.num_magnitudes, shift_bits + L), tag="gated"))
    wbits = float(pattern.code_bits)
  parts.append(Part(comp.mux(1 << L, lut_width), tag="gated"))          # LUT read
  if s_max > 0:
    parts.append(Part(comp.barrel_shifter(lut_width, s_max), tag="shifter"))
  if signed:
    parts.append(Part(comp.conditional_negate(a + n), tag="gated"))
  parts.append(Part(comp.adder(acc_bits), tag="gated"))
  own = s_max == pattern.max_shift
  return PEModel("ebsp", wbits, float(a), float(a), acc_bits, tuple(parts),
                 label=ebsp_label(bits, length, activation_bits, signed,
                                  None if own else s_max),
                 pattern=(bits, length), max_shift=s_max, weight_format=weight_format)


def ebsp_label(bits: int, length: int, activation_bits: int, signed: bool = True,
               max_shift: int | None = None) -> str:
  """``'6b(L3), a8, LUT 8'``: weight pattern, activation bits, LUT entries (``2^L``); a PE for
  several formats: ``'<=8b, L<=7, shift<=2, a8, LUT 128'``."""
  from ebsp_jax.numerics.pattern import BitPattern  # pylint: disable=import-outside-toplevel
  if max_shift is not None:
    return (f"<={bits}b, L<={length}, shift<={max_shift}, a{activation_bits}, "
            f"LUT {1 << length}")
  return f"{BitPattern(bits, length, signed)}, a{activation_bits}, LUT {1 << length}"


def ebsp_support(formats) -> tuple[int, int, int]:
  """``(bits, length, max_shift)`` of the one EBSP PE that runs every format in ``formats``.

  Args:
    formats: signed ``BitPattern`` s or ``(bits, length)`` pairs (one per layer, repeats
      allowed).

  Returns:
    The widest ``bits`` (LOD, weight register), the longest ``length`` (LUT of ``2^length``
    entries) and the largest ``bits - 1 - length`` (barrel shifter).

  Raises:
    ValueError: no formats, or an invalid or unsigned pattern (one line).
  """
  from ebsp_jax.numerics.pattern import BitPattern  # pylint: disable=import-outside-toplevel
  pats = []
  for f in formats:
    p = f if isinstance(f, BitPattern) else BitPattern(*f)
    if not p.signed:
      raise ValueError(f"format {p}: the EBSP PE model runs signed patterns only")
    pats.append(p)
  if not pats:
    raise ValueError("no formats given: one EBSP design needs at least one weight format")
  return (max(p.bits for p in pats), max(p.length for p in pats),
          max(p.max_shift for p in pats))


def ebsp_lut(length: int, activation_bits: int, filled_length: int | None = None) -> Component:
  """The shared activation LUT of an EBSP PE row: storage and fill logic of ``j * a``, j < 2^L.

  Only odd multiples are stored (even ones are wired shifts of them): ``2^(L-1)`` registers of
  ``a + L`` bits, filled by ``2^(L-1) - 1`` adders (3a = 2a + a, 5a = 4a + a, 7a = 8a - a, ...).
  ``energy_pj`` is the energy of one *fill* (all adders + register writes).

  ``filled_length``: a layer whose pattern is shorter (``l < L``, on a design built for
  several formats) fills only the ``2^(l-1)`` entries it reads, with ``2^(l-1) - 1`` of the
  adders; the other entries are clock-gated (not written). Area is the whole LUT's.
  """
  if length < 1:
    raise ValueError(f"length must be >= 1; got {length}")
  fl = length if filled_length is None else filled_length
  if not 1 <= fl <= length:
    raise ValueError(f"filled_length must be in [1, {length}]; got {filled_length}")
  width = activation_bits + length
  entries = 1 << (length - 1)
  adders = entries - 1
  reg = comp.register(width)
  add = comp.adder(width)
  area = entries * reg.area_um2 + adders * add.area_um2
  used = 1 << (fl - 1)
  energy = used * reg.energy_pj + (used - 1) * add.energy_pj
  note = f"{entries} x reg{width} + {adders} x add{width}"
  if fl != length:
    note += f"; fills {used} entries (L={fl})"
  return Component(f"lut{1 << length}x{width}", area, energy, "derived", note)


# ----------------------------------------------------------------------------------------------
# Baselines.


def eyeriss_pe(bits: int = 16, acc_bits: int = 16) -> PEModel:
  """Eyeriss PE arithmetic: ``bits x bits`` multiplier + ``acc_bits`` adder [eyeriss_jssc2017]."""
  parts = (Part(comp.multiplier(bits, bits)), Part(comp.adder(acc_bits)))
  return PEModel("eyeriss", float(bits), float(bits), float(bits), acc_bits, parts,
                 label=f"INT{bits} MAC")


def bitfusion_pe(weight_bits: int = 4, act_bits: int = 4, acc_bits: int = 32,
                 bricks_per_unit: int = 16) -> PEModel:
  """One Bit Fusion BitBrick with its shifter and adder-tree share [bitfusion_isca2018].

  A Fusion Unit of ``bricks_per_unit`` bricks computes ``bricks_per_unit / bricks_per_product``
  products per cycle and sums them in its adder tree (``bricks_per_unit - 1`` adders of 16
  bits, enough for the 8x8 mode's 16-bit products) before one accumulate (``acc_bits``).
  Each brick's output passes a variable shifter (0..12 in steps of 2, the 8x8 mode's shifts).
  """
  bw = math.ceil(weight_bits / 2)
  ba = math.ceil(act_bits / 2)
  per_product = bw * ba
  products_per_unit = bricks_per_unit / per_product
  parts = (
      Part(comp.multiplier(3, 3), uses_per_mac=per_product),                   # BitBrick
      Part(comp.barrel_shifter(6, 12, step=2), uses_per_mac=per_product),      # brick shifter
      Part(comp.adder(16), count=(bricks_per_unit - 1) / bricks_per_unit,
           uses_per_mac=(bricks_per_unit - 1) / products_per_unit, role="shared"),
      Part(comp.adder(acc_bits), count=1 / bricks_per_unit,
           uses_per_mac=1 / products_per_unit, role="shared"),
  )
  return PEModel("bitfusion", float(weight_bits), float(act_bits), float(act_bits), acc_bits,
                 parts, macs_per_cycle=1.0 / per_product,
                 label=f"BitBrick, {weight_bits}x{act_bits} b")


def wax_pe(bits: int = 8, acc_bits: int = 32) -> PEModel:
  """WAX MAC: ``bits x bits`` multiplier + ``acc_bits`` adder [wax_micro2019]."""
  parts = (Part(comp.multiplier(bits, bits)), Part(comp.adder(acc_bits)))
  return PEModel("wax", float(bits), float(bits), float(bits), acc_bits, parts,
                 label=f"{bits}-bit fixed-point MAC")


def olaccel_pe(bits: int = 4, outlier_bits: int = 16, outlier_fraction: float = 0.03,
               lanes: int = 16, act_group: int = 16, acc_bits: int = 32,
               outlier_index_bits: int = 4) -> PEModel:
  """OLAccel 4-bit PE with its shares of the outlier MACs [olaccel_isca2018].

  Args:
    bits: dense precision (4).
    outlier_bits: outlier precision (16).
    outlier_fraction: fraction of weights and of activations that are outliers (0.03).
    lanes: SIMD lanes per extra outlier-weight MAC (``outlier_bits x bits``).
    act_group: PEs per dedicated outlier-activation MAC (``outlier_bits x outlier_bits``).
    acc_bits: accumulator width.
    outlier_index_bits: bits of the position stored with each sparse outlier (derived: its
      lane within a ``lanes``-wide SIMD group, log2 16 = 4; the group is implied by the list's
      order).

  Returns:
    PE whose ``weight_bits``/``act_bits`` are the *average* stored bits per element:
    ``bits + f * (outlier_bits + outlier_index_bits)`` (a dense low-precision array plus a
    sparse list of outliers; an assumption about the storage format).
  """
  f = float(outlier_fraction)
  if not 0 <= f < 1:
    raise ValueError(f"outlier_fraction must be in [0, 1); got {outlier_fraction}")
  dense = (1 - f) * (1 - f)
  parts = (
      Part(comp.multiplier(bits, bits), uses_per_mac=dense),
      Part(comp.multiplier(outlier_bits, bits), count=1 / lanes, uses_per_mac=f * (1 - f),
           role="shared"),
      Part(comp.multiplier(outlier_bits, outlier_bits), count=1 / act_group,
           uses_per_mac=f, role="shared"),
      Part(comp.adder(acc_bits)),
  )
  eff = bits + f * (outlier_bits + outlier_index_bits)
  return PEModel("olaccel", eff, eff, eff, acc_bits, parts,
                 label=f"{bits}b + {outlier_bits}b outliers ({f:.0%})")


def pe_energy_per_mac_pj(pe: PEModel, activity: Activity = Activity()) -> float:
  """Convenience alias of :meth:`PEModel.energy_per_mac_pj`."""
  return pe.energy_per_mac_pj(activity)


def _part_energy_pj(part, activity: Activity) -> float:
  """Energy per MAC of one PE part, pJ: zero-weight gating and shift-0 bypass by its tag."""
  e = part.component.energy_pj * part.uses_per_mac
  if part.tag == "gated":
    e *= activity.nonzero_fraction
  elif part.tag == "shifter":
    e *= activity.nonzero_fraction * activity.shifted_fraction
  return e
