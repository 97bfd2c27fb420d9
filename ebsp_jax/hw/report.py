"""Network-level evaluation, the report JSON, text tables and the paper comparison.

:func:`evaluate_network` maps every layer of a :class:`~ebsp_jax.hw.workload.Workload` on
every accelerator (:func:`ebsp_jax.hw.dataflow.best_mapping`) and sums energy and latency
(layers run one after another). :func:`report_json` produces the contract JSON of
``experiments/hardware.py``::

    {"model", "dataset", "macs", "batch_size", "units": {...},
     "accelerators": {name: {"pes", "area_mm2", "energy_pj", "energy_breakdown_pj": {...},
                             "cycles", "latency_s", ...}},
     "layers": [{"name", "macs", dims..., name: {"energy_pj", "cycles", ...}}],
     "comparison": {...}, "tech": [...], "notes": [...]}

Energy, cycles, latency and MACs are per *inference of one batch* of ``batch_size`` images
(the workload's batch, ``Workload.input_shape[0]``); ``units`` says so in the JSON and the
table's first line says so in text.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

from ebsp_jax import progress
from ebsp_jax.hw import area as area_mod
from ebsp_jax.hw import dataflow
from ebsp_jax.hw import tech as tech_mod
from ebsp_jax.hw.arch import Accelerator
from ebsp_jax.hw.designs import ebsp as ebsp_design
from ebsp_jax.hw.dataflow import LayerCost
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Workload

#: The setting the paper's savings figures belong to (docs/method.md §7: ResNet-50 on ImageNet,
#: EBSP with 6-bit weights and pattern length 3, "6-bit (pattern 3)" in its table).
PAPER_SETTING: Mapping[str, Any] = {"model": "resnet50", "dataset": "imagenet", "pattern": (6, 3)}
#: EBSP paper, ResNet-50: EBSP's energy reduction vs each baseline, % [ebsp_dac2022].
PAPER_ENERGY_REDUCTION_PCT: Mapping[str, float] = {
    "eyeriss": 87.3, "bitfusion": 79.7, "wax": 75.2, "olaccel": 58.9}
#: EBSP paper, ResNet-50 ("on average"): EBSP's performance gain vs each baseline, %.
PAPER_PERF_GAIN_PCT: Mapping[str, float] = {
    "eyeriss": 93.8, "bitfusion": 83.7, "wax": 72.7, "olaccel": 49.5}
#: Energy categories, in plotting order.
CATEGORIES = dataflow.ENERGY_CATEGORIES
#: Mapper presets: (lpf_limit, refine, refine_starts).
SEARCH_PRESETS: Mapping[str, tuple[int, bool, int]] = {
    "fast": (3, True, 1), "default": (4, True, 3), "thorough": (6, True, 6)}


@dataclasses.dataclass(frozen=True)
class AcceleratorResult:
  """One design on one network.

  Attributes:
    accelerator: the design.
    layers: per-layer costs in workload order (``repeat`` already folded in the totals).
    energy: pJ by category (+ ``total``).
    cycles: total cycles.
    latency_s: total latency, seconds.
  """

  accelerator: Accelerator
  layers: tuple[LayerCost, ...]
  energy: dict[str, float]
  cycles: float
  latency_s: float

  @property
  def energy_pj(self) -> float:
    """Total energy, pJ."""
    return self.energy["total"]


@dataclasses.dataclass(frozen=True)
class NetworkResult:
  """All designs on one network."""

  workload: Workload
  dataset: str
  results: dict[str, AcceleratorResult]
  objective: str
  data_aware: bool = False
  notes: tuple[str, ...] = ()
  layer_formats: Mapping[str, tuple[int, int]] | None = None


def evaluate_network(workload: Workload, accelerators: Mapping[str, Accelerator], *,
                     dataset: str = "", objective: str = "edp", search: str = "default",
                     activities: Mapping[str, Activity] | None = None,
                     activation_stats: Mapping[str, Activity] | None = None,
                     sliding_window: bool = True,
                     layer_formats: Mapping[str, Any] | None = None,
                     show_progress: bool | None = None) -> NetworkResult:
  """Maps and costs every layer of ``workload`` on every design.

  Args:
    workload: the layers.
    accelerators: ``{name: Accelerator}``.
    dataset: label for the report.
    objective: mapper objective (``'energy'``, ``'latency'``, ``'edp'``).
    search: mapper preset, one of :data:`SEARCH_PRESETS`.
    activities: per-layer data-aware activity for EBSP (``{layer name: Activity}``); when
      given, its names must be exactly the workload's layer names (see
      :func:`check_activity_names`).
    activation_stats: per-layer activation statistics (``Activity.act_density``,
      ``out_density``, ``compress_input``) for every design that uses them (zero gating or
      skipping, DRAM compression; the others ignore them); names as for ``activities``.
    sliding_window: per-tile input counting (see :mod:`ebsp_jax.hw.dataflow`).
    layer_formats: per-layer EBSP weight formats ``{layer name: (bits, length)}`` (or
      ``BitPattern`` s), exactly the workload's layer names: every EBSP design runs each layer
      in its own format (:func:`ebsp_jax.hw.designs.ebsp.layer_view`; build the design for all
      of them with :func:`ebsp_jax.hw.arch.build_ebsp_for`); the other designs keep their
      formats. ``None``: every layer in the EBSP design's own pattern.
    show_progress: a progress bar with ETA over the (design, layer) mapper searches on
      stderr: True / False / None (:func:`ebsp_jax.progress.is_enabled`: on a terminal, or
      as ``$EBSP_JAX_PROGRESS`` says).

  Returns:
    A :class:`NetworkResult`.

  Raises:
    ValueError: unknown ``search``, or ``activities`` / ``layer_formats`` names that do not
      match the layers; ``ConfigError`` (a ValueError) for a layer format an EBSP design
      cannot run.
  """
  if search not in SEARCH_PRESETS:
    raise ValueError(f"search must be one of {sorted(SEARCH_PRESETS)}; got {search!r}")
  if activities:
    check_activity_names(activities, workload)
  if activation_stats:
    check_activity_names(activation_stats, workload, source="activation_stats")
  formats = None
  if layer_formats is not None:
    check_activity_names(layer_formats, workload, source="layer_formats")
    formats = {n: ((int(f.bits), int(f.length)) if hasattr(f, "bits") else
                   (int(f[0]), int(f[1]))) for n, f in layer_formats.items()}
  # Every layer's view of every EBSP design, before any mapping (a misfit fails early).
  views = {name: ({l.name: ebsp_design.layer_view(acc, *formats[l.name])
                   for l in workload.layers} if formats and acc.pe.name == "ebsp" else {})
           for name, acc in accelerators.items()}
  lpf, refine, starts = SEARCH_PRESETS[search]
  results = {}
  with progress.bar(len(accelerators) * len(workload.layers), desc="mapper", unit="layer",
                    enabled=show_progress) as pbar:
    for name, acc0 in accelerators.items():
      costs = []
      energy = {k: 0.0 for k in CATEGORIES}
      cycles = 0.0
      pbar.set_postfix_str(name, refresh=False)
      for layer in workload.layers:
        acc = views[name].get(layer.name, acc0)
        act = Activity()
        if activation_stats:
          a = activation_stats[layer.name]
          act = dataclasses.replace(act, act_density=a.act_density, out_density=a.out_density,
                                    compress_input=a.compress_input)
        if activities and acc.name == "ebsp":
          w = activities[layer.name]
          act = dataclasses.replace(act, nonzero_fraction=w.nonzero_fraction,
                                    shifted_fraction=w.shifted_fraction)
        c = dataflow.best_mapping(layer, acc, objective, lpf, act, sliding_window=sliding_window,
                                  refine=refine, refine_starts=starts)
        costs.append(c)
        pbar.update(1)
        for k in CATEGORIES:
          energy[k] += c.energy[k] * layer.repeat
        cycles += c.cycles * layer.repeat
      energy["total"] = sum(energy[k] for k in CATEGORIES)
      results[name] = AcceleratorResult(acc0, tuple(costs), energy, cycles,
                                        cycles / (acc0.tech.clock_mhz * 1e6))
  notes = []
  if activation_stats:
    mean = sum(1 - activation_stats[l.name].act_density for l in workload.layers) / max(
        1, len(workload.layers))
    notes.append(f"activation sparsity given for all {len(workload.layers)} layers (mean "
                 f"{100 * mean:.1f}% zero inputs); used by designs that exploit it")
  if activities:
    notes.append(f"EBSP energy uses data-aware activity for all {len(workload.layers)} layers "
                 "(zero weights gated, shift-0 bypass)")
  if formats:
    names = sorted({f"{b}b(L{l})" for b, l in formats.values()})
    notes.append(f"EBSP runs per-layer weight formats ({', '.join(names)}) on one design for "
                 "the widest bits, longest pattern and largest shift; each layer moves its own "
                 "weight width and fills only the LUT entries its pattern reads")
  return NetworkResult(workload, dataset, results, objective, bool(activities), tuple(notes),
                       formats)


def check_activity_names(names: Iterable[str], workload: Workload, source: str = "activities"
                         ) -> None:
  """Checks that ``names`` (of per-layer events or activities) are the workload's layer names.

  Data-aware costing must cover every layer and nothing else: a name the workload lacks is a
  mismatch (another model, or names the workload does not use), and a layer without an entry
  would silently be costed shape-only.

  Raises:
    ValueError: one line naming ``source``, the unknown and the missing names, and the known
      ones.
  """
  names = list(names)
  known = [l.name for l in workload.layers]
  unknown = [n for n in names if n not in set(known)]
  missing = [n for n in known if n not in set(names)]
  if unknown or missing:
    parts = []
    if unknown:
      parts.append(f"unknown layer name(s) {', '.join(unknown)}")
    if missing:
      parts.append(f"no entry for layer(s) {', '.join(missing)}")
    raise ValueError(f"{source}: {'; '.join(parts)}; the {workload.name} layers are: "
                     f"{', '.join(known)}")


def batch_size(workload: Workload) -> int:
  """Images per inference of ``workload`` (its input's leading dimension)."""
  return int(workload.input_shape[0]) if workload.input_shape else 1


def per_unit(workload: Workload) -> str:
  """``'per image'`` at batch 1, else ``'per batch of N images'``: what totals refer to."""
  n = batch_size(workload)
  return "per image" if n == 1 else f"per batch of {n} images"


def paper_applies(result: NetworkResult, target: str = "ebsp") -> bool:
  """Whether ``result`` is the setting of the paper's savings figures (:data:`PAPER_SETTING`).

  The model, the dataset label and the EBSP pattern must all match: the claims are for
  ResNet-50 on ImageNet with a 6b(L3) EBSP, not for another pattern or input shape.
  """
  t = result.results.get(target)
  same = (not result.layer_formats
          or set(result.layer_formats.values()) == {tuple(PAPER_SETTING["pattern"])})
  return (result.workload.name == PAPER_SETTING["model"]
          and result.dataset == PAPER_SETTING["dataset"]
          and t is not None and t.accelerator.pe.pattern == PAPER_SETTING["pattern"]
          and t.accelerator.pe.max_shift == PAPER_SETTING["pattern"][0] - 1 -
          PAPER_SETTING["pattern"][1] and same)


def paper_setting_text() -> str:
  """``'resnet50 on imagenet, EBSP 6b(L3)'``."""
  b, l = PAPER_SETTING["pattern"]
  return f"{PAPER_SETTING['model']} on {PAPER_SETTING['dataset']}, EBSP {b}b(L{l})"


def comparison(result: NetworkResult, target: str = "ebsp") -> dict[str, dict[str, float]]:
  """``target`` vs each other design: energy reduction and speed-up.

  Returns:
    ``{baseline: {'energy_reduction_pct', 'onchip_energy_reduction_pct' (DRAM excluded),
    'speedup', 'perf_gain_pct', 'latency_reduction_pct', 'paper_energy_reduction_pct',
    'paper_perf_gain_pct'}}`` where ``perf_gain_pct`` is
    ``(speedup - 1) * 100`` (the paper's "performance gain" is not defined; its
    ``latency_reduction_pct`` reading is given too). Paper figures are given only for the
    setting they belong to (:func:`paper_applies`: ResNet-50, ImageNet, EBSP 6b(L3)) and are
    ``None`` otherwise.

  Raises:
    ValueError: ``target`` is not one of the designs evaluated in ``result``.
  """
  if target not in result.results:
    raise ValueError(f"comparison target {target!r} was not evaluated in this result; "
                     f"allowed: {', '.join(result.results) or '(no designs)'}")
  t = result.results[target]
  out = {}
  paper = paper_applies(result, target)
  for name, r in result.results.items():
    if name == target:
      continue
    speedup = r.latency_s / t.latency_s if t.latency_s else math.inf
    onchip_t = t.energy_pj - t.energy["dram"]
    onchip_r = r.energy_pj - r.energy["dram"]
    out[name] = {
        "energy_reduction_pct": 100.0 * (1.0 - t.energy_pj / r.energy_pj),
        "onchip_energy_reduction_pct": 100.0 * (1.0 - onchip_t / onchip_r),
        "speedup": speedup,
        "perf_gain_pct": 100.0 * (speedup - 1.0),
        "latency_reduction_pct": 100.0 * (1.0 - t.latency_s / r.latency_s),
        "paper_energy_reduction_pct": PAPER_ENERGY_REDUCTION_PCT.get(name) if paper else None,
        "paper_perf_gain_pct": PAPER_PERF_GAIN_PCT.get(name) if paper else None,
    }
  return out


def _acc_json(r: AcceleratorResult, workload: Workload) -> dict[str, Any]:
  a = r.accelerator
  macs = sum(c.macs * l.repeat for c, l in zip(r.layers, workload.layers))
  util = macs / (r.cycles * a.mac_units) if r.cycles else 0.0
  return {
      "pes": a.pe_count,
      "paper_pes": area_mod.PAPER_PE_COUNTS.get(a.name),
      "mac_units": a.mac_units,
      "array": list(a.array),
      "area_mm2": a.area_mm2,
      "pe_area_um2": a.pe_area_um2,
      "pe_area_breakdown_um2": dict(a.pe_area_breakdown),
      "area_scope": a.area_scope,
      "label": a.label,
      "bits": {"weight": a.pe.weight_bits, "activation": a.pe.act_bits,
               "psum": a.pe.psum_bits},
      "energy_pj": r.energy_pj,
      "energy_breakdown_pj": {k: r.energy[k] for k in CATEGORIES},
      "energy_per_mac_pj": r.energy_pj / max(1, macs),
      "pe_energy_per_mac_pj": a.pe.energy_per_mac_pj() * a.tech.energy_scale,
      "cycles": r.cycles,
      "latency_s": r.latency_s,
      "utilization": util,
      "clock_mhz": a.tech.clock_mhz,
      **({"ebsp_design": {"bits": a.pe.pattern[0], "length": a.pe.pattern[1],
                          "max_shift": a.pe.max_shift, "lut_entries": 1 << a.pe.pattern[1],
                          "weight_format": a.pe.weight_format}}
         if a.pe.name == "ebsp" and a.pe.pattern else {}),
      "memories": [{"name": m.name, "operands": list(m.operands), "kind": m.kind,
                    "capacity_bits": None if math.isinf(m.capacity_bits) else m.capacity_bits,
                    "instances": m.instances(a.array), "word_bits": m.word_bits,
                    "read_pj_per_word": m.read_pj, "write_pj_per_word": m.write_pj,
                    "bandwidth_bits_per_cycle": m.bandwidth_bits, "source": m.source}
                   for m in a.levels],
  }


def report_json(result: NetworkResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The contract JSON (see the module docstring)."""
  w = result.workload
  layers = []
  for i, layer in enumerate(w.layers):
    row: dict[str, Any] = {
        "name": layer.name, "kind": layer.kind, "macs": layer.macs, "repeat": layer.repeat,
        "N": layer.n, "M": layer.m, "C": layer.c, "P": layer.p, "Q": layer.q, "R": layer.r,
        "S": layer.s, "stride": list(layer.stride), "groups": layer.groups}
    for name, r in result.results.items():
      c = r.layers[i]
      row[name] = {"energy_pj": c.energy_pj,
                   "energy_breakdown_pj": {k: c.energy[k] for k in CATEGORIES},
                   "cycles": c.cycles, "compute_cycles": c.compute_cycles, "bound": c.bound,
                   "utilization": c.utilization,
                   "spatial": {"D1": [list(x) for x in c.mapping.d1],
                               "D2": [list(x) for x in c.mapping.d2]},
                   "temporal": [list(x) for x in c.mapping.temporal]}
      if result.layer_formats and r.accelerator.pe.name == "ebsp":
        b, l = result.layer_formats[layer.name]
        row[name]["format"] = f"{b}b(L{l})"
        row[name]["pe_energy_per_mac_pj"] = (
            ebsp_design.layer_view(r.accelerator, b, l).pe.energy_per_mac_pj()
            * r.accelerator.tech.energy_scale)
    layers.append(row)
  any_acc = next(iter(result.results.values())).accelerator if result.results else None
  out = {
      "model": w.name,
      "dataset": result.dataset,
      "input_shape": list(w.input_shape),
      "macs": w.macs,
      "batch_size": batch_size(w),
      "units": {"energy_pj": f"pJ {per_unit(w)}", "latency_s": f"s {per_unit(w)}",
                "cycles": f"cycles {per_unit(w)}", "macs": f"MACs {per_unit(w)}"},
      "objective": result.objective,
      "data_aware": result.data_aware,
      "layer_formats": ({n: f"{b}b(L{l})" for n, (b, l) in result.layer_formats.items()}
                        if result.layer_formats else None),
      "accelerators": {n: _acc_json(r, w) for n, r in result.results.items()},
      "comparison": comparison(result) if "ebsp" in result.results else {},
      "paper_setting": {**PAPER_SETTING, "pattern": list(PAPER_SETTING["pattern"]),
                        "applies": paper_applies(result)},
      "layers": layers,
      "tech": dataclasses.asdict(any_acc.tech) if any_acc else {},
      "sources": dict(tech_mod.SOURCES),
      "notes": list(result.notes),
  }
  if extra:
    out.update(extra)
  return out


def _si(x: float, unit: str) -> str:
  for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
                        (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
    if abs(x) >= scale:
      return f"{x / scale:.3g} {prefix}{unit}"
  return f"{x:.3g} {unit}"


def format_table(result: NetworkResult) -> str:
  """A plain-text table of the network result and the comparison with the paper."""
  w = result.workload
  lw = max([14] + [len(r.accelerator.label) for r in result.results.values()])
  lines = [f"{w.name} ({result.dataset or 'custom'} {tuple(w.input_shape)}): "
           f"{_fmt_macs(w.macs)}, {len(w.layers)} conv/dense layers; mapper objective "
           f"{result.objective}; energy and latency {per_unit(w)}"]
  hdr = (f"{'design':<10} {'bits':<{lw}} {'PEs':>6} {'paper':>6} {'array':>9} {'energy':>10} "
         f"{'pJ/MAC':>7} {'DRAM%':>6} {'latency':>10} {'util':>5}")
  lines += [hdr, "-" * len(hdr)]
  for name, r in result.results.items():
    a = r.accelerator
    macs = max(1, sum(c.macs * l.repeat for c, l in zip(r.layers, w.layers)))
    lines.append(
        f"{name:<10} {a.label:<{lw}} {a.pe_count:>6} "
        f"{area_mod.PAPER_PE_COUNTS.get(name, 0):>6} {a.array[0]:>4}x{a.array[1]:<4} "
        f"{_si(r.energy_pj * 1e-12, 'J'):>10} {r.energy_pj / macs:>7.3f} "
        f"{100 * r.energy['dram'] / r.energy_pj:>5.1f}% {_si(r.latency_s, 's'):>10} "
        f"{sum(c.macs * l.repeat for c, l in zip(r.layers, w.layers)) / (r.cycles * a.mac_units):>5.2f}")
  comp = comparison(result) if "ebsp" in result.results else {}
  if comp:
    lines.append("")
    lines.append(f"{'EBSP vs':<10} {'energy -%':>10} {'on-chip':>8} {'paper':>7} "
                 f"{'speed-up':>9} {'gain %':>8} {'paper':>7}")
    for name, c in comp.items():
      pe = c["paper_energy_reduction_pct"]
      pg = c["paper_perf_gain_pct"]
      lines.append(f"{name:<10} {c['energy_reduction_pct']:>10.1f} "
                   f"{c['onchip_energy_reduction_pct']:>8.1f} "
                   f"{(f'{pe:.1f}' if pe is not None else '-'):>7} {c['speedup']:>9.2f} "
                   f"{c['perf_gain_pct']:>8.1f} {(f'{pg:.1f}' if pg is not None else '-'):>7}")
    if not paper_applies(result):
      lines.append(f"note: the paper's savings (the 'paper' columns of 'EBSP vs') are claimed "
                   f"for {paper_setting_text()} only; not shown for this setting")
  for n in result.notes:
    lines.append(f"note: {n}")
  return "\n".join(lines)


def pe_count_table(accelerators: Mapping[str, Accelerator]) -> list[dict[str, Any]]:
  """Rows: design, PE area by class and the counts in every area scope vs the paper's."""
  rows = []
  for name, a in accelerators.items():
    b = dict(a.pe_area_breakdown)
    if not b:       # a paper's own configuration: its PE count is given, not derived from area
      rows.append({"design": name, "label": a.label, "pes": a.pe_count,
                   "paper_pes": area_mod.PAPER_PE_COUNTS.get(name), "setting": a.setting})
      continue
    counts = {}
    for scope in area_mod.AREA_SCOPES:
      total = b["arith"]
      if scope in ("pe", "pe+local"):
        total += b["shared"] + b["registers"]
      if scope == "pe+local":
        total += b["local_memory"]
      counts[scope] = int(a.area_mm2 * 1e6 // total)
    rows.append({"design": name, "label": a.label, **{f"area_{k}_um2": v for k, v in b.items()},
                 **{f"pes_{k}": v for k, v in counts.items()},
                 "paper_pes": area_mod.PAPER_PE_COUNTS.get(name),
                 "paper_um2_per_pe": a.area_mm2 * 1e6 / area_mod.PAPER_PE_COUNTS[name]
                 if name in area_mod.PAPER_PE_COUNTS else None})
  return rows


def sweep_points(workload: Workload, build, bits_list: Sequence[int],
                 lengths: Sequence[int] | None = None, **eval_kwargs) -> list[dict[str, Any]]:
  """EBSP energy/latency over a bit-width x pattern-length grid.

  Args:
    workload: the network.
    build: ``build(bits, length) -> Accelerator`` (EBSP at equal area).
    bits_list: weight bit widths.
    lengths: pattern lengths (default: every ``1..bits-1``).
    **eval_kwargs: forwarded to :func:`evaluate_network`.

  Returns:
    ``[{'bits', 'length', 'energy_pj', 'latency_s', 'pes'}]``.
  """
  pts = []
  for b in bits_list:
    for L in (lengths or range(1, b)):
      if not 1 <= L <= b - 1:
        continue
      acc = build(b, L)
      r = evaluate_network(workload, {"ebsp": acc}, **eval_kwargs).results["ebsp"]
      pts.append({"bits": b, "length": L, "energy_pj": r.energy_pj, "latency_s": r.latency_s,
                  "pes": acc.pe_count})
  return pts


def _fmt_macs(macs: int) -> str:
  """``'4.089 GMAC'`` / ``'0.42 MMAC'``: MAC count with a readable unit."""
  return f"{macs / 1e9:.3f} GMAC" if macs >= 1e8 else f"{macs / 1e6:.2f} MMAC"
