"""Export workloads, architectures and mappings to ZigZag (``zigzag-dse`` 3.9.1), run it, compare.

* :func:`workload_to_zigzag`: layers as ZigZag's list-of-dicts workload (``Conv`` with the
  equation ``O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]``, the same dims as
  :meth:`ebsp_jax.hw.workload.Layer.loop_dims`; dense layers are 1x1 convs).
* :func:`accelerator_to_zigzag`: an :class:`~ebsp_jax.hw.arch.Accelerator` as ZigZag's
  hardware YAML dict. Per-access energies are *the same numbers* the local model uses:
  ZigZag charges ``r_cost``/``w_cost`` per access of ``bandwidth_max`` bits counted in units of
  ``bandwidth_min`` bits, so a port gets ``bandwidth_min = word_bits`` and
  ``bandwidth_max = bandwidth`` and costs scaled by ``bandwidth / word_bits`` (a port
  narrower than a word: ``bandwidth_min = bandwidth_max = bandwidth``). A memory that
  holds several operands gets one port per operand (``ports='per_operand'``, a banked buffer,
  the default) or one port for all (``'shared'``, a single-ported memory, see
  :data:`PORT_MODES`). The operational-array ``unit_energy`` is the PE's energy per MAC.
* :func:`mapping_to_zigzag`: a :class:`~ebsp_jax.hw.dataflow.Mapping` as a ZigZag mapping
  (spatial unrolling + complete ``temporal_ordering``, which makes ZigZag evaluate exactly
  that loop order, allocated to memories by its own rule).
* :func:`shipped_hardware` / :func:`accelerator_from_zigzag`: one of ZigZag's own example
  architectures (e.g. ``eyeriss_like``) as shipped, and the same description as an
  :class:`~ebsp_jax.hw.arch.Accelerator` with ZigZag's per-access energies, so that this
  model's access counting can be checked with costs that are not ours.
* :func:`run_zigzag`: writes the three YAML files, calls
  ``zigzag.api.get_hardware_performance_zigzag`` and returns energies, the latency and its
  parts, per-level accesses and the evaluated mapping; with ``mapping=None`` ZigZag searches
  spatial and temporal mappings itself (LOMA).
* :func:`compare`: one layer's on-chip memory energy, DRAM energy, MAC energy and cycles,
  ours against ZigZag's, each with its ratio.
* :func:`unexported` / :func:`exportable`: what of a design ZigZag is not given (sliding
  windows, serial transfers, zero gating beyond the MAC energy, DRAM codecs, cycle factors,
  ...), and the design without it, on which this model counts what ZigZag is asked to count.

What differs by construction (see ``docs/hardware.md`` section 7): ZigZag has no leakage; it
rounds transfers up to whole words per period; its latency adds on/off-loading phases and has
no per-MAC cycle factor (OLAccel's outlier serialisation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import yaml

from ebsp_jax.hw import pe as pe_mod
from ebsp_jax.hw.spec import Accelerator, MemLevel
from ebsp_jax.hw.components import Component
from ebsp_jax.hw.dataflow import DIMS, LayerCost
from ebsp_jax.hw.dataflow import Mapping as LoopMapping
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Layer

_ZZ_OPERAND = {"W": "I2", "I": "I1", "O": "O"}
_OUR_OPERAND = {v: k for k, v in _ZZ_OPERAND.items()}
#: How a memory holding several operands is exported. ``'per_operand'``: one read-write port
#: per operand, each of the memory's full bandwidth (a banked buffer: ZigZag checks every
#: operand's transfers against the bandwidth, not their sum, which the local model bounds).
#: ``'shared'``: one read-write port for all operands (a single-ported memory: ZigZag runs the
#: operands' transfers of a period one after another, each for at least one whole cycle).
PORT_MODES = ("per_operand", "shared")
#: The four transfer directions, as :class:`~ebsp_jax.hw.dataflow.LevelAccess` names them,
#: with ZigZag's names.
DIRECTIONS = {"rd_low": "rd_out_to_low", "wr_low": "wr_in_by_low",
              "rd_high": "rd_out_to_high", "wr_high": "wr_in_by_high"}
#: ZigZag's own precisions for an ONNX layer without precision attributes (8-bit weights and
#: activations, 2 x 8-bit partial sums): the precisions of its example architectures.
ZIGZAG_DEFAULT_PRECISION = {"W": 8, "I": 8, "O": 16, "O_final": 8}


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


def _alloc(o: str) -> list[str]:
  return [f"{o}, fh", f"{o}, tl"] + ([f"{o}, fl", f"{o}, th"] if o == "O" else [])


def _ports(m: MemLevel, mode: str = "per_operand", bandwidth: float | None = None,
           operands: Sequence[str] | None = None) -> tuple[list[dict], float]:
  """ZigZag ports and the cost multiplier for one memory (``bandwidth``: override, bits;
  ``operands``: the subset of ``m``'s operands this memory holds)."""
  ops = [_ZZ_OPERAND[o] for o in (operands or m.operands)]
  if m.kind in ("register", "regfile", "lut"):
    bw = m.word_bits
    ports = [
        {"name": "r_port_1", "type": "read", "bandwidth_min": bw, "bandwidth_max": bw,
         "allocation": [f"{o}, tl" for o in ops] + [f"{o}, th" for o in ops if o == "O"]},
        {"name": "w_port_1", "type": "write", "bandwidth_min": bw, "bandwidth_max": bw,
         "allocation": [f"{o}, fh" for o in ops] + [f"{o}, fl" for o in ops if o == "O"]},
    ]
    return ports, 1.0
  bw = max(1, int(bandwidth if bandwidth is not None else m.bandwidth_bits))
  # A port narrower than a word (Eyeriss's 16-bit ifmap network on a 64-bit buffer) moves
  # ``bw``-bit accesses at the same energy per bit.
  bw_min = min(m.word_bits, bw)
  bw_max = max(bw_min, bw)
  groups = [[o] for o in ops] if mode == "per_operand" else [ops]
  ports = [{"name": f"rw_port_{i + 1}", "type": "read_write", "bandwidth_min": bw_min,
            "bandwidth_max": bw_max, "allocation": [a for o in g for a in _alloc(o)]}
           for i, g in enumerate(groups)]
  return ports, bw_max / m.word_bits


def _check_ports(ports: str) -> None:
  if ports not in PORT_MODES:
    raise ValueError(f"ports must be one of {PORT_MODES}; got {ports!r}")


#: Separator of a level's name and its operand when a level with per-operand capacities,
#: bandwidths or energies is exported as one ZigZag memory per operand (``'glb__W'``).
SPLIT = "__"


def _split_operands(m: MemLevel) -> bool:
  return bool(m.operand_capacity_bits or m.operand_bandwidth_bits or m.operand_energy)


def _shared_capacity_split(m: MemLevel) -> bool:
  """``m`` is exported as one memory per operand although its operands share a finite
  capacity (each gets the whole capacity: not what the design has)."""
  return (_split_operands(m) and len(m.operands) > 1 and not m.operand_capacity_bits
          and not math.isinf(m.capacity_bits))


def unexported(acc: Accelerator) -> list[str]:
  """What of ``acc`` ZigZag is not given (each item one sentence; empty: nothing).

  ZigZag 3.9.1 has no leakage, no per-cycle overhead energy, no per-MAC cycle factor, no
  sliding-window reuse between tiles, no serialised (non-overlapped) transfers, no DRAM
  compression, no per-operand costs within one memory, and cannot run a design-specific cost
  function. Of activation sparsity it takes only the MAC energy (:func:`accelerator_to_zigzag`
  scales the PE energy by the non-zero fraction); per-operand capacities, bandwidths and
  energies are exported as one memory per operand (:data:`SPLIT`), exactly where the
  operands do not share a finite capacity. :func:`exportable` removes all of these.
  """
  out = []
  if acc.cycle_factor != 1.0:
    out.append(f"compute cycle factor {acc.cycle_factor:.3f} (ZigZag: 1)")
  if getattr(acc, "overhead_pj_per_cycle", 0.0):
    out.append("per-cycle overhead energy")
  if getattr(acc, "act_sparsity", "none") != "none":
    what = ("the weight-register reads it gates" if acc.act_sparsity == "gate"
            else "the weight reads and cycles it skips")
    out.append(f"activation sparsity ({acc.act_sparsity}): only the MAC energy is given, not "
               f"{what}")
  if getattr(acc, "dram_codec", "none") != "none":
    out.append(f"DRAM codec ({acc.dram_codec})")
  if getattr(acc, "layer_cost", ""):
    out.append(f"design-specific cost function {acc.layer_cost!r} (ZigZag runs the loop nest)")
  for m in acc.levels:
    if getattr(m, "sliding", False):
      out.append(f"{m.name}: sliding-window reuse between tiles")
    if getattr(m, "serial", ()):
      out.append(f"{m.name}: serialised transfers {dict(m.serial)}")
    if _shared_capacity_split(m):
      out.append(f"{m.name}: exported as one memory per operand (per-operand bandwidths or "
                 "energies), each with the whole shared capacity")
  return out


def exportable(acc: Accelerator) -> Accelerator:
  """``acc`` reduced to what ZigZag is given (:func:`unexported` of the result is empty).

  Sliding windows, serial transfers, the cycle factor, activation sparsity, the DRAM codec,
  the per-cycle overhead and a design-specific cost function are removed; a level exported as
  one memory per operand over a shared capacity gets that capacity per operand, as in the
  export. Evaluating a mapping on it and on ``acc`` separates what the cross-check compares
  (the loop-nest counting on the design's memories) from the effect of what ZigZag lacks.
  """
  levels = []
  for m in acc.levels:
    extra = {}
    if _shared_capacity_split(m):
      extra["operand_capacity_bits"] = tuple((op, m.capacity_bits) for op in m.operands)
    levels.append(dataclasses.replace(m, sliding=False, serial=(), **extra))
  return dataclasses.replace(acc, levels=tuple(levels), cycle_factor=1.0, act_sparsity="none",
                             dram_codec="none", overhead_pj_per_cycle=0.0, layer_cost="")


def _memory(m: MemLevel, ports: str, escale: float, ops: tuple[str, ...] | None = None
            ) -> dict[str, Any]:
  ops = ops or m.operands
  bw = None
  if len(ops) == 1:
    bw = dict(m.operand_bandwidth_bits).get(ops[0])
    cap = m.capacity_for(ops[0])
    rd, wr = m.energy_for(ops[0])
  else:
    cap, rd, wr = None, m.read_pj, m.write_pj
  cap = m.capacity_bits if cap is None else cap
  port_list, mult = _ports(m, ports, bw, ops)
  scale = 1.0 if m.kind == "dram" else escale     # DRAM energy is not node-scaled
  return {
      "size": int(cap) if not math.isinf(cap) else 10 ** 14,
      "r_cost": float(rd * scale * mult),
      "w_cost": float(wr * scale * mult),
      "area": float(m.area_um2 * 1e-6),
      "latency": 1,
      "operands": [_ZZ_OPERAND[o] for o in ops],
      "ports": port_list,
      "served_dimensions": list(m.served),
  }


def accelerator_to_zigzag(acc: Accelerator, activity: Activity = Activity(),
                          ports: str = "per_operand") -> dict[str, Any]:
  """``acc`` as a ZigZag hardware description (a dict ready for ``yaml.safe_dump``).

  ``ports``: how a memory with several operands is exported (:data:`PORT_MODES`). A level
  with per-operand capacities, bandwidths or energies becomes one ZigZag memory per operand,
  named ``<level>__<operand>`` (:data:`SPLIT`). What cannot be exported: :func:`unexported`.
  """
  _check_ports(ports)
  escale = acc.tech.energy_scale
  memories = {}
  for m in acc.levels:
    if _split_operands(m) and len(m.operands) > 1:
      for op in m.operands:
        memories[f"{m.name}{SPLIT}{op}"] = _memory(m, ports, escale, (op,))
    else:
      memories[m.name] = _memory(m, ports, escale)
  return {
      "name": f"{acc.name}_ebsp_jax",
      "memories": memories,
      "operational_array": {
          # A design that gates or skips zero activations spends the PE energy on the
          # non-zero ones only (as hw.dataflow charges it).
          "unit_energy": float(acc.pe.energy_per_mac_pj(activity) * escale
                               * (activity.act_density if acc.act_sparsity in ("gate", "skip")
                                  else 1.0)),
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
                        temporal: bool = True, ports: str = "per_operand",
                        hardware: Mapping[str, Any] | None = None,
                        zigzag_mapping: Sequence[Mapping[str, Any]] | None = None
                        ) -> dict[str, str]:
  """Writes ``workload.yaml``, ``accelerator.yaml`` and ``mapping.yaml``; returns their paths.

  ``hardware`` / ``zigzag_mapping``: ZigZag descriptions to write instead of ``acc``'s export
  and ``mapping``'s (e.g. :func:`shipped_hardware`); the workload keeps ``acc``'s precisions.
  """
  os.makedirs(directory, exist_ok=True)
  paths = {k: os.path.join(directory, f"{k}.yaml") for k in ("workload", "accelerator", "mapping")}
  with open(paths["workload"], "w", encoding="utf-8") as f:
    yaml.safe_dump(workload_to_zigzag(layers, acc.precision), f, sort_keys=False)
  with open(paths["accelerator"], "w", encoding="utf-8") as f:
    hw = dict(hardware) if hardware is not None else accelerator_to_zigzag(acc, activity, ports)
    yaml.safe_dump(hw, f, sort_keys=False)
  with open(paths["mapping"], "w", encoding="utf-8") as f:
    mp = ([dict(m) for m in zigzag_mapping] if zigzag_mapping is not None
          else mapping_to_zigzag(mapping, acc, temporal))
    yaml.safe_dump(mp, f, sort_keys=False)
  return paths


def zigzag_available() -> bool:
  """Whether ``zigzag-dse`` is importable."""
  try:
    import zigzag.api  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    return True
  except Exception:  # pylint: disable=broad-except
    return False


# ----------------------------------------------------------------------------------------------
# ZigZag's own example architectures.


def _zigzag_inputs_dir() -> str:
  import zigzag  # pylint: disable=import-outside-toplevel
  return os.path.join(os.path.dirname(zigzag.__file__), "inputs")


def shipped_hardware(name: str = "eyeriss_like") -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """ZigZag's example architecture ``name`` and its example mapping, unmodified.

  Returns:
    ``(hardware, mapping)``: the parsed ``inputs/hardware/<name>.yaml`` and
    ``inputs/mapping/default.yaml`` (ZigZag's own spatial-unrolling hint, K on D1 and C on
    D2) of the installed ``zigzag-dse``.

  Raises:
    ValueError: no such example (names the ones that exist).
  """
  base = _zigzag_inputs_dir()
  path = os.path.join(base, "hardware", f"{name}.yaml")
  if not os.path.isfile(path):
    known = sorted(f[:-5] for f in os.listdir(os.path.join(base, "hardware"))
                   if f.endswith(".yaml"))
    raise ValueError(f"ZigZag has no example hardware {name!r}; known: {', '.join(known)}")
  with open(path, encoding="utf-8") as f:
    hw = yaml.safe_load(f)
  with open(os.path.join(base, "mapping", "default.yaml"), encoding="utf-8") as f:
    mp = yaml.safe_load(f)
  return hw, mp


def accelerator_from_zigzag(hw: Mapping[str, Any],
                            precision: Mapping[str, int] = ZIGZAG_DEFAULT_PRECISION,
                            spatial: tuple = ((("K",), ("C",)),)) -> Accelerator:
  """A ZigZag hardware description as an :class:`Accelerator` with ZigZag's own costs.

  Each memory becomes a :class:`MemLevel` with ``word_bits`` = its ports' ``bandwidth_min``
  and the energy of a ``word_bits`` access = ``cost * bandwidth_min / bandwidth_max`` (ZigZag
  charges ``cost`` per ``bandwidth_max`` bits); its bandwidth is the sum of its ports'
  ``bandwidth_max``; the last memory (DRAM) is unbounded. The MAC is one part of energy
  ``unit_energy``. Only the memory hierarchy, costs and array are taken: areas, latencies
  and leakage are left at 0 (the YAML's areas have no unit).

  Args:
    hw: a ZigZag hardware dict (e.g. from :func:`shipped_hardware`).
    precision: bits of ``W``, ``I``, ``O`` (partial sums) and ``O_final``.
    spatial: spatial-unrolling candidates for this model's mapper.

  Raises:
    ValueError: a memory with a non-positive size or bandwidth, or operands other than
      ``I1``, ``I2``, ``O``.
  """
  names = list(hw["memories"])
  levels = []
  for i, name in enumerate(names):
    m = hw["memories"][name]
    ops = []
    for o in m["operands"]:
      if o not in _OUR_OPERAND:
        raise ValueError(f"memory {name}: operand {o!r} is not one of I1, I2, O")
      ops.append(_OUR_OPERAND[o])
    ops = tuple(o for o in ("W", "I", "O") if o in ops)
    ports = m["ports"]
    bw_min = min(int(p["bandwidth_min"]) for p in ports)
    rd_max = max(int(p["bandwidth_max"]) for p in ports if p["type"] in ("read", "read_write"))
    wr_max = max(int(p["bandwidth_max"]) for p in ports if p["type"] in ("write", "read_write"))
    bandwidth = sum(int(p["bandwidth_max"]) for p in ports)
    top = i == len(names) - 1
    served = tuple(d for d in ("D1", "D2") if d in m.get("served_dimensions", []))
    kind = "dram" if top else ("regfile" if not served else "sram")
    category = "dram" if top else ("rf" if not served else "buffer")
    levels.append(MemLevel(
        name, ops, math.inf if top else float(m["size"]), served, bw_min,
        float(m["r_cost"]) * bw_min / rd_max, float(m["w_cost"]) * bw_min / wr_max,
        float(bandwidth), kind, category, 0.0, 0.0, f"zigzag {hw.get('name', '')}"))
  oa = hw["operational_array"]
  mac = Component("zigzag_mac", 0.0, float(oa["unit_energy"]), "zigzag",
                  "operational_array.unit_energy of the ZigZag description")
  pe = pe_mod.PEModel(hw.get("name", "zigzag"), float(precision["W"]), float(precision["I"]),
                      float(precision["O_final"]), int(precision["O"]), (pe_mod.Part(mac),),
                      label=f"ZigZag {hw.get('name', '')}")
  array = (int(oa["sizes"][0]), int(oa["sizes"][1]))
  acc = Accelerator(name=str(hw.get("name", "zigzag")), pe=pe, array=array, levels=tuple(levels),
                    spatial=tuple(spatial), pe_count=array[0] * array[1], pe_area_um2=0.0,
                    area_mm2=0.0, area_scope="pe", label=f"ZigZag {hw.get('name', '')}")
  acc.validate()
  return acc


# ----------------------------------------------------------------------------------------------
# Running ZigZag.


def _mapping_from_cme(cme, layer: Layer) -> LoopMapping:
  """The mapping ZigZag evaluated, as this model's :class:`Mapping` (fractional spatial
  factors become the padded integer ``ceil(loop / temporal part)``)."""
  tm = cme.temporal_mapping.mapping_dic_origin
  op = next(iter(tm))
  temporal = tuple((str(d), int(round(s))) for lvl in tm[op] for d, s in lvl)
  t_prod = {d: 1 for d in DIMS}
  for d, s in temporal:
    t_prod[d] = t_prod.get(d, 1) * s
  dims = layer.loop_dims()
  sp: dict[str, list[tuple[str, int]]] = {"D1": [], "D2": []}
  for oa_dim, single in cme.layer.spatial_mapping.data.items():
    for d in single.keys():
      f = math.ceil(dims[str(d)] / t_prod.get(str(d), 1))
      if f > 1:
        sp[str(oa_dim)].append((str(d), f))
  return LoopMapping(tuple(sp["D1"]), tuple(sp["D2"]), temporal)


def _summarize(cme, layer: Layer) -> dict[str, Any]:
  from zigzag.hardware.architecture.memory_port import DataDirection  # pylint: disable=import-outside-toplevel
  from zigzag.mapping.data_movement import DataMoveAttr  # pylint: disable=import-outside-toplevel
  by_level: dict[str, float] = {}
  accesses = []
  hierarchy = cme.accelerator.memory_hierarchy
  for layer_op, energies in cme.mem_energy_breakdown.items():
    mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
    mems = hierarchy.get_memory_levels(mem_op)
    for i, e in enumerate(energies):
      name = mems[i].name.split(SPLIT)[0]
      by_level[name] = by_level.get(name, 0.0) + float(e)
      umdm = cme.mapping.unit_mem_data_movement[layer_op][i]
      elems = umdm.get_attribute(DataMoveAttr.DATA_ELEM_MOVE_COUNT)
      amount = umdm.get_attribute(DataMoveAttr.DATA_TRANS_AMOUNT_PER_PERIOD)
      count = umdm.get_attribute(DataMoveAttr.DATA_TRANS_PERIOD_COUNT)
      units = cme.mapping.spatial_mapping.unit_count[layer_op][i + 1]
      words = cme.memory_word_access[layer_op][i]
      row = {"level": name, "operand": str(layer_op)}
      for ours, theirs in DIRECTIONS.items():
        d = DataDirection(theirs)
        row[ours] = float(elems.get(d))
        row[f"{ours}_charged"] = float(amount.get(d) * count.get(d) * units)
        row[f"{ours}_words"] = float(words.get(d))
      accesses.append(row)
  return {
      "energy_pj": float(cme.energy_total),
      "mac_energy_pj": float(cme.mac_energy),
      "mem_energy_pj": float(cme.mem_energy),
      "latency_cycles": float(cme.latency_total2),
      "ideal_cycles": float(cme.ideal_cycle),
      "ideal_temporal_cycles": float(cme.ideal_temporal_cycle),
      "stall_cycles": float(cme.stall_slack_comb),
      "onloading_cycles": float(cme.data_onloading_cycle),
      "offloading_cycles": float(cme.data_offloading_cycle),
      "stall_by_port": {f"{m.name}/{port}": float(ss)
                        for m, ports in zip(cme.mem_level_list, cme.stall_slack_comb_collect)
                        for port, ss in ports.items() if ss > 0},
      "mem_energy_by_level": by_level,
      "accesses": accesses,
      "mapping": _mapping_from_cme(cme, layer),
      "spatial_mapping": str(getattr(cme, "spatial_mapping", "")),
      "temporal_mapping": str(getattr(cme, "temporal_mapping", "")),
  }


def run_zigzag(layer: Layer, acc: Accelerator, mapping: LoopMapping | None = None,
               opt: str = "energy", activity: Activity = Activity(), lpf_limit: int = 6,
               temporal: bool = True, ports: str = "per_operand",
               hardware: Mapping[str, Any] | None = None,
               zigzag_mapping: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
  """Runs ZigZag on one layer.

  Args:
    layer: the layer.
    acc: the design (exported with :func:`accelerator_to_zigzag`; its precisions are the
      workload's).
    mapping: a fixed mapping to evaluate, or None to let ZigZag search.
    opt: ZigZag's criterion (``'energy'``, ``'latency'``, ``'EDP'``).
    activity: PE activity (MAC energy).
    lpf_limit: ZigZag LOMA's loop-prime-factor limit (search mode).
    temporal: pass ``mapping``'s temporal order (False: ZigZag searches it under our spatial
      unrolling).
    ports: port export of multi-operand memories (:data:`PORT_MODES`).
    hardware: a ZigZag hardware dict to run instead of ``acc``'s export (e.g. ZigZag's own
      example from :func:`shipped_hardware`).
    zigzag_mapping: a ZigZag mapping list to use instead of ``mapping``'s.

  Returns:
    ``{'energy_pj', 'mac_energy_pj', 'mem_energy_pj', 'latency_cycles' (ZigZag's total:
    ideal temporal + stalls + on-loading + off-loading), 'ideal_cycles' (full array),
    'ideal_temporal_cycles' (this spatial unrolling), 'stall_cycles' (the largest of the
    ports' stalls, which ZigZag takes as parallel), 'onloading_cycles', 'offloading_cycles',
    'stall_by_port': {'memory/port': cycles > 0}, 'mem_energy_by_level': {memory: pJ}, 'accesses': [{'level',
    'operand' (W, I, O), 'rd_low', 'wr_low', 'rd_high', 'wr_high' (elements moved, whole
    layer: ZigZag's ``data_elem_move_count``, the counting rules this model implements), the
    same with ``_charged`` (elements of ZigZag's periodic transfer pattern, ``amount per
    period x periods x memory units``, which its energy and latency use) and with ``_words``
    (the word accesses it charges, in units of the port's ``bandwidth_max``)}], 'mapping' (the
    evaluated mapping as a
    :class:`~ebsp_jax.hw.dataflow.Mapping`), 'spatial_mapping', 'temporal_mapping'}``.
  """
  _check_ports(ports)
  from zigzag.api import get_hardware_performance_zigzag  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    paths = write_zigzag_inputs(tmp, [layer], acc, mapping, activity, temporal, ports, hardware,
                                zigzag_mapping)
    logging.disable(logging.CRITICAL)
    try:
      with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _, _, cmes = get_hardware_performance_zigzag(
            workload=paths["workload"], accelerator=paths["accelerator"],
            mapping=paths["mapping"], opt=opt, dump_folder=os.path.join(tmp, "out"),
            lpf_limit=lpf_limit, loma_show_progress_bar=False)
    finally:
      logging.disable(logging.NOTSET)
  cme = cmes[0][1][0][0] if isinstance(cmes[0][1], list) and cmes[0][1] else cmes[0][0]
  return _summarize(cme, layer)


# ----------------------------------------------------------------------------------------------
# Comparison.

#: Quantities :func:`compare` reports, ours against ZigZag's.
QUANTITIES = ("onchip_pj", "dram_pj", "mac_pj", "cycles")


def split_energy(acc: Accelerator, by_level: Mapping[str, float]) -> dict[str, float]:
  """``{'onchip_pj', 'dram_pj'}``: memory energy by level summed on chip / in DRAM."""
  cat = {m.name: m.category for m in acc.levels}
  dram = sum(e for n, e in by_level.items() if cat.get(n) == "dram")
  return {"onchip_pj": sum(by_level.values()) - dram, "dram_pj": dram}


def _ratio(a: float, b: float) -> float:
  if b == 0:
    return 1.0 if a == 0 else math.inf
  return a / b


def compare(cost: LayerCost, z: Mapping[str, Any], acc: Accelerator) -> dict[str, Any]:
  """One layer, ours (``cost``) against ZigZag's run (``z`` from :func:`run_zigzag`).

  Returns:
    ``{'ours': {q: value}, 'zigzag': {q: value}, 'ratio': {q: zigzag / ours}}`` for ``q`` in
    :data:`QUANTITIES` (pJ and cycles; ours without leakage, which ZigZag does not model).
  """
  ours = dict(split_energy(acc, cost.level_energy), mac_pj=cost.energy["compute"],
              cycles=cost.cycles)
  theirs = dict(split_energy(acc, z["mem_energy_by_level"]), mac_pj=z["mac_energy_pj"],
                cycles=z["latency_cycles"])
  return {"ours": ours, "zigzag": theirs,
          "ratio": {q: _ratio(theirs[q], ours[q]) for q in QUANTITIES}}


def access_table(cost: LayerCost, z: Mapping[str, Any]) -> list[dict[str, Any]]:
  """Per memory level and operand, elements moved in each direction: ours beside ZigZag's.

  Returns:
    Rows ``{'level', 'operand', 'ours': {dir: elements}, 'zigzag': {dir: elements},
    'zigzag_charged': {dir: elements}}`` with ``dir`` in ``rd_low``, ``wr_low``, ``rd_high``,
    ``wr_high`` (see :class:`~ebsp_jax.hw.dataflow.LevelAccess`), in ZigZag's level order;
    ``zigzag`` is ZigZag's element count (the rules this model implements), ``zigzag_charged``
    the elements of its periodic transfer pattern (what its energy uses).
  """
  ours = {(a.level, a.operand): a for a in cost.accesses}
  rows = []
  for r in z["accesses"]:
    mine = ours.get((r["level"], r["operand"]))
    rows.append({"level": r["level"], "operand": r["operand"],
                 "ours": {d: (getattr(mine, d) if mine is not None else math.nan)
                          for d in DIRECTIONS},
                 "zigzag": {d: r[d] for d in DIRECTIONS},
                 "zigzag_charged": {d: r[f"{d}_charged"] for d in DIRECTIONS}})
  return rows
