"""Reloading a finished (or interrupted) run: its configuration and latest training state,
or the float model a run saved for ``--pretrained``.

    exp, state = load_run("runs/fmnist/seed0/6b_L3")
    top1, note, overflows, float_ops = exp.integer_eval(state, acc_bits=16, mode="dual_lod")
    fm = load_float_model("runs/fmnist/seed0/float", model="lenet5", dataset="fashion_mnist")

The configuration comes from the checkpoint's metadata (what the run validated on resume), so
the reloaded :class:`~ebsp_jax.train.trainer.Experiment` builds the same models, weight rule
and evaluation data; the state is verified against its checksums and the data against the run's
fingerprint, as on resume; nothing in the run's directory is created, changed or deleted.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Dict, NamedTuple, Optional, TextIO, Tuple

from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import pretrained, resume
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.steps import TrainState


def load_run(workdir: str, *, data_dir: Optional[str] = None,
             stream: Optional[TextIO] = None) -> Tuple[Any, TrainState]:
  """The :class:`Experiment` of a run's workdir and its latest checkpointed state.

  Args:
    workdir: the run's ``--workdir`` (holds ``checkpoints/``).
    data_dir: dataset directory (``None``: the dataset's default; it is not part of the
      recorded configuration).
    stream: where the experiment's progress lines go (``None``: discarded).

  Returns:
    ``(experiment, state)``; ``state.phase`` is ``'done'`` for a finished run.

  Raises:
    CheckpointError: no checkpoint under ``workdir``, an unreadable or corrupt one, or data
      other than the run's (one line). A checkpoint too old to be verified gives a
      ``UserWarning``.
  """
  from ebsp_jax.train.trainer import Experiment  # pylint: disable=import-outside-toplevel
  ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ckpt_lib.CheckpointError(f"load_run: {workdir} holds no checkpoints/ (expected the "
                                   "--workdir of a training run)")
  with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
    latest = ckpt.latest_id()
    if latest is None:
      raise ckpt_lib.CheckpointError(f"load_run: {ckpt_dir} holds no checkpoint")
    config = dict(ckpt.read_meta(latest).get("config", {}))
    try:
      cfg = TrainConfig(**config, workdir=workdir, data_dir=data_dir)
    except TypeError as e:
      raise ckpt_lib.CheckpointError(f"load_run: the configuration recorded in {ckpt_dir} does "
                                     f"not fit this version's TrainConfig: {e}") from e
    exp = Experiment(cfg, stream=stream if stream is not None else io.StringIO())
    state, _, _, exp.notes = resume.restore(exp, ckpt, latest)
  for note in exp.notes:
    warnings.warn(f"load_run({workdir}): {note}", UserWarning, stacklevel=2)
  return exp, state


class FloatModel(NamedTuple):
  """A run's saved float model.

  Attributes:
    params: the parameters.
    model_state: the other variable collections (e.g. ``batch_stats``; may be empty).
    meta: the checkpoint's metadata (``model``, ``dataset``, ``float_top1``, ``step``, ...).
    directory: the ``float_model/`` checkpoint directory it was read from.
    checkpoint: the checkpoint id in it.
  """

  params: Any
  model_state: Dict[str, Any]
  meta: Dict[str, Any]
  directory: str
  checkpoint: int


def float_model_dir(path: str) -> str:
  """The float-model checkpoint directory of ``path``: a run's ``--workdir`` (its
  ``float_model/``) or that directory itself.

  Raises:
    CheckpointError: ``path`` is not a directory (one line).
  """
  return pretrained.float_model_dir(path, path, "a training run's --workdir")


def load_float_model(path: str, *, model: Optional[str] = None,
                     dataset: Optional[str] = None) -> FloatModel:
  """The float model a training run saved (what ``--pretrained`` starts from), read only.

  Args:
    path: the run's ``--workdir`` or its ``float_model/`` directory.
    model / dataset: when given, the saved model must be this model on this dataset.

  Returns:
    The :class:`FloatModel`; its arrays have the shapes of ``models.get_model(model)``
    initialised on the dataset's input shape.

  Raises:
    CheckpointError: no such directory, no float-model checkpoint in it, one of another
      model or dataset, or one that does not restore (one line each).
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from ebsp_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  from ebsp_jax import models  # pylint: disable=import-outside-toplevel
  d = float_model_dir(path)
  with ckpt_lib.Checkpointer(d, read_only=True) as fm:
    latest = fm.latest_id()
    if latest is None:
      raise ckpt_lib.CheckpointError(f"{path}: {d} holds no float-model checkpoint (expected a "
                                     "training run's --workdir or its float_model/)")
    meta = dict(fm.read_meta(latest))
    got = (meta.get("model"), meta.get("dataset"))
    if (model is not None and got[0] != model) or (dataset is not None and got[1] != dataset):
      raise ckpt_lib.CheckpointError(f"{path}: a {got[0]} on {got[1]}, but {model or got[0]} "
                                     f"on {dataset or got[1]} was asked for")
    if got[0] not in models.MODELS or got[1] not in data_lib.DATASETS:
      raise ckpt_lib.CheckpointError(f"{path}: the checkpoint records model {got[0]!r} on "
                                     f"{got[1]!r}, which this version does not know")
    net = models.get_model(got[0], num_classes=data_lib.get_spec(got[1]).num_classes)
    shape = models.default_input_shape(got[0], got[1])

    def init():
      v = dict(net.init(jax.random.key(0), jnp.zeros((2, *shape)), train=False))
      return {"params": v.pop("params"), "model_state": v}

    state, _ = fm.restore(latest, jax.eval_shape(init))
  return FloatModel(state["params"], dict(state["model_state"]), meta, d, int(latest))
