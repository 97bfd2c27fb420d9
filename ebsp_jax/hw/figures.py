"""Figures (matplotlib; each saved as PNG and SVG).

The module does not choose a matplotlib backend (importing it leaves an interactive session's
backend alone); scripts that run headless set ``MPLBACKEND=Agg`` (``experiments/*.py`` do).

* :func:`plot_energy_breakdown`: stacked energy by category, per network and design.
* :func:`plot_latency`: latency per network and design (log scale).
* :func:`plot_layer_energy`: per-layer energy by category, one panel per design.
* :func:`plot_roofline`: every layer's achieved MAC rate against its arithmetic intensity,
  under each design's compute and DRAM roofs.
* :func:`plot_pareto`: EBSP bit-width x pattern-length sweep, energy against accuracy with the
  Pareto front; accuracy comes from training ``results.json`` files (keys ``pattern.bits``,
  ``pattern.length``, ``quant_top1``/``integer_top1``); without them, energy only (the title
  says so).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt

from ebsp_jax import cli
from ebsp_jax.hw.report import CATEGORIES, NetworkResult, per_unit

_COLORS = {"compute": "#4c72b0", "rf": "#55a868", "lut": "#8172b2", "local_buffer": "#ccb974",
           "buffer": "#64b5cd", "dram": "#c44e52", "leakage": "#8c8c8c",
           "overhead": "#dd8452"}


def _unit(results: Sequence[NetworkResult]) -> str:
  """``'per image'`` / ``'per batch of N images'`` shared by ``results`` (what totals are)."""
  units = sorted({per_unit(r.workload) for r in results})
  if len(units) != 1:
    raise ValueError(f"networks of one figure must share a batch size; got {', '.join(units)}")
  return units[0]


def _save(fig, path_prefix: str) -> list[str]:
  os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
  out = []
  for ext in ("png", "svg"):
    p = f"{path_prefix}.{ext}"
    fig.savefig(p, dpi=130, bbox_inches="tight")
    out.append(p)
  plt.close(fig)
  return out


def plot_energy_breakdown(results: Sequence[NetworkResult], path_prefix: str,
                          normalize_to: str | None = "eyeriss") -> list[str]:
  """Stacked bars of energy by category for each (network, design).

  Args:
    results: one :class:`NetworkResult` per network.
    path_prefix: output path without extension.
    normalize_to: divide each network's bars by this design's total (None: absolute uJ).

  Returns:
    The written file paths.
  """
  designs = list(dict.fromkeys(n for r in results for n in r.results))
  unit = _unit(results)
  ncols = min(3, len(results))
  nrows = -(-len(results) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 0.6, 3.3 * nrows + 0.4),
                           squeeze=False)
  flat = [ax for row in axes for ax in row]
  for ax in flat[len(results):]:
    ax.axis("off")
  for i, (ax, res) in enumerate(zip(flat, results)):
    ref = res.results.get(normalize_to) if normalize_to else None
    denom = ref.energy_pj if ref else 1e6
    bottom = [0.0] * len(designs)
    for cat in CATEGORIES:
      vals = [res.results[d].energy[cat] / denom if d in res.results else 0.0 for d in designs]
      if not any(vals):
        continue
      ax.bar(designs, vals, bottom=bottom, color=_COLORS[cat], label=cat)
      bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_title(f"{res.workload.name} ({res.dataset})", fontsize=9)
    if i % ncols == 0:
      ax.set_ylabel(f"energy / {normalize_to}" if ref else f"energy {unit} (uJ)")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
  flat[0].legend(fontsize=7, loc="upper right")
  fig.suptitle(f"Energy breakdown at equal PE-array area ({unit})", fontsize=10)
  fig.tight_layout()
  return _save(fig, path_prefix)


def plot_latency(results: Sequence[NetworkResult], path_prefix: str) -> list[str]:
  """Latency (ms, log scale) per network and design, per image or per batch (the label says)."""
  designs = list(dict.fromkeys(n for r in results for n in r.results))
  unit = _unit(results)
  fig, ax = plt.subplots(figsize=(1.3 * len(results) * len(designs) / 3 + 3, 3.6))
  width = 0.8 / max(1, len(designs))
  for j, d in enumerate(designs):
    xs = [i + j * width for i in range(len(results))]
    ys = [r.results[d].latency_s * 1e3 if d in r.results else 0 for r in results]
    ax.bar(xs, ys, width=width, label=d)
  ax.set_xticks([i + 0.4 - width / 2 for i in range(len(results))])
  ax.set_xticklabels([f"{r.workload.name}\n{r.dataset}" for r in results], fontsize=8)
  ax.set_yscale("log")
  ax.set_ylabel(f"latency {unit} (ms)")
  ax.legend(fontsize=7)
  ax.set_title("Latency at equal PE-array area", fontsize=10)
  return _save(fig, path_prefix)


def load_accuracies(paths: Sequence[str], key: str = "integer_top1",
                    skipped: list[str] | None = None) -> dict[tuple[int, int], float]:
  """``{(bits, length): accuracy}`` from training ``results.json`` files.

  Uses ``key`` (default ``integer_top1``), falling back to ``quant_top1``. A file without a
  ``pattern`` (``bits`` and ``length``) or without either accuracy is skipped; when
  ``skipped`` is given, ``'PATH (reason)'`` is appended to it for each such file. The best
  accuracy wins when several files share a pattern.

  Raises:
    ValueError: a file that does not exist, is not JSON, or is not a JSON object (one line,
      naming the file).
  """
  out: dict[tuple[int, int], float] = {}
  for p in paths:
    r = cli.load_json(p, f"results file {p!r}")
    if not isinstance(r, dict):
      raise ValueError(f"results file {p!r}: expected a JSON object (a training "
                       f"results.json); got {type(r).__name__}")
    pat = r.get("pattern")
    if not isinstance(pat, dict) or "bits" not in pat or "length" not in pat:
      if skipped is not None:
        skipped.append(f"{p} (no pattern.bits / pattern.length)")
      continue
    acc = r.get(key, r.get("quant_top1"))
    if acc is None:
      if skipped is not None:
        skipped.append(f"{p} (no {key} or quant_top1)")
      continue
    k = (int(pat["bits"]), int(pat["length"]))
    out[k] = max(out.get(k, 0.0), float(acc))
  return out


def pareto_front(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """Points not dominated in (lower energy, higher accuracy), sorted by energy."""
  pts = sorted((p for p in points if p.get("accuracy") is not None),
               key=lambda p: (p["energy_pj"], -p["accuracy"]))
  front, best = [], -1.0
  for p in pts:
    if p["accuracy"] > best:
      front.append(p)
      best = p["accuracy"]
  return front


def plot_pareto(points: Sequence[Mapping[str, Any]], path_prefix: str,
                baseline_energy_pj: Mapping[str, float] | None = None,
                title: str = "EBSP bit-width x pattern-length sweep",
                unit: str = "per image") -> list[str]:
  """Energy vs accuracy of the sweep, with the Pareto front.

  Args:
    points: ``{'bits', 'length', 'energy_pj', 'accuracy' (or None)}``.
    path_prefix: output path without extension.
    baseline_energy_pj: optional ``{design: energy}`` drawn as vertical lines.
    title: figure title.
    unit: what the energies are, ``'per image'`` or ``'per batch of N images'``
      (:func:`ebsp_jax.hw.report.per_unit`).
  """
  have_acc = any(p.get("accuracy") is not None for p in points)
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  if have_acc:
    for p in points:
      if p.get("accuracy") is None:
        continue
      ax.scatter(p["energy_pj"] * 1e-6, 100 * p["accuracy"], color="#4c72b0")
      ax.annotate(f"{p['bits']}b(L{p['length']})", (p["energy_pj"] * 1e-6, 100 * p["accuracy"]),
                  fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([p["energy_pj"] * 1e-6 for p in front], [100 * p["accuracy"] for p in front],
            color="#c44e52", label="Pareto front")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
  else:
    labels = [f"{p['bits']}b(L{p['length']})" for p in points]
    ax.barh(labels, [p["energy_pj"] * 1e-6 for p in points], color="#4c72b0")
    ax.set_title(title + "\n(no accuracy results given: energy only)", fontsize=10)
  ax.set_xlabel(f"energy {unit} (uJ)")
  if baseline_energy_pj:
    for name, e in baseline_energy_pj.items():
      ax.axvline(e * 1e-6, ls=":", color="gray")
      ax.text(e * 1e-6, ax.get_ylim()[1], name, rotation=90, fontsize=7, va="top")
  if have_acc:
    ax.legend(fontsize=7)
  return _save(fig, path_prefix)


def plot_layer_energy(result: NetworkResult, path_prefix: str,
                      designs: Sequence[str] | None = None) -> list[str]:
  """Per-layer energy by category (uJ), one panel per design, layers in execution order.

  Args:
    result: one network on several designs.
    path_prefix: output path without extension.
    designs: the designs to draw (default: all in ``result``).
  """
  designs = list(designs or result.results)
  unit = per_unit(result.workload)
  layers = result.workload.layers
  fig, axes = plt.subplots(len(designs), 1, figsize=(max(6.0, 0.16 * len(layers) + 2),
                                                     1.9 * len(designs) + 0.6),
                           sharex=True, squeeze=False)
  xs = list(range(len(layers)))
  top = max(max(c.energy_pj * l.repeat for c, l in zip(result.results[d].layers, layers))
            for d in designs) * 1e-6 * 1.05
  for ax, d in zip([a for row in axes for a in row], designs):
    r = result.results[d]
    bottom = [0.0] * len(layers)
    for cat in CATEGORIES:
      vals = [c.energy[cat] * l.repeat * 1e-6 for c, l in zip(r.layers, layers)]
      if not any(vals):
        continue
      ax.bar(xs, vals, bottom=bottom, color=_COLORS[cat], label=cat, width=0.85)
      bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylim(0, top)
    ax.set_ylabel(f"{d}\n(uJ)", fontsize=8)
    ax.tick_params(labelsize=7)
  seen = {}
  for row in axes:
    for h, lab in zip(*row[0].get_legend_handles_labels()):
      seen.setdefault(lab, h)
  axes[0][0].legend(list(seen.values()), list(seen), fontsize=6, ncol=4, loc="upper right")
  axes[-1][0].set_xticks(xs)
  axes[-1][0].set_xticklabels([l.name for l in layers], rotation=90, fontsize=5)
  fig.suptitle(f"{result.workload.name} ({result.dataset}): energy per layer {unit}",
               fontsize=10)
  fig.tight_layout()
  return _save(fig, path_prefix)


def plot_roofline(result: NetworkResult, path_prefix: str,
                  designs: Sequence[str] | None = None) -> list[str]:
  """Roofline: achieved GMAC/s of every layer against its MACs per DRAM byte.

  Each design's roofs: peak ``MAC units x clock`` and the DRAM bandwidth line
  ``intensity x bytes/s``; points below both are bound by an on-chip level or by the
  mapping's utilisation.
  """
  designs = list(designs or result.results)
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  cmap = plt.get_cmap("tab10")
  xs_all = []
  for i, d in enumerate(designs):
    r = result.results[d]
    a = r.accelerator
    clock = a.tech.clock_mhz * 1e6
    xs, ys = [], []
    for c in r.layers:
      dram_bytes = sum(x.bits_read + x.bits_written for x in c.accesses if x.level == "dram") / 8
      if dram_bytes <= 0 or c.cycles <= 0:
        continue
      xs.append(c.macs / dram_bytes)
      ys.append(c.macs / (c.cycles / clock) * 1e-9)
    if not xs:
      continue
    xs_all += xs
    color = cmap(i % 10)
    ax.scatter(xs, ys, s=10, color=color, label=d, alpha=0.8)
    peak = a.mac_units * clock * 1e-9
    bw = a.tech.dram_bytes_per_cycle * clock
    knee = peak * 1e9 / bw
    lo, hi = min(xs) / 3, max(xs) * 3
    ax.plot([lo, knee, max(hi, knee * 3)], [lo * bw * 1e-9, peak, peak], color=color, lw=1,
            ls="--")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
  ax.set_ylabel("achieved GMAC/s")
  ax.legend(fontsize=7)
  ax.set_title(f"{result.workload.name} ({result.dataset}): roofline per layer "
               "(dashed: DRAM and peak roofs)", fontsize=9)
  fig.tight_layout()
  return _save(fig, path_prefix)
