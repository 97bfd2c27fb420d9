"""Export workloads, architectures and mappings to ZigZag (``zigzag-dse`` 3.9.1) and run it.

* :func:`workload_to_zigzag`: layers as ZigZag's list-of-dicts workload (``Conv`` with the
  equation ``O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]``, the same dims as
  :meth:`ebsp_jax.hw.workload.Layer.loop_dims`; dense layers are 1x1 convs).
* :func:`accelerator_to_zigzag`: an :class:`~ebsp_jax.hw.arch.Accelerator` as ZigZag's
  hardware YAML dict. Per-access energies are *the same numbers* the local model uses:
  ZigZag charges ``r_cost``/``w_cost`` per access of ``bandwidth_max`` bits counted in units of
  ``bandwidth_min`` bits, so a port gets ``bandwidth_min = word_bits`` and
  ``bandwidth_max = bandwidth`` and costs scaled by ``bandwidth / word_bits``.
  The operational-array ``unit_energy`` is the PE's energy per MAC.
* :func:`mapping_to_zigzag`: a :class:`~ebsp_jax.hw.dataflow.Mapping` as a ZigZag mapping
  (spatial unrolling + complete ``temporal_ordering``, which makes ZigZag evaluate exactly
  that loop order, allocated to memories by its own rule).
* :func:`run_zigzag`: writes the three YAML files and calls
  ``zigzag.api.get_hardware_performance_zigzag``; with ``mapping=None`` ZigZag searches
  spatial and temporal mappings itself (LOMA).

What differs by construction (see ``docs/hardware.md``): ZigZag has no leakage; it rounds
transfers up to whole words per period; its latency includes on/off-loading phases.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import yaml

from ebsp_jax.hw.arch import Accelerator, MemLevel
from ebsp_jax.hw.dataflow import Mapping as LoopMapping
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Layer

_ZZ_OPERAND = {"W": "I2", "I": "I1", "O": "O"}


def layer_to_zigzag(layer: Layer, layer_id: int, precision: Mapping[str, float],
                    source_id: int | None = None) -> dict[str, Any]:
  """One layer as a ZigZag workload entry (precisions rounded up to whole bits)."""
  d = layer.loop_dims()
  ih, iw = layer.input_hw
  return {
      "id": layer_id,
      "name": layer.name,
      "operator_type": "Conv",
      "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
      "dimension_relations": [f"ix={layer.stride[1]}*ox+{layer.dilation[1]}*fx",
                              f"iy={layer.stride[0]}*oy+{layer.dilation[0]}*fy"],
      "loop_dims": ["B", "K", "G", "OX", "OY", "C", "FX", "FY"],
      "loop_sizes": [d["B"], d["K"], d["G"], d["OX"], d["OY"], d["C"], d["FX"], d["FY"]],
      "operand_precision": {"W": math.ceil(precision["W"]), "I": math.ceil(precision["I"]),
                            "O": math.ceil(precision["O"]),
                            "O_final": math.ceil(precision["O_final"])},
      "operand_source": {"I": layer_id if source_id is None else source_id},
      "pr_loop_dims": ["IX", "IY"],
      "pr_loop_sizes": [iw, ih],
      "padding": [list(layer.padding[1]), list(layer.padding[0])],
  }


def workload_to_zigzag(layers: Sequence[Layer], precision: Mapping[str, float]) -> list[dict]:
  """Layers as a ZigZag workload (each layer's input comes from the previous one)."""
  return [layer_to_zigzag(l, i, precision, i - 1 if i else 0) for i, l in enumerate(layers)]


def _ports(m: MemLevel) -> tuple[list[dict], float]:
  """ZigZag ports and the cost multiplier for one memory."""
  ops = [_ZZ_OPERAND[o] for o in m.operands]
  if m.kind in ("register", "regfile", "lut"):
    bw = m.word_bits
    ports = [
        {"name": "r_port_1", "type": "read", "bandwidth_min": bw, "bandwidth_max": bw,
         "allocation": [f"{o}, {'tl' if o != 'O' else 'tl'}" for o in ops]
         + [f"{o}, th" for o in ops if o == "O"]},
        {"name": "w_port_1", "type": "write", "bandwidth_min": bw, "bandwidth_max": bw,
         "allocation": [f"{o}, fh" for o in ops] + [f"{o}, fl" for o in ops if o == "O"]},
    ]
    return ports, 1.0
  bw_max = max(m.word_bits, int(m.bandwidth_bits))
  alloc = []
  for o in ops:
    alloc += [f"{o}, fh", f"{o}, tl"]
    if o == "O":
      alloc += [f"{o}, fl", f"{o}, th"]
  ports = [{"name": "rw_port_1", "type": "read_write", "bandwidth_min": m.word_bits,
            "bandwidth_max": bw_max, "allocation": alloc}]
  return ports, bw_max / m.word_bits


def accelerator_to_zigzag(acc: Accelerator, activity: Activity = Activity()) -> dict[str, Any]:
  """``acc`` as a ZigZag hardware description (a dict ready for ``yaml.safe_dump``)."""
  escale = acc.tech.energy_scale
  memories = {}
  for m in acc.levels:
    ports, mult = _ports(m)
    cap = m.capacity_bits if not math.isinf(m.capacity_bits) else 10 ** 14
    memories[m.name] = {
        "size": int(cap),
        "r_cost": float(m.read_pj * escale * mult),
        "w_cost": float(m.write_pj * escale * mult),
        "area": float(m.area_um2 * 1e-6),
        "latency": 1,
        "operands": [_ZZ_OPERAND[o] for o in m.operands],
        "ports": ports,
        "served_dimensions": list(m.served),
    }
  return {
      "name": f"{acc.name}_ebsp_jax",
      "memories": memories,
      "operational_array": {
          "unit_energy": float(acc.pe.energy_per_mac_pj(activity) * escale),
          "unit_area": float(acc.pe_area_um2 * 1e-6),
          "dimensions": ["D1", "D2"],
          "sizes": [int(acc.array[0]), int(acc.array[1])],
      },
  }


def mapping_to_zigzag(mapping: LoopMapping | None, acc: Accelerator,
                      temporal: bool = True) -> list[dict[str, Any]]:
  """A ZigZag mapping list: our spatial unrolling + (``temporal``) the complete temporal order.

  With ``temporal=False`` ZigZag searches the temporal mapping itself (LOMA) under our spatial
  unrolling; with ``mapping=None`` it also gets only the design's first spatial candidate (at
  full array size) as a starting point.
  """
  links = {"O": "O", "W": "I2", "I": "I1"}
  if mapping is None:
    d1, d2 = acc.spatial[0]
    sp = {"D1": [f"{d1[0]}, {acc.array[0]}"], "D2": [f"{d2[0]}, {acc.array[1]}"]}
    return [{"name": "default", "spatial_mapping": sp, "memory_operand_links": links}]
  sp = {}
  for arr, loops in (("D1", mapping.d1), ("D2", mapping.d2)):
    sp[arr] = [f"{d}, {f}" for d, f in loops] or ["K, 1"]
  out = {"name": "default", "spatial_mapping": sp, "memory_operand_links": links}
  if temporal:
    out["temporal_ordering"] = [[d, int(s)] for d, s in mapping.temporal]
  return [out]


def write_zigzag_inputs(directory: str, layers: Sequence[Layer], acc: Accelerator,
                        mapping: LoopMapping | None = None, activity: Activity = Activity(),
                        temporal: bool = True) -> dict[str, str]:
  """Writes ``workload.yaml``, ``accelerator.yaml`` and ``mapping.yaml``; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  paths = {k: os.path.join(directory, f"{k}.yaml") for k in ("workload", "accelerator", "mapping")}
  with open(paths["workload"], "w", encoding="utf-8") as f:
    yaml.safe_dump(workload_to_zigzag(layers, acc.precision), f, sort_keys=False)
  with open(paths["accelerator"], "w", encoding="utf-8") as f:
    yaml.safe_dump(accelerator_to_zigzag(acc, activity), f, sort_keys=False)
  with open(paths["mapping"], "w", encoding="utf-8") as f:
    yaml.safe_dump(mapping_to_zigzag(mapping, acc, temporal), f, sort_keys=False)
  return paths


def zigzag_available() -> bool:
  """Whether ``zigzag-dse`` is importable."""
  try:
    import zigzag.api  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    return True
  except Exception:  # pylint: disable=broad-except
    return False


def run_zigzag(layer: Layer, acc: Accelerator, mapping: LoopMapping | None = None,
               opt: str = "energy", activity: Activity = Activity(), lpf_limit: int = 6,
               temporal: bool = True) -> dict[str, Any]:
  """Runs ZigZag on one layer.

  Args:
    layer: the layer.
    acc: the design (exported with :func:`accelerator_to_zigzag`).
    mapping: a fixed mapping to evaluate, or None to let ZigZag search.
    temporal: pass ``mapping``'s temporal order (False: ZigZag searches it under our spatial
      unrolling).
    opt: ZigZag's criterion (``'energy'``, ``'latency'``, ``'EDP'``).
    activity: PE activity (MAC energy).
    lpf_limit: ZigZag LOMA's loop-prime-factor limit (search mode).

  Returns:
    ``{'energy_pj', 'mac_energy_pj', 'mem_energy_pj', 'latency_cycles', 'ideal_cycles',
    'mem_energy_by_level': {name: pJ}, 'spatial_mapping', 'temporal_mapping'}``.
  """
  from zigzag.api import get_hardware_performance_zigzag  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    paths = write_zigzag_inputs(tmp, [layer], acc, mapping, activity, temporal)
    logging.disable(logging.CRITICAL)
    try:
      with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        energy, latency, cmes = get_hardware_performance_zigzag(
            workload=paths["workload"], accelerator=paths["accelerator"],
            mapping=paths["mapping"], opt=opt, dump_folder=os.path.join(tmp, "out"),
            lpf_limit=lpf_limit, loma_show_progress_bar=False)
    finally:
      logging.disable(logging.NOTSET)
  cme = cmes[0][1][0][0] if isinstance(cmes[0][1], list) and cmes[0][1] else cmes[0][0]
  by_level: dict[str, float] = {}
  names = [m.name for m in acc.levels]
  for op, lst in cme.mem_energy_breakdown.items():
    zz_op = str(op)
    ours = {"W": "W", "I": "I", "O": "O"}.get(zz_op, zz_op)
    hier = [m.name for m in acc.hierarchy(ours)] if ours in ("W", "I", "O") else names
    for i, e in enumerate(lst):
      key = hier[i] if i < len(hier) else f"{zz_op}{i}"
      by_level[key] = by_level.get(key, 0.0) + float(e)
  return {
      "energy_pj": float(energy),
      "mac_energy_pj": float(cme.mac_energy),
      "mem_energy_pj": float(cme.mem_energy),
      "latency_cycles": float(latency),
      "ideal_cycles": float(getattr(cme, "ideal_cycle", float("nan"))),
      "mem_energy_by_level": by_level,
      "spatial_mapping": str(getattr(cme, "spatial_mapping", "")),
      "temporal_mapping": str(getattr(cme, "temporal_mapping", "")),
  }
