"""Tests of saving a run's float model and loading it as ``--pretrained``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.train import pretrained
from ebsp_jax.train.checkpoint import CheckpointError
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.steps import TrainState

_FP = {"train": "a" * 8, "test": "b" * 8}
_ONE_DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _cfg(**kw):
  base = dict(dataset="fashion_mnist", model="lenet5", workdir="/tmp/x")
  base.update(kw)
  return TrainConfig(**base)


def _state(seed: int) -> TrainState:
  k = jax.random.normal(jax.random.key(seed), (3, 4))
  return TrainState(step=jnp.int32(7), params={"dense": {"kernel": k, "bias": jnp.ones(4)}},
                    model_state={"batch_stats": {"mean": jnp.arange(4.0)}}, opt_state=(),
                    rng=jax.random.PRNGKey(0))


def test_saved_float_model_loads_into_another_state(tmp_path):
  mine = _state(1)
  pretrained.save_float_model(str(tmp_path), _cfg(), mine, 0.75, _FP)
  for given in (tmp_path, tmp_path / "float_model"):      # a workdir or its float_model/
    cfg = _cfg(pretrained=str(given))
    assert pretrained.pretrained_dir(cfg) == str(tmp_path / "float_model")
    fm, ckpt_id = pretrained.open_pretrained(cfg)
    meta = fm.read_meta(ckpt_id)
    assert (meta["float_top1"], meta["step"], meta["data_fingerprint"]) == (0.75, 7, _FP)
    other = _state(2)
    loaded = pretrained.load_into(other, fm, ckpt_id, _ONE_DEVICE)   # closes fm
    assert int(loaded.step) == 7 and loaded.opt_state == ()
    for a, b in zip(jax.tree_util.tree_leaves((loaded.params, loaded.model_state)),
                    jax.tree_util.tree_leaves((mine.params, mine.model_state))):
      np.testing.assert_array_equal(a, b)


def test_a_float_model_of_other_weights_is_replaced(tmp_path):
  pretrained.save_float_model(str(tmp_path), _cfg(), _state(1), 0.5, _FP)
  pretrained.save_float_model(str(tmp_path), _cfg(), _state(2), 0.6, _FP)
  fm, ckpt_id = pretrained.open_pretrained(_cfg(pretrained=str(tmp_path)))
  got = pretrained.load_pretrained(fm, ckpt_id, {"params": _state(0).params,
                                                 "model_state": _state(0).model_state}, _ONE_DEVICE)
  np.testing.assert_array_equal(got["params"]["dense"]["kernel"],
                                _state(2).params["dense"]["kernel"])


def test_bad_pretrained_is_one_line(tmp_path):
  with pytest.raises(CheckpointError, match=r"^--pretrained=\S+/nope: no such directory"):
    pretrained.pretrained_dir(_cfg(pretrained=str(tmp_path / "nope")))
  (tmp_path / "empty" / "float_model").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="holds no float-model checkpoint"):
    pretrained.open_pretrained(_cfg(pretrained=str(tmp_path / "empty")))
  pretrained.save_float_model(str(tmp_path / "run"), _cfg(), _state(1), 0.5, _FP)
  with pytest.raises(CheckpointError) as e:
    pretrained.open_pretrained(_cfg(pretrained=str(tmp_path / "run"), model="resnet20",
                                    dataset="cifar10"))
  assert str(e.value) == (f"--pretrained={tmp_path / 'run'}: a lenet5 on fashion_mnist, but "
                          "this run trains a resnet20 on cifar10")
