"""Markdown tables of runs from their ``results.json`` files, aggregated over seeds.

    python -m ebsp_jax.train.summarize runs/fmnist/seed*/*/results.json
    python -m ebsp_jax.train.summarize --per_run runs/fmnist/seed0/*/results.json
    python -m ebsp_jax.train.summarize --help

A file is either a run's ``results.json`` (its run name is the directory) or a copy named after
the run (``docs/results/fashion_mnist/seed0/5b_L3.json``). Every run is classified from its
config (:func:`method`):

* ``float``: float training only (``admm_epochs = finetune_epochs = 0``, ``float_epochs > 0``);
* ``ptq``: no ADMM: the (pretrained) float model projected onto the grid with fitted scales,
  activations calibrated during ``finetune_epochs`` (the sweep runs that phase at a vanishing
  learning rate, so nothing but the activation ranges changes);
* ``admm``: ADMM QAT (+ fine-tuning) from the float model.

Runs of the same method and weight format (pattern, activation bits, first/last layer) form a
group whose members must have identical configs except ``seed`` and ``pretrained``
(:func:`aggregate` raises otherwise, and on a repeated seed). The default output is one row per
format with mean ± sample std over seeds of float / PTQ / ADMM top-1 (fake-quant and integer
mode), storage (code) bits and level count, then paired comparisons (:func:`comparisons`): per
seed, EBSP minus uniform / power-of-two at equal storage bits, on the same float model.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ebsp_jax import cli
from ebsp_jax.train.config import NON_SEMANTIC_FIELDS

METHODS = ("float", "ptq", "admm")
# Config fields in which the seeds of one setting may differ (the non-semantic ones too: a
# field that left the fingerprint later, e.g. integer_eval, is in older runs' results only).
_FREE_FIELDS = ("seed", "pretrained") + NON_SEMANTIC_FIELDS
_KIND_ORDER = {"EBSP": 0, "uniform": 1, "power-of-two": 2}


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


def run_name(path: str) -> str:
  """``results.json`` -> its directory's name; any other file -> its name without ``.json``."""
  base = os.path.basename(path)
  if base == "results.json":
    return os.path.basename(os.path.dirname(os.path.abspath(path)))
  return base[:-5] if base.endswith(".json") else base


def load(paths: Sequence[str]) -> List[Dict[str, Any]]:
  """Reads results files; each row gets ``_run`` (:func:`run_name`) and ``_path``.

  Raises:
    ValueError: a file is missing, is not JSON, or is not a run's results (no ``pattern`` with
      ``bits`` and ``length``), naming the file.
  """
  rows = []
  for path in paths:
    res = cli.load_json(path, f"results file {path!r}")
    pattern = res.get("pattern") if isinstance(res, dict) else None
    if not (isinstance(pattern, dict) and "bits" in pattern and "length" in pattern):
      raise ValueError(f"results file {path!r} is not a run's results: it has no "
                       "'pattern' with 'bits' and 'length' (expected a results.json written by "
                       "training)")
    res["_run"] = run_name(path)
    res["_path"] = path
    rows.append(res)
  return sorted(rows, key=lambda r: (r["pattern"].get("code_bits", 99), r["pattern"]["bits"],
                                     -r["pattern"]["length"]))


def table(rows: Sequence[Dict[str, Any]]) -> str:
  """Per-run Markdown table (format, storage bits, float/fake-quant/integer top-1)."""
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


# ----------------------------------------------------------------------------------------------
# Aggregation over seeds.
def method(res: Dict[str, Any]) -> str:
  """``float``, ``ptq`` or ``admm`` from the run's config (see the module docstring)."""
  cfg = res.get("config", {})
  if cfg.get("admm_epochs", 0) > 0:
    return "admm"
  if cfg.get("finetune_epochs", 0) == 0 and cfg.get("float_epochs", 0) > 0:
    return "float"
  return "ptq"


def format_key(res: Dict[str, Any]) -> Tuple:
  """``(pattern name, activation bits, first/last pattern, dual-LOD training)``: what a table
  row is about."""
  p = res["pattern"]
  return (p.get("name", "%db(L%d)" % (p["bits"], p["length"])), res.get("activation_bits"),
          res.get("first_last_pattern") or "same", res.get("config", {}).get("dual_lod", "off"))


def stat(values: Sequence[Optional[float]]) -> Optional[Dict[str, Any]]:
  """``{'mean', 'std', 'n', 'min', 'max'}`` of the non-None values (sample std, None for n < 2);
  None when there are none."""
  xs = [float(v) for v in values if v is not None]
  if not xs:
    return None
  n = len(xs)
  mean = sum(xs) / n
  std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
  return {"mean": mean, "std": std, "n": n, "min": min(xs), "max": max(xs)}


def _seed(res: Dict[str, Any]) -> Any:
  return res.get("config", {}).get("seed")


def _delta(res: Dict[str, Any]) -> Optional[float]:
  if res.get("quant_top1") is None or res.get("float_top1") is None:
    return None
  return res["quant_top1"] - res["float_top1"]


def aggregate(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Groups runs by (method, format) and summarises each group over its seeds.

  Returns one dict per group: ``method``, ``format`` (:func:`format_key`), ``runs`` (run names),
  ``seeds``, ``pattern`` / ``kind`` (of the first member), ``members`` (seed -> result), and
  :func:`stat` of ``float_top1``, ``projected_top1``, ``quant_top1``, ``integer_top1``,
  ``delta`` (quant - float, per run) and ``wall_seconds``. The float group's format is
  ``None`` (its pattern only names the projection it was evaluated with).

  Raises:
    ValueError: two members of a group differ in a config field other than seed / pretrained,
      or share a seed.
  """
  groups: Dict[Tuple, List[Dict[str, Any]]] = {}
  for r in rows:
    m = method(r)
    key = (m, None if m == "float" else format_key(r))
    groups.setdefault(key, []).append(r)
  out = []
  for (m, fmt), members in groups.items():
    ref = members[0]
    ref_cfg = {k: v for k, v in ref.get("config", {}).items() if k not in _FREE_FIELDS}
    seen: Dict[Any, Dict[str, Any]] = {}
    for r in members:
      cfg = {k: v for k, v in r.get("config", {}).items() if k not in _FREE_FIELDS}
      diff = sorted(k for k in set(cfg) | set(ref_cfg) if cfg.get(k) != ref_cfg.get(k))
      if diff:
        raise ValueError(f"runs {ref['_run']!r} and {r['_run']!r} ({m}, {fmt}) differ in "
                         f"{', '.join(diff)}: not seeds of one setting")
      s = _seed(r)
      if s in seen:
        raise ValueError(f"runs {seen[s]['_run']!r} and {r['_run']!r} ({m}, {fmt}) both have "
                         f"seed {s!r}")
      seen[s] = r
    g = {"method": m, "format": fmt, "runs": sorted({r["_run"] for r in members}),
         "seeds": sorted(seen, key=str), "members": seen, "pattern": ref["pattern"],
         "kind": _kind(ref), "activation_bits": ref.get("activation_bits")}
    for k in ("float_top1", "projected_top1", "quant_top1", "integer_top1", "wall_seconds"):
      g[k] = stat([r.get(k) for r in members])
    g["delta"] = stat([_delta(r) for r in members])
    out.append(g)
  return out


def _row_order(g: Dict[str, Any]) -> Tuple:
  if g["method"] == "float":
    return (0,)
  p = g["pattern"]
  return (1 if g["activation_bits"] else 0.5, -p.get("code_bits", 99), _KIND_ORDER[g["kind"]],
          -p["bits"], -p["length"])


def _pm(s: Optional[Dict[str, Any]], scale: float = 100.0, signed: bool = False) -> str:
  if s is None:
    return "n/a"
  sign = "+" if signed else ""
  mean = scale * s["mean"]
  text = f"{0.0 if abs(mean) < 0.005 else mean:{sign}.2f}"  # no "-0.00"
  if s["std"] is not None:
    text += f" ± {scale * s['std']:.2f}"
  return text


def aggregate_table(groups: Sequence[Dict[str, Any]]) -> str:
  """One Markdown row per weight format: PTQ and ADMM columns side by side, mean ± std."""
  rows: Dict[Any, Dict[str, Dict[str, Any]]] = {}
  for g in groups:
    rows.setdefault(g["format"], {})[g["method"]] = g
  head = ("| weights | kind | storage bits | levels | act bits | seeds | float top-1 | "
          "PTQ fake-quant | PTQ integer | ADMM projected | ADMM fake-quant | ADMM integer | "
          "ADMM Δ vs float | wall / run |")
  lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
  for fmt, by in sorted(rows.items(), key=lambda kv: _row_order(next(iter(kv[1].values())))):
    any_g = next(iter(by.values()))
    ptq, adm, flt = by.get("ptq"), by.get("admm"), by.get("float")
    ns = sorted({len(g["seeds"]) for g in by.values()})
    seeds = str(ns[0]) if len(ns) == 1 else "/".join(
        f"{m} {len(by[m]['seeds'])}" for m in METHODS if m in by)
    walls = "; ".join((f"{m} " if len(by) > 1 else "")
                      + f"{by[m]['wall_seconds']['mean'] / 60:.1f} min" for m in METHODS
                      if m in by and by[m]["wall_seconds"] is not None)
    if flt is not None:
      lines.append(f"| float model | — | 32 | — | float | {seeds} | {_pm(flt['float_top1'])} "
                   "| — | — | — | — | — | — | " + walls + " |")
      continue
    p = any_g["pattern"]
    name, act, fl, dual = fmt
    label = (name + ("" if fl == "same" else f", first/last {fl}")
             + ("" if dual == "off" else f", dual-LOD {dual}"))
    float_top1 = (adm or ptq)["float_top1"]
    lines.append(
        f"| {label} | {any_g['kind']} | {p.get('code_bits', '?')} | {p.get('num_levels', '?')} "
        f"| {act or 'float'} | {seeds} | {_pm(float_top1)} "
        f"| {_pm(ptq['quant_top1']) if ptq else '—'} | {_pm(ptq['integer_top1']) if ptq else '—'} "
        f"| {_pm(adm['projected_top1']) if adm else '—'} "
        f"| {_pm(adm['quant_top1']) if adm else '—'} | {_pm(adm['integer_top1']) if adm else '—'} "
        f"| {_pm(adm['delta'], signed=True) if adm else '—'} | {walls} |")
  return "\n".join(lines)


def paired(a: Dict[str, Any], b: Dict[str, Any], metric: str = "quant_top1"
           ) -> Optional[Dict[str, Any]]:
  """Per-seed ``a - b`` of ``metric`` over the seeds both groups have: :func:`stat` of the
  differences plus ``wins`` (seeds where a > b), ``ties`` and ``seeds``; None if no seed is shared."""
  seeds = [s for s in a["seeds"] if s in b["members"]]
  diffs = []
  for s in seeds:
    va, vb = a["members"][s].get(metric), b["members"][s].get(metric)
    if va is not None and vb is not None:
      diffs.append(va - vb)
  st = stat(diffs)
  if st is None:
    return None
  st.update(wins=sum(d > 0 for d in diffs), ties=sum(d == 0 for d in diffs), seeds=seeds)
  return st


def comparisons(groups: Sequence[Dict[str, Any]], metric: str = "quant_top1"
                ) -> List[Dict[str, Any]]:
  """Every EBSP group against every uniform / power-of-two group of the same method, storage
  bits, activation bits and first/last layer: ``{'method', 'code_bits', 'a', 'b', 'diff'}``
  with ``diff`` from :func:`paired` (a = the EBSP group)."""
  out = []
  for a in groups:
    if a["method"] == "float" or a["kind"] != "EBSP":
      continue
    for b in groups:
      if (b["method"] != a["method"] or b["kind"] == "EBSP"
          or b["pattern"].get("code_bits") != a["pattern"].get("code_bits")
          or b["format"][1:] != a["format"][1:]):
        continue
      d = paired(a, b, metric)
      if d is not None:
        out.append({"method": a["method"], "code_bits": a["pattern"].get("code_bits"),
                    "a": a, "b": b, "diff": d})
  return sorted(out, key=lambda c: (METHODS.index(c["method"]), -c["code_bits"],
                                    -c["a"]["pattern"]["bits"], -c["a"]["pattern"]["length"],
                                    _KIND_ORDER[c["b"]["kind"]], -c["b"]["pattern"]["bits"]))


def comparisons_table(comps: Sequence[Dict[str, Any]], metric: str = "quant_top1") -> str:
  """Markdown table of :func:`comparisons` (points of ``metric``, mean ± std of per-seed
  differences, range, and how many seeds EBSP wins)."""
  head = (f"| method | storage bits | EBSP | vs | Δ {metric} (mean ± std) | min … max | "
          "EBSP ahead | seeds |")
  lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
  for c in comps:
    d = c["diff"]
    ahead = f"{d['wins']}/{d['n']}" + (f" ({d['ties']} tied)" if d["ties"] else "")
    lines.append(
        f"| {c['method']} | {c['code_bits']} | {c['a']['format'][0]} ({c['a']['pattern'].get('num_levels', '?')} levels) "
        f"| {c['b']['format'][0]} {c['b']['kind']} ({c['b']['pattern'].get('num_levels', '?')} levels) "
        f"| {_pm(d, signed=True)} | {_pm({'mean': d['min'], 'std': None}, signed=True)} … "
        f"{_pm({'mean': d['max'], 'std': None}, signed=True)} "
        f"| {ahead} "
        f"| {d['n']} |")
  return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
  parser = _OneLineErrorParser(
      prog="python -m ebsp_jax.train.summarize",
      description="Markdown tables of training runs from their results files: by default one "
      "row per weight format (mean ± sample std over seeds of float / PTQ / ADMM top-1), then "
      "the paired per-seed comparisons of EBSP against uniform and power-of-two formats at "
      "equal storage bits.",
      epilog="example: python -m ebsp_jax.train.summarize runs/fmnist/seed*/*/results.json")
  parser.add_argument(
      "results", nargs="+", metavar="RESULTS.json",
      help="a run's results.json (its run name is the directory) or a copy named after the run "
      "(e.g. docs/results/fashion_mnist/seed0/5b_L3.json)")
  parser.add_argument("--per_run", action="store_true",
                      help="one row per file instead of the aggregation over seeds")
  return parser


class _OneLineErrorParser(argparse.ArgumentParser):
  """argparse with the project's user errors: ``error: <one line>`` on stderr, exit status 2."""

  def error(self, message: str):
    cli.fail(f"{message} (see --help)")


def main(argv: Sequence[str]) -> int:
  """CLI (``--help`` lists the arguments): the aggregated table and the paired comparisons, or
  with ``--per_run`` one row per file. A missing or unreadable file, a file that is not a run's
  results, or runs that do not aggregate is one line on stderr and exit status 2."""
  args = _parser().parse_args(list(argv))
  try:
    rows = load(args.results)
    if args.per_run:
      print(table(rows))
      return 0
    groups = aggregate(rows)
  except ValueError as e:
    cli.fail(cli.one_line(e))
  print(aggregate_table(groups))
  comps = comparisons(groups)
  if comps:
    print()
    print(comparisons_table(comps))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
