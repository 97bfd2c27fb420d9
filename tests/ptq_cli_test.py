"""``--ptq`` of the training mains: post-training quantization from the command line.

Fashion-MNIST (real data): a short float run, then ``--ptq --pretrained=<its workdir>``; the
ImageNet main with ``--pretrained_torchvision`` on a tiny prepared TFDS set and a random-weight
torchvision ResNet-18 file (slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from ebsp_jax.train import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST = "/usr/share/datasets/fashion-mnist"


def _main(script, args, timeout=900):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                        capture_output=True, text=True, timeout=timeout, env=env)


def _ok(script, args):
  out = _main(script, args)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_fashion_mnist_ptq_from_a_float_run(tmp_path):
  if not os.path.isdir(FMNIST):
    pytest.skip(f"Fashion-MNIST is not installed in {FMNIST}")
  flagfile = "--flagfile=" + os.path.join(ROOT, "experiments/configs/fashion_mnist.flags")
  common = [flagfile, "--train_examples=2048", "--eval_examples=1000"]
  fl = str(tmp_path / "float")
  _ok("fashion_mnist.py", common + [f"--workdir={fl}", "--float_epochs=1", "--admm_epochs=0",
                                    "--finetune_epochs=0", "--nointeger_eval"])
  pq = str(tmp_path / "ptq")
  out = _ok("fashion_mnist.py", common + [f"--workdir={pq}", "--ptq", f"--pretrained={fl}",
                                          "--calibration_examples=256", "--export_onnx"])
  assert "ptq done" in out.stdout
  res = _results(pq)
  assert res["ptq"] and res["model"] == "lenet5" and res["pattern"] == "6b(L3)"
  assert res["calibration"] == "mse" and res["calibration_examples"] == 256
  assert res["eval_examples"] == 1000 and res["integer_float_ops"] == []
  # No training: the float model is the pretrained run's (its float accuracy, same eval split).
  assert res["float_top1"] == pytest.approx(_results(fl)["float_top1"])
  assert res["integer_agrees_with_fake_quant"] >= 0.99
  assert abs(res["fake_quant_top1"] - res["float_top1"]) < 0.05
  assert set(res["layers"]) == {"conv_init", "conv1", "fc1", "fc2", "head"}
  assert res["layers"]["conv1"]["weights"] == "6b(L3)"
  assert onnx.load(res["onnx"]).graph.output[0].name == "int_logits"
  # Bad combinations: one line, exit 2, nothing created.
  for args, msg in [
      ([f"--workdir={tmp_path / 'a'}", "--calibration=minmax"],
       "--calibration applies only with --ptq"),
      ([f"--workdir={tmp_path / 'a'}", "--ptq"], "--ptq needs exactly one float model"),
      ([f"--workdir={pq}", "--ptq", f"--pretrained={fl}", "--calibration=minmax"],
       "holds another run"),
  ]:
    out = _main("fashion_mnist.py", common + args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and msg in lines[0], out.stderr[-2000:]
  assert not os.path.exists(tmp_path / "a")


@pytest.mark.slow
def test_imagenet_ptq_from_torchvision_weights(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  from ebsp_jax.models import torchvision as tv  # pylint: disable=import-outside-toplevel
  d = testing.write_tiny_tfds(str(tmp_path / "tfds"), "imagenet2012", "5.1.0",
                              {"train": 8, "validation": 4}, (None, None, 3), 1000)
  _, shapes = tv.model_and_shapes("resnet18")
  rng = np.random.default_rng(0)
  sd = {}
  for k, s in shapes.items():
    if k.endswith(("running_var", "weight")) and len(s) == 1:
      sd[k] = rng.uniform(0.5, 1.5, s).astype(np.float32)
    elif len(s) > 1:
      sd[k] = rng.normal(0, np.sqrt(2.0 / np.prod(s[1:])), s).astype(np.float32)
    else:
      sd[k] = rng.normal(0, 0.1, s).astype(np.float32)
  path = str(tmp_path / "resnet18.safetensors")
  save_file(sd, path)
  w = str(tmp_path / "in_ptq")
  flagfile = "--flagfile=" + os.path.join(ROOT, "experiments/configs/imagenet.flags")
  out = _ok("imagenet.py", [flagfile, f"--workdir={w}", f"--data_dir={d}", "--batch_size=4",
                            "--eval_batch_size=4", "--ptq", f"--pretrained_torchvision={path}",
                            "--calibration_examples=8", "--calibration=minmax"])
  res = _results(w)
  assert res["model"] == "resnet18" and res["float_model"].startswith("torchvision:")
  assert res["eval_examples"] == 4 and res["layers"]["conv_init"]["weights"] == "8b(L7)"
  assert res["layers"]["stage1_block0/conv1"]["weights"] == "6b(L3)"
  assert 0.0 <= res["integer_top1"] <= 1.0, out.stdout
