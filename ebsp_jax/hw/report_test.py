"""Tests of the network evaluation, report JSON, tables, figures and sweep."""

import json
import os

import pytest

from ebsp_jax.hw import arch, figures, report, workload
from ebsp_jax.hw.pe import Activity


@pytest.fixture(scope="module")
def lenet_result():
  wl = workload.model_workload("lenet5", "fashion_mnist")
  accs = arch.build_all()
  return report.evaluate_network(wl, accs, dataset="fashion_mnist", search="fast")


def test_contract_json(lenet_result):
  out = json.loads(json.dumps(report.report_json(lenet_result), default=float))
  assert out["macs"] == lenet_result.workload.macs
  assert set(out["accelerators"]) == {"eyeriss", "bitfusion", "wax", "olaccel", "ebsp"}
  for name, a in out["accelerators"].items():
    for key in ("pes", "area_mm2", "energy_pj", "energy_breakdown_pj", "cycles", "latency_s"):
      assert key in a, (name, key)
    assert a["energy_pj"] == pytest.approx(sum(a["energy_breakdown_pj"].values()))
    assert a["latency_s"] == pytest.approx(a["cycles"] / (a["clock_mhz"] * 1e6))
  assert len(out["layers"]) == len(lenet_result.workload.layers)
  assert out["layers"][0]["ebsp"]["energy_pj"] > 0
  assert set(out["comparison"]) == {"eyeriss", "bitfusion", "wax", "olaccel"}
  assert out["comparison"]["eyeriss"]["paper_energy_reduction_pct"] is None   # not ResNet-50


def test_comparison_math(lenet_result):
  c = report.comparison(lenet_result)["bitfusion"]
  e, b = lenet_result.results["ebsp"], lenet_result.results["bitfusion"]
  assert c["energy_reduction_pct"] == pytest.approx(100 * (1 - e.energy_pj / b.energy_pj))
  assert c["speedup"] == pytest.approx(b.latency_s / e.latency_s)
  assert c["perf_gain_pct"] == pytest.approx(100 * (c["speedup"] - 1))


def test_comparison_target_must_be_evaluated(lenet_result):
  with pytest.raises(ValueError, match="comparison target 'tpu' was not evaluated in this "
                     "result; allowed: eyeriss, bitfusion, wax, olaccel, ebsp"):
    report.comparison(lenet_result, target="tpu")
  assert set(report.comparison(lenet_result, target="wax")) == {"eyeriss", "bitfusion",
                                                                "olaccel", "ebsp"}
  # Without EBSP, the table and the report JSON simply have no EBSP comparison.
  base = report.NetworkResult(lenet_result.workload, lenet_result.dataset,
                              {n: r for n, r in lenet_result.results.items() if n != "ebsp"},
                              lenet_result.objective, False, ())
  with pytest.raises(ValueError, match="'ebsp' was not evaluated"):
    report.comparison(base)
  assert report.report_json(base)["comparison"] == {}
  assert "EBSP vs" not in report.format_table(base)


def test_table_and_pe_counts(lenet_result):
  text = report.format_table(lenet_result)
  for name in arch.ACCELERATORS:
    assert name in text
  rows = report.pe_count_table({n: r.accelerator for n, r in lenet_result.results.items()})
  assert {r["design"] for r in rows} == set(arch.ACCELERATORS)
  assert all(r["pes_arith"] >= r["pes_pe"] >= r["pes_pe+local"] for r in rows)


def test_data_aware_activity_lowers_ebsp_compute():
  wl = workload.model_workload("lenet5", "fashion_mnist")
  accs = {"ebsp": arch.build_accelerator("ebsp")}
  base = report.evaluate_network(wl, accs, search="fast").results["ebsp"]
  acts = {l.name: Activity(0.5, 0.5) for l in wl.layers}
  aware = report.evaluate_network(wl, accs, search="fast", activities=acts)
  assert aware.data_aware and aware.results["ebsp"].energy["compute"] < base.energy["compute"]


def test_mapper_progress_bar_counts_every_design_and_layer(capsys):
  wl = workload.model_workload("lenet5", "fashion_mnist")
  accs = {"ebsp": arch.build_accelerator("ebsp"), "eyeriss": arch.build_accelerator("eyeriss")}
  n = len(accs) * len(wl.layers)
  shown = report.evaluate_network(wl, accs, search="fast", show_progress=True)
  err = capsys.readouterr().err
  assert "mapper" in err and f"{n}/{n}" in err, err
  hidden = report.evaluate_network(wl, accs, search="fast", show_progress=False)
  assert capsys.readouterr().err == ""
  assert shown.results["ebsp"].energy == hidden.results["ebsp"].energy


def test_figures_and_sweep(lenet_result, tmp_path):
  paths = figures.plot_energy_breakdown([lenet_result], str(tmp_path / "e"))
  paths += figures.plot_latency([lenet_result], str(tmp_path / "l"))
  wl = lenet_result.workload
  pts = report.sweep_points(wl, lambda b, l: arch.build_accelerator(
      "ebsp", pattern_bits=b, pattern_length=l), [4], search="fast")
  assert [(p["bits"], p["length"]) for p in pts] == [(4, 1), (4, 2), (4, 3)]
  res = tmp_path / "results.json"
  res.write_text(json.dumps({"pattern": {"bits": 4, "length": 2}, "integer_top1": 0.8}))
  acc = figures.load_accuracies([str(res)])
  assert acc == {(4, 2): 0.8}
  for p in pts:
    p["accuracy"] = acc.get((p["bits"], p["length"]))
  paths += figures.plot_pareto(pts, str(tmp_path / "p"), {"eyeriss": 1e6})
  for p in pts:
    p["accuracy"] = None
  paths += figures.plot_pareto(pts, str(tmp_path / "p2"))
  assert len(paths) == 8 and all(os.path.getsize(p) > 1000 for p in paths)


def test_pareto_front():
  pts = [{"energy_pj": 1, "accuracy": 0.5}, {"energy_pj": 2, "accuracy": 0.4},
         {"energy_pj": 3, "accuracy": 0.9}, {"energy_pj": 4, "accuracy": None}]
  assert [p["energy_pj"] for p in figures.pareto_front(pts)] == [1, 3]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_every_registered_model_runs(dataset):
  from ebsp_jax import models
  accs = arch.build_all()
  for name in sorted(models.MODELS):
    wl = workload.model_workload(name, dataset)
    res = report.evaluate_network(wl, accs, dataset=dataset, search="fast")
    out = report.report_json(res)
    assert out["macs"] == wl.macs
    assert all(a["energy_pj"] > 0 and a["cycles"] > 0 for a in out["accelerators"].values())


def test_activities_must_name_exactly_the_layers():
  wl = workload.model_workload("lenet5", "fashion_mnist")
  accs = {"ebsp": arch.build_accelerator("ebsp")}
  acts = {l.name: Activity(0.5, 0.5) for l in wl.layers}
  with pytest.raises(ValueError, match=r"unknown layer name\(s\) conv_0; no entry for layer\(s\) "
                     r"conv_init; the lenet5 layers are: conv_init, conv1, fc1, fc2, head"):
    report.evaluate_network(wl, accs, search="fast",
                            activities={("conv_0" if k == "conv_init" else k): v
                                        for k, v in acts.items()})
  partial = dict(acts)
  del partial["head"]
  with pytest.raises(ValueError, match=r"no entry for layer\(s\) head"):
    report.evaluate_network(wl, accs, search="fast", activities=partial)


def _paper_result(model_name, dataset, bits, length):
  """A NetworkResult with the given labels and EBSP pattern (costs reused from LeNet-5)."""
  wl = workload.model_workload("lenet5", "fashion_mnist")
  import dataclasses
  accs = {n: arch.build_accelerator(n, pattern_bits=bits, pattern_length=length)
          for n in ("eyeriss", "ebsp")}
  res = report.evaluate_network(wl, accs, dataset=dataset, search="fast")
  return dataclasses.replace(res, workload=dataclasses.replace(wl, name=model_name))


def test_paper_figures_only_for_the_papers_setting():
  ok = _paper_result("resnet50", "imagenet", 6, 3)
  assert report.paper_applies(ok)
  assert report.comparison(ok)["eyeriss"]["paper_energy_reduction_pct"] == 87.3
  assert "not shown for this setting" not in report.format_table(ok)
  for other in (_paper_result("resnet50", "imagenet", 5, 3),     # another pattern
                _paper_result("resnet50", "cifar10", 6, 3),      # another input shape
                _paper_result("lenet5", "imagenet", 6, 3)):      # another network
    assert not report.paper_applies(other)
    c = report.comparison(other)["eyeriss"]
    assert c["paper_energy_reduction_pct"] is None and c["paper_perf_gain_pct"] is None
    assert "claimed for resnet50 on imagenet, EBSP 6b(L3) only" in report.format_table(other)
    assert report.report_json(other)["paper_setting"]["applies"] is False


def test_totals_say_per_batch(tmp_path):
  wl = workload.model_workload("lenet5", "fashion_mnist", batch_size=4)
  res = report.evaluate_network(wl, {"ebsp": arch.build_accelerator("ebsp")}, search="fast")
  out = report.report_json(res)
  assert out["batch_size"] == 4
  assert out["units"]["energy_pj"] == "pJ per batch of 4 images"
  assert out["units"]["latency_s"] == "s per batch of 4 images"
  assert "energy and latency per batch of 4 images" in report.format_table(res)
  one = report.evaluate_network(workload.model_workload("lenet5", "fashion_mnist"),
                                {"ebsp": arch.build_accelerator("ebsp")}, search="fast")
  assert report.report_json(one)["units"]["energy_pj"] == "pJ per image"


def test_figure_labels_say_per_batch(tmp_path):
  import matplotlib.pyplot as plt
  wl = workload.model_workload("lenet5", "fashion_mnist", batch_size=4)
  res = report.evaluate_network(wl, {"ebsp": arch.build_accelerator("ebsp")}, search="fast")
  labels = []
  orig = plt.Axes.set_ylabel

  def record(self, text, *a, **k):
    labels.append(text)
    return orig(self, text, *a, **k)

  try:
    plt.Axes.set_ylabel = record
    figures.plot_latency([res], str(tmp_path / "l"))
    figures.plot_energy_breakdown([res], str(tmp_path / "e"), normalize_to=None)
  finally:
    plt.Axes.set_ylabel = orig
  assert labels == ["latency per batch of 4 images (ms)", "energy per batch of 4 images (uJ)"]


def test_table_shows_the_full_ebsp_label():
  wl = workload.model_workload("lenet5", "fashion_mnist")
  res = report.evaluate_network(wl, {"ebsp": arch.build_accelerator("ebsp", activation_bits=4)},
                                search="fast")
  assert "6b(L3), a4, LUT 8" in report.format_table(res)


def test_load_accuracies_reports_skipped_files(tmp_path):
  good = tmp_path / "good.json"
  good.write_text(json.dumps({"pattern": {"bits": 4, "length": 2}, "quant_top1": 0.7}))
  noacc = tmp_path / "noacc.json"
  noacc.write_text(json.dumps({"pattern": {"bits": 4, "length": 3}}))
  nopat = tmp_path / "nopat.json"
  nopat.write_text(json.dumps({"integer_top1": 0.5}))
  skipped = []
  assert figures.load_accuracies([str(good), str(noacc), str(nopat)], skipped=skipped) == {
      (4, 2): 0.7}
  assert skipped == [f"{noacc} (no integer_top1 or quant_top1)",
                     f"{nopat} (no pattern.bits / pattern.length)"]
  bad = tmp_path / "bad.json"
  bad.write_text("[1]")
  with pytest.raises(ValueError, match="expected a JSON object"):
    figures.load_accuracies([str(bad)])
  with pytest.raises(ValueError, match="does not exist"):
    figures.load_accuracies([str(tmp_path / "none.json")])


def test_figures_module_leaves_the_backend_alone_and_draws_layers_and_roofline(lenet_result,
                                                                               tmp_path):
  import subprocess
  import sys
  env = dict(os.environ, MPLBACKEND="svg", JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-c", "import ebsp_jax.hw.figures, matplotlib; "
                      "print(matplotlib.get_backend())"], capture_output=True, text=True,
                     env=env, timeout=120)
  assert r.returncode == 0 and r.stdout.strip() == "svg", r.stderr
  paths = figures.plot_layer_energy(lenet_result, str(tmp_path / "layers"))
  paths += figures.plot_roofline(lenet_result, str(tmp_path / "roof"))
  assert len(paths) == 4 and all(os.path.getsize(p) > 1000 for p in paths)
