"""A Markdown table of runs from their ``results.json`` files.

    python -m ebsp_jax.train.summarize runs/fmnist/*/results.json

One row per run, sorted by storage bits then pattern: the weight format, its storage (code) bits
and level count, float / post-projection / fake-quant / integer-mode top-1 (percent), the change
against the run's float model, steps, wall time and the device.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Sequence


def _pct(v) -> str:
  return "n/a" if v is None else f"{100 * v:.2f}"


def _kind(res: Dict[str, Any]) -> str:
  p = res["pattern"]
  n = p["bits"] - 1
  if p["length"] == n:
    return "uniform"
  if p["length"] == 1:
    return "power-of-two"
  return "EBSP"


def load(paths: Sequence[str]) -> List[Dict[str, Any]]:
  """Reads results.json files; each row gets ``_run``, the name of its run directory."""
  rows = []
  for path in paths:
    with open(path) as f:
      res = json.load(f)
    res["_run"] = os.path.basename(os.path.dirname(os.path.abspath(path)))
    rows.append(res)
  return sorted(rows, key=lambda r: (r["pattern"].get("code_bits", 99), r["pattern"]["bits"],
                                     -r["pattern"]["length"]))


def table(rows: Sequence[Dict[str, Any]]) -> str:
  """Markdown table of results rows (format, storage bits, float/fake-quant/integer top-1)."""
  head = ("| run | format | kind | storage bits | levels | first/last | act bits | float top-1 | "
          "projected | fake-quant top-1 | integer top-1 | Δ vs float | steps | wall | device |")
  lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
  for r in rows:
    p = r["pattern"]
    delta = (None if r.get("quant_top1") is None or r.get("float_top1") is None
             else r["quant_top1"] - r["float_top1"])
    lines.append(
        f"| {r['_run']} | {p.get('name', '%db(L%d)' % (p['bits'], p['length']))} | {_kind(r)} "
        f"| {p.get('code_bits', '?')} | {p.get('num_levels', '?')} "
        f"| {r.get('first_last_pattern') or 'same'} | {r.get('activation_bits')} "
        f"| {_pct(r.get('float_top1'))} | {_pct(r.get('projected_top1'))} "
        f"| {_pct(r.get('quant_top1'))} | {_pct(r.get('integer_top1'))} "
        f"| {'n/a' if delta is None else f'{100 * delta:+.2f}'} | {r.get('steps')} "
        f"| {r.get('wall_seconds', 0) / 60:.1f} min | {r.get('device_kind', '?')} x{r.get('devices', 1)} |")
  return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
  """CLI: prints the table of the given results.json files; 2 without arguments."""
  if not argv:
    print("usage: python -m ebsp_jax.train.summarize RESULTS.json ...", file=sys.stderr)
    return 2
  print(table(load(argv)))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
