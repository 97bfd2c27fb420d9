"""Every run of the per-layer format search study (issue 16 item 4), and its table and figure.

    nice -n 10 .venv/bin/python experiments/search_sweep.py --runs=runs/search/lenet5 \\
        --seeds=0,1,2 --stage=all

Per seed S (``RUNS/seedS/``), with the training hyper-parameters of
``experiments/configs/fashion_mnist.flags`` (the README table's protocol):

1. ``float``: the float model, ``--float_epochs`` epochs.
2. ``search``: ``experiments/search.py`` from it, least Hessian sensitivity under an energy
   budget (``--budgets``, fractions of the all-6b(L3) network's modelled energy), for three
   candidate families: ``mixed`` (the default candidates: EBSP patterns, uniform and
   power-of-two at 3-8 bits), ``uniform`` (HAWQ-style: uniform formats only) and
   ``power_of_two``; one sensitivity measurement per seed (``--sensitivity_cache``).
3. ``admm``: an ADMM run (2 epochs + 0.5 epoch fine-tuning, from the float model) of every
   distinct per-layer configuration: each single format of ``--singles`` (every layer in it)
   and each searched one, all through ``--layer_formats`` (one code path); a configuration
   found twice is trained once.
4. ``best``: the single format of the best mean integer top-1 over the seeds sets one more
   budget, its own modelled energy, searched and trained for every family (the "same energy"
   comparison).
5. ``report``: the table (``OUT/summary.json``, ``OUT/summary.md``), the search outputs and
   the ADMM results (``OUT/seedS/``), and the Pareto figure (``--figure``).

A run whose ``results.json`` (or search output) exists is skipped, so a stopped sweep continues
where it was; ``--dry_run`` prints the commands. Modelled energy: the EBSP design each
configuration needs (``experiments/hardware.py --layer_formats`` settings, its defaults).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from ebsp_jax import cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "runs/search/lenet5", "Directory of every run (seedS/...).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_string("model", "lenet5", "Model (Fashion-MNIST).")
flags.DEFINE_float("float_epochs", 8.0, "Epochs of the float models.")
flags.DEFINE_list("singles", ["3b(L1)", "3b(L2)", "4b(L1)", "4b(L2)", "4b(L3)", "5b(L3)",
                              "5b(L4)", "6b(L3)", "8b(L7)"], "Single formats trained.")
flags.DEFINE_list("budgets", ["0.65", "0.75", "0.85"],
                  "Energy budgets, fractions of the all-6b(L3) network's.")
flags.DEFINE_list("families", ["mixed", "uniform", "power_of_two"], "Searched families.")
flags.DEFINE_enum("stage", "all", ["all", "float", "search", "admm", "best", "report"],
                  "What to do (all: every stage in order).")
flags.DEFINE_string("out", "docs/results/search/lenet5_sweep", "Result files of the report.")
flags.DEFINE_string("figure", "docs/figures/pareto_lenet5_fashion_mnist",
                    "Pareto figure (PNG and SVG) of the report.")
flags.DEFINE_integer("probes", 32, "Hutchinson probes of the searches.")
flags.DEFINE_boolean("dry_run", False, "Print the commands, run nothing.")

PY = sys.executable
FAMILY_CANDIDATES = {"mixed": "default", "uniform": "uniform", "power_of_two": "power_of_two"}
TRAIN_FLAGS = os.path.join("experiments", "configs", "fashion_mnist.flags")
REFERENCE = "6b(L3)"


def _run(cmd: list[str], log: str) -> None:
  """Runs ``cmd`` at low priority, its output appended to ``log`` (exits on failure)."""
  line = " ".join(shlex.quote(c) for c in cmd)
  print(f"$ {line}", flush=True)
  if FLAGS.dry_run:
    return
  os.makedirs(os.path.dirname(log), exist_ok=True)
  t = time.time()
  with open(log, "a", encoding="utf-8") as f:
    f.write(f"$ {line}\n")
    f.flush()
    rc = subprocess.call(["nice", "-n", "10", *cmd], stdout=f, stderr=subprocess.STDOUT,
                         cwd=ROOT)
  print(f"  ({time.time() - t:.0f} s, rc {rc})", flush=True)
  if rc:
    cli.fail(f"{cmd[1]} failed with status {rc}; see {log}")


def _seed_dir(seed: str) -> str:
  return os.path.join(FLAGS.runs, f"seed{seed}")


def _float(seed: str) -> str:
  d = os.path.join(_seed_dir(seed), "float")
  if not os.path.exists(os.path.join(d, "results.json")):
    _run([PY, "experiments/fashion_mnist.py", f"--flagfile={TRAIN_FLAGS}",
          f"--model={FLAGS.model}", f"--workdir={d}", f"--seed={seed}",
          f"--float_epochs={FLAGS.float_epochs}", "--admm_epochs=0", "--finetune_epochs=0",
          "--integer_eval=false"], os.path.join(_seed_dir(seed), "log.txt"))
  return d


def _search(seed: str, family: str, budget: str) -> str:
  out = os.path.join(_seed_dir(seed), "search", f"{family}_energy{budget}.json")
  if not os.path.exists(out):
    _run([PY, "experiments/search.py", f"--model={FLAGS.model}", "--dataset=fashion_mnist",
          f"--pretrained={os.path.join(_seed_dir(seed), 'float')}",
          f"--budget=energy:{budget}", f"--reference_format={REFERENCE}",
          f"--candidates={FAMILY_CANDIDATES[family]}", f"--seed={seed}",
          f"--probes={FLAGS.probes}",
          f"--sensitivity_cache={os.path.join(_seed_dir(seed), 'sensitivity_cache.json')}",
          f"--cost_cache={os.path.join(FLAGS.runs, 'cost_cache.json')}", f"--output={out}"],
         os.path.join(_seed_dir(seed), "log.txt"))
  return out


def _map_id(layers: dict) -> str:
  return "m" + hashlib.sha256(json.dumps(layers, sort_keys=True).encode()).hexdigest()[:10]


def _admm(seed: str, layers: dict) -> str:
  """Trains the configuration ``layers`` ({layer: format}) once per seed; its workdir."""
  mid = _map_id(layers)
  path = os.path.join(_seed_dir(seed), "maps", f"{mid}.json")
  d = os.path.join(_seed_dir(seed), "admm", mid)
  if not FLAGS.dry_run:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"layers": layers}, f, indent=1)
  if os.path.exists(os.path.join(d, "results.json")):
    return d
  lock = d + ".lock"      # another sweep process (e.g. --families= for the singles) trains it
  if not FLAGS.dry_run:
    os.makedirs(os.path.dirname(d), exist_ok=True)
    try:
      os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
      print(f"skip {d}: {lock} exists (another sweep process is training it)", flush=True)
      return d
  try:
    _run([PY, "experiments/fashion_mnist.py", f"--flagfile={_formatless_flagfile()}",
          f"--model={FLAGS.model}", f"--workdir={d}", f"--seed={seed}",
          f"--pretrained={os.path.join(_seed_dir(seed), 'float')}", "--float_epochs=0",
          f"--layer_formats={path}"], os.path.join(_seed_dir(seed), "log.txt"))
  finally:
    if not FLAGS.dry_run:
      os.remove(lock)
  return d


def _formatless_flagfile() -> str:
  """TRAIN_FLAGS without its single weight format (``--pattern_bits``/``--pattern_length``,
  which ``--layer_formats`` refuses beside it, from a flagfile too)."""
  path = os.path.join(FLAGS.runs, "layer_formats.flags")
  with open(TRAIN_FLAGS, encoding="utf-8") as f:
    lines = [l for l in f if not l.startswith(("--pattern_bits", "--pattern_length"))]
  if not FLAGS.dry_run:
    os.makedirs(FLAGS.runs, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(lines)
  return path


def _layers() -> list[str]:
  from ebsp_jax import hw
  from ebsp_jax.search import costs
  return list(costs.workload_layer_names(hw.model_workload(FLAGS.model, "fashion_mnist")))


def _load(path: str):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _configs() -> list[dict]:
  """Every (kind, label, seed, layers, search output) known from the files so far."""
  out = []
  names = _layers()
  for seed in FLAGS.seeds:
    for fmt in FLAGS.singles:
      out.append({"family": "single", "label": fmt, "seed": seed,
                  "layers": {n: fmt for n in names}, "search": None})
    sdir = os.path.join(_seed_dir(seed), "search")
    for fn in sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []:
      if not fn.endswith(".json"):
        continue
      family, _, budget = fn[:-5].partition("_energy")
      if family not in FLAGS.families:
        continue
      s = _load(os.path.join(sdir, fn))
      out.append({"family": family, "label": budget, "seed": seed, "layers": s["layers"],
                  "search": os.path.join(sdir, fn)})
  return out


def _energy(layers: dict, cache: dict) -> dict:
  """Modelled energy/latency of a configuration on the EBSP design it needs (hardware.py's
  defaults: the ebsp_jax.hw.flags defaults, mapper 'default')."""
  key = json.dumps(layers, sort_keys=True)
  if key not in cache:
    from ebsp_jax import hw, search
    from ebsp_jax.hw import arch
    wl = hw.model_workload(FLAGS.model, "fashion_mnist")
    fm = {n: search.parse_format(f) for n, f in layers.items()}
    acc = arch.build_ebsp_for(fm.values())
    r = hw.evaluate_network(wl, {"ebsp": acc}, layer_formats=fm).results["ebsp"]
    bits = sum(l.weight_count * l.repeat * fm[l.name].bits for l in wl.layers)
    cache[key] = {"energy_pj": r.energy_pj, "latency_s": r.latency_s, "weight_bits": bits,
                  "pes": acc.pe_count}
  return cache[key]


def _mean_std(xs):
  xs = [x for x in xs if x is not None]
  if not xs:
    return None, None
  m = sum(xs) / len(xs)
  s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
  return m, s


def _best_single(rows) -> tuple[str, float]:
  """The single format of the best mean integer top-1 (ties: the cheaper)."""
  singles = [r for r in rows if r["family"] == "single"]
  done = {r["label"] for r in singles if r["n"] == len(FLAGS.seeds)}
  missing = [f for f in FLAGS.singles if f not in done]
  if missing:
    cli.fail(f"single formats {', '.join(missing)} lack results for some seed: run "
             "--stage=admm first")
  best = max(singles, key=lambda r: (round(r["top1"], 6), -r["energy_pj"]))
  return best["label"], best["energy_pj"]


def _collect() -> tuple[list[dict], list[dict]]:
  """``(per-run records, per-point rows)`` from the files."""
  cache_path = os.path.join(FLAGS.runs, "energy_cache.json")
  cache = _load(cache_path) if os.path.exists(cache_path) else {}
  recs = []
  for c in _configs():
    d = os.path.join(_seed_dir(c["seed"]), "admm", _map_id(c["layers"]), "results.json")
    if not os.path.exists(d):
      continue
    r = _load(d)
    e = _energy(c["layers"], cache)
    rec = {**c, "workdir": os.path.dirname(d), "integer_top1": r.get("integer_top1"),
           "quant_top1": r.get("quant_top1"), "float_top1": None, **e,
           "wall_seconds": r.get("wall_seconds")}
    fl = os.path.join(_seed_dir(c["seed"]), "float", "results.json")
    if os.path.exists(fl):
      rec["float_top1"] = _load(fl).get("float_top1")
    if c["search"]:
      s = _load(c["search"])
      rec["searched_energy_pj"] = s["cost"]["energy_pj"]
      rec["design"] = s["design"]
      rec["sensitivity"] = s["sensitivity"]["total"]
      rec["budget_fraction"] = s["budget"]["fraction"]
    recs.append(rec)
  os.makedirs(os.path.dirname(cache_path), exist_ok=True)
  with open(cache_path, "w", encoding="utf-8") as f:
    json.dump(cache, f)
  ref = _energy({n: REFERENCE for n in _layers()}, cache)["energy_pj"]
  rows = []
  keys = sorted({(r["family"], r["label"]) for r in recs})
  for fam, label in keys:
    rs = [r for r in recs if (r["family"], r["label"]) == (fam, label)]
    t, ts = _mean_std([100 * r["integer_top1"] for r in rs])
    q, qs = _mean_std([100 * r["quant_top1"] for r in rs])
    e, es = _mean_std([r["energy_pj"] for r in rs])
    rows.append({"family": fam, "label": label, "n": len(rs),
                 "seeds": [r["seed"] for r in rs], "top1": t, "top1_std": ts,
                 "quant_top1": q, "quant_top1_std": qs, "energy_pj": e, "energy_pj_std": es,
                 "energy_fraction": e / ref,
                 "per_seed": {r["seed"]: {"integer_top1": r["integer_top1"],
                                          "quant_top1": r["quant_top1"],
                                          "energy_pj": r["energy_pj"], "layers": r["layers"],
                                          **({"design": r["design"]} if "design" in r else {})}
                              for r in rs}})
  return recs, rows


def _paired(recs, a: tuple, b: tuple) -> dict:
  """Paired integer top-1 difference (points) of configuration a minus b over common seeds."""
  by = {}
  for r in recs:
    by.setdefault((r["family"], r["label"]), {})[r["seed"]] = r
  A, B = by.get(a, {}), by.get(b, {})
  seeds = sorted(set(A) & set(B))
  d = [100 * (A[s]["integer_top1"] - B[s]["integer_top1"]) for s in seeds]
  m, sd = _mean_std(d)
  return {"a": list(a), "b": list(b), "seeds": seeds, "diff": d, "mean": m, "std": sd,
          "a_ahead": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d)}


def _report() -> None:
  recs, rows = _collect()
  best, best_e = _best_single(rows)
  ref_rows = {(r["family"], r["label"]): r for r in rows}
  goals = {"best_single": best, "best_single_energy_pj": best_e}
  # Goal 1: at the best single format's energy, the searched mix is no worse (paired).
  frac = _fraction_label(best_e)
  goals["same_energy"] = {fam: _paired(recs, (fam, frac), ("single", best))
                          for fam in FLAGS.families if (fam, frac) in ref_rows}
  # Goal 2: the least energy at which each family reaches the best single's mean top-1.
  target = ref_rows[("single", best)]["top1"]
  reach = {}
  for fam in ["single"] + list(FLAGS.families):
    ok = [r for r in rows if r["family"] == fam and r["n"] == len(FLAGS.seeds)
          and r["top1"] >= target]
    if ok:
      r = min(ok, key=lambda r: r["energy_pj"])
      reach[fam] = {"label": r["label"], "energy_pj": r["energy_pj"], "top1": r["top1"],
                    "energy_vs_best_single": r["energy_pj"] / best_e}
    else:
      reach[fam] = None
  goals["equal_top1"] = {"target_top1": target, "least_energy": reach}
  os.makedirs(FLAGS.out, exist_ok=True)
  summary = {"what": "LeNet-5 on Fashion-MNIST: ADMM runs of single formats and searched "
                     "per-layer configurations; integer-mode top-1 (%) mean/std over seeds; "
                     "modelled EBSP energy per image on the design each configuration needs",
             "seeds": FLAGS.seeds, "budgets": FLAGS.budgets, "singles": FLAGS.singles,
             "reference": REFERENCE, "rows": rows, "goals": goals,
             "runs": [{k: v for k, v in r.items() if k != "search"} for r in recs]}
  with open(os.path.join(FLAGS.out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(FLAGS.out, "summary.md"), "w", encoding="utf-8") as f:
    f.write(_table(rows))
  for r in recs:   # the per-run files next to the table
    d = os.path.join(FLAGS.out, f"seed{r['seed']}")
    os.makedirs(d, exist_ok=True)
    name = f"{r['family']}_{r['label']}".replace("(", "_").replace(")", "")
    if r["search"]:
      with open(r["search"], encoding="utf-8") as src, open(
          os.path.join(d, f"search_{name}.json"), "w", encoding="utf-8") as dst:
        dst.write(src.read())
    with open(os.path.join(r["workdir"], "results.json"), encoding="utf-8") as src, open(
        os.path.join(d, f"admm_{name}.json"), "w", encoding="utf-8") as dst:
      dst.write(src.read())
  print(_table(rows))
  print(json.dumps(goals, indent=1))
  from ebsp_jax.search import figures
  written = figures.plot_search_pareto(rows, FLAGS.figure, best_single=best)
  print("figure: " + ", ".join(written))


def _fraction_label(energy_pj: float) -> str:
  """The budget label of the best single format's own energy (6 significant digits, up)."""
  from ebsp_jax import hw  # noqa: F401  (the cache below needs the model)
  cache_path = os.path.join(FLAGS.runs, "energy_cache.json")
  cache = _load(cache_path) if os.path.exists(cache_path) else {}
  ref = _energy({n: REFERENCE for n in _layers()}, cache)["energy_pj"]
  f = energy_pj / ref
  return f"{math.ceil(f * 1e6) / 1e6:.6f}"


def _table(rows) -> str:
  lines = ["| family | point | seeds | integer top-1 % | fake-quant top-1 % | energy uJ "
           "| energy / 6b(L3) |", "|---|---|---|---|---|---|---|"]
  order = {"single": 0, "mixed": 1, "uniform": 2, "power_of_two": 3}
  for r in sorted(rows, key=lambda r: (order.get(r["family"], 9), r["energy_pj"])):
    lines.append(f"| {r['family']} | {r['label']} | {r['n']} | {r['top1']:.2f} ± "
                 f"{r['top1_std']:.2f} | {r['quant_top1']:.2f} ± {r['quant_top1_std']:.2f} | "
                 f"{r['energy_pj'] / 1e6:.3f} ± {r['energy_pj_std'] / 1e6:.3f} | "
                 f"{r['energy_fraction']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from ebsp_jax import search
  try:
    for f in FLAGS.singles:
      search.parse_format(f)
    for b in FLAGS.budgets:
      if not float(b) > 0:
        raise ValueError(f"budget {b} must be > 0")
  except ValueError as e:
    cli.fail(cli.one_line(e))
  unknown = [f for f in FLAGS.families if f not in FAMILY_CANDIDATES]
  if unknown:
    cli.fail(f"unknown families {unknown}; known: {', '.join(FAMILY_CANDIDATES)}")
  stages = (["float", "search", "admm", "best", "report"] if FLAGS.stage == "all"
            else [FLAGS.stage])
  names = None
  for stage in stages:
    if stage == "float":
      for s in FLAGS.seeds:
        _float(s)
    if stage == "search":
      for s in FLAGS.seeds:
        for fam in FLAGS.families:
          for b in FLAGS.budgets:
            _search(s, fam, b)
    if stage == "admm":
      names = names or _layers()
      for s in FLAGS.seeds:
        for c in [c for c in _configs() if c["seed"] == s]:
          _admm(s, c["layers"])
    if stage == "best":
      _, rows = _collect()
      best, best_e = _best_single(rows)
      label = _fraction_label(best_e)
      print(f"best single format: {best} ({best_e / 1e6:.4f} uJ): budget {label}")
      for s in FLAGS.seeds:
        for fam in FLAGS.families:
          out = _search(s, fam, label)
          if not FLAGS.dry_run:
            _admm(s, _load(out)["layers"])
    if stage == "report":
      _report()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
