"""Per-layer EBSP formats chosen under an energy, latency or storage budget (exact search).

    python experiments/search.py --model=lenet5 --dataset=fashion_mnist \\
        --pretrained=runs/fmnist_float --budget=energy:0.8 --reference_format='6b(L3)' \\
        --candidates='4b(L2),5b(L2),5b(L3),6b(L3),8b(L7)' --output=search.json

From the trained float model of ``--pretrained`` (a training run's workdir, or its
``float_model/``) it measures every layer's sensitivity to each candidate format (HAWQ-V3:
Hessian trace by Hutchinson, or ``--sensitivity=fisher``), costs every layer in every format
with the hardware model (``ebsp_jax.hw``: one EBSP design at equal area runs every layer, built
for the widest bits, longest pattern and largest shift chosen, so a choice is costed on the
design it needs; ``ebsp_jax.search.designs``), and solves exactly:

* ``--budget=METRIC:F`` (METRIC: energy, latency or bits): least total sensitivity with the
  METRIC at most F x that of the all-``--reference_format`` network;
* ``--max_sensitivity=F --minimize=METRIC``: least METRIC with the total sensitivity at most
  F x that of the all-reference network.

``--fixed=conv_init=8b(L7),head=8b(L7)`` keeps layers out of the search (their costs and
sensitivity still count).

The output JSON: ``layers`` ({layer: format}, the parameter tree's layer names, the file
``--layer_formats`` of training and ``experiments/hardware.py`` take), ``cost`` (energy_pj,
latency_s, weight_bits), ``design`` (the EBSP design the choice runs on), ``budget``,
``reference``, ``single_formats`` (every format alone on its own design), ``sensitivity``
(method, per-layer traces, the whole matrix), ``costs`` (every layer x fitting candidate on the
chosen design), ``fixed``, ``frontier`` (with each point's design), ``hardware`` (the design
settings: the flags of ``ebsp_jax.hw.flags``, shared with ``experiments/hardware.py``).
``--sensitivity_cache`` keeps the traces and quantization errors of a float model, so a sweep
of budgets measures them once.
Every flag, the pretrained model and the output path are checked before any computation;
errors print one line and exit with 2. Method: ``ebsp_jax/search`` and
``docs/results/search/README.md``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from ebsp_jax import cli  # noqa: E402
from ebsp_jax.hw import flags as hw_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet5", "Registered model name (ebsp_jax.models.MODELS).")
flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist, mnist, cifar10 or imagenet.")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: the dataset's).")
flags.DEFINE_string("pretrained", None, "Float model: a training run's workdir or its "
                    "float_model/ directory.")
flags.DEFINE_string("budget", None, "METRIC:F, METRIC in energy|latency|bits: least "
                    "sensitivity with METRIC <= F x the all-reference network's.")
flags.DEFINE_float("max_sensitivity", None, "F: least --minimize cost with sensitivity <= F x "
                   "the all-reference network's (instead of --budget).")
flags.DEFINE_enum("minimize", None, ["energy", "latency", "bits"],
                  "Cost minimised under --max_sensitivity.")
flags.DEFINE_string("reference_format", "6b(L3)", "The format budgets are fractions of.")
flags.DEFINE_string("candidates", "default", "Comma-separated formats ('5b(L3)') and sets "
                    "(default, ebsp, uniform, power_of_two).")
flags.DEFINE_list("fixed", [], "LAYER=FORMAT pairs kept out of the search (e.g. "
                  "conv_init=8b(L7),head=8b(L7)); their costs and sensitivity still count.")
flags.DEFINE_string("output", None, "Write the search result JSON here.")
flags.DEFINE_enum("sensitivity", "hessian", ["hessian", "fisher"],
                  "Trace: Hessian (Hutchinson) or empirical Fisher.")
flags.DEFINE_integer("probes", 32, "Hutchinson probes (--sensitivity=hessian).")
flags.DEFINE_integer("sensitivity_examples", 1024, "Training examples the loss is averaged over.")
flags.DEFINE_integer("sensitivity_batch_size", 256, "Batch size of the sensitivity passes.")
flags.DEFINE_integer("seed", 0, "Seeds the data sample and the probes.")
flags.DEFINE_boolean("per_channel", True, "Per-output-channel weight scales (as training).")
flags.DEFINE_integer("batch_size", 1, "Images per inference for the hardware costs.")
# The design settings, as experiments/hardware.py's (same names, defaults and meaning).
hw_flags.define_flags(mapper_flag="mapper_search")
flags.DEFINE_boolean("validate_sensitivity", False, "Also measure the loss increase of quantizing "
                     "each layer alone in each format, and of the chosen and the reference "
                     "networks, on the sensitivity sample (one forward pass per layer x format).")
flags.DEFINE_string("cost_cache", None, "JSON file of cached per-layer costs (read and updated).")
flags.DEFINE_string("sensitivity_cache", None,
                    "JSON file of cached traces and quantization errors (read and updated), keyed "
                    "by the float checkpoint and every sensitivity flag: several searches of one "
                    "float model measure it once.")


class UsageError(Exception):
  """A user error: one line, exit status 2."""


def _fraction(text: str, what: str) -> float:
  try:
    f = float(text)
  except (TypeError, ValueError):
    raise UsageError(f"{what}: F must be a number; got {text!r}") from None
  if not (math.isfinite(f) and f > 0):
    raise UsageError(f"{what}: F must be a finite number > 0; got {text}")
  return f


def _mode() -> tuple[str, str, float]:
  """``('budget', metric, F)`` or ``('bound', metric minimised, F)``."""
  from ebsp_jax.search import METRICS
  if FLAGS.budget is not None and FLAGS.max_sensitivity is not None:
    raise UsageError("--budget and --max_sensitivity are exclusive: give one")
  if FLAGS.budget is not None:
    if FLAGS.minimize is not None:
      raise UsageError("--minimize goes with --max_sensitivity; --budget minimises sensitivity")
    metric, sep, frac = FLAGS.budget.partition(":")
    if not sep or metric not in METRICS:
      raise UsageError(f"--budget={FLAGS.budget}: expected METRIC:F with METRIC one of "
                       f"{', '.join(METRICS)} (e.g. energy:0.8)")
    return "budget", metric, _fraction(frac, f"--budget={FLAGS.budget}")
  if FLAGS.max_sensitivity is not None:
    if FLAGS.minimize is None:
      raise UsageError("--max_sensitivity needs --minimize=energy|latency|bits")
    return "bound", FLAGS.minimize, _fraction(str(FLAGS.max_sensitivity), "--max_sensitivity")
  raise UsageError("give --budget=METRIC:F (e.g. energy:0.8) or --max_sensitivity=F "
                   "--minimize=METRIC")


def _check_output(path: str | None) -> str:
  if not path:
    raise UsageError("--output is required (the search result JSON)")
  path = os.path.abspath(path)
  if os.path.isdir(path):
    raise UsageError(f"--output={path} is a directory; give a file name")
  d = os.path.dirname(path)
  while not os.path.isdir(d):
    d = os.path.dirname(d)
  if not os.access(d, os.W_OK):
    raise UsageError(f"--output={path}: {d} is not writable")
  return path


def _sensitivity(loss_fn, fm, params, batches, layers, all_formats, cache):
  """``(TraceEstimate, errors (L, K))``, from ``cache`` where it holds them (filled with new
  ones): traces keyed by the float weights' digest and every sensitivity flag, errors per
  format."""
  import hashlib
  import jax
  import numpy as np
  from ebsp_jax import search
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(jax.tree_util.keystr(path).encode() + str(a.dtype).encode() + a.tobytes())
  key = json.dumps([h.hexdigest(), FLAGS.model, FLAGS.dataset, FLAGS.sensitivity,
                    FLAGS.probes if FLAGS.sensitivity == "hessian" else 0,
                    FLAGS.sensitivity_examples, FLAGS.sensitivity_batch_size, FLAGS.seed,
                    FLAGS.data_dir, list(layers)])
  entry = cache.setdefault(key, {}) if cache is not None else {}
  t = entry.get("traces")
  if t is None:
    if FLAGS.sensitivity == "hessian":
      traces = search.hessian_traces(loss_fn, params, batches, layers, num_probes=FLAGS.probes,
                                     seed=FLAGS.seed)
    else:
      traces = search.fisher_traces(loss_fn, params, batches, layers)
    entry["traces"] = {"trace": traces.trace.tolist(), "stderr": traces.stderr.tolist(),
                       "num_weights": traces.num_weights.tolist(),
                       "num_examples": traces.num_examples, "num_probes": traces.num_probes,
                       "method": traces.method}
  else:
    traces = search.TraceEstimate(tuple(layers), np.asarray(t["trace"], np.float64),
                                  np.asarray(t["stderr"], np.float64),
                                  np.asarray(t["num_weights"], np.int64), int(t["num_examples"]),
                                  int(t["num_probes"]), t["method"])
  errs = entry.setdefault("errors", {})
  todo = [f for f in all_formats if f"{f}/{FLAGS.per_channel}" not in errs]
  if todo:
    kernels = search.sensitivity.kernels(params, layers)
    e = search.quantization_error(kernels, todo, per_channel=FLAGS.per_channel)
    for k, f in enumerate(todo):
      errs[f"{f}/{FLAGS.per_channel}"] = e[:, k].tolist()
  errors = np.array([errs[f"{f}/{FLAGS.per_channel}"] for f in all_formats], np.float64).T
  return traces, errors


def _least(dcs, metric, allowed):
  """The least METRIC total over every design's covering choices."""
  import numpy as np
  from ebsp_jax.search import designs as designs_lib
  from ebsp_jax.search import solver
  least = np.inf
  for dc in dcs:
    ok = allowed & dc.fit[None, :]
    zero = np.zeros(ok.shape)
    f = solver.pareto_frontier(dc.table.metric(metric), zero, ok,
                               cover=np.broadcast_to(dc.cover, ok.shape), need=designs_lib.ALL)
    if len(f):
      least = min(least, float(f.cost[0]))
  return least


def run() -> dict:
  """The search; raises UsageError / ValueError for user errors."""
  t0 = time.time()
  from ebsp_jax import models
  from ebsp_jax import data as data_lib
  from ebsp_jax import search
  from ebsp_jax.hw import arch
  from ebsp_jax.train import checkpoint as ckpt_lib
  from ebsp_jax.train import reload

  # ---- every check before any computation --------------------------------------------------
  if FLAGS.model not in models.MODELS:
    raise UsageError(f"unknown model {FLAGS.model!r}; known: {', '.join(sorted(models.MODELS))}")
  if FLAGS.dataset not in data_lib.DATASETS:
    raise UsageError(f"unknown dataset {FLAGS.dataset!r}; known: "
                     f"{', '.join(sorted(data_lib.DATASETS))}")
  mode, metric, frac = _mode()
  output = _check_output(FLAGS.output)
  for name in ("probes", "sensitivity_examples", "sensitivity_batch_size", "batch_size"):
    lo = 2 if name == "probes" else 1
    if getattr(FLAGS, name) < lo:
      raise UsageError(f"--{name}={getattr(FLAGS, name)}: must be >= {lo}")
  if FLAGS.sensitivity == "fisher" and FLAGS["probes"].present:
    raise UsageError("--probes only applies to --sensitivity=hessian")
  if FLAGS.weight_format != "raw":
    raise UsageError(f"--weight_format={FLAGS.weight_format}: one EBSP design for several "
                     "per-layer formats is modelled for raw weight storage only")
  if not (math.isfinite(FLAGS.area_mm2) and FLAGS.area_mm2 > 0):
    raise UsageError(f"--area_mm2 must be a finite number > 0; got {FLAGS.area_mm2}")
  try:
    reference = search.parse_format(FLAGS.reference_format)
  except ValueError as e:
    raise UsageError(f"--reference_format: {e}") from None
  try:
    candidates = search.parse_formats(FLAGS.candidates)
  except ValueError as e:
    raise UsageError(f"--candidates: {e}") from None
  fixed = {}
  for item in FLAGS.fixed:
    layer, sep, name = item.partition("=")
    if not sep or not layer:
      raise UsageError(f"--fixed entries are LAYER=FORMAT (e.g. conv_init=8b(L7)); got {item!r}")
    if layer in fixed:
      raise UsageError(f"--fixed: layer {layer} is given twice")
    try:
      fixed[layer] = search.parse_format(name)
    except ValueError as e:
      raise UsageError(f"--fixed: {layer}: {e}") from None
  try:
    design = hw_flags.ebsp_kwargs()
  except ValueError as e:
    raise UsageError(str(e)) from None
  for what, fmts in (("--reference_format", [reference]), ("--candidates", candidates),
                     ("--fixed", list(fixed.values()))):
    for f in fmts:
      if not f.signed:
        raise UsageError(f"{what}: {f}: the EBSP hardware model has signed weights only")
      try:
        arch.check_formats(["ebsp"], pattern_bits=f.bits, pattern_length=f.length,
                           activation_bits=FLAGS.activation_bits, acc_bits=FLAGS.acc_bits,
                           weight_format=FLAGS.weight_format)
      except arch.ConfigError as e:
        raise UsageError(f"{what}: {f}: {e}") from None
  cache, sens_cache = {}, None
  for flag in ("cost_cache", "sensitivity_cache"):
    if FLAGS[flag].value:
      try:
        loaded = search.load_cache(FLAGS[flag].value)
      except ValueError as e:
        raise UsageError(f"--{flag}: {e}") from None
      if flag == "cost_cache":
        cache = loaded
      else:
        sens_cache = loaded
  try:
    fm = reload.load_float_model(FLAGS.pretrained or "", model=FLAGS.model,
                                 dataset=FLAGS.dataset)
  except ckpt_lib.CheckpointError as e:
    if not FLAGS.pretrained:
      raise UsageError("--pretrained is required: a float training run's --workdir (or its "
                       "float_model/)") from None
    raise UsageError(f"--pretrained={cli.one_line(e)}") from None
  spec = data_lib.get_spec(FLAGS.dataset)
  model = models.get_model(FLAGS.model, num_classes=spec.num_classes)
  ds = data_lib.get_dataset(FLAGS.dataset, split="train", data_dir=FLAGS.data_dir,
                            batch_size=FLAGS.sensitivity_batch_size, shuffle=True,
                            seed=FLAGS.seed, augment=False,
                            num_examples=FLAGS.sensitivity_examples, drop_remainder=False,
                            num_epochs=1)

  # ---- the float model, the layers, the costs ----------------------------------------------
  import numpy as np
  import optax
  from ebsp_jax import hw
  from ebsp_jax.numerics import layer_patterns
  from ebsp_jax.search import designs as designs_lib

  params, model_state = fm.params, fm.model_state
  workload = hw.model_workload(FLAGS.model, FLAGS.dataset, FLAGS.batch_size)
  layers = search.costs.workload_layer_names(workload)
  kernel_layers = list(layer_patterns(params, lambda path, leaf: None))
  search.check_layer_names(layers, kernel_layers, f"{FLAGS.model} workload")
  unknown = [l for l in fixed if l not in layers]
  if unknown:
    raise UsageError(f"--fixed: unknown layer(s) {', '.join(unknown)}; the {FLAGS.model} layers "
                     f"are: {', '.join(layers)}")
  columns = tuple(dict.fromkeys(list(candidates) + list(fixed.values())))  # the solver's
  all_formats = columns + ((reference,) if reference not in columns else ())
  # allowed[i, c]: a fixed layer takes its format only, the others any candidate.
  allowed = np.array([[f == fixed[l] if l in fixed else f in candidates for f in columns]
                      for l in layers])
  t_cost = time.time()
  kw = dict(objective=FLAGS.objective, search=FLAGS.mapper_search, cache=cache, **design)
  single = search.layer_costs(workload, all_formats, **kw)     # each format on its own design
  dcs = designs_lib.design_costs(workload, columns, allowed, **kw)
  t_cost = time.time() - t_cost
  if FLAGS.cost_cache:
    search.save_cache(FLAGS.cost_cache, cache)
  cand_idx = [all_formats.index(f) for f in columns]
  ref_idx = all_formats.index(reference)
  ref_totals = single.totals([ref_idx] * len(layers))
  attr, unit = search.METRICS[metric]
  if mode == "budget":  # infeasible before the (slower) sensitivity pass
    limit = frac * ref_totals[attr]
    least = _least(dcs, metric, allowed)
    if least > limit:
      raise UsageError(f"--budget={FLAGS.budget}: {frac:g} x the all-{reference} {metric} is "
                       f"{limit:.6g} {unit}, below the least the candidates reach, {least:.6g} "
                       f"{unit} (over every EBSP design a choice can need)")

  # ---- sensitivity -------------------------------------------------------------------------
  def loss_fn(p, batch):
    logits = model.apply({"params": p, **model_state}, batch["image"], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(np.float32), batch["label"]).mean()

  batches = [{"image": np.asarray(b["image"]), "label": np.asarray(b["label"])} for b in ds]
  t_sens = time.time()
  traces, errors = _sensitivity(loss_fn, fm, params, batches, layers, all_formats, sens_cache)
  if FLAGS.sensitivity == "hessian":
    bad = [(l, t, s) for l, t, s in zip(layers, traces.trace, traces.stderr) if not t > 0]
    if bad:
      l, t, s = bad[0]
      raise UsageError(f"the Hessian trace estimate of layer {l} is {t:.3g} (standard error "
                       f"{s:.2g}), not positive: the float model is not at a minimum there or "
                       "the probes are too few; use more --probes or --sensitivity=fisher")
  if FLAGS.sensitivity_cache:
    search.save_cache(FLAGS.sensitivity_cache, sens_cache)
  omega = search.sensitivity_matrix(traces, errors)
  t_sens = time.time() - t_sens

  # ---- solve (exactly, over the EBSP design each choice needs) -------------------------------
  sens = omega[:, cand_idx]
  ref_sens = 0.0
  for i in range(len(layers)):
    ref_sens += float(omega[i, ref_idx])
  t_solve = time.time()
  front = designs_lib.frontier(dcs, sens, metric, allowed)
  try:
    if mode == "budget":
      sol = designs_lib.solve(front, limit, "sensitivity")
      budget = {"metric": metric, "fraction": frac, "limit": limit, "unit": unit,
                "objective": "least sensitivity"}
    else:
      limit = frac * ref_sens
      sol = designs_lib.solve(front, limit, "cost")
      budget = {"metric": "sensitivity", "fraction": frac, "limit": limit,
                "objective": f"least {metric}", "minimized": metric, "minimized_unit": unit}
  except search.InfeasibleError as e:
    what = (f"--budget={FLAGS.budget} ({frac} x the all-{reference} {metric}"
            if mode == "budget" else
            f"--max_sensitivity={frac} ({frac} x the all-{reference} sensitivity")
    raise UsageError(f"{what}): {e}") from None
  t_solve = time.time() - t_solve
  dc = next(d for d in dcs if d.design == sol.design)
  choice = [cand_idx[k] for k in sol.choice]
  chosen = {l: str(all_formats[k]) for l, k in zip(layers, choice)}
  validation = None
  if FLAGS.validate_sensitivity:
    validation = _validate(loss_fn, params, batches, layers, all_formats, choice, ref_idx,
                           omega, sol.sensitivity, ref_sens)
  totals = dc.table.totals(list(sol.choice))
  acc = search.costs.build_design(sol.design, **design)
  max_length = max(all_formats[k].length for k in choice)

  out = {
      "model": FLAGS.model, "dataset": FLAGS.dataset,
      "layers": chosen,
      "cost": totals,
      "design": {"bits": sol.design[0], "length": sol.design[1], "max_shift": sol.design[2],
                 "lut_entries": 1 << sol.design[1], "pes": acc.pe_count,
                 "array": list(acc.array), "label": acc.label},
      "budget": budget,
      "reference": {"format": str(reference), **ref_totals, "sensitivity": ref_sens},
      "single_formats": {str(f): {**single.totals([k] * len(layers)),
                                  "sensitivity": float(sum(omega[:, k]))}
                         for k, f in enumerate(all_formats)},
      "sensitivity": {
          "method": FLAGS.sensitivity,
          "formula": ("Omega[i,k] = Tr(M_i)/n_i * ||Q_k(W_i) - W_i||^2, M = "
                      + ("Hessian of the mean training loss (Hutchinson, Rademacher probes)"
                         if FLAGS.sensitivity == "hessian" else
                         "empirical Fisher (per-example gradients)")),
          "total": sol.sensitivity, "reference_total": ref_sens,
          "num_examples": traces.num_examples, "num_probes": traces.num_probes,
          "seed": FLAGS.seed, "per_channel": FLAGS.per_channel,
          "per_layer": {l: {"trace": float(traces.trace[i]),
                            "trace_stderr": float(traces.stderr[i]),
                            "num_weights": int(traces.num_weights[i]),
                            "chosen": float(omega[i, choice[i]]),
                            "reference": float(omega[i, ref_idx])}
                        for i, l in enumerate(layers)},
          "matrix": {l: {str(f): float(omega[i, k]) for k, f in enumerate(all_formats)}
                     for i, l in enumerate(layers)},
          "quantization_error": {l: {str(f): float(errors[i, k])
                                     for k, f in enumerate(all_formats)}
                                 for i, l in enumerate(layers)},
          **({"validation": validation} if validation is not None else {}),
      },
      "costs": {l: {str(f): {"energy_pj": float(dc.table.energy_pj[i, k]),
                             "latency_s": float(dc.table.latency_s[i, k]),
                             "weight_bits": float(dc.table.weight_bits[i, k])}
                    for k, f in enumerate(columns) if dc.fit[k]}
                for i, l in enumerate(layers)},
      "candidates": [str(f) for f in candidates],
      "fixed": {l: str(f) for l, f in fixed.items()},
      "frontier": {"metric": metric, "layers": list(layers), "cost": front.cost.tolist(),
                   "sensitivity": front.sensitivity.tolist(),
                   "choice": front.choice.tolist(),
                   "formats": [str(f) for f in columns],
                   "design": front.design.tolist(),
                   "designs": [list(d) for d in front.designs],
                   "what": "every Pareto-optimal (cost, sensitivity) over the candidates, each "
                           "choice on the EBSP design it needs; choice holds indices into "
                           "formats, one per layer; design an index into designs "
                           "(bits, length, max_shift)"},
      "hardware": {
          "design": "ebsp", "settings": {**hw_flags.settings(FLAGS, "mapper_search"),
                                         "batch_size": FLAGS.batch_size,
                                         "setting": "equal_area"},
          "objective": FLAGS.objective, "mapper_search": FLAGS.mapper_search,
          "batch_size": FLAGS.batch_size,
          "units": {"energy_pj": f"pJ {hw.report.per_unit(workload)}",
                    "latency_s": f"s {hw.report.per_unit(workload)}"},
          "max_length": max_length, "hw_version": search.costs.hw_version(),
          "designs_searched": len(dcs),
          "note": ("one EBSP design runs every layer: built for the widest bits, longest "
                   "pattern and largest shift chosen (\"design\"); every choice is costed on "
                   "the design it needs (exact: ebsp_jax.search.designs). \"costs\" are the "
                   "per-layer costs on the chosen design; \"single_formats\" every format on "
                   "its own design"),
      },
      "pretrained": {"path": os.path.abspath(FLAGS.pretrained), "checkpoint": fm.checkpoint,
                     "float_top1": fm.meta.get("float_top1"), "step": fm.meta.get("step")},
      "timing_s": {"costs": t_cost, "sensitivity": t_sens, "solve": t_solve,
                   "total": time.time() - t0},
  }
  os.makedirs(os.path.dirname(output), exist_ok=True)
  tmp = f"{output}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
  os.replace(tmp, output)
  _print_summary(out, layers, metric)
  print(f"search: {output} ({out['timing_s']['total']:.1f} s)")
  return out


def _validate(loss_fn, params, batches, layers, all_formats, choice, ref_idx, omega, total,
              ref_total) -> dict:
  """Measured loss increases on the sensitivity sample next to what Omega / 2 predicts."""
  from ebsp_jax import search
  from ebsp_jax.search import sensitivity as sens_lib
  t = time.time()
  delta = sens_lib.loss_increase(loss_fn, params, batches, layers, all_formats,
                                 per_channel=FLAGS.per_channel)
  base = sens_lib.mean_loss(loss_fn, params, batches)

  def network_loss(ks):
    fmts = {l: all_formats[k] for l, k in zip(layers, ks)}
    q = search.sensitivity.replace_kernels(params, {
        l: sens_lib.projected_kernels([w], fmts[l], per_channel=FLAGS.per_channel)[0]
        for l, w in zip(layers, sens_lib.kernels(params, layers))})
    return sens_lib.mean_loss(loss_fn, q, batches)

  return {
      "what": ("loss on the sensitivity sample with weights projected (no retraining): one "
               "layer at a time (loss_increase, predicted by Omega/2) and whole networks"),
      "loss_increase": {l: {str(f): float(delta[i, k]) for k, f in enumerate(all_formats)}
                        for i, l in enumerate(layers)},
      "rank_correlation": sens_lib.rank_correlation(omega, delta),
      "float_loss": base,
      "chosen_loss": network_loss(choice), "chosen_loss_predicted": base + total / 2,
      "reference_loss": network_loss([ref_idx] * len(layers)),
      "reference_loss_predicted": base + ref_total / 2,
      "seconds": time.time() - t,
  }


def _print_summary(out: dict, layers, metric: str) -> None:
  ref = out["reference"]
  print(f"{out['model']} on {out['dataset']}: {out['budget']['objective']} with "
        f"{out['budget']['metric']} <= {out['budget']['fraction']:g} x all-{ref['format']}")
  print(f"{'layer':<24} {'format':<8} {'sensitivity':>12} {'energy pJ':>12} {'latency s':>11} "
        f"{'weight bits':>12}")
  for l in layers:
    f = out["layers"][l]
    c = out["costs"][l][f]
    print(f"{l:<24} {f:<8} {out['sensitivity']['per_layer'][l]['chosen']:>12.4g} "
          f"{c['energy_pj']:>12.4g} {c['latency_s']:>11.4g} {c['weight_bits']:>12.0f}")
  c = out["cost"]
  d = out["design"]
  print(f"EBSP design: <={d['bits']}b, L<={d['length']} (LUT {d['lut_entries']}), "
        f"shift<={d['max_shift']}: {d['pes']} PEs at equal area")
  print(f"{'total':<24} {'':<8} {out['sensitivity']['total']:>12.4g} {c['energy_pj']:>12.4g} "
        f"{c['latency_s']:>11.4g} {c['weight_bits']:>12.0f}")
  print(f"{'all-' + ref['format']:<24} {'':<8} {ref['sensitivity']:>12.4g} "
        f"{ref['energy_pj']:>12.4g} {ref['latency_s']:>11.4g} {ref['weight_bits']:>12.0f}")
  v = out["sensitivity"].get("validation")
  if v:
    print(f"sample loss: float {v['float_loss']:.4f}; chosen {v['chosen_loss']:.4f} (predicted "
          f"{v['chosen_loss_predicted']:.4f}); all-{ref['format']} {v['reference_loss']:.4f} "
          f"(predicted {v['reference_loss_predicted']:.4f}); rank correlation of Omega with "
          f"the one-layer loss increases {v['rank_correlation']:.3f}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  from ebsp_jax.hw.arch import ConfigError
  from ebsp_jax.hw.dataflow import MappingError
  from ebsp_jax.train.checkpoint import CheckpointError
  try:
    run()
  except (UsageError, ConfigError, MappingError, CheckpointError, ValueError,
          FileNotFoundError) as e:
    cli.fail(cli.one_line(e))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
