"""ebsp_jax.train.summarize: per-run table, aggregation over seeds, paired comparisons."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ebsp_jax.train import summarize

_EPOCHS = {"admm": (0.0, 2.0, 0.5), "ptq": (0.0, 0.0, 0.25), "float": (8.0, 0.0, 0.0)}


def _res(bits, length, code_bits, levels, seed, quant, *, float_top1=0.90, method="admm",
         act=8, integer="same", projected=None, **cfg_extra):
  f, a, t = _EPOCHS[method]
  cfg = {"float_epochs": f, "admm_epochs": a, "finetune_epochs": t, "seed": seed,
         "pattern_bits": bits, "pattern_length": length, "activation_bits": act,
         "pretrained": None if method == "float" else f"runs/seed{seed}/float",
         "learning_rate": 0.002, **cfg_extra}
  return {"pattern": {"bits": bits, "length": length, "name": f"{bits}b(L{length})",
                      "code_bits": code_bits, "num_levels": levels},
          "config": cfg, "float_top1": float_top1, "quant_top1": quant,
          "integer_top1": quant if integer == "same" else integer,
          "projected_top1": projected, "activation_bits": act, "first_last_pattern": None,
          "steps": 10, "wall_seconds": 60.0 * (seed + 1), "device_kind": "cpu", "devices": 1,
          "_run": f"{bits}b_L{length}" if method != "float" else "float"}


def _write(tmp_path, name, res):
  d = tmp_path / name
  d.mkdir(parents=True)
  (d / "results.json").write_text(json.dumps({k: v for k, v in res.items() if k != "_run"}))
  return str(d / "results.json")


def test_per_run_table(tmp_path):
  paths = [_write(tmp_path, "a", _res(6, 3, 5, 31, 0, 0.9)),
           _write(tmp_path, "b", _res(5, 4, 5, 31, 0, 0.88))]
  text = summarize.table(summarize.load(paths))
  lines = text.splitlines()
  assert len(lines) == 4 and lines[1].startswith("|---|")
  assert "| a | 6b(L3) | EBSP |" in text and "| b | 5b(L4) | uniform |" in text
  assert "+0.00" in text and "-2.00" in text


def test_run_name_and_method():
  assert summarize.run_name("runs/x/seed1/5b_L3/results.json") == "5b_L3"
  assert summarize.run_name("docs/results/fashion_mnist/seed1/ptq_5b_L3.json") == "ptq_5b_L3"
  assert summarize.method(_res(6, 3, 5, 31, 0, 0.9)) == "admm"
  assert summarize.method(_res(6, 3, 5, 31, 0, 0.9, method="ptq")) == "ptq"
  assert summarize.method(_res(6, 3, 5, 31, 0, 0.9, method="float")) == "float"


def test_stat():
  s = summarize.stat([0.90, None, 0.92, 0.91])
  assert s["n"] == 3 and s["mean"] == pytest.approx(0.91) and s["std"] == pytest.approx(0.01)
  assert s["min"] == 0.90 and s["max"] == 0.92
  assert summarize.stat([0.5])["std"] is None
  assert summarize.stat([None]) is None


def _sweep():
  """3 seeds: float, 5b(L2) EBSP, 4b(L3) uniform, 8b(L1) power-of-two (all 4 storage bits),
  5b(L3) EBSP (5 bits); ADMM for all, PTQ for 5b(L2) only."""
  rows = []
  for seed, fl in enumerate((0.90, 0.91, 0.92)):
    rows.append(_res(6, 3, 5, 31, seed, None, float_top1=fl, method="float", integer=None))
    rows.append(_res(5, 2, 4, 15, seed, fl + (0.002, -0.001, 0.005)[seed], float_top1=fl,
                     projected=fl - 0.01))
    rows.append(_res(4, 3, 4, 15, seed, fl, float_top1=fl))
    rows.append(_res(8, 1, 4, 15, seed, fl - 0.01, float_top1=fl))
    rows.append(_res(5, 3, 5, 23, seed, fl - 0.001, float_top1=fl))
    rows.append(_res(5, 2, 4, 15, seed, fl - 0.02 * (seed + 1), float_top1=fl, method="ptq"))
  return rows


def test_aggregate_mean_std_per_group():
  groups = summarize.aggregate(_sweep())
  by = {(g["method"], g["format"] and g["format"][0]): g for g in groups}
  assert set(by) == {("float", None), ("admm", "5b(L2)"), ("admm", "4b(L3)"),
                     ("admm", "8b(L1)"), ("admm", "5b(L3)"), ("ptq", "5b(L2)")}
  flt = by[("float", None)]
  assert flt["seeds"] == [0, 1, 2] and flt["float_top1"]["mean"] == pytest.approx(0.91)
  assert flt["float_top1"]["std"] == pytest.approx(0.01)
  ebsp = by[("admm", "5b(L2)")]
  assert ebsp["quant_top1"]["mean"] == pytest.approx(0.912)
  assert ebsp["delta"]["mean"] == pytest.approx(0.002)
  assert ebsp["delta"]["std"] == pytest.approx(0.003)
  assert ebsp["projected_top1"]["mean"] == pytest.approx(0.90)
  ptq = by[("ptq", "5b(L2)")]
  assert ptq["quant_top1"]["mean"] == pytest.approx(0.87) and ptq["kind"] == "EBSP"

  text = summarize.aggregate_table(groups)
  lines = text.splitlines()
  assert len(lines) == 2 + 5  # float + 4 formats (PTQ and ADMM of 5b(L2) share a row)
  assert lines[2].startswith("| float model |") and "91.00 ± 1.00" in lines[2]
  assert lines[3].startswith("| 5b(L3) | EBSP | 5 | 23 |")  # 5 storage bits before 4
  row = next(l for l in lines if l.startswith("| 5b(L2) |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[:6] == ["5b(L2)", "EBSP", "4", "15", "8", "3"]
  assert cells[7] == "87.00 ± 1.00"  # PTQ fake-quant (0.88, 0.87, 0.86)
  assert cells[9] == "90.00 ± 1.00"  # ADMM projected
  assert cells[10] == "91.20 ± 1.18"  # ADMM fake-quant (0.902, 0.909, 0.925)
  assert cells[12] == "+0.20 ± 0.30"  # per-seed Δ vs float
  assert [l.split("|")[1].strip() for l in lines[4:]] == ["5b(L2)", "4b(L3)", "8b(L1)"]


def test_comparisons_are_paired_and_at_equal_storage_bits():
  comps = summarize.comparisons(summarize.aggregate(_sweep()))
  pairs = [(c["method"], c["a"]["format"][0], c["b"]["format"][0]) for c in comps]
  # 5b(L3) has 5 storage bits: no uniform / power-of-two at 5 bits in this sweep.
  assert pairs == [("admm", "5b(L2)", "4b(L3)"), ("admm", "5b(L2)", "8b(L1)")]
  vs_uniform, vs_pow2 = comps[0]["diff"], comps[1]["diff"]
  assert vs_uniform["mean"] == pytest.approx(0.002) and vs_uniform["std"] == pytest.approx(0.003)
  assert vs_uniform["wins"] == 2 and vs_uniform["n"] == 3
  assert vs_uniform["min"] == pytest.approx(-0.001) and vs_uniform["max"] == pytest.approx(0.005)
  assert vs_pow2["mean"] == pytest.approx(0.012) and vs_pow2["wins"] == 3
  text = summarize.comparisons_table(comps)
  assert "| admm | 4 | 5b(L2) (15 levels) | 4b(L3) uniform (15 levels) | +0.20 ± 0.30 |" in text
  assert "| -0.10 … +0.50 | 2/3 | 3 |" in text


def test_no_negative_zero():
  assert summarize._pm({"mean": -0.00001, "std": 0.002}, signed=True) == "+0.00 ± 0.20"
  assert summarize._pm({"mean": -0.0012, "std": None}, signed=True) == "-0.12"


def test_paired_uses_only_shared_seeds():
  rows = [_res(5, 2, 4, 15, s, 0.9 + 0.01 * s) for s in (0, 1, 2)]
  rows += [_res(4, 3, 4, 15, s, 0.9) for s in (1, 2)]
  g = {gr["format"][0]: gr for gr in summarize.aggregate(rows)}
  d = summarize.paired(g["5b(L2)"], g["4b(L3)"])
  assert d["n"] == 2 and d["seeds"] == [1, 2] and d["mean"] == pytest.approx(0.015)


def test_aggregate_rejects_mixed_settings_and_repeated_seeds():
  rows = [_res(5, 2, 4, 15, 0, 0.9), _res(5, 2, 4, 15, 1, 0.9, learning_rate=0.01)]
  with pytest.raises(ValueError, match="learning_rate"):
    summarize.aggregate(rows)
  with pytest.raises(ValueError, match="seed 0"):
    summarize.aggregate([_res(5, 2, 4, 15, 0, 0.9), _res(5, 2, 4, 15, 0, 0.91)])
  # Different pretrained models are seeds of one setting, not a mix.
  assert len(summarize.aggregate([_res(5, 2, 4, 15, 0, 0.9), _res(5, 2, 4, 15, 1, 0.9)])) == 1
  # Fields that do not change the results (integer_eval left the fingerprint later) neither.
  assert len(summarize.aggregate([_res(5, 2, 4, 15, 0, 0.9, integer_eval=True),
                                  _res(5, 2, 4, 15, 1, 0.9, log_every=7)])) == 1


def test_main(tmp_path, capsys):
  paths = [_write(tmp_path / f"seed{r['config']['seed']}", f"{summarize.method(r)}_{r['_run']}", r)
           for r in _sweep()]
  assert summarize.main(paths) == 0
  out = capsys.readouterr().out
  assert "| float model |" in out and "| admm | 4 | 5b(L2)" in out
  assert summarize.main(["--per_run"] + paths[:2]) == 0
  assert capsys.readouterr().out.startswith("| run | format |")


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "ebsp_jax.train.summarize", *args],
                        capture_output=True, text=True, timeout=120, check=False)


def test_cli_help_lists_arguments():
  """The real entry point (``python -m``); the error paths are tested through ``main`` below."""
  r = _cli("--help")
  assert r.returncode == 0, r.stderr
  assert "RESULTS.json" in r.stdout and "--per_run" in r.stdout and r.stderr == ""


@pytest.mark.parametrize("bad, message", [
    ([], "the following arguments are required: RESULTS.json"),
    (["--bogus", "x.json"], "unrecognized arguments: --bogus"),
])
def test_main_bad_arguments_one_line_exit_2(bad, message, capsys):
  with pytest.raises(SystemExit) as e:
    summarize.main(bad)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_main_bad_files_one_line_exit_2(tmp_path, capsys):
  not_json = tmp_path / "notes.json"
  not_json.write_text("not json")
  not_results = tmp_path / "other.json"
  not_results.write_text(json.dumps({"top1": 0.9}))
  mixed = [_write(tmp_path / "s0", "a", _res(5, 2, 4, 15, 0, 0.9)),
           _write(tmp_path / "s1", "b", _res(5, 2, 4, 15, 0, 0.91))]
  for args, message in (([str(tmp_path / "missing.json")], "missing.json' does not exist"),
                        ([str(not_json)], "notes.json' is not readable JSON"),
                        ([str(not_results)], "other.json' is not a run's results"),
                        (mixed, "both have seed 0")):
    with pytest.raises(SystemExit) as e:
      summarize.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err

