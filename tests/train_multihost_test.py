"""Multi-process data parallelism (``--multihost``): two CPU processes on localhost.

Two processes with one CPU device each (``jax.distributed`` with a coordinator on a free local
port, gloo collectives) run the whole pipeline of the experiment main on a shared workdir; a
single process with two virtual CPU devices runs the same command without ``--multihost``. The
SPMD program is the same and every cross-device reduction adds two partial results (exact in
either order), so the final parameters, checkpoints and metrics must agree bitwise: this checks
that each process loads exactly its rows of every global batch (augmentation included), that the
evaluations add over processes, and that only process 0 writes results, metrics and progress.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import testing
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.input_pipeline import Data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "experiments", "fashion_mnist.py")
#: The 16-step pipeline run (float -> ADMM -> fine-tune -> integer eval), with augmentation, and
#: evaluation batches of 40 (100 examples: the last batch of 20 lies in process 0's rows only).
FLAGS = dict(testing.TINY_FLAGS, eval_batch_size=40, augment=True)
TIMEOUT = 420


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _argv(workdir, data_dir, *extra):
  flags = dict(FLAGS, workdir=str(workdir), data_dir=data_dir)
  return [sys.executable, MAIN] + testing.as_argv(flags) + list(extra)


def _communicate(procs):
  """``[(returncode, stdout, stderr)]``; kills every process if one outlives ``TIMEOUT``."""
  outs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=TIMEOUT)
      outs.append((p.returncode, out, err))
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    for p in procs:
      p.communicate()
    pytest.fail("a process did not finish in time (a collective waiting for a peer?)")
  return outs


def _checkpoint_leaves(directory):
  """``{id: (meta, [numpy leaves])}`` of every checkpoint in ``directory``, on one device."""
  import jax
  import orbax.checkpoint as ocp
  ck = ckpt_lib.Checkpointer(directory, 50)
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  out = {}
  for i in ck.all_ids():
    meta = ck.read_meta(i)
    abstract = [jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype), sharding=dev)
                for _, shape, dtype in meta["leaves"]]
    r = ck._mngr.restore(i, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    out[i] = (meta, [np.asarray(x) for x in r.state])
  ck.close()
  return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return testing.write_fake_fashion_mnist(str(tmp_path_factory.mktemp("mh_data")), 160, 100)


@pytest.mark.slow   # 80 s (two processes train); the loaders' split and flag errors stay fast
def test_two_processes_match_one_process_on_two_devices(tmp_path, data_dir):
  multi, single = tmp_path / "multi", tmp_path / "single"
  port = _free_port()
  procs = [subprocess.Popen(
      _argv(multi, data_dir, "--multihost", f"--coordinator_address=localhost:{port}",
            "--num_processes=2", f"--process_id={i}"),
      env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
  procs.append(subprocess.Popen(_argv(single, data_dir), env=_env(2), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))
  (rc0, out0, err0), (rc1, out1, err1), (rc, out, err) = _communicate(procs)
  assert rc0 == 0, err0[-3000:]
  assert rc1 == 0, err1[-3000:]
  assert rc == 0, err[-3000:]
  assert "2 device(s) in 2 processes" in out0 and "done in" in out0
  assert "2 device(s)" in out and "in 2 processes" not in out
  assert "step" not in out1 and "done in" not in out1, out1  # process 1 prints no progress

  with open(multi / "results.json") as f:
    res_m = json.load(f)
  with open(single / "results.json") as f:
    res_s = json.load(f)
  assert res_m["processes"] == 2 and res_s["processes"] == 1
  assert res_m["devices"] == res_s["devices"] == 2
  timing = {"wall_seconds", "train_steps_per_second", "processes"}
  for k in sorted((set(res_m) | set(res_s)) - timing):
    assert res_m.get(k) == res_s.get(k), (k, res_m.get(k), res_s.get(k))
  assert res_m["integer_top1"] is not None and res_m["steps"] == 16

  # The hard-projected parameters, bitwise.
  pm, ps = np.load(multi / "params.npz"), np.load(single / "params.npz")
  assert sorted(pm) == sorted(ps)
  for k in pm:
    np.testing.assert_array_equal(pm[k], ps[k], err_msg=k)
  # Every checkpoint (the whole training state at every save), bitwise.
  cm = _checkpoint_leaves(str(multi / "checkpoints"))
  cs = _checkpoint_leaves(str(single / "checkpoints"))
  assert sorted(cm) == sorted(cs) and len(cm) > 5
  for i in cm:
    assert cm[i][0]["leaves"] == cs[i][0]["leaves"]
    for a, b in zip(cm[i][1], cs[i][1]):
      np.testing.assert_array_equal(a, b, err_msg=f"checkpoint {i}")
  # Metrics written once (by process 0): the same log, one TensorBoard event file.
  def log(d):
    with open(d / "metrics.jsonl") as f:
      return [json.loads(line) for line in f]
  assert log(multi) == log(single)
  assert len(os.listdir(multi / "tensorboard")) == 1
  assert not [n for n in os.listdir(multi) if ".tmp" in n]


def test_each_process_loads_its_rows(data_dir):
  """The rows two processes load make up the global batches (augmented), eval batches too."""
  cfg = TrainConfig(dataset="fashion_mnist", workdir="/tmp/unused", data_dir=data_dir, **FLAGS)
  whole = Data(cfg)
  parts = [Data(cfg, (0, 16), (0, 20)), Data(cfg, (16, 32), (20, 40))]
  its = [whole.train_iter(3)] + [p.train_iter(3) for p in parts]
  for _ in range(6):  # past an epoch boundary (4 steps/epoch)
    w, a, b = (next(it) for it in its)
    assert len(a["label"]) == len(b["label"]) == 16
    for k in ("image", "label"):
      np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), w[k])
  ev_w = list(whole.eval_batches())
  ev_a, ev_b = list(parts[0].eval_batches()), list(parts[1].eval_batches())
  assert [len(b["label"]) for b in ev_w] == [40, 40, 20]
  assert [len(b["label"]) for b in ev_a] == [20, 20, 20]
  assert [len(b["label"]) for b in ev_b] == [20, 20, 0]  # past the short last batch
  assert ev_b[-1]["image"].shape == (0, 28, 28, 1)
  for w, a, b in zip(ev_w, ev_a, ev_b):
    for k in ("image", "label"):
      np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), w[k])


def _run_main(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, MAIN, *args], capture_output=True, text=True,
                        timeout=120, env=env)


@pytest.mark.parametrize("args, match", [
    (["--process_id=1"], "--process_id applies only with --multihost"),
    (["--multihost", "--num_processes=2", "--process_id=2"], "--process_id=2: must be in [0, "),
])
def test_distributed_flag_errors_one_line(tmp_path, args, match):
  out = _run_main(f"--workdir={tmp_path}", *args)
  assert out.returncode == 2
  err = [line for line in out.stderr.splitlines() if line.strip()]
  assert len(err) == 1 and match in err[0], out.stderr
