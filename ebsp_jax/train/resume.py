"""Checkpointing a run's training state, and opening a run: resume it or start it fresh.

Checkpoint ``4 * step + phase index`` holds the state of that step and phase, with metadata
(:func:`checkpoint_meta`): the configuration, the results measured so far, the wall time, the
data position and fingerprint. :func:`save` refuses non-finite values (:mod:`.divergence`).
:func:`open_run` claims the workdir (:mod:`.workdir`) and resumes from the latest checkpoint,
validated against the run (:func:`restore`: configuration, data, phase, step, checksums), or
starts fresh, from ``--pretrained`` if given (:mod:`.pretrained`); it never silently restarts.

``exp`` below is the run's :class:`~ebsp_jax.train.trainer.Experiment` (its configuration,
data, workdir, mesh and state templates).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, List, NamedTuple, Tuple

import jax

from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import divergence, pretrained
from ebsp_jax.train import sharding as sharding_lib
from ebsp_jax.train import workdir as workdir_lib
from ebsp_jax.train.config import NON_SEMANTIC_FIELDS, PHASES
from ebsp_jax.train.steps import TrainState


class Opened(NamedTuple):
  """A run opened by :func:`open_run` (close ``ckpt`` when done)."""
  ckpt: ckpt_lib.Checkpointer
  state: TrainState
  results: Dict[str, Any]   # measured so far (empty on a fresh start)
  wall: float               # wall seconds of the earlier sessions
  resumed: bool
  notes: List[str]          # one-line notices of the restore (e.g. a checkpoint too old to verify)


def ckpt_id(state: TrainState) -> int:
  """The checkpoint id of ``state``: ``4 * step + phase index``."""
  return 4 * int(state.step) + PHASES.index(state.phase)


def describe(ckpt_id_: int) -> str:
  """``step S, phase 'P'`` of a checkpoint id (``4 * step + phase index``)."""
  return f"step {ckpt_id_ // 4}, phase '{PHASES[ckpt_id_ % 4]}'"


def jsonable(d):
  """``d`` as JSON reads it back (what is not JSON becomes its ``str``)."""
  return json.loads(json.dumps(d, default=str))


def checkpoint_meta(exp, state: TrainState, results: Dict[str, Any], wall: float
                    ) -> Dict[str, Any]:
  """The metadata saved with ``state``."""
  step = int(state.step)
  return {"step": step, "phase": state.phase, "config": jsonable(exp.cfg.fingerprint()),
          "results": results, "wall_seconds": wall,
          "data": {"position": step, "steps_per_epoch": exp.data.info.steps_per_epoch},
          "data_fingerprint": dict(exp.data.info.fingerprint),
          "total_steps": exp.total_steps}


def divergence_advice(exp, ckpt: ckpt_lib.Checkpointer, phase: str) -> str:
  """What to do after a divergence in ``phase`` (names the last checkpoint of ``ckpt``)."""
  latest = ckpt.latest_id()
  return divergence.advice(exp.cfg, phase, None if latest is None else describe(latest),
                           exp.ckpt_dir)


def save(exp, ckpt: ckpt_lib.Checkpointer, state: TrainState, results, wall: float) -> None:
  """Checkpoints ``state`` with ``results`` (``DivergenceError`` if either is not finite)."""
  where = f"at step {int(state.step)} (phase '{state.phase}')"
  advice = functools.partial(divergence_advice, exp, ckpt, state.phase)
  if not divergence.host_all_finite(state):
    raise divergence.DivergenceError(f"the training state {where} is not finite; {advice()}")
  divergence.check_finite_results(results, f"the results {where}", advice)
  ckpt.save(ckpt_id(state), state, checkpoint_meta(exp, state, results, wall))


def restore(exp, ckpt: ckpt_lib.Checkpointer, latest: int
            ) -> Tuple[TrainState, Dict[str, Any], float, List[str]]:
  """Checkpoint ``latest`` of ``ckpt``, verified, and validated against ``exp``'s
  configuration and data: ``(state, results, wall seconds, notes)`` (notes: one line each about
  an old checkpoint that could not be fully checked).

  Raises:
    CheckpointError: another configuration or data, an unknown phase, a corrupt checkpoint
      (naming the earlier ones) or an inconsistent one (one line).
  """
  notes: List[str] = []
  try:
    meta = ckpt.read_meta(latest)
    saved = {k: v for k, v in meta.get("config", {}).items() if k not in NON_SEMANTIC_FIELDS}
    diff = ckpt_lib.config_difference(saved, jsonable(exp.cfg.fingerprint()))
    if diff:
      raise ckpt_lib.CheckpointError(
          f"{exp.workdir} holds a run with a different configuration ({'; '.join(diff[:4])}"
          f"{'; ...' if len(diff) > 4 else ''}); use another --workdir, or delete it to start "
          "over")
    if "data_fingerprint" in meta:
      data_diff = workdir_lib.data_difference(meta["data_fingerprint"],
                                              exp.data.info.fingerprint)
      if data_diff:
        raise ckpt_lib.CheckpointError(
            f"{exp.workdir} holds a run trained on other data: with --data_dir="
            f"{exp.cfg.data_dir or '<default>'}, {data_diff}; resume with the run's data, or "
            "use another --workdir")
    else:
      notes.append(f"checkpoint {latest} predates data fingerprints: the data cannot be "
                   "checked against the run's (from now on they are)")
    phase = meta.get("phase")
    if phase not in PHASES:
      raise ckpt_lib.CheckpointError(f"checkpoint {latest} in {exp.ckpt_dir} has unknown "
                                     f"phase {phase!r}")
    template = exp.template(phase)
    shardings = jax.tree_util.tree_map(lambda _: exp.repl, template)
    state, meta = ckpt.restore(latest, template, shardings)
  except ckpt_lib.CorruptCheckpointError as e:
    raise ckpt_lib.CheckpointError(e.with_offer(ckpt.all_ids(), describe, exp.workdir)) from e
  if not ckpt_lib.is_verified(meta):
    notes.append(f"checkpoint {latest} predates checksums (format {meta.get('format')}): "
                 "its arrays could not be verified")
  if int(state.step) != meta["step"]:
    raise ckpt_lib.CheckpointError(f"checkpoint {latest} is inconsistent: step leaf "
                                   f"{int(state.step)} vs metadata {meta['step']}")
  return state, dict(meta.get("results", {})), float(meta.get("wall_seconds", 0.0)), notes


def restore_or_init(exp, ckpt: ckpt_lib.Checkpointer, opened_pretrained=None
                    ) -> Tuple[TrainState, Dict[str, Any], float, bool, List[str]]:
  """Latest checkpoint (validated), or a fresh/pretrained state. Never silently restarts:
  ``(state, results, wall, resumed, notes)``.

  ``opened_pretrained``: ``(checkpointer, id)`` from :func:`.pretrained.open_pretrained`,
  already opened (it is opened here when needed otherwise); closed before returning.
  """
  try:
    latest = ckpt.latest_id()
    if latest is not None:
      state, results, wall, notes = restore(exp, ckpt, latest)
      return state, results, wall, True, notes
    if opened_pretrained is None and exp.cfg.pretrained:
      opened_pretrained = pretrained.open_pretrained(exp.cfg)
    state = exp.initial_state()
    if opened_pretrained is not None:
      state = sharding_lib.replicate(pretrained.load_into(state, *opened_pretrained, exp.repl),
                                     exp.mesh)
    return state, {}, 0.0, False, []
  finally:
    if opened_pretrained is not None:
      opened_pretrained[0].close()


def open_run(exp) -> Opened:
  """Claims the workdir and opens its checkpoints (see :class:`Opened`).

  Everything is checked before anything is created: the workdir (writable; a fresh start
  only in an empty directory or one whose ``run.json`` records this run) and --pretrained.
  With several processes, each checks the same directory state before process 0 writes.
  """
  cfg = exp.cfg
  workdir_lib.check_writable(exp.workdir)
  resuming = ckpt_lib.has_checkpoint_files(exp.ckpt_dir)
  ident = exp.identity()
  if not resuming:
    workdir_lib.check_fresh_start(exp.workdir, ident)
  # With several processes only the --pretrained directory check comes first: the orbax
  # managers must be opened in the same order in every process.
  opened_pretrained = None
  if cfg.pretrained and not resuming:
    pretrained.pretrained_dir(cfg)
    if jax.process_count() == 1:
      opened_pretrained = pretrained.open_pretrained(cfg)
  try:
    sharding_lib.barrier("ebsp_jax.trainer.workdir_checked")
    os.makedirs(exp.workdir, exist_ok=True)
    if exp.primary and not resuming:
      workdir_lib.write_marker(exp.workdir, ident)  # before anything else is created
    ckpt = ckpt_lib.Checkpointer(exp.ckpt_dir, cfg.keep_checkpoints)
  except BaseException:
    if opened_pretrained is not None:
      opened_pretrained[0].close()
    raise
  try:
    opened = restore_or_init(exp, ckpt, opened_pretrained)
    if exp.primary and resuming and workdir_lib.read_marker(exp.workdir) != ident:
      workdir_lib.write_marker(exp.workdir, ident)   # a run from before markers, or moved
  except BaseException:
    ckpt.close()
    raise
  return Opened(ckpt, *opened)
