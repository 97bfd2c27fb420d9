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
])
def test_errors_are_one_line_without_traceback(args, needle):
  r = _run(*args)
  assert r.returncode == 2
  assert r.stdout == ""   # nothing printed before the error
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, r.stderr
  assert needle in lines[0] and "Traceback" not in r.stderr


def test_report_runs_and_writes_the_contract_json(tmp_path):
  import numpy as np
  from ebsp_jax.hw import workload
  # A "trained checkpoint": random float kernels under the models' parameter paths.
  rng = np.random.default_rng(0)
  params = {}
  for l in workload.model_workload("lenet5", "fashion_mnist").layers:
    shape = (l.r, l.s, l.c // l.groups, l.m) if l.kind == "conv" else (l.c, l.m)
    params[l.param_path] = rng.normal(size=shape).astype(np.float32)
  ckpt = tmp_path / "params.npz"
  np.savez(ckpt, **params)
  out = tmp_path / "report.json"
  r = _run("--model=lenet5", "--dataset=fashion_mnist", "--pattern_bits=5",
           "--pattern_length=3", f"--output={out}", "--search=fast", f"--params={ckpt}",
           f"--figures_dir={tmp_path / 'fig'}", "--sweep_bits=4")
  assert r.returncode == 0, r.stderr
  assert "ebsp" in r.stdout and "EBSP vs" in r.stdout
  rep = json.loads(out.read_text())
  assert rep["macs"] == 416520 and rep["pattern"] == {"bits": 5, "length": 3}
  assert set(rep["accelerators"]) == {"eyeriss", "bitfusion", "wax", "olaccel", "ebsp"}
  for a in rep["accelerators"].values():
    assert {"pes", "area_mm2", "energy_pj", "energy_breakdown_pj", "cycles",
            "latency_s"} <= set(a)
  assert len(rep["layers"]) == 5 and len(rep["sweep"]) == 3
  assert rep["data_aware"] and rep["events_summary"]["macs"] == 416520
  assert 0 < rep["events_summary"]["shifted_fraction"] < 1
  assert all(os.path.exists(p) for p in rep["figures"])
