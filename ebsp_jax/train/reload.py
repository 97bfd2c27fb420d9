"""Reloading a finished (or interrupted) run: its configuration and latest training state.

    exp, state = load_run("runs/fmnist/seed0/6b_L3")
    top1, note, overflows, float_ops = exp.integer_eval(state, acc_bits=16, mode="dual_lod")

The configuration comes from the checkpoint's metadata (what the run validated on resume), so
the reloaded :class:`~ebsp_jax.train.trainer.Experiment` builds the same models, weight rule
and evaluation data; the state is verified against its checksums and the data against the run's
fingerprint, as on resume; nothing in the run's directory is created, changed or deleted.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Optional, TextIO, Tuple

from ebsp_jax.train import checkpoint as ckpt_lib
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
    state = exp._restore(ckpt, latest)[0]  # pylint: disable=protected-access
  for note in exp.notes:
    warnings.warn(f"load_run({workdir}): {note}", UserWarning, stacklevel=2)
  return exp, state
