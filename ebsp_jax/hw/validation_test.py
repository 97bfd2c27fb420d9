"""Tests of the baseline validation: figure list and roles, the script's records, calibration."""

import json
import math
import os
import subprocess
import sys

import pytest

from ebsp_jax.hw import validation
from ebsp_jax.models import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "validate_baselines.py")
FIELDS = {"design", "network", "figure", "unit", "model", "published", "role", "setting",
          "source"}


def _run(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=ROOT)


def test_calibration_figures_are_exactly_the_specified_ones():
  cal = {(f.design, f.network, f.figure) for f in validation.FIGURES if f.role == "calibration"}
  assert cal == {("eyeriss", "alexnet", "fps"), ("eyeriss", "alexnet", "power_mw"),
                 ("eyeriss", "alexnet", "dram_mb_per_batch"),
                 ("bitfusion", "alexnet", "speedup_vs_eyeriss"),
                 ("bitfusion", "alexnet", "energy_reduction_vs_eyeriss"),
                 ("olaccel", "alexnet", "energy_saving_vs_zena16_pct"),
                 ("olaccel", "alexnet", "energy_saving_vs_zena8_pct")}
  assert set(validation.CALIBRATION_PARAMETERS) == cal
  assert {f.role for f in validation.FIGURES} == set(validation.ROLES)
  names = {(f.design, f.network): set() for f in validation.FIGURES}
  for f in validation.FIGURES:
    names[(f.design, f.network)].add(f.figure)
    assert f.network in registry.MODELS, f
    assert f.published > 0 and f.source and f.setting
  assert names[("eyeriss", "vgg16")] == {"fps", "power_mw", "dram_mb_per_batch"}
  for net in ("alexnet", "resnet18", "lenet5"):
    assert names[("bitfusion", net)] == {"speedup_vs_eyeriss", "energy_reduction_vs_eyeriss"}
  for net in ("alexnet", "vgg16", "resnet18"):
    assert names[("olaccel", net)] == {"energy_saving_vs_zena16_pct",
                                       "energy_saving_vs_zena8_pct"}
  for net in ("vgg16", "resnet18"):
    assert names[("wax", net)] == {"speedup_vs_eyeriss", "energy_reduction_vs_eyeriss"}


def test_published_values_from_the_artifact_notebook():
  # Eyeriss / Bit Fusion ms per image and mW, printed by the artifact's notebook.
  bf = {(f.network, f.figure): f.published for f in validation.FIGURES if f.design == "bitfusion"}
  assert bf[("alexnet", "speedup_vs_eyeriss")] == pytest.approx(1.866, abs=5e-4)
  assert bf[("alexnet", "energy_reduction_vs_eyeriss")] == pytest.approx(1.556, abs=5e-4)
  assert bf[("lenet5", "energy_reduction_vs_eyeriss")] == pytest.approx(4.298, abs=5e-4)


def test_script_writes_the_records_of_a_subset(tmp_path):
  out = tmp_path / "v.json"
  r = _run("--designs=eyeriss", "--networks=alexnet", f"--output={out}")
  assert r.returncode == 0, r.stderr
  assert "ratio" in r.stdout and "calibration" in r.stdout
  text = out.read_text()
  assert "NaN" not in text and "Infinity" not in text
  recs = json.loads(text)["records"]
  assert [x["figure"] for x in recs] == ["fps", "power_mw", "dram_mb_per_batch"]
  for x in recs:
    assert set(x) == FIELDS
    assert x["role"] == "calibration" and x["network"] == "alexnet"
    assert math.isfinite(x["model"]) and x["model"] > 0
  power = next(x for x in recs if x["figure"] == "power_mw")
  # The chip overhead was calibrated to this figure: it is met (to the calibration's rounding).
  assert power["model"] == pytest.approx(278.0, rel=0.02)


@pytest.mark.parametrize("args,needle", [
    (["--output=/tmp"], "--output=/tmp is a directory"),
    (["--designs=tpu"], "--designs: unknown tpu"),
    (["--networks=bert"], "--networks: unknown bert"),
    (["--calibrate", "--output=/tmp/x.json"], "--calibrate writes no records"),
    (["--designs=wax", "--networks=lenet5"], "no published figure for this selection"),
])
def test_bad_flags_fail_in_one_line_before_computing(args, needle):
  r = _run(*args, timeout=120)
  assert r.returncode == 2 and r.stdout == ""
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.mark.slow
def test_full_validation_and_stored_calibration(tmp_path):
  out = tmp_path / "all.json"
  r = _run(f"--output={out}", timeout=1200)
  assert r.returncode == 0, r.stderr
  recs = json.loads(out.read_text())["records"]
  assert len(recs) == len(validation.FIGURES)
  fitted = validation.calibrate("fast")
  from ebsp_jax.hw.designs import eyeriss, olaccel
  assert fitted["eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE"] == pytest.approx(
      eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE, rel=0.01)
  assert fitted["eyeriss.CHIP_RAMP_SERIAL_FRACTION"] == pytest.approx(
      eyeriss.CHIP_RAMP_SERIAL_FRACTION, abs=0.01)
  assert fitted["olaccel.SKIP_CONTROL_PJ_PER_MAC"] == pytest.approx(
      olaccel.SKIP_CONTROL_PJ_PER_MAC, rel=0.01)
