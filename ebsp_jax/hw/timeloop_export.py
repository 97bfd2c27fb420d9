"""Export layers and architectures to Timeloop / Accelergy YAML (v0.3 formats).

Files written by :func:`write_timeloop`:

* ``problem_<i>.yaml``: each layer as Timeloop's ``CNN-Layer`` problem (the shape is written
  out in full). Timeloop's convention: R/S = kernel width/height, P/Q = output width/height,
  so ``R = Layer.s``, ``S = Layer.r``, ``P = Layer.q``, ``Q = Layer.p``. Timeloop's CNN shape
  has no groups: a grouped layer is exported per group (``C/groups``, ``M/groups``) and the
  group count is recorded in a comment and in ``layers.yaml``.
* ``arch.yaml``: the storage hierarchy as nested ``subtree``/``local`` lists: DRAM > chip
  (global buffer) > [row/tile containers for levels shared by one array dim] > PE[] with its
  registers and the MAC. Word widths, depths and bandwidths come from
  :class:`~ebsp_jax.hw.arch.MemLevel`.
* ``constraints.yaml``: which operand each level keeps (``bypass`` lists), so Timeloop's
  mapper respects the same per-operand hierarchy as the local model.
* ``ERT.yaml`` / ``ART.yaml``: Accelergy energy and area reference tables with *the same*
  per-access energies (pJ per word) and areas (um^2) as the local model, so an Accelergy-free
  Timeloop run (``timeloop-model`` with the ERT) costs accesses identically.

Timeloop is not installed here: the export is validated by parsing it back
(``timeloop_export_test.py``); mapping export is not provided (Timeloop's mapper searches).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import yaml

from ebsp_jax.hw.arch import Accelerator, MemLevel
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Layer

_DATASPACE = {"W": "Weights", "I": "Inputs", "O": "Outputs"}

CNN_SHAPE: dict[str, Any] = {
    "name": "CNN-Layer",
    "dimensions": ["C", "M", "R", "S", "N", "P", "Q"],
    "coefficients": [{"name": "Wstride", "default": 1}, {"name": "Hstride", "default": 1},
                     {"name": "Wdilation", "default": 1}, {"name": "Hdilation", "default": 1}],
    "data-spaces": [
        {"name": "Weights", "projection": [[["C"]], [["M"]], [["R"]], [["S"]]]},
        {"name": "Inputs", "projection": [[["N"]], [["C"]],
                                          [["R", "Wdilation"], ["P", "Wstride"]],
                                          [["S", "Hdilation"], ["Q", "Hstride"]]]},
        {"name": "Outputs", "projection": [[["N"]], [["M"]], [["P"]], [["Q"]]],
         "read-write": True},
    ],
}


def problem_yaml(layer: Layer) -> dict[str, Any]:
  """One layer (one group) as a Timeloop problem dict."""
  g = layer.groups
  return {"problem": {
      "shape": CNN_SHAPE,
      "instance": {"C": layer.c // g, "M": layer.m // g, "R": layer.s, "S": layer.r,
                   "N": layer.n, "P": layer.q, "Q": layer.p,
                   "Wstride": layer.stride[1], "Hstride": layer.stride[0],
                   "Wdilation": layer.dilation[1], "Hdilation": layer.dilation[0]}}}


def _component(m: MemLevel, datawidth: float, escale: float) -> dict[str, Any]:
  if m.kind == "dram":
    return {"name": m.name, "class": "DRAM",
            "attributes": {"type": "LPDDR4", "width": m.word_bits, "datawidth": datawidth}}
  depth = 1 if math.isinf(m.capacity_bits) else max(1, int(m.capacity_bits // m.word_bits))
  cls = "smartbuffer_SRAM" if m.kind == "sram" else "smartbuffer_RF"
  return {"name": m.name, "class": cls,
          "attributes": {"depth": depth, "width": m.word_bits, "datawidth": datawidth,
                         "read_bandwidth": m.bandwidth_bits / m.word_bits,
                         "write_bandwidth": m.bandwidth_bits / m.word_bits,
                         "energy_read_pj": m.read_pj * escale,
                         "energy_write_pj": m.write_pj * escale}}


def arch_yaml(acc: Accelerator) -> dict[str, Any]:
  """The architecture as a Timeloop v0.3 ``architecture`` dict.

  Raises:
    ValueError: the hierarchy shares levels along both D1 and D2 separately (not nestable).
  """
  d1, d2 = acc.array
  dw = max(acc.precision["W"], acc.precision["I"])
  esc = acc.tech.energy_scale
  whole = [m for m in acc.levels if set(m.served) == {"D1", "D2"}]
  by_d1 = [m for m in acc.levels if m.served == ("D1",)]   # one per D2 index (a tile)
  by_d2 = [m for m in acc.levels if m.served == ("D2",)]   # one per D1 index (a row)
  per_pe = [m for m in acc.levels if not m.served]
  if by_d1 and by_d2:
    raise ValueError(f"{acc.name}: levels shared along D1 and along D2 cannot be nested")
  dram = [m for m in whole if m.kind == "dram"]
  chip_local = [m for m in whole if m.kind != "dram"]
  mac = {"name": f"mac[0..0]", "class": "intmac",
         "attributes": {"datawidth": dw, "energy_per_mac_pj": acc.pe.energy_per_mac_pj() * esc}}
  pe_node: dict[str, Any] = {"local": [_component(m, dw, esc) for m in per_pe] + [mac]}
  if by_d1:
    pe_node["name"] = f"PE[0..{d1 - 1}]"
    inner = {"name": f"tile[0..{d2 - 1}]", "local": [_component(m, dw, esc) for m in by_d1],
             "subtree": [pe_node]}
  elif by_d2:
    pe_node["name"] = f"PE[0..{d2 - 1}]"
    inner = {"name": f"row[0..{d1 - 1}]", "local": [_component(m, dw, esc) for m in by_d2],
             "subtree": [pe_node]}
  else:
    pe_node["name"] = f"PE[0..{d1 * d2 - 1}]"
    inner = pe_node
  chip = {"name": "chip", "attributes": {"technology": f"{acc.tech.node_nm:g}nm"},
          "local": [_component(m, dw, esc) for m in chip_local], "subtree": [inner]}
  return {"architecture": {"version": 0.3, "subtree": [
      {"name": "system", "local": [_component(m, dw, esc) for m in dram], "subtree": [chip]}]}}


def constraints_yaml(acc: Accelerator) -> dict[str, Any]:
  """Per-level keep/bypass constraints mirroring the per-operand hierarchy."""
  targets = []
  for m in acc.levels:
    keep = [_DATASPACE[o] for o in ("W", "I", "O") if o in m.operands]
    bypass = [_DATASPACE[o] for o in ("W", "I", "O") if o not in m.operands]
    targets.append({"target": m.name, "type": "bypass", "keep": keep, "bypass": bypass})
  return {"architecture_constraints": {"targets": targets}}


def _path(acc: Accelerator, m: MemLevel) -> str:
  if set(m.served) == {"D1", "D2"}:
    return f"system.{m.name}" if m.kind == "dram" else f"system.chip.{m.name}"
  if m.served == ("D1",):
    return f"system.chip.tile[0..{acc.array[1] - 1}].{m.name}"
  if m.served == ("D2",):
    return f"system.chip.row[0..{acc.array[0] - 1}].{m.name}"
  return f"system.chip.PE.{m.name}"


def ert_yaml(acc: Accelerator, activity: Activity = Activity()) -> dict[str, Any]:
  """Accelergy ERT with the local model's per-access energies (pJ per word access)."""
  esc = acc.tech.energy_scale
  tables = [{"name": _path(acc, m), "actions": [
      {"name": "read", "arguments": None, "energy": m.read_pj * esc},
      {"name": "write", "arguments": None, "energy": m.write_pj * esc},
      {"name": "idle", "arguments": None, "energy": 0.0}]} for m in acc.levels]
  tables.append({"name": "system.chip.PE.mac", "actions": [
      {"name": "compute", "arguments": None,
       "energy": acc.pe.energy_per_mac_pj(activity) * esc},
      {"name": "idle", "arguments": None, "energy": 0.0}]})
  return {"ERT": {"version": 0.3, "tables": tables}}


def art_yaml(acc: Accelerator) -> dict[str, Any]:
  """Accelergy ART (area per component instance, um^2)."""
  s = acc.tech.area_scale
  tables = [{"name": _path(acc, m), "area": m.area_um2 * s} for m in acc.levels]
  tables.append({"name": "system.chip.PE.mac", "area": acc.pe.area_um2() * s})
  return {"ART": {"version": 0.3, "tables": tables}}


def write_timeloop(directory: str, layers: Sequence[Layer], acc: Accelerator) -> list[str]:
  """Writes the problem, arch, constraints, ERT and ART files; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  paths = []

  def dump(name: str, obj: Any, header: str = "") -> None:
    p = os.path.join(directory, name)
    with open(p, "w", encoding="utf-8") as f:
      if header:
        f.write(header)
      yaml.safe_dump(obj, f, sort_keys=False)
    paths.append(p)

  dump("arch.yaml", arch_yaml(acc), f"# {acc.name}: {acc.array[0]}x{acc.array[1]} MAC units, "
       f"generated by ebsp_jax.hw.timeloop_export\n")
  dump("constraints.yaml", constraints_yaml(acc))
  dump("ERT.yaml", ert_yaml(acc))
  dump("ART.yaml", art_yaml(acc))
  index = []
  for i, layer in enumerate(layers):
    name = f"problem_{i:03d}.yaml"
    dump(name, problem_yaml(layer), f"# {layer.name}: groups={layer.groups} (one group shown), "
         f"repeat={layer.repeat}\n")
    index.append({"file": name, "layer": layer.name, "groups": layer.groups,
                  "repeat": layer.repeat, "macs": layer.macs})
  dump("layers.yaml", {"layers": index})
  return paths
