"""ZeNA (Kim, Ahn, Yoo, IEEE Design & Test 2018): a zero-aware accelerator, 16- or 8-bit.

The baseline OLAccel compares against (ISCA 2018): fixed-point MACs that skip zero
activations (and zero weights of pruned networks; dense weights here). Not in the EBSP paper's
table, so not in the default design set; its setting is the OLAccel comparison platform
(:func:`ebsp_jax.hw.designs.olaccel.comparison_platform`).
"""

from __future__ import annotations

import math

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.designs import olaccel
from ebsp_jax.hw.designs.base import Design, Formats, register
from ebsp_jax.hw.spec import ConfigError, register_level

#: ZeNA widths the OLAccel paper compares with.
WIDTHS = (16, 8)


def zena_pe(bits: int, acc_bits: int = 32):
  """A ``bits x bits`` MAC with an ``acc_bits`` accumulator (16-bit ZeNA: 32-bit psums)."""
  if bits not in WIDTHS:
    raise ConfigError(f"ZeNA is compared at 16 or 8 bits; got {bits}")
  p = pe_mod.wax_pe(bits, acc_bits)
  return pe_mod.PEModel("zena", float(bits), float(bits), float(bits), acc_bits, p.parts,
                        label=f"INT{bits} MAC, zero skipping")


def make_pe(f: Formats):
  return zena_pe(16, max(f.acc_bits, 32))


def local_levels(pe, tech, f: Formats, opts):
  del f, opts
  w, a, p = math.ceil(pe.weight_bits), math.ceil(pe.act_bits), pe.psum_bits
  return [register_level("reg_w", ("W",), 1, w, tech), register_level("reg_i", ("I",), 1, a, tech),
          register_level("reg_o", ("O",), 1, p, tech)]


def olaccel2018(*, bits: int = 16, **kw):
  """ZeNA at ``bits`` on the OLAccel comparison platform."""
  return olaccel.comparison_platform("zena", zena_pe(bits), **kw)


DESIGN = register(Design(
    name="zena", title="ZeNA (IEEE D&T 2018)", source="zena_dt2018", make_pe=make_pe,
    local_levels=local_levels, spatial=olaccel.SPATIAL, accumulated_product=lambda f: None,
    label=lambda f, pe: pe.label, act_sparsity="skip", in_paper_table=False,
    settings={"olaccel_isca2018": olaccel2018}))
