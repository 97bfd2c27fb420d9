"""``--normalize_on_device``: uint8 batches normalized inside the jitted steps, bit for bit as the
host's normalization; a flag and a non-semantic config field."""

from __future__ import annotations

import io
import json
import os

import jax
import numpy as np
import pytest
from absl import flags

from ebsp_jax.data import augment, device, get_spec
from ebsp_jax.train import flags as train_flags
from ebsp_jax.train import testing
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.input_pipeline import Data
from ebsp_jax.train.trainer import Experiment


def _cfg(tmp_path, **kw):
  return TrainConfig(dataset="fashion_mnist", model="lenet5", workdir=str(tmp_path / "w"), **kw)


def _bits(x) -> np.ndarray:
  x = np.asarray(x)
  assert x.dtype == np.float32
  return x.view(np.uint32)


def test_config_flag_and_run_identity(tmp_path):
  assert _cfg(tmp_path).normalize_on_device is False
  with pytest.raises(ValueError, match=r"^--normalize_on_device=1: must be True or False$"):
    _cfg(tmp_path, normalize_on_device=1)
  a, b = _cfg(tmp_path), _cfg(tmp_path, normalize_on_device=True)
  assert a.fingerprint() == b.fingerprint() and "normalize_on_device" not in a.fingerprint()
  fv = flags.FlagValues()
  train_flags.define_flags(fv)
  fv(["prog", "--model=lenet5", f"--workdir={tmp_path}", "--normalize_on_device"])
  assert train_flags.config_from_flags("fashion_mnist", fv).normalize_on_device is True


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10", "imagenet"])
def test_device_normalization_is_bit_identical_to_the_host(name):
  spec = get_spec(name)
  channels = 1 if name == "fashion_mnist" else 3
  # Every level in every channel, and random images.
  levels = np.broadcast_to(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1),
                           (1, 16, 16, channels))
  rand = np.random.default_rng(0).integers(0, 256, (3, 16, 16, channels), dtype=np.uint8)
  x = np.concatenate([levels, rand])
  host = augment.normalize(x, spec.mean, spec.std)
  fn = jax.jit(lambda im: device.model_input(im, spec.mean, spec.std))
  np.testing.assert_array_equal(_bits(fn(x)), _bits(host))
  # Host-normalized (float) batches pass through unchanged; other dtypes are refused.
  np.testing.assert_array_equal(_bits(fn(host)), _bits(host))
  with pytest.raises(ValueError, match=r"^model input: expected uint8 .* got int32$"):
    device.model_input(x.astype(np.int32), spec.mean, spec.std)
  # The check can fail: the textbook formula differs from the host's in some bits.
  mean, std = np.float32(spec.mean), np.float32(spec.std)
  textbook = (x.astype(np.float32) / np.float32(255) - mean) / std
  assert not np.array_equal(_bits(textbook), _bits(host))


def test_data_batches_on_device_equal_host_batches(tmp_path):
  data_dir = testing.write_fake_fashion_mnist(str(tmp_path / "data"), 64, 40)
  kw = dict(data_dir=data_dir, batch_size=16, eval_batch_size=16, augment=True, data_workers=0)
  host, dev = Data(_cfg(tmp_path, **kw)), Data(_cfg(tmp_path, normalize_on_device=True, **kw))
  to_input = jax.jit(dev.model_input)
  pairs = list(zip(list(host.eval_batches()) + [next(host.train_iter(3))],
                   list(dev.eval_batches()) + [next(dev.train_iter(3))]))
  assert len(pairs) == 4                          # 3 eval batches (40 = 16 + 16 + 8), 1 train
  for h, d in pairs:
    assert h["image"].dtype == np.float32 and d["image"].dtype == np.uint8
    np.testing.assert_array_equal(_bits(to_input(d["image"])), _bits(h["image"]))
    np.testing.assert_array_equal(d["label"], h["label"])


def test_jitted_steps_give_the_same_bits(tmp_path):
  """The trainer's jitted train and eval steps: uint8 batches (normalized on device) give the
  bits host-normalized batches give (the default suite's check; the whole run is the slow one)."""
  data_dir = testing.write_fake_fashion_mnist(str(tmp_path / "data"), 64, 20)
  out = {}
  for on in (False, True):
    exp = Experiment(_cfg(tmp_path, data_dir=data_dir, train_examples=64, eval_examples=20,
                          batch_size=32, eval_batch_size=20, data_workers=0,
                          normalize_on_device=on), stream=io.StringIO())
    state, metrics = exp.train_fn("float")(exp.initial_state(), next(exp.data.train_iter(0)))
    ev = exp.evaluate(state, "float")
    out[on] = jax.device_get((state.params, metrics)), ev
  (p_off, m_off), ev_off = out[False]
  (p_on, m_on), ev_on = out[True]
  assert ev_on == ev_off and ev_off["count"] == 20
  leaves_off, leaves_on = (jax.tree_util.tree_leaves(t) for t in ((p_off, m_off), (p_on, m_on)))
  assert len(leaves_off) == len(leaves_on) > 0
  for a, b in zip(leaves_off, leaves_on):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


@pytest.mark.slow
def test_training_run_gives_the_same_results(tmp_path):
  """A whole run (float, ADMM, the integer evaluation): the same results.json and params."""
  data_dir = testing.write_fake_fashion_mnist(str(tmp_path / "data"), 64, 40)
  results = {}
  for on in (False, True):
    cfg = TrainConfig(
        dataset="fashion_mnist", model="lenet5", workdir=str(tmp_path / f"run_{on}"),
        data_dir=data_dir, train_examples=64, eval_examples=40, batch_size=32,
        eval_batch_size=20, float_epochs=1.0, admm_epochs=1.0, finetune_epochs=0.0,
        learning_rate=0.05, admm_update_every=1, pattern_bits=5, pattern_length=2,
        activation_bits=8, data_workers=0, normalize_on_device=on)
    Experiment(cfg, stream=io.StringIO()).run()
    with open(os.path.join(cfg.workdir, "results.json"), encoding="utf-8") as f:
      results[on] = json.load(f)
    results[on]["params"] = dict(np.load(os.path.join(cfg.workdir, "params.npz")))
  off, on = results[False], results[True]
  keys = ("float_top1", "float_loss", "quant_top1", "quant_loss", "integer_top1",
          "integer_overflows", "layers")
  assert all(off.get(k) is not None for k in keys[:5]), off
  for k in keys:
    assert on.get(k) == off.get(k), k
  assert off["params"].keys() == on["params"].keys() and off["params"]
  for k, v in off["params"].items():
    np.testing.assert_array_equal(on["params"][k], v, err_msg=k)
