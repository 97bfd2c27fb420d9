"""experiments/zigzag_crosscheck.py: flag errors (one line, exit 2, nothing written) and a
one-layer run whose JSON carries every compared quantity."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from ebsp_jax.hw import zigzag_export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "zigzag_crosscheck.py")


def _run(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.parametrize("args,message", [
    (["--designs=ebsp,tpu"], "--designs: unknown design 'tpu'; allowed: eyeriss"),
    (["--networks=resnet99"], "--networks: unknown model 'resnet99'; known:"),
    (["--own_hardware=nope"], "ZigZag has no example hardware 'nope'; known:"),
])
def test_bad_flags_exit_2_before_work(tmp_path, args, message):
  out = tmp_path / "x.json"
  p = _run(f"--output={out}", *args)
  assert p.returncode == 2, p.stderr
  lines = p.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and message in lines[-1], p.stderr
  assert "Traceback" not in p.stderr and not out.exists()


def test_output_path_checked_first(tmp_path):
  (tmp_path / "file").write_text("")
  p = _run(f"--output={tmp_path}/file/x.json", "--designs=nope")
  assert p.returncode == 2 and "file is not a writable directory" in p.stderr, p.stderr
  p = _run(f"--output={tmp_path}")
  assert p.returncode == 2 and "is a directory" in p.stderr
  p = _run(f"--output={tmp_path}/missing/x.json", "--designs=nope")   # parents are created
  assert p.returncode == 2 and "unknown design 'nope'" in p.stderr, p.stderr


@pytest.mark.slow
@pytest.mark.skipif(not zigzag_export.zigzag_available(), reason="zigzag-dse not installed")
def test_one_layer_run(tmp_path):
  out = tmp_path / "cc.json"
  p = _run(f"--output={out}", "--networks=resnet18", "--max_layers=1",
           "--designs=ebsp,olaccel", "--search=fast", "--own_lpf_limit=3")
  assert p.returncode == 0, p.stderr[-2000:]
  assert "ZigZag / ours, network totals" in p.stdout
  res = json.loads(out.read_text())
  assert [r["design"] for r in res["records"]] == ["ebsp", "olaccel"]
  for r in res["records"]:
    assert r["layer"] == "conv_init" and "error" not in r
    assert r["ratio"]["mac_pj"] == pytest.approx(1.0)
    for q in ("onchip_pj", "dram_pj", "cycles"):
      assert 0.5 < r["ratio"][q] < 2.0, (r["design"], q, r["ratio"])
    # one shared buffer port: the weight and input fetches of every cycle serialise
    assert r["zigzag_shared_port_cycles"] > 1.5 * r["zigzag"]["cycles"]
  # OLAccel's cycle factor is not given to ZigZag: compared without it, recorded with it.
  ol = res["records"][1]
  assert ol["ours_full"]["mac_pj"] == pytest.approx(ol["ours"]["mac_pj"])
  assert ol["ours_full"]["cycles"] >= ol["ours"]["cycles"]
  assert any("cycle factor" in s for s in res["designs"]["olaccel"]["not_given_to_zigzag"])
  t = res["totals"]["resnet18"]["ebsp"]
  assert t["layers"] == 1 and t["ours"]["cycles"] == res["records"][0]["ours"]["cycles"]
  assert t["full_over_exported"]["cycles"] == pytest.approx(1.0)   # EBSP: nothing left out
  own = res["own_hardware"][0]
  assert own["hardware"] == "eyeriss_like" and len(own["records"]) == 1
  dram_w = next(s for s in own["summary"]
                if (s["level"], s["operand"], s["direction"]) == ("dram", "W", "rd_low"))
  assert dram_w["ours"] == dram_w["zigzag"] == 64 * 3 * 7 * 7    # every weight read once
  assert math.isfinite(res["elapsed_s"])
