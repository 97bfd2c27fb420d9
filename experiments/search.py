"""Per-layer EBSP formats chosen under an energy, latency or storage budget (exact search).

    python experiments/search.py --model=lenet5 --dataset=fashion_mnist \\
        --pretrained=runs/fmnist_float --budget=energy:0.8 --reference_format='6b(L3)' \\
        --candidates='4b(L2),5b(L2),5b(L3),6b(L3),8b(L7)' --output=search.json

From the trained float model of ``--pretrained`` (a training run's workdir, or its
``float_model/``) it measures every layer's sensitivity to each candidate format (HAWQ-V3:
Hessian trace by Hutchinson, or ``--sensitivity=fisher``), costs every layer in every format
with the hardware model (EBSP at equal area, ``ebsp_jax.hw``), and solves exactly:

* ``--budget=METRIC:F`` (METRIC: energy, latency or bits): least total sensitivity with the
  METRIC at most F x that of the all-``--reference_format`` network;
* ``--max_sensitivity=F --minimize=METRIC``: least METRIC with the total sensitivity at most
  F x that of the all-reference network.

``--fixed=conv_init=8b(L7),head=8b(L7)`` keeps layers out of the search (their costs and
sensitivity still count).

The output JSON: ``layers`` ({layer: format}, the parameter tree's layer names, the file
``--layer_formats`` of training and ``experiments/hardware.py`` take), ``cost`` (energy_pj,
latency_s, weight_bits), ``budget``, ``reference``, ``sensitivity`` (method, per-layer traces,
the whole matrix), ``costs`` (every layer x candidate), ``fixed``, ``frontier``, ``hardware``.
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
flags.DEFINE_integer("activation_bits", 8, "EBSP activation bits.")
flags.DEFINE_integer("acc_bits", 32, "EBSP accumulator bits.")
flags.DEFINE_enum("weight_format", "raw", ["raw", "code"], "EBSP weight storage.")
flags.DEFINE_float("area_mm2", 0.32, "PE-array area budget, mm^2 (equal area).")
flags.DEFINE_enum("area_scope", "pe+local", ["arith", "pe", "pe+local"], "What the area covers.")
flags.DEFINE_integer("glb_kib", 108, "Global buffer, KiB.")
flags.DEFINE_enum("objective", "edp", ["energy", "latency", "edp"], "Mapper objective.")
flags.DEFINE_enum("mapper_search", "default", ["fast", "default", "thorough"], "Mapper effort.")
flags.DEFINE_boolean("validate_sensitivity", False, "Also measure the loss increase of quantizing "
                     "each layer alone in each format, and of the chosen and the reference "
                     "networks, on the sensitivity sample (one forward pass per layer x format).")
flags.DEFINE_string("cost_cache", None, "JSON file of cached per-layer costs (read and updated).")


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


def _float_model_dir(path: str | None) -> str:
  """The --pretrained float model's checkpoint directory (a workdir's float_model/ or itself)."""
  if not path:
    raise UsageError("--pretrained is required: a float training run's --workdir (or its "
                     "float_model/)")
  p = os.path.abspath(path)
  if os.path.isdir(os.path.join(p, "float_model")):
    p = os.path.join(p, "float_model")
  if not os.path.isdir(p):
    raise UsageError(f"--pretrained={path}: no such directory (expected a training run's "
                     "--workdir or its float_model/)")
  return p


def _open_float_model(path: str):
  """``(checkpointer, id, meta)`` of the float model, validated against --model/--dataset."""
  from ebsp_jax.train import checkpoint as ckpt_lib
  try:
    fm = ckpt_lib.Checkpointer(path, read_only=True)
  except ckpt_lib.CheckpointError as e:
    raise UsageError(f"--pretrained={FLAGS.pretrained}: {e}") from None
  try:
    latest = fm.latest_id()
    if latest is None:
      raise UsageError(f"--pretrained={FLAGS.pretrained}: {path} holds no float-model "
                       "checkpoint (expected a training run's --workdir or its float_model/)")
    meta = fm.read_meta(latest)
    got = (meta.get("model"), meta.get("dataset"))
    if got != (FLAGS.model, FLAGS.dataset):
      raise UsageError(f"--pretrained={FLAGS.pretrained}: a {got[0]} on {got[1]}, but "
                       f"--model={FLAGS.model} --dataset={FLAGS.dataset}")
  except (UsageError, ckpt_lib.CheckpointError) as e:
    fm.close()
    raise UsageError(str(e)) from None
  return fm, latest, meta


def _restore(fm, ckpt_id, model, input_shape):
  """The float model's ``(params, model_state)``."""
  import jax
  import jax.numpy as jnp

  def init():
    v = dict(model.init(jax.random.key(0), jnp.zeros((2, *input_shape)), train=False))
    return {"params": v.pop("params"), "model_state": v}

  template = jax.eval_shape(init)
  try:
    state, _ = fm.restore(ckpt_id, template)
  finally:
    fm.close()
  return state["params"], state["model_state"]


def run() -> dict:
  """The search; raises UsageError / ValueError for user errors."""
  t0 = time.time()
  from ebsp_jax import models
  from ebsp_jax import data as data_lib
  from ebsp_jax import search
  from ebsp_jax.hw import arch

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
  design = dict(activation_bits=FLAGS.activation_bits, acc_bits=FLAGS.acc_bits,
                weight_format=FLAGS.weight_format, area_mm2=FLAGS.area_mm2,
                area_scope=FLAGS.area_scope, glb_bytes=FLAGS.glb_kib * 1024)
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
  cache = {}
  if FLAGS.cost_cache:
    try:
      cache = search.load_cache(FLAGS.cost_cache)
    except ValueError as e:
      raise UsageError(f"--cost_cache: {e}") from None
  fm, ckpt_id, meta = _open_float_model(_float_model_dir(FLAGS.pretrained))
  try:
    spec = data_lib.get_spec(FLAGS.dataset)
    model = models.get_model(FLAGS.model, num_classes=spec.num_classes)
    input_shape = models.default_input_shape(FLAGS.model, FLAGS.dataset)
    ds = data_lib.get_dataset(FLAGS.dataset, split="train", data_dir=FLAGS.data_dir,
                              batch_size=FLAGS.sensitivity_batch_size, shuffle=True,
                              seed=FLAGS.seed, augment=False,
                              num_examples=FLAGS.sensitivity_examples, drop_remainder=False,
                              num_epochs=1)
  except BaseException:
    fm.close()
    raise

  # ---- the float model, the layers, the costs ----------------------------------------------
  import jax
  import numpy as np
  import optax
  from ebsp_jax import hw
  from ebsp_jax.numerics import layer_patterns

  params, model_state = _restore(fm, ckpt_id, model, input_shape)
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
  table = search.layer_costs(workload, all_formats, objective=FLAGS.objective,
                             search=FLAGS.mapper_search, cache=cache, **design)
  t_cost = time.time() - t_cost
  if FLAGS.cost_cache:
    search.save_cache(FLAGS.cost_cache, cache)
  cand_idx = [all_formats.index(f) for f in columns]
  ref_idx = all_formats.index(reference)
  ref_totals = table.totals([ref_idx] * len(layers))
  attr, unit = search.METRICS[metric]
  if mode == "budget":  # infeasible before the (slower) sensitivity pass
    limit = frac * ref_totals[attr]
    least = 0.0
    for row, ok in zip(table.metric(metric)[:, cand_idx], allowed):
      least += float(row[ok].min())
    if least > limit:
      raise UsageError(f"--budget={FLAGS.budget}: {frac:g} x the all-{reference} {metric} is "
                       f"{limit:.6g} {unit}, below the least the candidates reach, {least:.6g} "
                       f"{unit} (every layer at its cheapest candidate)")

  # ---- sensitivity -------------------------------------------------------------------------
  def loss_fn(p, batch):
    logits = model.apply({"params": p, **model_state}, batch["image"], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(np.float32), batch["label"]).mean()

  batches = [{"image": np.asarray(b["image"]), "label": np.asarray(b["label"])} for b in ds]
  t_sens = time.time()
  if FLAGS.sensitivity == "hessian":
    traces = search.hessian_traces(loss_fn, params, batches, layers, num_probes=FLAGS.probes,
                                   seed=FLAGS.seed)
    bad = [(l, t, s) for l, t, s in zip(layers, traces.trace, traces.stderr) if not t > 0]
    if bad:
      l, t, s = bad[0]
      raise UsageError(f"the Hessian trace estimate of layer {l} is {t:.3g} (standard error "
                       f"{s:.2g}), not positive: the float model is not at a minimum there or "
                       "the probes are too few; use more --probes or --sensitivity=fisher")
  else:
    traces = search.fisher_traces(loss_fn, params, batches, layers)
  kernels = search.sensitivity.kernels(params, layers)
  errors = search.quantization_error(kernels, all_formats, per_channel=FLAGS.per_channel)
  omega = search.sensitivity_matrix(traces, errors)
  t_sens = time.time() - t_sens

  # ---- solve -------------------------------------------------------------------------------
  cost, sens = table.metric(metric)[:, cand_idx], omega[:, cand_idx]
  ref_sens = 0.0
  for i in range(len(layers)):
    ref_sens += float(omega[i, ref_idx])
  t_solve = time.time()
  try:
    if mode == "budget":
      sol = search.min_sensitivity(cost, sens, limit, allowed)
      budget = {"metric": metric, "fraction": frac, "limit": limit, "unit": unit,
                "objective": "least sensitivity"}
    else:
      limit = frac * ref_sens
      sol = search.min_cost(cost, sens, limit, allowed)
      budget = {"metric": "sensitivity", "fraction": frac, "limit": limit,
                "objective": f"least {metric}", "minimized": metric, "minimized_unit": unit}
  except search.InfeasibleError as e:
    what = (f"--budget={FLAGS.budget} ({frac} x the all-{reference} {metric}"
            if mode == "budget" else
            f"--max_sensitivity={frac} ({frac} x the all-{reference} sensitivity")
    raise UsageError(f"{what}): {e}") from None
  front = search.pareto_frontier(cost, sens, allowed)
  t_solve = time.time() - t_solve
  choice = [cand_idx[k] for k in sol.choice]
  chosen = {l: str(all_formats[k]) for l, k in zip(layers, choice)}
  validation = None
  if FLAGS.validate_sensitivity:
    validation = _validate(loss_fn, params, batches, layers, all_formats, choice, ref_idx,
                           omega, sol.sensitivity, ref_sens)
  totals = table.totals(choice)
  max_length = max(all_formats[k].length for k in choice)

  out = {
      "model": FLAGS.model, "dataset": FLAGS.dataset,
      "layers": chosen,
      "cost": totals,
      "budget": budget,
      "reference": {"format": str(reference), **ref_totals, "sensitivity": ref_sens},
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
      "costs": {l: {str(f): {"energy_pj": float(table.energy_pj[i, k]),
                             "latency_s": float(table.latency_s[i, k]),
                             "weight_bits": float(table.weight_bits[i, k])}
                    for k, f in enumerate(all_formats)}
                for i, l in enumerate(layers)},
      "candidates": [str(f) for f in candidates],
      "fixed": {l: str(f) for l, f in fixed.items()},
      "frontier": {"metric": metric, "layers": list(layers), "cost": front.cost.tolist(),
                   "sensitivity": front.sensitivity.tolist(),
                   "choice": front.choice.tolist(),
                   "formats": [str(f) for f in columns],
                   "what": "every Pareto-optimal (cost, sensitivity) over the candidates; choice "
                           "holds indices into formats, one per layer"},
      "hardware": {
          "design": "ebsp", **{k: v for k, v in design.items()}, "objective": FLAGS.objective,
          "mapper_search": FLAGS.mapper_search, "batch_size": FLAGS.batch_size,
          "units": {"energy_pj": f"pJ {hw.report.per_unit(workload)}",
                    "latency_s": f"s {hw.report.per_unit(workload)}"},
          "max_length": max_length, "hw_version": search.costs.hw_version(),
          "note": ("each layer is costed on the EBSP accelerator built for its own format at "
                   "equal area; one mixed-format EBSP needs PEs and LUTs for L = max_length"),
      },
      "pretrained": {"path": os.path.abspath(FLAGS.pretrained), "checkpoint": ckpt_id,
                     "float_top1": meta.get("float_top1"), "step": meta.get("step")},
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
