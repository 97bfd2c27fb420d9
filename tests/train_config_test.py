"""Config validation and the experiment mains' command-line contract."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ebsp_jax.numerics import BitPattern, uniform
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.trainer import weight_rule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**kw):
  base = dict(dataset="fashion_mnist", model="lenet5", workdir="/tmp/x")
  base.update(kw)
  return TrainConfig(**base)


@pytest.mark.parametrize("kw, match", [
    (dict(model="nope"), "--model='nope': unknown model"),
    (dict(dataset="svhn"), "--dataset='svhn'"),
    (dict(batch_size=0), "--batch_size=0"),
    (dict(float_epochs=-1.0), "--float_epochs=-1.0"),
    (dict(pattern_bits=6, pattern_length=6), "length=6 is out of range"),
    (dict(pattern_bits=1), "--pattern_bits=1"),
    (dict(activation_bits=1), "--activation_bits=1"),
    (dict(admm_rho=0.0), "--admm_rho=0.0"),
    (dict(admm_rho_policy="magic"), "--admm_rho_policy='magic'"),
    (dict(admm_update_every=0), "--admm_update_every=0"),
    (dict(first_last="eight"), "--first_last='eight'"),
    (dict(optimizer="lbfgs"), "--optimizer='lbfgs'"),
    (dict(train_examples=10, batch_size=32), "--train_examples=10"),
])
def test_bad_values_raise_one_line(kw, match):
  with pytest.raises(ValueError, match=match) as e:
    _cfg(**kw)
  assert "\n" not in str(e.value)


def test_defaults_and_rule():
  cfg = _cfg(pattern_bits=5, pattern_length=2, first_last="8")
  assert cfg.pattern == BitPattern(5, 2)
  assert cfg.effective_admm_lr == pytest.approx(0.1 * cfg.learning_rate)
  rule = weight_rule(cfg)
  import numpy as np
  k = np.zeros((3, 3, 1, 4))
  assert rule("conv_init/kernel", k) == uniform(8)
  assert rule("head/kernel", np.zeros((4, 2))) == uniform(8)
  assert rule("conv1/kernel", k) == BitPattern(5, 2)
  assert rule("conv1/bias", np.zeros(4)) is None
  assert weight_rule(_cfg(first_last="float"))("head/kernel", np.zeros((4, 2))) is None
  assert weight_rule(_cfg(first_last="6,2"))("conv_init/kernel", k) == BitPattern(6, 2)
  # Non-semantic fields do not enter the fingerprint (a resumed run may change them).
  assert _cfg(log_every=7).fingerprint() == _cfg(log_every=9, workdir="/elsewhere").fingerprint()
  assert _cfg(admm_rho=0.1).fingerprint() != _cfg(admm_rho=0.2).fingerprint()


def _run_main(*args, timeout=120):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "fashion_mnist.py"),
                         *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args, match", [
    (["--workdir=/tmp/ebsp_bad", "--pattern_length=9"], "length=9 is out of range"),
    (["--pattern_bits=6"], "--workdir is required"),
    (["--workdir=/tmp/ebsp_bad", "--batch_size=abc"], "batch_size"),
    (["--workdir=/tmp/ebsp_bad", "--no_such_flag=1"], "no_such_flag"),
    (["--workdir=/tmp/ebsp_bad", "--data_dir=/nonexistent/fmnist"], "/nonexistent/fmnist"),
])
def test_main_bad_flag_one_line_error(args, match):
  out = _run_main(*args)
  assert out.returncode != 0
  err = [line for line in out.stderr.splitlines() if line.strip()]
  assert len(err) == 1, out.stderr
  assert err[0].startswith("error: ") and match in err[0], err[0]


def test_flagfiles_parse():
  """Every flagfile holds only known flags with valid values."""
  from absl import flags
  from ebsp_jax.train import flags as train_flags
  for name in ("fashion_mnist", "fashion_mnist_table", "cifar10", "imagenet"):
    ds = name.replace("_table", "")
    fv = flags.FlagValues()
    train_flags.define_flags(fv)
    fv(["prog", f"--flagfile={os.path.join(ROOT, 'experiments', 'configs', name + '.flags')}",
        "--workdir=/tmp/w"])
    cfg = train_flags.config_from_flags(ds, fv)
    assert cfg.dataset == ds and cfg.workdir == "/tmp/w"


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
  from ebsp_jax.train import testing
  return testing.write_fake_fashion_mnist(str(tmp_path_factory.mktemp("fmnist")), 64, 32)


def _one_error_line(out) -> str:
  assert out.returncode == 2, out.stderr
  err = [line for line in out.stderr.splitlines() if line.strip()]
  assert len(err) == 1 and "Traceback" not in out.stderr, out.stderr
  assert err[0].startswith("error: "), err[0]
  return err[0]


@pytest.mark.parametrize("kind", ["missing", "empty", "not_a_run"])
def test_bad_pretrained_is_one_line_and_creates_nothing(tmp_path, fake_data, kind):
  """A bad --pretrained: one line, exit 2, no workdir created, the --pretrained dir untouched."""
  pre = tmp_path / "pre"
  if kind != "missing":
    pre.mkdir()
  if kind == "not_a_run":
    (pre / "notes.txt").write_text("x")
  work = tmp_path / "work"
  line = _one_error_line(_run_main("--model=lenet5", "--batch_size=32", "--eval_batch_size=32",
                                   f"--workdir={work}", f"--data_dir={fake_data}",
                                   f"--pretrained={pre}"))
  assert f"--pretrained={pre}" in line
  assert ("no such directory" if kind == "missing" else "holds no float-model checkpoint") in line
  assert "expected a workdir of an earlier run or its float_model/" in line
  assert not work.exists()
  if kind != "missing":
    assert sorted(os.listdir(pre)) == ([] if kind == "empty" else ["notes.txt"])


def test_unusable_workdir_checkpoint_exits_without_traceback(tmp_path, fake_data):
  """An error after the workdir's checkpoints were opened: the manager is closed, so no orbax
  background thread prints a traceback at interpreter shutdown."""
  work = tmp_path / "work"
  (work / "checkpoints" / "8").mkdir(parents=True)  # a checkpoint id without its contents
  out = _run_main("--model=lenet5", "--batch_size=32", "--eval_batch_size=32",
                  f"--workdir={work}", f"--data_dir={fake_data}")
  assert out.returncode == 2, out.stderr
  assert "Traceback" not in out.stderr and "RuntimeError" not in out.stderr, out.stderr
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and str(work / "checkpoints" / "8") in errors[0], out.stderr
  assert out.stderr.rstrip().splitlines()[-1] == errors[0]


@pytest.mark.parametrize("kw", [
    dict(pattern_bits=9, pattern_length=8, activation_bits=8),
    dict(pattern_bits=9, pattern_length=8, activation_bits=6),
    dict(pattern_bits=9, pattern_length=8, activation_bits=8, first_last="float"),
    dict(pattern_bits=9, pattern_length=8, activation_bits=8, first_last="10,8"),
])
def test_dual_lod_that_cuts_nothing_is_refused(kw):
  """--dual_lod cuts activations to L significant bits: with every quantized layer's L >=
  --activation_bits (the most an activation level has), it would be a silent no-op."""
  for rounding in ("round", "truncate"):
    with pytest.raises(ValueError, match=r"^--dual_lod='%s': cuts no activation" % rounding) as e:
      _cfg(dual_lod=rounding, **kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [
    dict(pattern_bits=9, pattern_length=7, activation_bits=8),   # unsigned levels: 8 bits
    dict(pattern_bits=9, pattern_length=8, activation_bits=8, first_last="8"),  # L=7 there
    dict(pattern_bits=9, pattern_length=8, activation_bits=8, first_last="6,2"),
    dict(pattern_bits=6, pattern_length=3, activation_bits=8, first_last="float"),
])
def test_dual_lod_that_cuts_some_layer_is_accepted(kw):
  assert _cfg(dual_lod="round", **kw).dual_lod == "round"


def test_integer_eval_is_not_part_of_the_fingerprint():
  """--integer_eval only decides what the final evaluation measures: a run may resume with it
  changed (e.g. --nointeger_eval after a failed integer evaluation)."""
  assert _cfg(integer_eval=True).fingerprint() == _cfg(integer_eval=False).fingerprint()
  assert "integer_eval" not in _cfg().fingerprint()


@pytest.mark.parametrize("main, model", [("fashion_mnist", "lenet5"), ("cifar10", "resnet20"),
                                         ("imagenet", "resnet18")])
def test_help_lists_the_training_flags_and_exits_0(main, model):
  env = dict(os.environ, PYTHONPATH=ROOT)
  for flag in ("--help", "-h") if main == "fashion_mnist" else ("--help",):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", f"{main}.py"), flag],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("--workdir", "--learning_rate", "--pattern_bits", "--[no]integer_eval",
                 "--dual_lod", "--coordinator_address"):
      assert name in out.stdout, (name, out.stdout[:2000])
    assert f"(default: '{model}')" in out.stdout


def _tree(path):
  return sorted((os.path.relpath(os.path.join(r, n), path), open(os.path.join(r, n), "rb").read())
                for r, _, names in os.walk(path) for n in names)


def test_fresh_start_in_a_foreign_workdir_is_refused_and_nothing_is_deleted(tmp_path, fake_data):
  work = tmp_path / "work"
  (work / "tensorboard").mkdir(parents=True)
  (work / "results.json").write_text('{"someone": "else"}\n')
  (work / "metrics.jsonl").write_text('{"step": 1}\n')
  (work / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"\x01\x02")
  before = _tree(str(work))
  line = _one_error_line(_run_main("--model=lenet5", "--batch_size=32", "--eval_batch_size=32",
                                   f"--workdir={work}", f"--data_dir={fake_data}"))
  assert line == (f"error: --workdir={work} is not empty (3 entries: metrics.jsonl, results.json, "
                  "tensorboard) and holds no run of this program (no checkpoints, no run.json); "
                  "use a new or empty directory (nothing was changed or deleted)")
  assert _tree(str(work)) == before


@pytest.mark.parametrize("kind", ["parent_is_a_file", "unwritable_parent"])
def test_unusable_workdir_is_one_line_before_loading_data(tmp_path, kind):
  if kind == "parent_is_a_file":
    (tmp_path / "file").write_text("x")
    work, match = tmp_path / "file" / "run", f"cannot be created: {tmp_path / 'file'} is a file"
  else:
    work, match = "/proc/ebsp_jax_test/run", "cannot be created in /proc ("
  # The data directory does not exist: the workdir is checked first.
  line = _one_error_line(_run_main("--model=lenet5", f"--workdir={work}",
                                   "--data_dir=/nonexistent/fmnist"))
  assert line.startswith(f"error: --workdir={work}: ") and match in line, line


def test_malformed_tfds_info_is_one_line(tmp_path):
  vdir = tmp_path / "tfds" / "cifar10" / "3.0.2"
  vdir.mkdir(parents=True)
  (vdir / "dataset_info.json").write_text('{"fileFormat": "array_record", "splits": "train"}')
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "cifar10.py"),
                        f"--workdir={tmp_path / 'w'}", f"--data_dir={tmp_path / 'tfds'}"],
                       capture_output=True, text=True, timeout=120, env=env)
  line = _one_error_line(out)
  assert f"malformed TFDS dataset info {vdir / 'dataset_info.json'}: 'splits' must be" in line
  assert not (tmp_path / "w").exists()
