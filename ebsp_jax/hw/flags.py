"""absl flags of the hardware design settings, shared by the command lines that cost designs.

``experiments/hardware.py`` (the report) and ``experiments/search.py`` (the per-layer format
search) define the same flags, with the same names, defaults and help, through
:func:`define_flags`, and turn them into the same design through :func:`ebsp_kwargs` and
:func:`tech`; :func:`settings` is the JSON record both write, so a search result and the
report of its formats (``hardware.py --layer_formats``) can be checked to use identical
settings (:func:`differences`).
"""

from __future__ import annotations

from typing import Any, Mapping

from absl import flags

from ebsp_jax.hw import tech as tech_mod

FLAGS = flags.FLAGS

#: Flag names of the design settings (the mapper preset's name is the caller's).
DESIGN_FLAGS = ("activation_bits", "acc_bits", "weight_format", "area_mm2", "area_scope",
                "glb_kib", "glb_bandwidth_bits", "dram_bytes_per_cycle", "dram_pj_per_64b",
                "clock_mhz", "node_nm", "vdd", "sram_energy", "leakage", "objective")


def define_flags(flag_values: flags.FlagValues = FLAGS, mapper_flag: str = "search") -> None:
  """Defines the design-setting flags and the mapper preset flag ``mapper_flag``."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_integer("activation_bits", 8, "EBSP activation bits.", **fv)
  flags.DEFINE_integer("acc_bits", 32, "Accumulator bits of the 4/6/8-bit designs.", **fv)
  flags.DEFINE_enum("weight_format", "raw", ["raw", "code"],
                    "EBSP weight storage: raw sign-magnitude (LOD in the PE) or index codes.",
                    **fv)
  flags.DEFINE_float("area_mm2", 0.32, "Equal-area budget of every PE array, mm^2.", **fv)
  flags.DEFINE_enum("area_scope", "pe+local", ["arith", "pe", "pe+local"],
                    "What the area budget covers (see ebsp_jax/hw/area.py).", **fv)
  flags.DEFINE_integer("glb_kib", 108, "Global buffer per design, KiB.", **fv)
  flags.DEFINE_integer("glb_bandwidth_bits", tech_mod.DEFAULT_GLB_BANDWIDTH_BITS,
                       "Global-buffer bandwidth, bits/cycle (Eyeriss's 27 banks x 64 b).", **fv)
  flags.DEFINE_float("dram_bytes_per_cycle", 16.0, "DRAM bandwidth, bytes/cycle.", **fv)
  flags.DEFINE_float("dram_pj_per_64b", 1300.0, "DRAM energy per 64 bits, pJ (1300-2600).",
                     **fv)
  flags.DEFINE_float("clock_mhz", 500.0, "Clock, MHz.", **fv)
  flags.DEFINE_float("node_nm", 45.0, "Technology node (classical scaling from 45 nm).", **fv)
  flags.DEFINE_float("vdd", 0.9, "Supply at --node_nm, V.", **fv)
  flags.DEFINE_enum("sram_energy", "horowitz", ["horowitz", "cacti"], "SRAM energy source.",
                    **fv)
  flags.DEFINE_enum("leakage", "itrs-lop", ["itrs-lop", "itrs-hp", "none"],
                    "Leakage device type.", **fv)
  flags.DEFINE_enum("objective", "edp", ["energy", "latency", "edp"], "Mapper objective.", **fv)
  flags.DEFINE_enum(mapper_flag, "default", ["fast", "default", "thorough"], "Mapper effort.",
                    **fv)


def tech(flag_values: flags.FlagValues = FLAGS) -> tech_mod.TechParams:
  """The technology parameters of the flags (``ValueError`` with one line if invalid)."""
  f = flag_values
  return tech_mod.TechParams(node_nm=f.node_nm, vdd=f.vdd, sram_energy=f.sram_energy,
                             leakage_device=f.leakage, dram_pj_per_64b=f.dram_pj_per_64b,
                             dram_bytes_per_cycle=f.dram_bytes_per_cycle, clock_mhz=f.clock_mhz)


def ebsp_kwargs(flag_values: flags.FlagValues = FLAGS) -> dict[str, Any]:
  """:func:`ebsp_jax.hw.build_accelerator` keyword arguments of the flags for EBSP, other
  than its pattern (``area_mm2``, ``area_scope``, ``tech``, ``activation_bits``, ``acc_bits``,
  ``weight_format``, ``glb_bytes``, ``glb_bandwidth_bits``)."""
  f = flag_values
  return dict(area_mm2=f.area_mm2, area_scope=f.area_scope, tech=tech(f),
              activation_bits=f.activation_bits, acc_bits=f.acc_bits,
              weight_format=f.weight_format, glb_bytes=f.glb_kib * 1024,
              glb_bandwidth_bits=f.glb_bandwidth_bits)


def settings(flag_values: flags.FlagValues = FLAGS, mapper_flag: str = "search"
             ) -> dict[str, Any]:
  """``{flag: value}`` of every design flag and ``'mapper_search'`` (the JSON record)."""
  out = {k: flag_values[k].value for k in DESIGN_FLAGS}
  out["mapper_search"] = flag_values[mapper_flag].value
  return out


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
  """``'name: A vs B'`` for every setting of :func:`settings` that ``a`` and ``b`` give
  differently (a setting one of them lacks counts as different)."""
  out = []
  for k in DESIGN_FLAGS + ("mapper_search",):
    if a.get(k, "(absent)") != b.get(k, "(absent)"):
      out.append(f"{k}: {a.get(k, '(absent)')} vs {b.get(k, '(absent)')}")
  return out
