"""Workdir checks: writable, and a fresh start only where nothing but this run lives."""

import json
import os

import pytest

from ebsp_jax.train import workdir

IDENT = workdir.identity({"model": "lenet5", "seed": 0}, {"train": "aa" * 32, "test": "bb" * 32})


def _tree(path):
  return sorted((os.path.relpath(os.path.join(r, n), path), open(os.path.join(r, n), "rb").read())
                for r, _, names in os.walk(path) for n in names)


def test_check_writable(tmp_path):
  workdir.check_writable(str(tmp_path))                        # exists
  workdir.check_writable(str(tmp_path / "a" / "b"))            # can be created
  assert os.listdir(tmp_path) == []                            # and nothing was
  (tmp_path / "file").write_text("x")
  with pytest.raises(workdir.WorkdirError, match="exists and is not a directory"):
    workdir.check_writable(str(tmp_path / "file"))
  with pytest.raises(workdir.WorkdirError, match=f"cannot be created: {tmp_path / 'file'} is a "
                                                 "file, not a directory"):
    workdir.check_writable(str(tmp_path / "file" / "run"))
  with pytest.raises(workdir.WorkdirError, match="--workdir=/proc/ebsp_jax_run/x: cannot be "
                                                 "created in /proc"):
    workdir.check_writable("/proc/ebsp_jax_run/x")             # a parent nobody may write to


def test_fresh_start_in_a_missing_or_empty_directory(tmp_path):
  assert workdir.check_fresh_start(str(tmp_path / "new"), IDENT) is False
  assert workdir.check_fresh_start(str(tmp_path), IDENT) is False


def test_fresh_start_refuses_a_foreign_directory_and_changes_nothing(tmp_path):
  (tmp_path / "results.json").write_text('{"someone": "else"}')
  (tmp_path / "tensorboard").mkdir()
  (tmp_path / "tensorboard" / "events.out.tfevents.1").write_bytes(b"\x00\x01")
  before = _tree(str(tmp_path))
  with pytest.raises(workdir.WorkdirError) as e:
    workdir.check_fresh_start(str(tmp_path), IDENT)
  msg = str(e.value)
  assert "\n" not in msg and "is not empty (2 entries: results.json, tensorboard)" in msg
  assert "nothing was changed or deleted" in msg
  assert _tree(str(tmp_path)) == before


def test_marker_of_this_run_and_of_another(tmp_path):
  workdir.write_marker(str(tmp_path), IDENT)
  (tmp_path / "metrics.jsonl").write_text("{}\n")             # a killed try's leftovers
  assert workdir.check_fresh_start(str(tmp_path), IDENT) is True
  assert workdir.read_marker(str(tmp_path)) == json.loads(json.dumps(IDENT))
  other = workdir.identity({"model": "lenet5", "seed": 1}, IDENT["data_fingerprint"])
  with pytest.raises(workdir.WorkdirError,
                     match="holds another run \\(seed: the run's 0, now 1\\)"):
    workdir.check_fresh_start(str(tmp_path), other)
  shifted = workdir.identity(IDENT["config"], {"train": "cc" * 32, "test": "bb" * 32})
  with pytest.raises(workdir.WorkdirError, match="the train split differs from the one the run "
                                                 "used \\(fingerprint cccccccccccc, the run's "
                                                 "aaaaaaaaaaaa\\)"):
    workdir.check_fresh_start(str(tmp_path), shifted)
  (tmp_path / workdir.MARKER).write_text("[1, 2]")
  with pytest.raises(workdir.WorkdirError, match="is not a run marker"):
    workdir.check_fresh_start(str(tmp_path), IDENT)


def test_data_difference():
  assert workdir.data_difference({"train": "a", "test": "b"}, {"train": "a", "test": "b"}) is None
  assert "test split" in workdir.data_difference({"train": "a", "test": "b"},
                                                 {"train": "a", "test": "c"})
