"""Energy, latency and area of EBSP against Eyeriss, Bit Fusion, WAX and OLAccel.

    python experiments/hardware.py --model=resnet50 --dataset=imagenet \\
        --pattern_bits=6 --pattern_length=3 --output=report.json

Prints a table (designs at equal PE-array area, energy, latency, the paper's claims beside
the model's) and writes the report JSON: ``macs``, ``accelerators`` -> {eyeriss, bitfusion,
wax, olaccel, ebsp} -> {``pes``, ``area_mm2``, ``energy_pj``, ``energy_breakdown_pj``,
``cycles``, ``latency_s``, ...}, ``layers`` (per-layer rows), ``comparison``.

A finished training run: ``--run=WORKDIR`` reads the run's quantized model
(``quantized_model.safetensors``, ``docs/artifact.md``): the model, dataset and activation
bits, each layer's weight format (one format: EBSP built for it, as ``--pattern_bits`` /
``--pattern_length``; several, e.g. ``--first_last=8`` or ``--layer_formats`` runs: as
``--layer_formats`` below) and the integer weight codes the run's integer mode uses, matched to
the workload's layers by exact parameter path; nothing is re-quantized. It excludes the flags
it replaces (``--params``, ``--events``, ``--pattern_bits``, ``--pattern_length``,
``--layer_formats``; ``--model``, ``--dataset``, ``--activation_bits`` unless equal to the
run's). A run finished before the file existed: ``python -m ebsp_jax.train.export_run
--workdir=WORKDIR`` writes it.

Foreign float weights: ``--params=CHECKPOINT`` (an orbax checkpoint directory or a ``.npz`` of
'/'-joined parameter paths) quantizes the trained kernels onto the pattern and uses their
zero-weight and shift statistics; ``--events=FILE.json`` uses event counts recorded by
``ebsp_jax.arith.events`` instead (the two are mutually exclusive; the events' layer names must
be exactly the workload's). Figures (PNG + SVG) go to ``--figures_dir``; the bit-width x
pattern-length Pareto plot takes accuracies from ``--results`` (training ``results.json``
files); ``--results``, ``--sweep_bits`` and ``--sweep`` need ``--figures_dir``.
``--zigzag_dir`` / ``--timeloop_dir`` export the workload and every design.

Per-layer formats: ``--layer_formats=FILE.json`` (an ``experiments/search.py`` output or a
``{layer: '5b(L3)'}`` map over exactly the workload's layers) builds EBSP for the widest bits,
the longest pattern (LUT of ``2^L`` entries) and the largest shift among them and runs each
layer in its own format (``ebsp_jax.hw.designs.ebsp.layer_view``); the JSON adds
``layer_formats``, each EBSP layer row's ``format``, ``accelerators.ebsp.ebsp_design`` and, for
a search output, ``layer_formats_search`` (its cost next to this report's, and whether the
design settings, shared with the search through ``ebsp_jax.hw.flags``, match). Energy, cycles and
latency are per batch of ``--batch_size`` images (the JSON's ``units``). Errors (unknown names,
bad flag values, impossible configurations, flags that would be ignored) print one line and
exit with 2, before any evaluation.

The model and its sources: ``ebsp_jax/hw`` and ``docs/hardware.md``.
"""

from __future__ import annotations

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The cost model only traces shapes: keep JAX on the CPU (and quiet about absent TPUs/GPUs).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")     # figures are written to files, never shown

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from ebsp_jax import cli  # noqa: E402
from ebsp_jax.hw import flags as hw_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet50", "Registered model name (ebsp_jax.models.MODELS).")
flags.DEFINE_string("dataset", "imagenet", "Input shape of: imagenet, cifar10, fashion_mnist.")
flags.DEFINE_string("run", None, "A finished training run's --workdir (or its "
                    "quantized_model.safetensors): model, formats and weight codes from the run.")
flags.DEFINE_string("params", None, "Float weights (orbax dir or .npz of '/'-joined parameter "
                    "paths) for data-aware EBSP, quantized onto --pattern_bits/--pattern_length.")
flags.DEFINE_integer("pattern_bits", 6, "EBSP weight bits (sign included).")
flags.DEFINE_integer("pattern_length", 3, "EBSP pattern length L (LUT of 2^L entries).")
flags.DEFINE_string("output", None, "Write the report JSON here.")
hw_flags.define_flags()     # activation/acc bits, weight format, area, GLB, DRAM, tech, mapper
flags.DEFINE_boolean("paper_pe_counts", False, "Use the paper's PE counts instead of area.")
flags.DEFINE_enum("setting", "equal_area", ["equal_area", "paper_table", "own"],
                  "equal_area: every design fills --area_mm2 (the EBSP paper's setting, "
                  "bottom-up PE counts); paper_table: the EBSP paper's PE counts (same as "
                  "--paper_pe_counts); own: each baseline as in its own paper (docs/hardware.md "
                  "section 'Each baseline in its own paper's setting'; EBSP at the paper's count).")
flags.DEFINE_float("act_zero_fraction", None,
                   "Assumed fraction of zero input activations of every layer but the first, "
                   "for the designs that exploit them (Eyeriss gating and RLC, OLAccel "
                   "skipping); default: none (dense).")
flags.DEFINE_string("act_stats", None,
                    "JSON {layer: zero fraction of its input} captured from a trained model "
                    "(ebsp_jax.hw.activations); exclusive with --act_zero_fraction.")
flags.DEFINE_list("accelerators", ["eyeriss", "bitfusion", "wax", "olaccel", "ebsp"],
                  "Designs to evaluate.")
flags.DEFINE_integer("batch_size", 1, "Images per inference (totals are per batch).")
flags.DEFINE_float("outlier_fraction", 0.03, "OLAccel outlier fraction.")
flags.DEFINE_integer("bitfusion_bits", 4, "Bit Fusion operating width (paper table: 4).")
flags.DEFINE_string("events", None, "LayerEvents JSON (from ebsp_jax.arith.events).")
flags.DEFINE_string("figures_dir", None, "Write figures (PNG + SVG) here.")
flags.DEFINE_list("results", [], "Training results.json files (accuracy for the Pareto plot).")
flags.DEFINE_list("sweep_bits", ["4", "5", "6", "8"], "Bit widths of the Pareto sweep.")
flags.DEFINE_boolean("sweep", True, "Run the bit-width x pattern-length sweep (with figures).")
flags.DEFINE_list("figure_models", [],
                  "More model:dataset pairs for the multi-network figures (e.g. "
                  "alexnet:imagenet,resnet20:cifar10); their totals go to 'networks'.")
flags.DEFINE_string("zigzag_dir", None, "Export workload + designs as ZigZag inputs here.")
flags.DEFINE_string("timeloop_dir", None, "Export workload + designs as Timeloop YAML here.")
flags.DEFINE_string("layer_formats", None,
                    "Per-layer EBSP weight formats: a search output of experiments/search.py "
                    "(its \"layers\") or a JSON {layer: '5b(L3)'} with exactly the workload's "
                    "layer names. EBSP is built for the widest bits, longest pattern and largest "
                    "shift among them and runs each layer in its own format (exclusive with "
                    "--pattern_bits/--pattern_length).")


class UsageError(Exception):
  """A user error: reported in one line, exit status 2."""


def _tech():
  try:
    return hw_flags.tech()
  except ValueError as e:
    raise UsageError(str(e)) from None


def _paper_counts() -> bool:
  return FLAGS.paper_pe_counts or FLAGS.setting == "paper_table"


def _build(names, tech, bits=None, length=None, max_shift=None):
  from ebsp_jax.hw import arch, designs
  from ebsp_jax.hw.area import PAPER_PE_COUNTS
  out = {}
  for n in names:
    own = designs.get(n).settings if FLAGS.setting == "own" else {}
    if own:
      out[n] = next(iter(own.values()))()
      continue
    out[n] = arch.build_accelerator(
        n, area_mm2=FLAGS.area_mm2, area_scope=FLAGS.area_scope, tech=tech,
        pattern_bits=bits or FLAGS.pattern_bits, pattern_length=length or FLAGS.pattern_length,
        activation_bits=FLAGS.activation_bits, acc_bits=FLAGS.acc_bits,
        weight_format=FLAGS.weight_format, glb_bytes=FLAGS.glb_kib * 1024,
        glb_bandwidth_bits=FLAGS.glb_bandwidth_bits, outlier_fraction=FLAGS.outlier_fraction,
        bitfusion_bits=FLAGS.bitfusion_bits, pattern_max_shift=max_shift,
        pe_count=(PAPER_PE_COUNTS[n] if (_paper_counts() or FLAGS.setting == "own")
                  else None))
  return out


def _layer_formats(names) -> tuple[dict, dict, dict]:
  """``({layer: BitPattern}, design pattern kwargs, the file's JSON)`` of --layer_formats, or
  empty ones; checks every flag it excludes."""
  if not FLAGS.layer_formats:
    return {}, {}, {}
  from ebsp_jax import search
  from ebsp_jax.hw import arch
  given = [f"--{n}" for n in ("pattern_bits", "pattern_length") if FLAGS[n].present]
  if given:
    raise UsageError(f"{' and '.join(given)} and --layer_formats are exclusive: the per-layer "
                     "formats set EBSP's pattern")
  _check_per_layer(names, "--layer_formats")
  obj = cli.load_json(FLAGS.layer_formats, f"--layer_formats {FLAGS.layer_formats}")
  try:
    fm = search.layer_formats_from_json(obj, f"--layer_formats {FLAGS.layer_formats}")
    design = arch.ebsp_design_formats(fm.values(), FLAGS.weight_format)
  except ValueError as e:
    raise UsageError(cli.one_line(e)) from None
  return fm, design, obj


def _check_per_layer(names, source: str) -> None:
  """Per-layer formats (from ``source``) need EBSP and exclude the one-format outputs."""
  if "ebsp" not in names:
    raise UsageError(f"{source} only affects EBSP, which --accelerators leaves out")
  for other in ("figure_models", "zigzag_dir", "timeloop_dir"):
    if FLAGS[other].value:
      raise UsageError(f"--{other} with {source}: the other networks and the exports "
                       "take one EBSP format per design; drop one of them")


def _read_run(names):
  """The quantized model of --run (or None), after checking the flags it replaces; sets
  --model, --dataset and --activation_bits to the run's."""
  if not FLAGS.run:
    return None
  from ebsp_jax.numerics import artifact
  from ebsp_jax.train import export_model
  given = [f"--{n}" for n in ("params", "events", "pattern_bits", "pattern_length",
                              "layer_formats") if FLAGS[n].present]
  if given:
    raise UsageError(f"--run and {', '.join(given)} are exclusive: the run's quantized model "
                     "gives the weight formats and codes")
  if "ebsp" not in names:
    raise UsageError("--run only affects EBSP, which --accelerators leaves out")
  try:
    qm = (artifact.read(FLAGS.run) if os.path.isfile(FLAGS.run)
          else export_model.read_run(FLAGS.run))
  except ValueError as e:
    raise UsageError(f"--run: {cli.one_line(e)}") from None
  run_bits = qm.activation_bits or FLAGS.activation_bits
  for flag, mine in (("model", qm.model), ("dataset", qm.dataset), ("activation_bits", run_bits)):
    if FLAGS[flag].present and FLAGS[flag].value != mine:
      raise UsageError(f"--{flag}={FLAGS[flag].value} but the run --run={FLAGS.run} has "
                       f"{flag} {mine}: drop --{flag}")
    FLAGS[flag].value = mine
  return qm


def _run_formats(names, qm) -> tuple[dict, dict]:
  """``({layer: BitPattern} or {} for a single format, design pattern kwargs)`` of --run."""
  from ebsp_jax.hw import arch
  fm = qm.formats()
  try:
    design = arch.ebsp_design_formats(fm.values(), FLAGS.weight_format)
  except arch.ConfigError as e:
    raise UsageError(f"--run {FLAGS.run}: {e}") from None
  if len(set(fm.values())) == 1:
    return {}, design
  _check_per_layer(names, f"--run (a run with per-layer formats: "
                   f"{', '.join(sorted({str(f) for f in fm.values()}))})")
  return fm, design


def _figure_flags() -> tuple[list[int], dict, list[str]]:
  """Validates the flags that only matter with --figures_dir (before any work is done).

  Returns:
    ``(sweep bit widths, {(bits, length): accuracy} from --results, skipped --results notes)``.
  """
  from ebsp_jax.hw import arch
  figures_only = [f"--{n}" for n in ("results", "sweep_bits")
                  if FLAGS[n].present and FLAGS[n].value]
  if FLAGS["sweep"].present and FLAGS.sweep:
    figures_only.append("--sweep")
  if figures_only and not FLAGS.figures_dir:
    one = len(figures_only) == 1
    raise UsageError(f"{', '.join(figures_only)} only appl{'ies' if one else 'y'} to the sweep "
                     f"figure: give --figures_dir too (or drop {'it' if one else 'them'})")
  sweep_only = [f for f in figures_only if f != "--sweep"]
  if sweep_only and not FLAGS.sweep:
    raise UsageError(f"{', '.join(sweep_only)} only appl{'ies' if len(sweep_only) == 1 else 'y'}"
                     " to the sweep figure, which --sweep=false turns off")
  bits_list: list[int] = []
  if FLAGS.figures_dir and FLAGS.sweep:
    try:
      bits_list = [int(b) for b in FLAGS.sweep_bits]
    except ValueError:
      raise UsageError(f"--sweep_bits must be integers; got {FLAGS.sweep_bits}") from None
    if not bits_list:
      raise UsageError("--sweep_bits is empty; give at least one bit width (or --sweep=false)")
    for b in bits_list:  # the sweep's EBSP designs, before any output
      if b < 2:
        raise UsageError(f"--sweep_bits entries must be >= 2 (sign + one magnitude bit); got {b}")
      try:
        arch.check_formats(["ebsp"], pattern_bits=b, pattern_length=1,
                           activation_bits=FLAGS.activation_bits, acc_bits=FLAGS.acc_bits,
                           weight_format=FLAGS.weight_format)
      except arch.ConfigError as e:
        raise UsageError(f"--sweep_bits={b}: {e}") from None
  accuracies: dict = {}
  skipped: list[str] = []
  if FLAGS.results:
    from ebsp_jax.hw import figures
    try:
      accuracies = figures.load_accuracies(FLAGS.results, skipped=skipped)
    except ValueError as e:
      raise UsageError(f"--results: {e}") from None
  return bits_list, accuracies, skipped


def _figure_models() -> list[tuple[str, str]]:
  """``--figure_models`` as ``[(model, dataset)]``, validated."""
  from ebsp_jax import models
  out = []
  for spec in FLAGS.figure_models:
    if ":" not in spec:
      raise UsageError(f"--figure_models entries are model:dataset; got {spec!r}")
    m, d = spec.split(":", 1)
    if m not in models.MODELS:
      raise UsageError(f"--figure_models: unknown model {m!r} in {spec!r}; known: "
                       f"{', '.join(sorted(models.MODELS))}")
    if d not in models.INPUT_SHAPES:
      raise UsageError(f"--figure_models: unknown dataset {d!r} in {spec!r}; known: "
                       f"{', '.join(sorted(models.INPUT_SHAPES))}")
    out.append((m, d))
  return out


def _searched_cost_check(obj, settings, result) -> dict:
  """The search output's cost next to this report's, and whether the settings match."""
  if not (isinstance(obj, dict) and isinstance(obj.get("cost"), dict)):
    return {}
  searched = (obj.get("hardware") or {}).get("settings")
  diffs = (hw_flags.differences(searched, settings) if isinstance(searched, dict)
           else ["the search output records no settings"])
  if isinstance(searched, dict):
    for k in ("batch_size", "setting"):
      if searched.get(k) != settings.get(k):
        diffs.append(f"{k}: {searched.get(k)} vs {settings.get(k)}")
  r = result.results["ebsp"]
  out = {"settings_match": not diffs, "differences": diffs}
  for key, mine in (("energy_pj", r.energy_pj), ("latency_s", r.latency_s)):
    theirs = obj["cost"].get(key)
    if isinstance(theirs, (int, float)) and theirs > 0:
      out[f"searched_{key}"] = float(theirs)
      out[f"report_{key}"] = mine
      out[f"{key}_ratio"] = mine / theirs
  if "energy_pj_ratio" in out:
    print(f"--layer_formats: this report's EBSP energy is {out['energy_pj_ratio']:.6f} x the "
          f"searched cost, latency {out.get('latency_s_ratio', float('nan')):.6f} x"
          + ("" if not diffs else f" (settings differ: {'; '.join(diffs)})"))
  return out


def _data_aware_events(wl, layer_formats=None, qm=None) -> dict:
  """``{layer: LayerEvents}`` from --run, --events or --params, covering exactly the workload
  (with --params, each layer's kernel quantized onto its own format with --layer_formats)."""
  from ebsp_jax.hw import events, report
  if qm is not None:
    try:
      return events.events_from_artifact(qm, wl, FLAGS.activation_bits)
    except ValueError as e:
      raise UsageError(f"--run {FLAGS.run}: {cli.one_line(e)}") from None
  if FLAGS.events:
    try:
      ev = events.load_events(FLAGS.events)
    except ValueError as e:
      raise UsageError(f"--events: {e}") from None
    # Every layer needs its record and every record a layer, else costing is silently partial.
    report.check_activity_names(ev, wl, source=f"--events {FLAGS.events}")
    return ev
  if FLAGS.params:
    try:
      flat = events.load_params(FLAGS.params)
    except ValueError as e:
      raise UsageError(f"--params: {e}") from None
    if layer_formats:
      ev = {}
      for f in sorted(set(layer_formats.values()), key=str):
        part = events.events_from_params(flat, wl, f.bits, f.length, FLAGS.activation_bits)
        ev.update({n: e for n, e in part.items() if layer_formats.get(n) == f})
    else:
      ev = events.events_from_params(flat, wl, FLAGS.pattern_bits, FLAGS.pattern_length,
                                     FLAGS.activation_bits)
    missing = [l.name for l in wl.layers if l.name not in ev]
    if missing:
      raise UsageError(f"--params {FLAGS.params}: no kernel of {FLAGS.model} layer(s) "
                       f"{', '.join(missing)} found (of {len(wl.layers)}; data-aware costing "
                       "needs every layer)")
    return ev
  return {}


def run() -> dict:
  """Runs the report; raises UsageError / ValueError for user errors.

  Every flag is validated before the first evaluation: a bad value, or a flag that would be
  ignored in this combination, is an error.
  """
  from ebsp_jax import models
  from ebsp_jax.hw import arch, events, report, workload

  from ebsp_jax.hw import designs
  names = [a.strip().lower() for a in FLAGS.accelerators if a.strip()]
  unknown = [n for n in names if n not in designs.DESIGNS]
  if unknown or not names:
    raise UsageError(f"unknown accelerator(s) {', '.join(unknown) or '(none given)'}; known: "
                     f"{', '.join(designs.DESIGNS)}")
  if FLAGS.model not in models.MODELS:
    raise UsageError(f"unknown model {FLAGS.model!r}; known: {', '.join(sorted(models.MODELS))}")
  if FLAGS.dataset not in models.INPUT_SHAPES:
    raise UsageError(f"unknown dataset {FLAGS.dataset!r}; known: "
                     f"{', '.join(sorted(models.INPUT_SHAPES))}")
  if FLAGS.batch_size < 1:
    raise UsageError(f"batch_size must be >= 1; got {FLAGS.batch_size}")
  if not (math.isfinite(FLAGS.area_mm2) and FLAGS.area_mm2 > 0):
    raise UsageError(f"--area_mm2 must be a finite number > 0; got {FLAGS.area_mm2}")
  if FLAGS.act_stats and FLAGS.act_zero_fraction is not None:
    raise UsageError("--act_stats and --act_zero_fraction are mutually exclusive; give one")
  if FLAGS.act_zero_fraction is not None and not 0.0 <= FLAGS.act_zero_fraction < 1.0:
    raise UsageError(f"--act_zero_fraction must be in [0, 1); got {FLAGS.act_zero_fraction}")
  if FLAGS.setting == "paper_table" and FLAGS.paper_pe_counts:
    pass  # the same thing said twice
  elif FLAGS.setting == "own" and FLAGS.paper_pe_counts:
    raise UsageError("--paper_pe_counts applies to --setting=equal_area (it is "
                     "--setting=paper_table); --setting=own uses each paper's own counts")
  _check_output()
  if FLAGS.params and FLAGS.events:
    raise UsageError("--params and --events are mutually exclusive (both give the data-aware "
                     "EBSP statistics); give one")
  if (FLAGS.params or FLAGS.events) and "ebsp" not in names:
    raise UsageError(f"--{'params' if FLAGS.params else 'events'} only affects EBSP, which "
                     "--accelerators leaves out")
  qm = _read_run(names)
  tech = _tech()
  if qm is not None:
    (fm, design), fm_json = _run_formats(names, qm), {}
  else:
    fm, design, fm_json = _layer_formats(names)
  pattern = (dict(design) if design else
             {"pattern_bits": FLAGS.pattern_bits, "pattern_length": FLAGS.pattern_length,
              "pattern_max_shift": None})
  # Number formats first, over all designs: one error names the widest product acc_bits needs.
  arch.check_formats(names, **pattern, activation_bits=FLAGS.activation_bits,
                     acc_bits=FLAGS.acc_bits, weight_format=FLAGS.weight_format,
                     bitfusion_bits=FLAGS.bitfusion_bits)
  figure_models = _figure_models()
  bits_list, accs_by_pattern, skipped_results = _figure_flags()
  accs = _build(names, tech, pattern["pattern_bits"], pattern["pattern_length"],
                pattern["pattern_max_shift"])

  wl = workload.model_workload(FLAGS.model, FLAGS.dataset, FLAGS.batch_size)
  if fm:
    try:
      report.check_activity_names(fm, wl, source=(f"--run {FLAGS.run}" if qm is not None else
                                                  f"--layer_formats {FLAGS.layer_formats}"))
    except ValueError as e:
      raise UsageError(str(e)) from None
  ev = _data_aware_events(wl, fm, qm)
  acts = events.activities(ev) if ev else None
  stats = _activation_stats(wl)
  result = report.evaluate_network(wl, accs, dataset=FLAGS.dataset, objective=FLAGS.objective,
                                   search=FLAGS.search, activities=acts, activation_stats=stats,
                                   layer_formats=fm or None)
  print(report.format_table(result))
  extra = {"pattern": {"bits": pattern["pattern_bits"], "length": pattern["pattern_length"]},
           "activation_bits": FLAGS.activation_bits, "setting": FLAGS.setting,
           "pe_counts": report.pe_count_table(accs)}
  if fm:
    extra["pattern"]["max_shift"] = accs["ebsp"].pe.max_shift
    if FLAGS.layer_formats:
      extra["layer_formats_file"] = os.path.abspath(FLAGS.layer_formats)
    else:
      extra["layer_formats"] = {n: str(f) for n, f in fm.items()}
    extra["hardware_settings"] = {**hw_flags.settings(), "batch_size": FLAGS.batch_size,
                                  "setting": FLAGS.setting}
    check = _searched_cost_check(fm_json, extra["hardware_settings"], result)
    if check:
      extra["layer_formats_search"] = check
  if stats:
    extra["activation_zero_fraction"] = {n: 1 - a.act_density for n, a in stats.items()}
  if ev:
    extra["events_summary"] = events.summarize_events(list(ev.values()))
    extra["events_source"] = FLAGS.events or FLAGS.params or os.path.abspath(FLAGS.run)
  out = report.report_json(result, extra)

  others = [report.evaluate_network(workload.model_workload(m, d, FLAGS.batch_size), accs,
                                    dataset=d, objective=FLAGS.objective, search=FLAGS.search)
            for m, d in figure_models]
  if others:
    out["networks"] = [{"model": r.workload.name, "dataset": r.dataset, "macs": r.workload.macs,
                        "batch_size": report.batch_size(r.workload),
                        "accelerators": {n: {"energy_pj": a.energy_pj,
                                             "energy_breakdown_pj": {k: a.energy[k] for k in
                                                                     report.CATEGORIES},
                                             "cycles": a.cycles, "latency_s": a.latency_s}
                                         for n, a in r.results.items()},
                        "comparison": (report.comparison(r) if "ebsp" in r.results else {})}
                       for r in [result] + others]

  if FLAGS.figures_dir:
    from ebsp_jax.hw import figures
    tag = f"{FLAGS.model}_{FLAGS.dataset}" if not others else "networks"
    written = figures.plot_energy_breakdown([result] + others, os.path.join(
        FLAGS.figures_dir, f"energy_{tag}"))
    written += figures.plot_latency([result] + others, os.path.join(
        FLAGS.figures_dir, f"latency_{tag}"))
    if FLAGS.sweep:
      pts = report.sweep_points(wl, lambda b, l: _build(["ebsp"], tech, b, l)["ebsp"], bits_list,
                                dataset=FLAGS.dataset, objective=FLAGS.objective, search="fast")
      for p in pts:
        p["accuracy"] = accs_by_pattern.get((p["bits"], p["length"]))
      base = {n: r.energy_pj for n, r in result.results.items() if n != "ebsp"}
      written += figures.plot_pareto(pts, os.path.join(
          FLAGS.figures_dir, f"pareto_{FLAGS.model}_{FLAGS.dataset}"), base,
          unit=report.per_unit(wl))
      out["sweep"] = pts
      for item in skipped_results:
        print(f"note: --results {item}: skipped")
      if not FLAGS.results:
        print("note: no --results given: the sweep figure shows energy only")
      elif not any(p["accuracy"] is not None for p in pts):
        print("note: no --results file has an accuracy for a swept pattern: the sweep figure "
              "shows energy only")
    out["figures"] = written
    print("figures: " + ", ".join(written))

  if FLAGS.zigzag_dir:
    from ebsp_jax.hw import zigzag_export
    for n, a in accs.items():
      zigzag_export.write_zigzag_inputs(os.path.join(FLAGS.zigzag_dir, n), list(wl.layers), a)
    print(f"ZigZag inputs: {FLAGS.zigzag_dir}/<design>/{{workload,accelerator,mapping}}.yaml")
  if FLAGS.timeloop_dir:
    from ebsp_jax.hw import timeloop_export
    for n, a in accs.items():
      timeloop_export.write_timeloop(os.path.join(FLAGS.timeloop_dir, n), list(wl.layers), a)
    print(f"Timeloop inputs: {FLAGS.timeloop_dir}/<design>/")

  if FLAGS.output:
    d = os.path.dirname(os.path.abspath(FLAGS.output))
    os.makedirs(d, exist_ok=True)
    with open(FLAGS.output, "w", encoding="utf-8") as f:
      json.dump(_finite(out), f, indent=1, default=float, allow_nan=False)
    print(f"report: {FLAGS.output}")
  return out


def _finite(x):
  """``x`` with every non-finite float replaced by ``None`` (JSON has no NaN/Infinity)."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_finite(v) for v in x]
  if hasattr(x, "item") and getattr(x, "shape", None) == ():
    return _finite(x.item())
  return x


def _check_output() -> None:
  """--output must be a writable file path (checked before any evaluation)."""
  if not FLAGS.output:
    return
  if os.path.isdir(FLAGS.output):
    raise UsageError(f"--output={FLAGS.output} is a directory; give a file path")
  probe = os.path.dirname(os.path.abspath(FLAGS.output))
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
    raise UsageError(f"--output={FLAGS.output}: {probe} is not a writable directory")


def _activation_stats(wl):
  """Per-layer activation statistics from --act_zero_fraction or --act_stats (or None)."""
  from ebsp_jax.hw import activations
  if FLAGS.act_stats:
    try:
      return activations.activation_stats(wl, activations.load_zero_fractions(FLAGS.act_stats))
    except ValueError as e:
      raise UsageError(f"--act_stats: {e}") from None
  if FLAGS.act_zero_fraction is not None:
    return activations.uniform_stats(wl, FLAGS.act_zero_fraction)
  return None


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from ebsp_jax.hw.arch import ConfigError
  from ebsp_jax.hw.dataflow import MappingError
  try:
    run()
  except (UsageError, ConfigError, MappingError, ValueError, FileNotFoundError) as e:
    cli.fail(cli.one_line(e))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
