"""The search study's Pareto figure from rows of the sweep's summary."""

import os

from ebsp_jax.search import figures


def _row(family, label, top1, energy, std=0.1, estd=0.0):
  return {"family": family, "label": label, "n": 3, "top1": top1, "top1_std": std,
          "energy_pj": energy, "energy_pj_std": estd}


def test_spread_keeps_order_and_gap():
  ys = figures._spread([1.0, 1.01, 1.02, 5.0], 0.5)
  assert ys == sorted(ys) and all(b - a >= 0.5 - 1e-12 for a, b in zip(ys, ys[1:]))


def test_figure_is_written(tmp_path):
  rows = [_row("single", "4b(L1)", 89.5, 7.2e6), _row("single", "4b(L2)", 89.8, 7.21e6),
          _row("single", "4b(L3)", 90.2, 7.22e6), _row("single", "6b(L3)", 90.4, 9.9e6),
          _row("mixed", "0.75", 90.3, 7.4e6, estd=0.05e6),
          _row("mixed", "0.85", 90.5, 8.5e6, estd=0.02e6),
          _row("uniform", "0.75", 90.1, 7.4e6), _row("power_of_two", "0.75", 89.0, 7.3e6)]
  out = figures.plot_search_pareto(rows, str(tmp_path / "f" / "pareto"), best_single="6b(L3)",
                                   title="test")
  assert [os.path.basename(p) for p in out] == ["pareto.png", "pareto.svg"]
  assert all(os.path.getsize(p) > 10_000 for p in out)
  svg = (tmp_path / "f" / "pareto.svg").read_text()
  for text in ("4b(L1)", "6b(L3) (best)", "uniform formats only", "0.85"):
    assert text in svg
