"""End-to-end tests of the training pipeline on a tiny on-disk dataset.

One 16-step reference run (float -> ADMM -> fine-tune, LeNet-5, 128 examples) is made in-process;
the other tests resume, kill, corrupt or reuse it. A persistent compilation cache shared with the
subprocesses keeps the recompilations cheap.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ebsp_jax import models
from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import export_model, export_run, metrics, testing
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.trainer import Experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "experiments", "fashion_mnist.py")
DETERMINISTIC_KEYS = ("float_top1", "projected_top1", "quant_top1", "integer_top1", "float_loss",
                      "quant_loss", "steps", "num_params", "layers", "pattern")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  base = tmp_path_factory.mktemp("pipeline")
  cache = str(base / "jax_cache")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  data_dir = testing.write_fake_fashion_mnist(str(base / "data"), 160, 100)
  sub_env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache,
                 JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONPATH=ROOT)
  return {"base": base, "data_dir": data_dir, "env": sub_env}


def _cfg(env, workdir, **kw) -> TrainConfig:
  flags = {**testing.TINY_FLAGS, "data_dir": env["data_dir"], **kw}
  return TrainConfig(dataset="fashion_mnist", workdir=str(workdir), **flags)


def _argv(env, workdir, **kw):
  flags = dict(testing.TINY_FLAGS, workdir=str(workdir), data_dir=env["data_dir"], **kw)
  return [sys.executable, MAIN] + testing.as_argv(flags)


def _restore_numpy(directory, keep=50):
  """``(meta, leaves)`` of the newest checkpoint in ``directory``, on one device, as numpy."""
  import orbax.checkpoint as ocp
  ck = ckpt_lib.Checkpointer(directory, keep)
  latest = ck.latest_id()
  meta = ck.read_meta(latest)
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = [jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype), sharding=dev)
              for _, shape, dtype in meta["leaves"]]
  r = ck._mngr.restore(latest, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  ck.close()
  return meta, [np.asarray(x) for x in r.state]


def _final_params(workdir):
  """Leaves of the newest checkpoint (the final state), as numpy arrays."""
  return _restore_numpy(os.path.join(workdir, "checkpoints"))


def _assert_same_results(a, b):
  for k in DETERMINISTIC_KEYS:
    assert a.get(k) == b.get(k), f"{k}: {a.get(k)!r} != {b.get(k)!r}"


@pytest.fixture(scope="module")
def reference(env):
  workdir = env["base"] / "reference"
  stream = io.StringIO()
  results = Experiment(_cfg(env, workdir), stream=stream).run()
  return {"workdir": str(workdir), "results": results, "stdout": stream.getvalue()}


def test_results_json_and_metrics(reference):
  workdir = reference["workdir"]
  with open(os.path.join(workdir, "results.json")) as f:
    res = json.load(f)
  for k in ("float_top1", "quant_top1", "integer_top1"):
    assert 0.0 <= res[k] <= 1.0, k
  assert res["float_top1"] > 0.3  # the toy task is learnable (chance: 0.1)
  assert res["pattern"] == {"bits": 5, "length": 2, "name": "5b(L2)", "code_bits": 4,
                            "num_levels": 15}
  assert res["activation_bits"] == 8
  assert res["model"] == "lenet5" and res["dataset"] == "fashion_mnist"
  assert res["num_params"] == 61706
  assert res["steps"] == 16 and res["phase_steps"] == {"float": 4, "admm": 8, "finetune": 4}
  assert res["wall_seconds"] > 0
  # Every quantized layer ends exactly on its grid.
  assert res["layers"] and all(v["on_grid"] for v in res["layers"].values())
  assert all(v["on_grid_fraction"] == 1.0 for v in res["layers"].values())
  # The integer datapath computes the same network as fake-quant mode.
  assert res["integer_top1"] == pytest.approx(res["quant_top1"], abs=0.02)
  assert res["integer_overflows"] == 0     # LeNet-5 sums stay far below 2**31
  # TensorBoard events: readable, CRCs valid, the expected tags.
  tb = os.path.join(workdir, "tensorboard")
  tags = metrics.read_scalars(tb)
  for tag in ("train/loss", "train/accuracy", "admm/rho", "admm/primal_residual",
              "pattern/zero_fraction", "pattern/shift_0", "eval/float_top1", "eval/quant_top1"):
    assert tag in tags, tag
  assert [s for s, _ in tags["train/loss"]] == sorted(s for s, _ in tags["train/loss"])
  rhos = [v for _, v in sorted(tags["admm/rho"])]
  assert rhos[-1] > rhos[0]  # geometric growth
  # Histograms per quantized layer: during ADMM (log steps 6, 8, 10, 12) and at the end (16);
  # the final levels histogram counts every weight of the layer, on its grid.
  hists = metrics.read_histograms(tb)
  for key, layer in res["layers"].items():
    for kind in ("levels", "shift", "mantissa"):
      assert [s for s, _ in hists[f"weights/{kind}/{key}"]] == [6, 8, 10, 12, 16], (kind, key)
    final = hists[f"weights/levels/{key}"][-1][1]
    assert final.num == layer["size"] == sum(final.bucket)
    shift = np.trim_zeros(layer["shift_hist"])   # results.json's shift counts, same weights
    assert [int(c) for c in hists[f"weights/shift/{key}"][-1][1].bucket] == list(shift)
    assert sum(shift) == layer["size"] - round(layer["size"] * layer["zero_fraction"])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  assert {"step", "phase", "train/loss"} <= set(lines[0])
  # Progress lines with a measured step rate and an ETA.
  rates = re.findall(r"\[(\w+)\] step \d+/16 .*?\| ([\d.]+) steps/s \| \d+ ex/s .*\| ETA (\S+)",
                     reference["stdout"])
  assert {p for p, _, _ in rates} == {"float", "admm", "finetune"}, reference["stdout"]
  assert all(float(r) > 0 for _, r, _ in rates)
  assert "done in" in reference["stdout"] and "integer_top1" in reference["stdout"]
  # The float model is saved for --pretrained.
  assert os.path.isdir(os.path.join(workdir, "float_model"))


def test_resume_from_mid_run_checkpoint_is_exact(env, reference):
  """Deleting every checkpoint after one mid-ADMM is what a kill right after it leaves."""
  ref_meta, ref_leaves = _final_params(reference["workdir"])
  workdir = env["base"] / "resumed"
  shutil.copytree(reference["workdir"], workdir)
  os.remove(workdir / "results.json")
  ck_dir = workdir / "checkpoints"
  ids = sorted(int(n) for n in os.listdir(ck_dir) if n.isdigit())
  keep = 4 * 6 + 1  # step 6, phase admm (a checkpoint_every=3 save)
  assert keep in ids
  for i in ids:
    if i > keep:
      shutil.rmtree(ck_dir / str(i))
  res = Experiment(_cfg(env, workdir)).run()
  _assert_same_results(res, reference["results"])
  meta, leaves = _final_params(str(workdir))
  assert meta["leaves"] == ref_meta["leaves"]
  for a, b in zip(leaves, ref_leaves):
    np.testing.assert_array_equal(a, b)  # bitwise
  # The metrics log reads like the uninterrupted run's (lines past the checkpoint dropped).
  def log(path):
    with open(os.path.join(path, "metrics.jsonl")) as f:
      return [(r["step"], r.get("train/loss")) for r in map(json.loads, f)]
  assert log(str(workdir)) == log(reference["workdir"])


def test_sigkill_and_restart_gives_identical_results(env, reference):
  """A subprocess killed with SIGKILL mid-run, restarted with the same command."""
  workdir = env["base"] / "killed"
  cmd = _argv(env, workdir, checkpoint_every=1)
  proc = subprocess.Popen(cmd, env=env["env"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ck_dir = workdir / "checkpoints"
  deadline = time.time() + 240
  killed_at = None
  while time.time() < deadline and proc.poll() is None:
    ids = [int(n) for n in os.listdir(ck_dir) if n.isdigit()] if ck_dir.exists() else []
    if ids and max(ids) >= 4 * 7:   # in the ADMM phase, step >= 7
      proc.send_signal(signal.SIGKILL)
      killed_at = max(ids)
      break
    time.sleep(0.02)
  proc.wait(timeout=60)
  assert killed_at is not None, "the run finished or stalled before it could be killed"
  assert not (workdir / "results.json").exists()
  out = subprocess.run(cmd, env=env["env"], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "resumed at step" in out.stdout
  with open(workdir / "results.json") as f:
    res = json.load(f)
  _assert_same_results(res, reference["results"])
  _, leaves = _final_params(str(workdir))
  _, ref_leaves = _final_params(reference["workdir"])
  for a, b in zip(leaves, ref_leaves):
    np.testing.assert_array_equal(a, b)


def test_mismatched_and_corrupt_checkpoints_fail_clearly(env, reference):
  workdir = env["base"] / "mismatch"
  shutil.copytree(reference["workdir"], workdir)
  # Rerunning a finished run's command only rewrites its results.
  os.remove(workdir / "results.json")
  _assert_same_results(Experiment(_cfg(env, workdir)).run(), reference["results"])
  # Different configuration -> error naming the field, no restart.
  with pytest.raises(ckpt_lib.CheckpointError, match="admm_rho: checkpoint 0.01, now 0.5"):
    Experiment(_cfg(env, workdir, admm_rho=0.5)).run()
  # Different model with the same fingerprint keys cannot happen; a different structure can:
  ck_dir = workdir / "checkpoints"
  latest = max(int(n) for n in os.listdir(ck_dir) if n.isdigit())
  # Corrupt every data file of the latest checkpoint's state.
  state_dir = ck_dir / str(latest) / "state"
  corrupted = 0
  for root, _, files in os.walk(state_dir):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 16 and "metadata" not in name.lower():
        with open(path, "r+b") as f:
          f.seek(0)
          f.write(b"\x00garbage\xff" * 4)
        corrupted += 1
  assert corrupted
  with pytest.raises(ckpt_lib.CheckpointError, match="corrupt or unreadable|unreadable|does not match"):
    Experiment(_cfg(env, workdir)).run()
  # Metadata deleted -> clear error too.
  shutil.rmtree(ck_dir / str(latest) / "meta")
  with pytest.raises(ckpt_lib.CheckpointError):
    Experiment(_cfg(env, workdir)).run()


def test_pretrained_float_model(env, reference):
  """--pretrained starts from the saved float model: post-training projection (no ADMM)."""
  workdir = env["base"] / "ptq"
  res = Experiment(_cfg(env, workdir, pretrained=reference["workdir"], float_epochs=0.0,
                        admm_epochs=0.0, finetune_epochs=0.0, integer_eval=False)).run()
  assert res["float_top1"] == reference["results"]["float_top1"]
  assert res["steps"] == 0
  assert 0.0 <= res["quant_top1"] <= 1.0 and res["integer_top1"] is None
  # No ADMM or fine-tuning step: activations never calibrated, no quantized-model artifact.
  assert not os.path.exists(workdir / export_model.FILE_NAME)
  with pytest.raises(ValueError, match="trained no ADMM or fine-tuning phase.*--ptq"):
    export_model.read_run(str(workdir))
  with pytest.raises(ValueError, match="trained no ADMM or fine-tuning phase"):
    export_run.export_run(str(workdir), data_dir=env["data_dir"])
  with pytest.raises(ckpt_lib.CheckpointError, match="resnet20"):
    Experiment(_cfg(env, env["base"] / "bad_pre", model="resnet20",
                    pretrained=reference["workdir"], float_epochs=0.0)).run()


def _float_model_leaves(workdir):
  return _restore_numpy(os.path.join(workdir, "float_model"), 1)


def _run_on_8_devices(env, workdir, **kw):
  sub_env = dict(env["env"], XLA_FLAGS="--xla_force_host_platform_device_count=8")
  out = subprocess.run(_argv(env, workdir, eval_batch_size=40, **kw), env=sub_env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "8 device(s)" in out.stdout
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


@pytest.mark.slow   # 29 s; 1-device runs and the loaders' split stay fast
def test_data_parallel_8_devices_matches_one_device(env, reference):
  """Float phase + a short ADMM phase on 8 (virtual CPU) devices vs the 1-device reference."""
  workdir = env["base"] / "dp8"
  res = _run_on_8_devices(env, workdir, admm_epochs=0.5, finetune_epochs=0.0,
                          integer_eval=False)
  assert res["devices"] == 8
  meta8, leaves8 = _float_model_leaves(str(workdir))
  meta1, leaves1 = _float_model_leaves(reference["workdir"])
  assert meta8["leaves"] == meta1["leaves"]
  for a, b in zip(leaves8, leaves1):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  assert abs(res["float_top1"] - reference["results"]["float_top1"]) <= 0.011
  assert res["float_loss"] == pytest.approx(reference["results"]["float_loss"], rel=1e-4)
  assert all(v["on_grid"] for v in res["layers"].values())


@pytest.mark.slow
def test_data_parallel_full_pipeline_8_devices(env, reference):
  """The whole pipeline on 8 devices ends near the 1-device run.

  The float phase agrees to float tolerance (see the default test); after it, roundoff moves a
  few weights across rounding boundaries of the grid, so the quantized results agree only to a
  few examples of the 100-example evaluation set.
  """
  res = _run_on_8_devices(env, env["base"] / "dp8_full")
  ref = reference["results"]
  assert abs(res["float_top1"] - ref["float_top1"]) <= 0.011
  for k in ("projected_top1", "quant_top1", "integer_top1"):
    assert abs(res[k] - ref[k]) <= 0.05, (k, res[k], ref[k])
  assert res["quant_loss"] == pytest.approx(ref["quant_loss"], rel=0.05)


@pytest.mark.slow
def test_sigkill_at_random_moments(env, reference):
  """Kills at random moments (during saves, evaluations, phase changes), then resumes."""
  rng = np.random.default_rng(0)
  workdir = env["base"] / "killed_many"
  ck_dir = workdir / "checkpoints"
  cmd = _argv(env, workdir, checkpoint_every=1)
  kills = 0
  for _ in range(6):
    proc = subprocess.Popen(cmd, env=env["env"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    before = {n for n in os.listdir(ck_dir) if n.isdigit()} if ck_dir.exists() else set()
    deadline = time.time() + 300
    # Wait for this process to make progress (a new checkpoint), then kill after a random delay.
    while time.time() < deadline and proc.poll() is None:
      now = {n for n in os.listdir(ck_dir) if n.isdigit()} if ck_dir.exists() else set()
      if now - before:
        break
      time.sleep(0.02)
    time.sleep(float(rng.uniform(0.0, 2.0)))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait(timeout=60)
  assert kills >= 3
  out = subprocess.run(cmd, env=env["env"], capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  with open(workdir / "results.json") as f:
    _assert_same_results(json.load(f), reference["results"])
  _, leaves = _final_params(str(workdir))
  _, ref_leaves = _final_params(reference["workdir"])
  for a, b in zip(leaves, ref_leaves):
    np.testing.assert_array_equal(a, b)


def test_load_run_and_datapath_sweep(env, reference, tmp_path):
  from ebsp_jax.train import load_run  # pylint: disable=import-outside-toplevel
  wd = reference["workdir"]
  before = sorted(os.listdir(os.path.join(wd, "checkpoints")))
  exp, state = load_run(wd, data_dir=env["data_dir"])
  assert state.phase == "done" and exp.cfg.seed == reference["results"]["config"]["seed"]
  top1, _, over, _ = exp.integer_eval(state)       # the run's own integer evaluation again
  assert top1 == reference["results"]["integer_top1"] and over == 0
  top8, _, over8, _ = exp.integer_eval(state, acc_bits=8)
  assert over8 > 0                                  # 8-bit x 5-bit products overflow 8 bits
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == before   # read-only
  with pytest.raises(ckpt_lib.CheckpointError, match="holds no checkpoints/"):
    load_run(str(tmp_path))
  # The CLI: every setting once, the exact 32-bit datapath first; JSON rows; one-line errors.
  out = tmp_path / "sweep.json"
  cli = [sys.executable, os.path.join(ROOT, "experiments", "datapath_sweep.py"),
         f"--workdirs={wd}", f"--data_dir={env['data_dir']}", "--acc_bits=8,32",
         "--overflows=wrap,saturate", f"--output={out}"]
  r = subprocess.run(cli, capture_output=True, text=True, timeout=600,
                     env=dict(env["env"], EBSP_JAX_PROGRESS="1"))   # progress bars on stderr
  assert r.returncode == 0, r.stderr[-2000:]
  assert "sweep: 100%" in r.stderr and "4/4" in r.stderr, r.stderr[-2000:]
  rows = json.loads(out.read_text())["rows"]
  got = [(x["acc_bits"], x["overflow"]) for x in rows]
  assert got == [(32, "wrap"), (8, "wrap"), (8, "saturate"), (32, "saturate")]
  assert rows[0]["top1"] == top1 and rows[1]["top1"] == top8 and rows[1]["overflows"] == over8
  assert rows[2]["overflows"] > 0 and rows[3]["overflows"] == 0
  assert "| lenet5 | 5b(L2) | exact, 8-bit acc, wrap |" in r.stdout
  again = subprocess.run(cli[:2] + [f"--from_json={out}", "--columns=exact:8:saturate"],
                         capture_output=True, text=True, env=env["env"], timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  row = [ln for ln in again.stdout.splitlines() if ln.startswith("| lenet5 | 5b(L2) |")]
  delta = 100 * (rows[2]["top1"] - top1)
  delta = f"{delta:+.2f}" if abs(delta) >= 0.005 else "+0.00"
  assert len(row) == 1 and f"| {100 * top1:.2f} | {delta} (" in row[0]
  bad = subprocess.run(cli[:2] + [f"--workdirs={wd}", "--modes=dual"], capture_output=True,
                       text=True, env=env["env"], timeout=300)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
      "error: --modes: 'dual' is not one of")


@pytest.mark.parametrize("args, match", [
    (["--acc_bits=16,40"], "--acc_bits: 40 is out of range: accumulator widths are 2..32"),
    (["--acc_bits=1"], "--acc_bits: 1 is out of range"),
    (["--columns=exact:64:wrap"], "--columns: 'exact:64:wrap': 64 is out of range"),
    (["--columns=exact:16:wrapp"], "the overflow 'wrapp' is not one of wrap, saturate, clip"),
    (["--output=/nonexistent/dir/sweep.json"], "--output=/nonexistent/dir/sweep.json: no such "
                                               "directory"),
    (["--data_dir=/nonexistent/fmnist"], "--data_dir=/nonexistent/fmnist: no such directory"),
    (["--workdirs={wd},{empty}"], "{empty}: holds no checkpoints/"),
])
def test_datapath_sweep_checks_everything_before_evaluating(env, reference, tmp_path, args,
                                                            match):
  """A bad option or workdir ends the sweep with one line before the first evaluation (which
  takes minutes on real runs): nothing is evaluated or logged."""
  wd, empty = reference["workdir"], str(tmp_path)
  cli = [sys.executable, os.path.join(ROOT, "experiments", "datapath_sweep.py"),
         f"--workdirs={wd}", f"--data_dir={env['data_dir']}"]
  cli += [a.format(wd=wd, empty=empty) for a in args]
  r = subprocess.run(cli, capture_output=True, text=True, env=env["env"], timeout=300)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and lines[-1].startswith("error: "), r.stderr[-2000:]
  assert match.format(wd=wd, empty=empty) in lines[-1]
  assert "top1" not in r.stdout + r.stderr                    # no setting was evaluated


@pytest.mark.slow   # 31 s; dual-LOD fake-quant == integer stays fast (quant tests)
def test_dual_lod_training_round_trip(env, tmp_path):
  from ebsp_jax.train import load_run  # pylint: disable=import-outside-toplevel
  # First conv and classifier 8-bit uniform (L = 7), the others the pattern's length.
  exp = Experiment(_cfg(env, tmp_path / "dual", dual_lod="round", first_last="8"),
                   stream=io.StringIO())
  lengths = dict(exp.quant_model.conv_general_dilated_cls.keywords["dual_lod_length"])
  assert lengths[models.FIRST_LAYER] == 7 and lengths[models.LAST_LAYER] == 7
  assert {v for k, v in lengths.items()
          if k not in (models.FIRST_LAYER, models.LAST_LAYER)} == {exp.cfg.pattern_length}
  res = exp.run()
  assert res["config"]["dual_lod"] == "round"
  # The integer mode evaluated with the dual-LOD datapath computes the trained network.
  assert res["integer_top1"] == pytest.approx(res["quant_top1"], abs=0.02)
  exp, state = load_run(str(tmp_path / "dual"), data_dir=env["data_dir"])
  assert exp.integer_eval(state)[0] == res["integer_top1"]          # default: dual_lod round
  top_exact = exp.integer_eval(state, mode="exact")[0]
  assert 0.0 <= top_exact <= 1.0
  with pytest.raises(ValueError, match="--dual_lod='on': must be one of off, truncate, round"):
    _cfg(env, tmp_path / "x", dual_lod="on")


@pytest.mark.parametrize("dual_lod", ["off", "round"])
def test_first_last_float_integer_eval(env, tmp_path, dual_lod):
  """--first_last=float: the integer mode runs the first conv and the classifier in float (on a
  fake-quantized input, as the fake-quant model does) and records them in results.json."""
  stream = io.StringIO()
  res = Experiment(_cfg(env, tmp_path / "fl", first_last="float", dual_lod=dual_lod),
                   stream=stream).run()
  assert res["first_last_pattern"] == "float"
  assert abs(res["integer_top1"] - res["quant_top1"]) <= 1 / res["eval_examples"] + 1e-9
  floats = res["integer_float_ops"]
  for layer in (models.FIRST_LAYER, models.LAST_LAYER):
    assert [op for op in floats if f"'{layer}'" in op], (layer, floats)
  # Otherwise only the ops on the first conv's float output until the next quantized layer
  # (bias, ReLU, pooling: listed by name); nothing was refused by the integer lowering.
  assert all("(" not in op for op in floats if "float layer" not in op), floats
  assert f"'{models.FIRST_LAYER}'" in stream.getvalue().split("integer mode:")[1].splitlines()[0]
  assert json.loads((tmp_path / "fl" / "results.json").read_text())["integer_float_ops"] == floats


def test_failed_final_evaluation_keeps_the_training(env, tmp_path, monkeypatch):
  """An error in the final evaluation ends with one line; the trained state is checkpointed,
  so rerunning (here with --nointeger_eval, not part of the fingerprint) finishes the run."""
  from ebsp_jax.train import evaluation, trainer  # pylint: disable=import-outside-toplevel
  def boom(*args, **kwargs):
    raise RuntimeError("integer lowering exploded\nsecond line")
  monkeypatch.setattr(evaluation, "integer_top1", boom)
  workdir = tmp_path / "crash"
  with pytest.raises(trainer.EvaluationError) as e:
    Experiment(_cfg(env, workdir), stream=io.StringIO()).run()
  msg = str(e.value)
  assert "\n" not in msg and "integer lowering exploded" in msg and "RuntimeError" in msg
  assert not (workdir / "results.json").exists()
  meta, _ = _final_params(workdir)
  assert meta["step"] == 16                       # the last training step is checkpointed
  monkeypatch.undo()
  # The command line: rerunning resumes at the last step and fails the same way, in one line.
  patch = ("import runpy, sys; from ebsp_jax.train import evaluation\n"
           "def boom(*a, **k): raise RuntimeError('integer lowering exploded')\n"
           "evaluation.integer_top1 = boom\n"
           "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')\n")
  r = subprocess.run([sys.executable, "-c", patch] + _argv(env, workdir)[1:], capture_output=True,
                     text=True, env=env["env"], timeout=300)
  assert r.returncode == 2, r.stderr[-2000:]
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("error: the final evaluation failed at step 16: RuntimeError: integer "
                         "lowering exploded") and "--nointeger_eval" in last, last
  assert "Traceback" not in r.stderr and "exploded" in (workdir / "evaluation_error.txt").read_text()
  # As a run from before integer_eval left the fingerprint: its checkpoints record the field
  # (and, older still, have neither checksums nor a data fingerprint: format 1).
  latest = max(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
  _make_format_1(workdir / "checkpoints" / str(latest),
                 lambda saved: saved["config"].update(integer_eval=True))
  stream = io.StringIO()
  res = Experiment(_cfg(env, workdir, integer_eval=False), stream=stream).run()
  assert res["steps"] == 16 and res["integer_top1"] is None
  assert res["integer_note"] == "disabled by --nointeger_eval"
  assert not (workdir / "evaluation_error.txt").exists()     # the failed try's traceback
  # An old checkpoint resumes, and says what could not be checked.
  out = stream.getvalue()
  assert f"warning: checkpoint {latest} predates data fingerprints" in out
  assert f"warning: checkpoint {latest} predates checksums (format 1)" in out
  assert any("predates checksums" in w for w in res["warnings"])


def _make_format_1(ckpt_path, edit=None):
  """Rewrites a checkpoint's metadata as the first format wrote it: no checksums, no digest,
  no data fingerprint (``edit`` may change it further)."""
  meta_file = ckpt_path / "meta" / "metadata"
  with open(meta_file) as f:
    saved = json.load(f)
  assert "integer_eval" not in saved["config"]
  for k in ("checksums", "digest", "data_fingerprint"):
    del saved[k]
  saved["format"] = 1
  if edit:
    edit(saved)
  with open(meta_file, "w") as f:
    json.dump(saved, f)


# ------------------------------------------------------------------------------------------
# Reliability (issue 17): integrity, data identity, divergence, workdirs.
def _copy_run(reference, dest):
  shutil.copytree(reference["workdir"], dest)
  return dest


def _checkpoint_ids(workdir):
  return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


def _raw_orbax_leaves(ckpt_dir, ckpt_id):
  """The arrays of a checkpoint as orbax alone returns them (no checks of ours), or None."""
  import orbax.checkpoint as ocp
  with open(os.path.join(ckpt_dir, str(ckpt_id), "meta", "metadata")) as f:
    leaves = json.load(f)["leaves"]
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = [jax.ShapeDtypeStruct(tuple(s), np.dtype(d), sharding=dev) for _, s, d in leaves]
  mngr = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
      create=False, cleanup_tmp_directories=False, enable_async_checkpointing=False),
      item_names=("state", "meta"))
  try:
    r = mngr.restore(ckpt_id, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return [np.asarray(x) for x in r.state]
  except Exception:  # noqa: BLE001 - orbax itself noticed the damage
    return None
  finally:
    mngr.close()


def test_bit_rot_is_refused_naming_the_step_and_the_previous_checkpoint(env, reference):
  """One bit flipped in the compressed array data of the latest checkpoint, at a position where
  orbax alone returns altered weights without a word (searched for): the run refuses to resume
  with one line naming the step and the previous checkpoint; following it finishes the run."""
  workdir = _copy_run(reference, env["base"] / "bitrot")
  ck_dir = str(workdir / "checkpoints")
  ids = _checkpoint_ids(workdir)
  latest, previous = ids[-1], ids[-2]
  original = _raw_orbax_leaves(ck_dir, latest)
  data_dir = os.path.join(ck_dir, str(latest), "state", "ocdbt.process_0", "d")
  target = max((os.path.join(data_dir, n) for n in os.listdir(data_dir)), key=os.path.getsize)
  size = os.path.getsize(target)
  with open(target, "rb") as f:
    pristine = f.read()
  silent = None
  for pos in range(size // 2, size - 64, 131):
    damaged = bytearray(pristine)
    damaged[pos] ^= 0x10
    with open(target, "wb") as f:
      f.write(damaged)
    got = _raw_orbax_leaves(ck_dir, latest)
    if got is not None and any(not np.array_equal(a, b) for a, b in zip(got, original)):
      silent = pos
      break
  assert silent is not None, "no silently damaging flip found"
  results_before = (workdir / "results.json").read_bytes()
  with pytest.raises(ckpt_lib.CheckpointError) as e:
    Experiment(_cfg(env, workdir), stream=io.StringIO()).run()
  msg = str(e.value)
  assert "\n" not in msg
  assert msg.startswith(f"checkpoint {os.path.join(ck_dir, str(latest))} (step 16, phase "
                        "'done') is corrupt: array '"), msg
  assert "does not match its checksum" in msg
  assert (f"the previous checkpoint is {previous} (step 16, phase 'finetune'): delete "
          f"{os.path.join(ck_dir, str(latest))} to resume from it") in msg
  assert (workdir / "results.json").read_bytes() == results_before   # nothing republished
  shutil.rmtree(os.path.join(ck_dir, str(latest)))
  os.remove(workdir / "results.json")
  _assert_same_results(Experiment(_cfg(env, workdir), stream=io.StringIO()).run(),
                       reference["results"])


def test_resuming_on_other_data_is_refused(env, reference):
  """The same files and sizes, labels shifted by one: refused with one line, nothing changed."""
  workdir = _copy_run(reference, env["base"] / "other_data")
  os.remove(workdir / "results.json")
  keep = 4 * 6 + 1
  for i in _checkpoint_ids(workdir):
    if i > keep:
      shutil.rmtree(workdir / "checkpoints" / str(i))
  shifted = testing.copy_with_shifted_labels(env["data_dir"], str(env["base"] / "shifted_data"))
  with pytest.raises(ckpt_lib.CheckpointError) as e:
    Experiment(_cfg(env, workdir, data_dir=shifted), stream=io.StringIO()).run()
  msg = str(e.value)
  assert "\n" not in msg and f"holds a run trained on other data: with --data_dir={shifted}" in msg
  assert "the test split differs from the one the run used" in msg
  assert _checkpoint_ids(workdir)[-1] == keep
  # A fresh start on the shifted data in that workdir is refused too (its run.json says so).
  shutil.rmtree(workdir / "checkpoints")
  with pytest.raises(ValueError, match="holds another run \\(the test split differs"):
    Experiment(_cfg(env, workdir, data_dir=shifted), stream=io.StringIO()).run()


def test_rerunning_a_finished_run_changes_nothing(env, reference):
  workdir = _copy_run(reference, env["base"] / "rerun")
  before = (workdir / "results.json").read_bytes()
  params = dict(np.load(workdir / "params.npz"))
  os.remove(workdir / "params.npz")                # republished from the verified state
  res = Experiment(_cfg(env, workdir), stream=io.StringIO()).run()
  assert (workdir / "results.json").read_bytes() == before
  assert res == json.loads(before) and res["train_steps_per_second"] > 0
  with np.load(workdir / "params.npz") as again:
    assert sorted(again) == sorted(params)
    for k in params:
      np.testing.assert_array_equal(again[k], params[k])
  # A finished run of the first checkpoint format (its final checkpoint held only the
  # evaluations, not the final results): results.json is left as it is.
  evaluations = ("float_top1", "float_loss", "projected_top1", "quant_top1", "quant_loss",
                 "integer_top1", "integer_note", "integer_overflows", "integer_float_ops", "layers")
  _make_format_1(workdir / "checkpoints" / str(_checkpoint_ids(workdir)[-1]),
                 lambda m: m.update(results={k: m["results"][k] for k in evaluations}))
  stream = io.StringIO()
  Experiment(_cfg(env, workdir), stream=stream).run()
  assert (workdir / "results.json").read_bytes() == before
  assert "finished run of an older version" in stream.getvalue()


def test_the_float_model_is_the_one_this_run_trained(env, reference):
  """A float_model/ holding other weights is replaced (it was silently kept)."""
  workdir = _copy_run(reference, env["base"] / "stale_float")
  exp = Experiment(_cfg(env, workdir), stream=io.StringIO())
  state = exp._init_jit(jax.random.PRNGKey(5))   # pylint: disable=protected-access
  exp._save_float_model(state, 0.5)               # pylint: disable=protected-access
  meta, leaves = _float_model_leaves(str(workdir))
  assert meta["float_top1"] == 0.5
  mine = jax.tree_util.tree_leaves({"params": state.params, "model_state": state.model_state})
  assert len(leaves) == len(mine)
  for a, b in zip(leaves, mine):
    np.testing.assert_array_equal(a, np.asarray(b))


def test_sgd_at_learning_rate_100_stops_with_one_line(env):
  """NaN from step 3: exit 2 with one line naming the phase and the step, no results, the last
  checkpoint finite (it was the integer evaluation's failure, or NaN in results.json)."""
  workdir = env["base"] / "sgd100"
  r = subprocess.run(_argv(env, workdir, learning_rate=100.0, float_epochs=2.0, admm_epochs=1.0,
                           finetune_epochs=0.0, checkpoint_every=1, log_every=1),
                     capture_output=True, text=True, env=env["env"], timeout=300)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "Traceback" not in r.stderr
  last = r.stderr.strip().splitlines()[-1]
  m = re.match(r"error: training diverged at step (\d+) \(phase 'float'\): the loss is nan "
               r"and the parameters or optimizer state are no longer finite; nothing from that "
               r"step on was saved \(the last checkpoint \(step (\d+), phase 'float'\) in "
               r"(\S+) holds finite values\) and no results were written; .*--learning_rate "
               r"\(now 100\)$", last)
  assert m, last
  bad, kept = int(m.group(1)), int(m.group(2))
  assert kept == bad - 1 and m.group(3) == str(workdir / "checkpoints")
  assert not (workdir / "results.json").exists() and not (workdir / "params.npz").exists()
  meta, leaves = _final_params(str(workdir))
  assert meta["step"] == kept
  assert all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.floating))


def test_adam_at_learning_rate_100_warns(env, tmp_path):
  """A finite loss of ~1e16 runs to the end, with a warning on stdout and in results.json."""
  stream = io.StringIO()
  res = Experiment(_cfg(env, tmp_path / "adam100", optimizer="adam", learning_rate=100.0,
                        float_epochs=2.0, admm_epochs=0.0, finetune_epochs=0.0,
                        integer_eval=False), stream=stream).run()
  assert len(res["warnings"]) == 1
  assert re.match(r"the float loss grew to \S+ at step \d+, \S+ x its start", res["warnings"][0])
  assert "warning: the float loss grew to" in stream.getvalue()
  with open(tmp_path / "adam100" / "results.json") as f:
    assert json.load(f)["warnings"] == res["warnings"]


def _hardware(env, *args):
  r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "hardware.py"),
                      "--accelerators=ebsp", "--search=fast", *args],
                     capture_output=True, text=True, env=dict(env["env"], JAX_PLATFORMS="cpu"),
                     timeout=300)
  return r


def test_quantized_model_artifact_and_hardware_run(env, reference, tmp_path):
  """The run's quantized_model.safetensors holds the integer mode's own codes; hardware.py
  --run reads it and equals the --params path fed those codes; an older run is converted."""
  from safetensors import safe_open
  from ebsp_jax import golden, quant
  from ebsp_jax.hw import events as hw_events
  from ebsp_jax.numerics import artifact
  from ebsp_jax.train import load_run
  wd = reference["workdir"]
  qm = artifact.read(wd)
  assert (qm.model, qm.activation_bits, qm.dual_lod) == ("lenet5", 8, "off")
  assert {str(f) for f in qm.formats().values()} == {"5b(L2)"}
  exp, state = load_run(wd, data_dir=env["data_dir"])
  assert qm.source["step"] == int(state.step)
  # The codes are what the integer mode computes from the trained state (an independent
  # route: quantize_weights of the checkpoint), and codes * scale are params.npz's kernels.
  ref = quant.quantize_weights(state.params, exp.rule, state.weight_scales)
  assert set(ref) == set(qm.layers) == {"conv_init", "conv1", "fc1", "fc2", "head"}
  with np.load(os.path.join(wd, "params.npz")) as flat:
    for name, (q, pattern, s) in ref.items():
      layer = qm.layers[name]
      np.testing.assert_array_equal(layer.codes, q)
      np.testing.assert_array_equal(layer.scale, s)
      assert layer.format == pattern and layer.activation is not None
      np.testing.assert_array_equal(layer.kernel, flat[f"{name}/kernel"])
  # The golden export of the run reads the artifact: the same integer network as the state's.
  x = next(iter(exp.data.eval_batches()))["image"][:2]
  manifest = golden.export_run(wd, x, str(tmp_path / "golden"))
  imodel = quant.to_integer("lenet5", {"params": state.params, **state.model_state},
                            weight_rule=exp.rule, weight_scales=state.weight_scales)
  np.testing.assert_array_equal(np.load(tmp_path / "golden" / "logits.npy"),
                                np.asarray(imodel.apply(x)))
  assert manifest["layer_order"] == ["conv_init", "conv1", "fc1", "fc2", "head"]
  # An older run (no artifact): hardware.py --run says how to write it; export_run writes the
  # same bytes the trainer wrote.
  old = tmp_path / "old_run"
  shutil.copytree(wd, old)
  os.remove(old / artifact.FILE_NAME)
  r = _hardware(env, f"--run={old}")
  assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
      f"error: --run: {old} holds no {artifact.FILE_NAME} (a run finished before this file "
      f"existed): write it with python -m ebsp_jax.train.export_run --workdir={old}")
  assert export_run.main([f"--workdir={old}", f"--data_dir={env['data_dir']}"]) == 0
  # The same metadata and tensors (the file's byte order of its metadata keys may vary).
  with safe_open(str(old / artifact.FILE_NAME), "np") as a, safe_open(
      os.path.join(wd, artifact.FILE_NAME), "np") as b:
    assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
    for k in a.keys():
      np.testing.assert_array_equal(a.get_tensor(k), b.get_tensor(k))
  ids = _checkpoint_ids(old)                      # without its final checkpoints: unfinished
  for i in ids[-2:]:
    shutil.rmtree(old / "checkpoints" / str(i))
  with pytest.raises(SystemExit) as e:
    export_run.main([f"--workdir={old}", f"--data_dir={env['data_dir']}"])
  assert e.value.code == 2
  r = _hardware(env, f"--run={wd}", "--pattern_bits=6")
  assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
      "error: --run and --pattern_bits are exclusive: the run's quantized model gives the "
      "weight formats and codes")
  # hardware.py --run == the --params path given the run's integer codes (integer kernels are
  # taken as codes); the old float path (--params=params.npz) refits each kernel's scale and
  # may pick other codes for the same weights: its layer rows agree where its codes do.
  codes = tmp_path / "codes.npz"
  np.savez(codes, **{f"params/{n}/kernel": l.codes for n, l in qm.layers.items()})
  outs = {}
  for key, args in (("run", [f"--run={wd}"]),
                    ("codes", [f"--params={codes}"]),
                    ("float", [f"--params={wd}/params.npz"])):
    if key != "run":
      args += ["--model=lenet5", "--dataset=fashion_mnist", "--pattern_bits=5",
               "--pattern_length=2"]
    out = tmp_path / f"{key}.json"
    r = _hardware(env, *args, f"--output={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    outs[key] = json.loads(out.read_text())
    outs[key].pop("events_source")
  assert outs["run"] == outs["codes"]
  wl_layers = [row["name"] for row in outs["run"]["layers"]]
  with np.load(os.path.join(wd, "params.npz")) as flat:
    refit = {n: hw_events.quantize_kernel(flat[f"{n}/kernel"], 5, 2) for n in qm.layers}
  for i, name in enumerate(wl_layers):
    if np.array_equal(refit[name], qm.layers[name].codes):
      assert outs["float"]["layers"][i] == outs["run"]["layers"][i], name
