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
