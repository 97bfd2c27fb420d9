"""experiments/datapath_sweep.py without trained runs: output-path checks and --from_json input.

(The sweep over real runs is in train_pipeline_test.py.)
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import datapath_sweep  # noqa: E402  pylint: disable=wrong-import-position

ROW = dict(workdir="runs/a", model="lenet5", pattern="6b(L3)", seed=0, activation_bits=8,
           mode="exact", rounding="truncate", acc_bits=32, overflow="wrap", top1=0.9,
           overflows=0, examples=100)


def _run(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "datapath_sweep.py"),
                         *args], capture_output=True, text=True, timeout=300)


def _write(path, obj):
  path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
  return str(path)


def test_output_directory_is_refused_before_any_evaluation(tmp_path):
  """--output=<a directory> used to fail when writing, after the (long) evaluation."""
  with pytest.raises(ValueError, match=r"is a directory; give the path of a JSON file"):
    datapath_sweep.check_output(str(tmp_path))
  with pytest.raises(ValueError, match="no such directory"):
    datapath_sweep.check_output(str(tmp_path / "no" / "x.json"))
  datapath_sweep.check_output(str(tmp_path / "x.json"))          # fine
  # The CLI checks it before looking at the workdirs (this one does not exist).
  r = _run("--workdirs=/nonexistent/run", f"--output={tmp_path}")
  assert r.returncode == 2, r.stderr
  assert r.stderr.strip().splitlines() == [
      f"error: --output={tmp_path}: is a directory; give the path of a JSON file"]


@pytest.mark.parametrize("content, match", [
    ("{not json", "is not readable JSON"),
    ([1, 2], "not a datapath_sweep output"),
    ({"rows": "x"}, "not a datapath_sweep output"),
    ({"format": 2, "rows": [3]}, r"rows\[0\] is not an object"),
    ({"format": 2, "rows": [dict(ROW, top1=None)]}, r"rows\[0\].top1 is missing or not a float"),
    ({"format": 2, "rows": [{k: v for k, v in ROW.items() if k != "acc_bits"}]},
     r"rows\[0\].acc_bits is missing"),
    ({"format": 2, "rows": [dict(ROW, overflow="clamp")]}, "overflow 'clamp' is not one of"),
])
def test_malformed_from_json_is_one_line(tmp_path, content, match):
  path = _write(tmp_path / "s.json", content)
  with pytest.raises(ValueError, match=match):
    datapath_sweep.read_rows(path)


def test_malformed_from_json_cli_exit_2(tmp_path):
  path = _write(tmp_path / "s.json", {"rows": [{"model": "lenet5"}]})
  r = _run(f"--from_json={path}")
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(
      f"error: --from_json={path}: rows[0].workdir is missing"), r.stderr
  r = _run(f"--from_json={tmp_path / 'missing.json'}")
  assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith("does not exist")


def test_old_files_saturate_rows_are_clip(tmp_path):
  """Before the per-add register, 'saturate' clipped the exact sum: such files (no 'format'
  key) are read as 'clip'; files of this version keep their names."""
  old = _write(tmp_path / "old.json", {"rows": [ROW, dict(ROW, acc_bits=16, overflow="saturate",
                                                          top1=0.8, overflows=3)]})
  rows = datapath_sweep.read_rows(old)
  assert [r["overflow"] for r in rows] == ["wrap", "clip"]
  new = _write(tmp_path / "new.json", {"format": 2, "rows": [ROW, dict(
      ROW, acc_bits=16, overflow="saturate", top1=0.8, overflows=3)]})
  assert [r["overflow"] for r in datapath_sweep.read_rows(new)] == ["wrap", "saturate"]
  r = _run(f"--from_json={old}", "--columns=exact:16:clip")
  assert r.returncode == 0, r.stderr
  assert "predates the per-add saturating register" in r.stderr
  assert "| lenet5 | 6b(L3) | 90.00 | -10.00 (0.03/image) |" in r.stdout
