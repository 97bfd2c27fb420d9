"""Evaluation: exact counts over padded batches, and the progress bar it shows on request."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import progress
from ebsp_jax.train import evaluation
from ebsp_jax.train import sharding as sharding_lib


class _Batches:
  """Batches with a len(), as ebsp_jax.data.Dataset: 3 batches of 4, 4 and 2 examples."""

  def __init__(self):
    rng = np.random.default_rng(0)
    self.batches = [{"image": rng.normal(size=(n, 2)).astype(np.float32),
                     "label": rng.integers(0, 2, n).astype(np.int32)} for n in (4, 4, 2)]

  def __len__(self):
    return len(self.batches)

  def __iter__(self):
    return iter(self.batches)


@jax.jit
def _eval_fn(params, model_state, batch):
  del model_state
  pred = jnp.argmax(batch["image"] @ params, -1)
  m = batch["mask"]
  return {"correct": jnp.sum((pred == batch["label"]) * m), "count": jnp.sum(m),
          "loss_sum": jnp.sum(m * 0.5)}


def test_evaluate_counts_and_progress(capsys, monkeypatch):
  monkeypatch.delenv(progress.ENV_VAR, raising=False)
  data, params = _Batches(), jnp.eye(2)
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  want = sum(int(np.sum(np.argmax(b["image"], -1) == b["label"])) for b in data.batches)
  out = evaluation.evaluate(_eval_fn, params, {}, data, 4, mesh, desc="eval quant",
                            show_progress=True)
  assert out == {"top1": want / 10, "loss": 0.5, "count": 10}
  err = capsys.readouterr().err.replace("\r", "\n")
  # batches done / total, the image rate and tqdm's elapsed<remaining (ETA) on stderr.
  assert re.search(r"eval quant: 100%.* 3/3 \[\d\d:\d\d<\d\d:\d\d,\s+[\d.]+batch/s, \d+ img/s\]",
                   err), err
  # Not asked and stderr not a terminal (pytest captures it): quiet, same result.
  assert evaluation.evaluate(_eval_fn, params, {}, data, 4, mesh) == out
  assert capsys.readouterr().err == ""


def test_empty_split_is_an_error():
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  with pytest.raises(ValueError, match="the evaluation split is empty"):
    evaluation.evaluate(_eval_fn, jnp.eye(2), {}, [], 4, mesh)
