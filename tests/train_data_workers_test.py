"""``--data_workers``: the grain loader's thread count, a flag and a non-semantic config field."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from ebsp_jax.train import flags as train_flags
from ebsp_jax.train import testing
from ebsp_jax.train.config import MAX_DATA_WORKERS, TrainConfig
from ebsp_jax.train.input_pipeline import Data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(tmp_path, **kw):
  return TrainConfig(dataset="fashion_mnist", model="lenet5", workdir=str(tmp_path / "w"), **kw)


def test_config_validation_is_one_line(tmp_path):
  assert _cfg(tmp_path).data_workers == 2
  assert _cfg(tmp_path, data_workers=0).data_workers == 0
  assert _cfg(tmp_path, data_workers=MAX_DATA_WORKERS).data_workers == MAX_DATA_WORKERS
  for bad in (-1, MAX_DATA_WORKERS + 1, 10**6, 1.5, True):
    with pytest.raises(ValueError, match=r"^--data_workers=.*: must be an integer in \[0, 256\] "
                                         r"\(loader threads; 0: load in the training thread\)$"):
      _cfg(tmp_path, data_workers=bad)


def test_not_part_of_the_run_identity(tmp_path):
  a, b = _cfg(tmp_path, data_workers=0), _cfg(tmp_path, data_workers=7)
  assert a.fingerprint() == b.fingerprint() and "data_workers" not in a.fingerprint()
  assert _cfg(tmp_path, seed=1).fingerprint() != a.fingerprint()   # the check can fail


def test_flag_reaches_the_config(tmp_path):
  fv = flags.FlagValues()
  train_flags.define_flags(fv)
  fv(["prog", "--model=lenet5", f"--workdir={tmp_path}", "--data_workers=5"])
  assert train_flags.config_from_flags("fashion_mnist", fv).data_workers == 5
  fv = flags.FlagValues()
  train_flags.define_flags(fv)
  fv(["prog", "--model=lenet5", f"--workdir={tmp_path}", "--data_workers=-3"])
  with pytest.raises(ValueError, match=r"^--data_workers=-3: must be an integer in \[0, 256\]"):
    train_flags.config_from_flags("fashion_mnist", fv)


def test_main_refuses_a_bad_value_with_one_line(tmp_path):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "fashion_mnist.py"),
                         "--model=lenet5", f"--workdir={tmp_path / 'w'}", "--data_workers=1000"],
                        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                        env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --data_workers=1000: must be an integer in [0, 256] (loader threads; 0: load in "
      "the training thread)"), proc.stderr
  assert not (tmp_path / "w").exists()


def test_loader_uses_it_and_batches_do_not_depend_on_it(tmp_path):
  data_dir = testing.write_fake_fashion_mnist(str(tmp_path / "data"), 96, 40)
  got = {}
  for workers in (0, 1, 3):
    data = Data(_cfg(tmp_path, data_dir=data_dir, batch_size=16, eval_batch_size=16,
                     augment=True, data_workers=workers))
    assert data._train(0).num_threads == workers and data._eval().num_threads == workers
    it = data.train_iter(2)
    ev = data.eval_batches()
    assert len(ev) == 3                          # 40 examples in batches of 16
    got[workers] = [next(it) for _ in range(4)] + list(ev)
  for workers in (1, 3):
    for x, y in zip(got[0], got[workers]):
      np.testing.assert_array_equal(x["image"], y["image"])
      np.testing.assert_array_equal(x["label"], y["label"])
