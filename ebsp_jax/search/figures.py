"""The Pareto figure of the search study: top-1 against modelled energy, per family, over seeds.

:func:`plot_search_pareto` draws single formats and the searched per-layer configurations of
each candidate family (mixed EBSP, uniform only, power-of-two only) with error bars over seeds
(top-1 and, for searched points whose configuration differs by seed, energy), single-format
labels spread vertically so that formats of equal storage (equal energy) stay readable, and the
best single format's top-1 and energy as guide lines. Rows are those of
``experiments/search_sweep.py`` (``family``, ``label``, ``top1``, ``top1_std``, ``energy_pj``,
``energy_pj_std``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

#: family -> (legend, colour, marker).
STYLES = {
    "single": ("single format (every layer)", "0.35", "o"),
    "mixed": ("searched: EBSP + uniform + power-of-two per layer", "tab:blue", "s"),
    "uniform": ("searched: uniform formats only (HAWQ-style)", "tab:orange", "^"),
    "power_of_two": ("searched: power-of-two formats only", "tab:green", "D"),
}


def _spread(ys: Sequence[float], gap: float) -> list[float]:
  """Positions near ``ys`` (any order) at least ``gap`` apart, order kept."""
  order = sorted(range(len(ys)), key=lambda i: ys[i])
  out = [0.0] * len(ys)
  last = None
  for i in order:
    y = ys[i] if last is None else max(ys[i], last + gap)
    out[i] = last = y
  # centre the block on the points' centre
  shift = (sum(out) - sum(ys)) / max(1, len(ys))
  return [y - shift for y in out]


def plot_search_pareto(rows: Sequence[Mapping[str, Any]], path_stem: str,
                       best_single: Optional[str] = None, title: Optional[str] = None
                       ) -> list[str]:
  """Writes ``path_stem.png`` and ``.svg``; returns their paths.

  Args:
    rows: one per (family, label) with mean/std top-1 (%) and energy (pJ).
    path_stem: output path without extension.
    best_single: the label of the single format drawn as guide lines.
    title: figure title.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(9.0, 6.0), dpi=150)
  singles = [r for r in rows if r["family"] == "single"]
  for fam, (legend, colour, marker) in STYLES.items():
    rs = sorted((r for r in rows if r["family"] == fam and r.get("top1") is not None),
                key=lambda r: r["energy_pj"])
    if not rs:
      continue
    x = [r["energy_pj"] / 1e6 for r in rs]
    y = [r["top1"] for r in rs]
    xe = [(r.get("energy_pj_std") or 0.0) / 1e6 for r in rs]
    ye = [r.get("top1_std") or 0.0 for r in rs]
    ax.errorbar(x, y, yerr=ye, xerr=xe, fmt=marker, color=colour, ms=6, capsize=3, lw=1,
                label=f"{legend} (n = {rs[0]['n']} seeds)",
                linestyle="-" if fam != "single" else "none", alpha=0.9, zorder=3)
    if fam != "single":
      for r, xi, yi in zip(rs, x, y):
        ax.annotate(f"{float(r['label']):.2f}", (xi, yi), textcoords="offset points",
                    xytext={"mixed": (-4, 7), "uniform": (5, -11),
                            "power_of_two": (-22, -11)}[fam], fontsize=6.5, color=colour)
  ax.set_xlabel("modelled EBSP energy per image, µJ (equal-area design each configuration "
                "needs)")
  ax.set_ylabel("integer-mode top-1, % (mean ± std over seeds)")
  ax.grid(alpha=0.3)
  if best_single:
    b = next((r for r in singles if r["label"] == best_single), None)
    if b is not None:
      ax.axhline(b["top1"], color="0.5", lw=0.8, ls="--", zorder=1)
      ax.axvline(b["energy_pj"] / 1e6, color="0.5", lw=0.8, ls=":", zorder=1)
  x0, x1 = ax.get_xlim()
  ax.set_xlim(x0, x1 + 0.08 * (x1 - x0))      # room for the labels right of the points
  # Single-format labels: formats of equal storage share an energy; spread them vertically.
  fig.canvas.draw()
  y0, y1 = ax.get_ylim()
  gap = (y1 - y0) * 0.035
  groups: list[list[Mapping[str, Any]]] = []
  for r in sorted(singles, key=lambda r: r["energy_pj"]):
    if groups and abs(r["energy_pj"] - groups[-1][0]["energy_pj"]) < 0.02 * r["energy_pj"]:
      groups[-1].append(r)
    else:
      groups.append([r])
  x0, x1 = ax.get_xlim()
  dx = (x1 - x0) * 0.025
  for g in groups:
    ys = _spread([r["top1"] for r in g], gap)
    for r, ly in zip(g, ys):
      text = r["label"] + (" (best)" if r["label"] == best_single else "")
      ax.annotate(text, (r["energy_pj"] / 1e6, r["top1"]),
                  xytext=(r["energy_pj"] / 1e6 + dx, ly), fontsize=7, color="0.2",
                  va="center", arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5))
  ax.legend(fontsize=7.5, loc="lower right", title="searched points: labelled by their "
            "energy budget (x all-6b(L3))", title_fontsize=7)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
  out = []
  for ext in ("png", "svg"):
    p = f"{path_stem}.{ext}"
    fig.savefig(p)
    out.append(p)
  plt.close(fig)
  return out
