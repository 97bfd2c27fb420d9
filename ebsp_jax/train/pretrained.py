"""The float model a run saves for ``--pretrained``, and loading it into another run.

A training run saves its float model in ``<workdir>/float_model/`` when the float phase ends
(:func:`save_float_model`); ``--pretrained`` (of training and of ``--ptq``) names such a
workdir or that directory (:func:`pretrained_dir`), checked to hold a float model of the same
model and dataset (:func:`open_pretrained`) before it is read (:func:`load_pretrained`).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Tuple

import jax

from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.steps import TrainState

PyTree = Any
#: The float model's directory in a run's workdir.
FLOAT_MODEL_DIR = "float_model"


def float_model_dir(path: str, name: str, expected: str) -> str:
  """The float-model checkpoint directory of ``path``: a run's workdir (its ``float_model/``)
  or that directory itself.

  Raises:
    CheckpointError: neither is a directory: ``"<name>: no such directory (expected
      <expected> or its float_model/)"``.
  """
  p = os.path.abspath(path)
  if os.path.isdir(os.path.join(p, FLOAT_MODEL_DIR)):
    p = os.path.join(p, FLOAT_MODEL_DIR)
  if not os.path.isdir(p):
    raise ckpt_lib.CheckpointError(f"{name}: no such directory (expected {expected} or its "
                                   f"{FLOAT_MODEL_DIR}/)")
  return p


def pretrained_dir(cfg: TrainConfig) -> str:
  """The directory of the ``--pretrained`` float model (``CheckpointError`` if there is none)."""
  return float_model_dir(cfg.pretrained, f"--pretrained={cfg.pretrained}",
                         "a workdir of an earlier run")


def open_pretrained(cfg: TrainConfig) -> Tuple[ckpt_lib.Checkpointer, int]:
  """``(checkpointer, id)`` of the ``--pretrained`` float model, opened read-only and checked
  to be a ``cfg.model`` on ``cfg.dataset``; the caller closes it (:func:`load_pretrained`
  does).

  Raises:
    CheckpointError: no such directory, no float-model checkpoint in it, or one of another
      model or dataset (one line).
  """
  path = pretrained_dir(cfg)
  fm = ckpt_lib.Checkpointer(path, read_only=True)  # creates and cleans up nothing there
  try:
    latest = fm.latest_id()
    if latest is None:
      raise ckpt_lib.CheckpointError(
          f"--pretrained={cfg.pretrained}: {path} holds no float-model checkpoint "
          "(expected a workdir of an earlier run or its float_model/)")
    meta = fm.read_meta(latest)
    for key in ("model", "dataset"):
      if meta.get(key) != getattr(cfg, key):
        raise ckpt_lib.CheckpointError(
            f"--pretrained={cfg.pretrained}: a {meta.get('model')} on "
            f"{meta.get('dataset')}, but this run trains a {cfg.model} on {cfg.dataset}")
  except BaseException:
    fm.close()
    raise
  return fm, latest


def load_pretrained(fm: ckpt_lib.Checkpointer, ckpt_id: int, template: PyTree, sharding
                    ) -> Dict[str, PyTree]:
  """``{'params', 'model_state'}`` of checkpoint ``ckpt_id`` of ``fm`` (then closed).

  Args:
    fm / ckpt_id: from :func:`open_pretrained`.
    template: ``{'params': ..., 'model_state': ...}`` of this run's float model (arrays or
      ``ShapeDtypeStruct``s; the saved ones must have their structure, shapes and dtypes).
    sharding: the sharding of every restored array.
  """
  try:
    loaded, _ = fm.restore(ckpt_id, template, jax.tree_util.tree_map(lambda _: sharding,
                                                                      template))
  finally:
    fm.close()
  return loaded


def load_into(state: TrainState, fm: ckpt_lib.Checkpointer, ckpt_id: int, sharding
              ) -> TrainState:
  """``state`` with the params and model state of the ``--pretrained`` float model."""
  loaded = load_pretrained(fm, ckpt_id, {"params": state.params,
                                         "model_state": state.model_state}, sharding)
  return state.replace(params=loaded["params"], model_state=loaded["model_state"])


def save_float_model(workdir: str, cfg: TrainConfig, state: TrainState, float_top1: float,
                     data_fingerprint: Mapping[str, str]) -> None:
  """Saves the float model of ``state`` for ``--pretrained``, replacing one that holds other
  weights (every process calls it: orbax coordinates)."""
  path = os.path.join(workdir, FLOAT_MODEL_DIR)
  with ckpt_lib.Checkpointer(path, max_to_keep=1) as fm:
    fm.save(0, {"params": state.params, "model_state": state.model_state},
            {"model": cfg.model, "dataset": cfg.dataset, "float_top1": float_top1,
             "step": int(state.step), "data_fingerprint": dict(data_fingerprint)},
            replace=True)
