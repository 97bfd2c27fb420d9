"""Accelerators at equal area: build any registered design (:mod:`ebsp_jax.hw.designs`).

:func:`build_accelerator` turns a registered :class:`~ebsp_jax.hw.designs.Design` into an
:class:`~ebsp_jax.hw.spec.Accelerator`: its PE, its local memories, the shared global buffer
and DRAM, and as many PEs as fit the area budget (or a given count). Adding a design does not
touch this module: it registers itself in :mod:`ebsp_jax.hw.designs`.

Designs of the EBSP paper (every number cited in :mod:`ebsp_jax.hw.tech` / :mod:`ebsp_jax.hw.pe`):

=========  ===========================================================  ======================
design     per-PE / local storage                                       spatial unrolling
=========  ===========================================================  ======================
eyeriss    W spad 224x16b SRAM, I spad 12x16b, psum spad 24x16b          D1: FY(,C)  D2: OY(,K)
           (row-stationary [eyeriss_isca2016])
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

import math
from typing import Sequence

import numpy as np

from ebsp_jax.hw import area as area_mod
from ebsp_jax.hw import designs
from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw import tech as tech_mod
from ebsp_jax.hw.designs.base import Formats
from ebsp_jax.hw.designs.olaccel import cycle_factor as olaccel_cycle_factor
from ebsp_jax.hw.pe import PEModel
from ebsp_jax.hw.spec import (CATEGORIES, OPERANDS, Accelerator, ConfigError, MemLevel,  # noqa: F401
                              dram_level, lut_level, register_level, sram_level)
from ebsp_jax.hw.tech import TechParams

#: The EBSP paper's designs, in its order (the default design set).
ACCELERATORS = tuple(n for n, d in designs.DESIGNS.items() if d.in_paper_table)
#: EBSP activation widths, bits (the training and integer paths stop at 16 too).
ACTIVATION_BITS_RANGE = (1, 16)
#: Accumulator widths, bits; each design also needs at least one product's width
#: (:func:`accumulated_product`).
ACC_BITS_RANGE = (2, 64)


def _formats(pattern_bits=6, pattern_length=3, activation_bits=8, acc_bits=32,
             weight_format="raw", outlier_fraction=0.03, bitfusion_bits=4,
             pattern_max_shift=None) -> Formats:
  return Formats(pattern_bits=pattern_bits, pattern_length=pattern_length,
                 activation_bits=activation_bits, acc_bits=acc_bits, weight_format=weight_format,
                 outlier_fraction=outlier_fraction, bitfusion_bits=bitfusion_bits,
                 pattern_max_shift=pattern_max_shift)


def make_pe(name: str, *, pattern_bits: int = 6, pattern_length: int = 3,
            activation_bits: int = 8, acc_bits: int = 32, weight_format: str = "raw",
            outlier_fraction: float = 0.03, bitfusion_bits: int = 4) -> PEModel:
  """The PE of design ``name`` (baselines at their paper bit widths, EBSP as given).

  ``bitfusion_bits``: Bit Fusion's weight and activation width (the paper's table says 4; its
  accuracy slide calls Bit Fusion "full INT8").
  """
  return designs.get(name).make_pe(_formats(pattern_bits, pattern_length, activation_bits,
                                            acc_bits, weight_format, outlier_fraction,
                                            bitfusion_bits))


def accumulated_product(name: str, *, pattern_bits: int = 6, activation_bits: int = 8,
                        bitfusion_bits: int = 4) -> tuple[int, int] | None:
  """``(weight_bits, activation_bits)`` of the products design ``name`` adds in its ``acc_bits``
  accumulator (``None``: Eyeriss keeps its own 16-bit psums).

  A signed ``w``-bit by ``a``-bit product needs ``w + a`` bits (EBSP: sign-magnitude weights of
  ``pattern_bits`` times unsigned activations); OLAccel's outlier products go to its outlier
  MACs, so its PE accumulates 4 x 4-bit products.
  """
  return designs.get(name).accumulated_product(
      _formats(pattern_bits=pattern_bits, activation_bits=activation_bits,
               bitfusion_bits=bitfusion_bits))


def _check_int(what: str, value, lo: int, hi: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ConfigError(f"{what} must be an int in [{lo}, {hi}]; got {value!r}")
  if not lo <= value <= hi:
    raise ConfigError(f"{what}={value} is out of range: allowed [{lo}, {hi}]")


def check_formats(names: Sequence[str], *, pattern_bits: int = 6, pattern_length: int = 3,
                  activation_bits: int = 8, acc_bits: int = 32, weight_format: str = "raw",
                  bitfusion_bits: int = 4, pattern_max_shift: int | None = None) -> None:
  """Checks that every design in ``names`` can be built with these number formats.

  The activation width must be in :data:`ACTIVATION_BITS_RANGE`, the accumulator width in
  :data:`ACC_BITS_RANGE` and at least as wide as one product of every design
  (:func:`accumulated_product`); EBSP's pattern and Bit Fusion's width must be valid.

  Raises:
    ConfigError: one line naming the value, the design that needs more and what is allowed.
  """
  _check_int("activation_bits", activation_bits, *ACTIVATION_BITS_RANGE)
  _check_int("acc_bits", acc_bits, *ACC_BITS_RANGE)
  f = _formats(pattern_bits, pattern_length, activation_bits, acc_bits, weight_format,
               bitfusion_bits=bitfusion_bits, pattern_max_shift=pattern_max_shift)
  widest = None
  for n in names:
    d = designs.get(n)          # unknown name
    d.make_pe(f)                # invalid pattern or width
    ops = d.accumulated_product(f)
    if ops is not None and (widest is None or sum(ops) > sum(widest[1])):
      widest = (n, ops)
  if widest is not None and acc_bits < sum(widest[1]):
    n, (w, a) = widest
    raise ConfigError(f"acc_bits={acc_bits} is narrower than one {w}x{a}-bit product of {n} "
                      f"({w + a} bits); allowed: [{w + a}, {ACC_BITS_RANGE[1]}]")


def build_accelerator(name: str, *, area_mm2: float = area_mod.PAPER_AREA_MM2,
                      area_scope: str = "pe+local", tech: TechParams = TechParams(),
                      pattern_bits: int = 6, pattern_length: int = 3, activation_bits: int = 8,
                      acc_bits: int = 32, weight_format: str = "raw",
                      glb_bytes: int = tech_mod.DEFAULT_GLB_BYTES,
                      glb_bandwidth_bits: int = tech_mod.DEFAULT_GLB_BANDWIDTH_BITS,
                      outlier_fraction: float = 0.03, pe_count: int | None = None,
                      wax_subarray_bytes: int = 8192, bitfusion_bits: int = 4,
                      pattern_max_shift: int | None = None) -> Accelerator:
  """Builds design ``name`` at an equal area budget.

  Args:
    name: a registered design (:data:`ebsp_jax.hw.designs.DESIGNS`).
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
    pattern_max_shift: EBSP's shifter range when the design runs several per-layer formats
      (default: the pattern's own); :func:`build_ebsp_for` sets it.

  Raises:
    ConfigError: unknown name, invalid pattern, activation width outside
      :data:`ACTIVATION_BITS_RANGE`, an accumulator narrower than one product
      (:func:`check_formats`), zero bandwidth, or a budget below one PE.
  """
  design = designs.get(name)
  check_formats([name], pattern_bits=pattern_bits, pattern_length=pattern_length,
                activation_bits=activation_bits, acc_bits=acc_bits, weight_format=weight_format,
                bitfusion_bits=bitfusion_bits, pattern_max_shift=pattern_max_shift)
  if not glb_bandwidth_bits > 0:
    raise ConfigError(f"global-buffer bandwidth must be > 0 bits/cycle; got {glb_bandwidth_bits}")
  if not glb_bytes > 0:
    raise ConfigError(f"global-buffer size must be > 0 bytes; got {glb_bytes}")
  if area_scope not in area_mod.AREA_SCOPES:
    raise ConfigError(f"area scope must be one of {area_mod.AREA_SCOPES}; got {area_scope!r}")
  f = _formats(pattern_bits, pattern_length, activation_bits, acc_bits, weight_format,
               outlier_fraction, bitfusion_bits, pattern_max_shift)
  pe = design.make_pe(f)
  local = design.local_levels(pe, tech, f, {"wax_subarray_bytes": wax_subarray_bytes})
  glb = sram_level("glb", OPERANDS, glb_bytes, 64, glb_bandwidth_bits, tech, ("D1", "D2"),
                   "buffer")
  levels = tuple(local) + (glb, dram_level(tech))
  d1_fixed = design.d1_fixed

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
  acc = Accelerator(name=name, pe=pe, array=array, levels=levels, spatial=design.spatial,
                    pe_count=n, pe_area_um2=breakdown["total"], area_mm2=area_mm2,
                    area_scope=area_scope, pe_area_breakdown=tuple(sorted(breakdown.items())),
                    cycle_factor=design.cycle_factor(f), tech=tech, label=design.label(f, pe),
                    act_sparsity=design.act_sparsity, dram_codec=design.dram_codec,
                    mapping_generator=design.mapping_generator)
  acc.validate()
  return acc


def ebsp_design_formats(formats, weight_format: str = "raw") -> dict[str, int | None]:
  """``{'pattern_bits', 'pattern_length', 'pattern_max_shift'}`` of the one EBSP design that
  runs every format in ``formats`` (``BitPattern`` s or ``(bits, length)`` pairs, e.g. every
  layer's): the widest bits, the longest pattern, the largest shift
  (:func:`ebsp_jax.hw.pe.ebsp_support`); ``pattern_max_shift`` is ``None`` when it is the
  pattern's own.

  Raises:
    ConfigError: no format, an invalid or unsigned one, or several formats with
      ``weight_format='code'`` (per-layer formats are modelled for raw storage; one line).
  """
  formats = list(formats)
  try:
    bits, length, shift = pe_mod.ebsp_support(formats)
  except (TypeError, ValueError) as e:
    raise ConfigError(str(e)) from None
  distinct = {(f.bits, f.length) if hasattr(f, "bits") else (int(f[0]), int(f[1]))
              for f in formats}
  if weight_format != "raw" and len(distinct) > 1:
    raise ConfigError(f"weight_format={weight_format} with several per-layer formats: one EBSP "
                      "design for several formats is modelled for weight_format=raw only")
  own = bits - 1 - length
  return {"pattern_bits": bits, "pattern_length": length,
          "pattern_max_shift": None if shift == own else shift}


def build_ebsp_for(formats, **kwargs) -> Accelerator:
  """The one EBSP design (equal area etc., as :func:`build_accelerator`'s ``kwargs``) that runs
  every format in ``formats``; each layer then runs on it through
  :func:`ebsp_jax.hw.designs.ebsp.layer_view` (``evaluate_network(..., layer_formats=...)``).

  Raises:
    ConfigError: see :func:`ebsp_design_formats` and :func:`build_accelerator`; giving the
      pattern in ``kwargs`` too.
  """
  clash = {"pattern_bits", "pattern_length", "pattern_max_shift"} & set(kwargs)
  if clash:
    raise ConfigError(f"{', '.join(sorted(clash))}: set by the formats the design runs")
  formats = list(formats)
  return build_accelerator("ebsp", **ebsp_design_formats(
      formats, kwargs.get("weight_format", "raw")), **kwargs)


def build_all(names: Sequence[str] = ACCELERATORS, **kwargs) -> dict[str, Accelerator]:
  """:func:`build_accelerator` for each name (same keyword arguments)."""
  return {n: build_accelerator(n, **kwargs) for n in names}
