"""The EBSP verdict on ResNet-50 / ImageNet at 0.32 mm^2, after the baselines' validation.

    python experiments/ebsp_verdict.py --output=docs/results/ebsp_verdict/verdict.json \\
        --figures_dir=docs/figures --fmnist_params=runs/fmnist_6b3/params.npz

(a) bottom-up equal area (PE counts from this model's areas) and (b) the EBSP paper's table
setting (its PE counts and bit widths), both with the assumed activation sparsity for the
designs that exploit it (Eyeriss gating + RLC, OLAccel skipping); EBSP's energy reduction
against each baseline on-chip and in total; "performance gain" read as speed-up - 1 and as
latency reduction, each against the paper's numbers; the DRAM sensitivity over cited DRAM
energies per bit (the mappings of the default DRAM, re-priced: DRAM energy is linear in
pJ/bit); a per-layer energy figure and a roofline figure. With ``--fmnist_params`` (a trained
LeNet-5 checkpoint), the same comparison on Fashion-MNIST with activation sparsity captured
from the model on real test images and EBSP's data-aware weight statistics.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from ebsp_jax import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Write the verdict JSON here.")
flags.DEFINE_string("figures_dir", None, "Write the per-layer and roofline figures here.")
flags.DEFINE_enum("search", "default", ["fast", "default", "thorough"], "Mapper effort.")
flags.DEFINE_float("zero_fraction", None,
                   "Assumed zero fraction of ResNet-50's post-ReLU inputs (default: "
                   "ebsp_jax.hw.validation.ASSUMED_IMAGENET_ZERO_FRACTION, 57.5%).")
flags.DEFINE_string("fmnist_params", None, "Trained LeNet-5 (Fashion-MNIST) checkpoint.")
flags.DEFINE_integer("fmnist_images", 1000, "Test images for the captured activation sparsity.")

#: DRAM energies per bit for the sensitivity (pJ/bit) with their sources.
DRAM_PJ_PER_BIT = {
    "HBM2": (3.9, "O'Connor et al., Fine-Grained DRAM, MICRO 2017 (HBM2, ~3.9 pJ/bit)"),
    "LPDDR4": (13.5, "H. Ha, PhD thesis, Stanford 2018 (LPDDR4 13-14 pJ/bit, DRAM DSE "
                     "simulation; as compiled in github.com/Dongyunkam/DRAM_info)"),
    "DDR4": (15.0, "no primary DDR4 pJ/bit figure was available here: between LPDDR4 and "
                   "DDR3 (interpolation, not a citation)"),
    "DDR3": (20.3, "Horowitz, ISSCC 2014 (1.3 nJ per 64 b, the low end; the model's default)"),
    "DDR3 high": (40.6, "Horowitz, ISSCC 2014 (2.6 nJ per 64 b, the high end)"),
}


def _reprice(result, pj_per_bit):
  """``{design: (total, on-chip)}`` pJ with DRAM re-priced at ``pj_per_bit``."""
  out = {}
  for n, r in result.results.items():
    base = r.accelerator.tech.dram_pj_per_64b / 64
    dram = r.energy["dram"] * pj_per_bit / base
    out[n] = (r.energy_pj - r.energy["dram"] + dram, r.energy_pj - r.energy["dram"])
  return out


def _verdict(result, paper):
  from ebsp_jax.hw import report  # pylint: disable=import-outside-toplevel
  comp = report.comparison(result)
  rows = {}
  for n, c in comp.items():
    rows[n] = {
        "energy_reduction_pct": c["energy_reduction_pct"],
        "onchip_energy_reduction_pct": c["onchip_energy_reduction_pct"],
        "speedup": c["speedup"],
        "gain_as_speedup_minus_1_pct": c["perf_gain_pct"],
        "gain_as_latency_reduction_pct": c["latency_reduction_pct"],
        "paper_energy_reduction_pct": report.PAPER_ENERGY_REDUCTION_PCT.get(n) if paper else None,
        "paper_perf_gain_pct": report.PAPER_PERF_GAIN_PCT.get(n) if paper else None,
    }
  return rows


def _designs_json(result):
  out = {}
  for n, r in result.results.items():
    a = r.accelerator
    out[n] = {"pes": a.pe_count, "array": list(a.array), "label": a.label,
              "energy_pj": r.energy_pj, "energy_breakdown_pj": dict(r.energy),
              "latency_s": r.latency_s, "cycles": r.cycles}
  return out


def _fmnist(path, n_images, search):
  """LeNet-5 on Fashion-MNIST: captured activation sparsity + EBSP's data-aware weights."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from ebsp_jax import models  # pylint: disable=import-outside-toplevel
  from ebsp_jax.data import augment, fashion_mnist, pipeline  # pylint: disable=import-outside-toplevel
  from ebsp_jax.hw import activations, arch, events, report, workload  # pylint: disable=import-outside-toplevel
  flat = events.load_params(path)
  model = models.get_model("lenet5", num_classes=10)
  x = np.zeros((1, 28, 28, 1), np.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  params = {}
  for kp, _ in jax.tree_util.tree_flatten_with_path(shapes["params"])[0]:
    key = "params/" + "/".join(str(getattr(k, "key", k)) for k in kp)
    alt = key[len("params/"):]
    if key not in flat and alt not in flat:
      raise ValueError(f"{path}: no {key} in the checkpoint")
    params[key] = flat.get(key, flat.get(alt))
  tree = {}
  for k, v in params.items():
    node = tree
    parts = k.split("/")[1:]
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = np.asarray(v, np.float32)
  spec = pipeline.get_spec("fashion_mnist")
  raw = fashion_mnist.load("test")[0][:n_images]
  images = augment.normalize(raw, spec.mean, spec.std)     # as in training
  zeros = activations.capture_zero_fractions(model, {"params": tree}, images)
  wl = workload.model_workload("lenet5", "fashion_mnist")
  stats = activations.activation_stats(wl, zeros)
  ev = events.events_from_params(flat, wl, 6, 3, 8)
  acts = events.activities(ev)
  accs = arch.build_all()
  res = report.evaluate_network(wl, accs, dataset="fashion_mnist", search=search,
                                activities=acts, activation_stats=stats)
  dense = report.evaluate_network(wl, accs, dataset="fashion_mnist", search=search)
  return {"zero_fractions": zeros,
          "events_summary": events.summarize_events(list(ev.values())),
          "designs": _designs_json(res), "comparison": _verdict(res, False),
          "dense_comparison": _verdict(dense, False)}, res


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from ebsp_jax.hw import (activations, arch, area, figures, report,  # pylint: disable=import-outside-toplevel
                           validation, workload)
  z = validation.ASSUMED_IMAGENET_ZERO_FRACTION if FLAGS.zero_fraction is None else \
      FLAGS.zero_fraction
  if not (math.isfinite(z) and 0 <= z < 1):
    cli.fail(f"--zero_fraction must be in [0, 1); got {z}")
  try:
    if FLAGS.output:
      cli.check_output_path(FLAGS.output)
    if FLAGS.figures_dir:
      cli.check_output_path(FLAGS.figures_dir, "--figures_dir", directory=True)
  except ValueError as e:
    cli.fail(cli.one_line(e))
  if FLAGS.fmnist_params and not os.path.exists(FLAGS.fmnist_params):
    cli.fail(f"--fmnist_params: {FLAGS.fmnist_params} does not exist")
  t0 = time.time()
  wl = workload.model_workload("resnet50", "imagenet")
  stats = activations.uniform_stats(wl, z)
  out = {"model": "resnet50", "dataset": "imagenet", "area_mm2": area.PAPER_AREA_MM2,
         "assumed_zero_fraction": z, "search": FLAGS.search, "settings": {}}
  results = {}
  for setting, counts in (("bottom_up", None), ("paper_table", area.PAPER_PE_COUNTS)):
    accs = {n: arch.build_accelerator(n, pe_count=counts[n] if counts else None)
            for n in arch.ACCELERATORS}
    res = report.evaluate_network(wl, accs, dataset="imagenet", search=FLAGS.search,
                                  activation_stats=stats)
    dense = report.evaluate_network(wl, accs, dataset="imagenet", search=FLAGS.search)
    results[setting] = res
    dram = {}
    for dname, (pj, src) in DRAM_PJ_PER_BIT.items():
      e = _reprice(res, pj)
      dram[dname] = {"pj_per_bit": pj, "source": src,
                     "ebsp_energy_reduction_pct": {
                         n: 100 * (1 - e["ebsp"][0] / e[n][0]) for n in e if n != "ebsp"}}
    out["settings"][setting] = {
        "designs": _designs_json(res), "verdict": _verdict(res, True),
        "verdict_dense_activations": _verdict(dense, True), "dram_sensitivity": dram}
    print(f"[{time.time() - t0:6.0f} s] {setting}\n{report.format_table(res)}", flush=True)
  # Which reading of "performance gain" matches the paper's numbers better.
  for setting, s in out["settings"].items():
    err = {}
    for reading in ("gain_as_speedup_minus_1_pct", "gain_as_latency_reduction_pct"):
      err[reading] = sum(abs(math.log(max(1e-9, v[reading] / 100 + 1)
                                      / (v["paper_perf_gain_pct"] / 100 + 1)))
                         for v in s["verdict"].values()) / len(s["verdict"])
    s["gain_reading_mean_abs_log_error"] = err
  if FLAGS.fmnist_params:
    out["fashion_mnist_lenet5"], fres = _fmnist(FLAGS.fmnist_params, FLAGS.fmnist_images,
                                                FLAGS.search)
    print(report.format_table(fres))
  if FLAGS.figures_dir:
    r = results["bottom_up"]
    out["figures"] = (figures.plot_layer_energy(r, os.path.join(FLAGS.figures_dir,
                                                                "layer_energy_resnet50"))
                      + figures.plot_roofline(r, os.path.join(FLAGS.figures_dir,
                                                              "roofline_resnet50")))
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1, allow_nan=False)
    print(f"verdict: {FLAGS.output}")
  print(f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
