"""Tests of experiments/hardware.py through subprocesses (the contract external checks use)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "hardware.py")


def _run(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.parametrize("args,needle", [
    (["--model=resnet1000"], "unknown model"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--accelerators=eyeriss,tpu"],
     "unknown accelerator"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--area_mm2=0.000001"], "smaller than one PE"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--dram_bytes_per_cycle=0"], "bandwidth"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--glb_bandwidth_bits=0"], "bandwidth"),
    (["--model=lenet5", "--dataset=mars"], "unknown dataset"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--pattern_bits=6", "--pattern_length=9"],
     "pattern"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--sweep=false", "--activation_bits=40"],
     "activation_bits=40 is out of range: allowed [1, 16]"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--sweep=false", "--acc_bits=4"],
     "acc_bits=4 is narrower than one 8x8-bit product of wax (16 bits); allowed: [16, 64]"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--accelerators=ebsp", "--acc_bits=4"],
     "acc_bits=4 is narrower than one 6x8-bit product of ebsp (14 bits); allowed: [14, 64]"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--figures_dir=/tmp/ebsp_never_written",
      "--sweep_bits=4,1"], "--sweep_bits entries must be >= 2"),
    # absl's own parsing errors: one line and exit 2 too, not "FATAL Flags parsing error".
    (["--model=lenet5", "--search=slow"],
     "flag --search=slow: value should be one of <fast|default|thorough>"),
    (["--model=lenet5", "--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    # Flags that only matter with --figures_dir (or the sweep) are errors without it.
    (["--model=lenet5", "--dataset=fashion_mnist", "--results=/nonexistent.json"],
     "--results only applies to the sweep figure: give --figures_dir too"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--sweep_bits=99"],
     "--sweep_bits only applies to the sweep figure: give --figures_dir too"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--sweep"],
     "--sweep only applies to the sweep figure"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--figures_dir=/tmp/ebsp_never_written",
      "--sweep=false", "--sweep_bits=4"], "which --sweep=false turns off"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--figures_dir=/tmp/ebsp_never_written",
      "--sweep_bits=99"], "--sweep_bits=99: invalid EBSP pattern: bits=99 is out of range"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--figures_dir=/tmp/ebsp_never_written",
      "--results=/nonexistent.json"],
     "--results: results file '/nonexistent.json' does not exist"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--figure_models=foo:imagenet"],
     "--figure_models: unknown model 'foo' in 'foo:imagenet'; known: alexnet"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--figure_models=lenet5:mars"],
     "--figure_models: unknown dataset 'mars'"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--params=/tmp/p.npz",
      "--events=/tmp/e.json"], "--params and --events are mutually exclusive"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--events=/nonexistent.json"],
     "--events: events file '/nonexistent.json' does not exist"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--params=/nonexistent.npz"],
     "--params: params checkpoint '/nonexistent.npz' does not exist"),
    # Non-finite numbers are refused in one line, before any evaluation.
    (["--model=lenet5", "--dataset=fashion_mnist", "--area_mm2=inf"],
     "--area_mm2 must be a finite number > 0; got inf"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--clock_mhz=inf"],
     "clock_mhz must be a finite number; got inf"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--dram_bytes_per_cycle=inf"],
     "dram_bytes_per_cycle must be a finite number; got inf"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--output=/tmp"],
     "--output=/tmp is a directory; give a file path"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--act_zero_fraction=0.5",
      "--act_stats=/tmp/x.json"], "--act_stats and --act_zero_fraction are mutually exclusive"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--act_zero_fraction=1"],
     "--act_zero_fraction must be in [0, 1); got 1.0"),
    (["--model=lenet5", "--dataset=fashion_mnist", "--setting=own", "--paper_pe_counts"],
     "--paper_pe_counts applies to --setting=equal_area"),
])
def test_errors_are_one_line_without_traceback(args, needle):
  r = _run(*args)
  assert r.returncode == 2
  assert r.stdout == ""   # nothing printed before the error
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, r.stderr
  assert needle in lines[0] and "Traceback" not in r.stderr


def _lenet_params(seed: int = 0) -> dict:
  import numpy as np
  from ebsp_jax.hw import workload
  rng = np.random.default_rng(seed)
  params = {}
  for l in workload.model_workload("lenet5", "fashion_mnist").layers:
    shape = (l.r, l.s, l.c // l.groups, l.m) if l.kind == "conv" else (l.c, l.m)
    params[l.param_path] = rng.normal(size=shape).astype(np.float32)
  return params


def _one_error_line(r) -> str:
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert r.stdout == "" and "Traceback" not in r.stderr
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, r.stderr
  return lines[0]


def test_events_must_match_the_workload_and_have_the_schema(tmp_path):
  from ebsp_jax.hw import events, workload
  wl = workload.model_workload("lenet5", "fashion_mnist")
  recs = [events.uniform_events(l, 6, 3).to_dict() for l in wl.layers]
  base = ["--model=lenet5", "--dataset=fashion_mnist", "--search=fast"]
  renamed = tmp_path / "renamed.json"
  renamed.write_text(json.dumps([dict(recs[0], name="conv_0")] + recs[1:]))
  line = _one_error_line(_run(*base, f"--events={renamed}"))
  assert line == (f"error: --events {renamed}: unknown layer name(s) conv_0; no entry for "
                  "layer(s) conv_init; the lenet5 layers are: conv_init, conv1, fc1, fc2, head")
  partial = tmp_path / "partial.json"
  partial.write_text(json.dumps(recs[:-1]))
  assert "no entry for layer(s) head" in _one_error_line(_run(*base, f"--events={partial}"))
  report_json = tmp_path / "report.json"          # a hardware report is not an events file
  report_json.write_text(json.dumps({"model": "lenet5", "macs": 416520, "accelerators": {}}))
  line = _one_error_line(_run(*base, f"--events={report_json}"))
  assert line.startswith(f"error: --events: events file '{report_json}': expected a JSON list "
                         "of LayerEvents records") and "'model' is a string" in line


def test_params_must_cover_every_layer(tmp_path):
  import numpy as np
  params = _lenet_params()
  del params["params/head/kernel"]
  ckpt = tmp_path / "partial.npz"
  np.savez(ckpt, **params)
  line = _one_error_line(_run("--model=lenet5", "--dataset=fashion_mnist", f"--params={ckpt}"))
  assert f"--params {ckpt}: no kernel of lenet5 layer(s) head found" in line


def test_report_runs_and_writes_the_contract_json(tmp_path):
  import numpy as np
  # A "trained checkpoint": random float kernels under the models' parameter paths.
  ckpt = tmp_path / "params.npz"
  np.savez(ckpt, **_lenet_params())
  out = tmp_path / "report.json"
  noacc = tmp_path / "results.json"               # a results file without accuracy keys
  noacc.write_text(json.dumps({"pattern": {"bits": 4, "length": 2}}))
  r = _run("--model=lenet5", "--dataset=fashion_mnist", "--pattern_bits=5",
           "--pattern_length=3", f"--output={out}", "--search=fast", f"--params={ckpt}",
           f"--figures_dir={tmp_path / 'fig'}", "--sweep_bits=4", f"--results={noacc}",
           "--batch_size=2")
  assert r.returncode == 0, r.stderr
  assert "ebsp" in r.stdout and "EBSP vs" in r.stdout
  assert "5b(L3), a8, LUT 8" in r.stdout and "per batch of 2 images" in r.stdout
  assert f"note: --results {noacc} (no integer_top1 or quant_top1): skipped" in r.stdout
  assert "the sweep figure shows energy only" in r.stdout
  rep = json.loads(out.read_text())
  assert rep["macs"] == 2 * 416520 and rep["pattern"] == {"bits": 5, "length": 3}
  assert rep["batch_size"] == 2 and rep["units"]["energy_pj"] == "pJ per batch of 2 images"
  assert rep["accelerators"]["ebsp"]["label"] == "5b(L3), a8, LUT 8"
  assert set(rep["accelerators"]) == {"eyeriss", "bitfusion", "wax", "olaccel", "ebsp"}
  for a in rep["accelerators"].values():
    assert {"pes", "area_mm2", "energy_pj", "energy_breakdown_pj", "cycles",
            "latency_s"} <= set(a)
  assert len(rep["layers"]) == 5 and len(rep["sweep"]) == 3
  assert rep["data_aware"] and rep["events_summary"]["macs"] == 2 * 416520
  assert rep["events_summary"]["acc_high_water_bits"] is None      # no data: a bound only
  assert rep["events_summary"]["acc_bound_bits"] > 8
  assert 0 < rep["events_summary"]["shifted_fraction"] < 1
  assert all(os.path.exists(p) for p in rep["figures"])


def test_params_with_non_finite_kernels_are_refused(tmp_path):
  import numpy as np
  params = _lenet_params()
  params["params/fc1/kernel"][0, 0] = np.nan
  params["params/fc1/kernel"][1, 0] = np.inf
  ckpt = tmp_path / "nan.npz"
  np.savez(ckpt, **params)
  line = _one_error_line(_run("--model=lenet5", "--dataset=fashion_mnist", f"--params={ckpt}"))
  assert "the kernel of layer fc1 has 2 NaN/inf value(s)" in line


def test_activation_sparsity_and_own_setting_reports(tmp_path):
  out = tmp_path / "r.json"
  r = _run("--model=lenet5", "--dataset=fashion_mnist", "--search=fast", "--setting=own",
           "--act_zero_fraction=0.5", f"--output={out}")
  assert r.returncode == 0, r.stderr
  text = out.read_text()
  assert "NaN" not in text and "Infinity" not in text
  rep = json.loads(text)
  assert rep["setting"] == "own"
  assert rep["activation_zero_fraction"]["conv_init"] == 0.0      # the input image
  assert rep["activation_zero_fraction"]["fc1"] == 0.5
  assert rep["accelerators"]["eyeriss"]["pes"] == 168              # the JSSC chip
  assert rep["accelerators"]["bitfusion"]["pes"] == 512 * 16        # 16 x 32 Fusion Units
