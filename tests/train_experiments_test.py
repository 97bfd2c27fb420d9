"""The CIFAR-10 and ImageNet mains end to end on tiny prepared TFDS datasets (slow: big models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ebsp_jax.train import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, args, timeout=900):
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                       capture_output=True, text=True, timeout=timeout, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_cifar10_main(tmp_path):
  d = testing.write_tiny_tfds(str(tmp_path / "tfds"), "cifar10", "3.0.2",
                              {"train": 32, "test": 16}, (32, 32, 3), 10)
  w = str(tmp_path / "c10")
  _run("cifar10.py", ["--flagfile=" + os.path.join(ROOT, "experiments/configs/cifar10.flags"),
                      f"--workdir={w}", f"--data_dir={d}", "--train_examples=32",
                      "--batch_size=16", "--eval_batch_size=16", "--float_epochs=1",
                      "--admm_epochs=1", "--finetune_epochs=1", "--admm_update_every=1",
                      "--checkpoint_every=1"])
  res = _results(w)
  assert res["model"] == "resnet20" and res["dataset"] == "cifar10" and res["steps"] == 6
  assert res["first_last_pattern"] == "8b(L7)"
  for k in ("float_top1", "quant_top1", "integer_top1"):
    assert 0.0 <= res[k] <= 1.0


@pytest.mark.slow
def test_imagenet_main(tmp_path):
  d = testing.write_tiny_tfds(str(tmp_path / "tfds"), "imagenet2012", "5.1.0",
                              {"train": 8, "validation": 4}, (None, None, 3), 1000)
  w = str(tmp_path / "in")
  _run("imagenet.py", ["--flagfile=" + os.path.join(ROOT, "experiments/configs/imagenet.flags"),
                       f"--workdir={w}", f"--data_dir={d}", "--batch_size=4",
                       "--eval_batch_size=4", "--float_epochs=1", "--admm_epochs=1",
                       "--finetune_epochs=0", "--admm_update_every=1", "--nointeger_eval"])
  res = _results(w)
  assert res["model"] == "resnet18" and res["steps"] == 4
  assert 0.0 <= res["quant_top1"] <= 1.0
