"""The training loop: runs (or resumes) a run from its state to the final results.

Step by step within a phase (:func:`train_phase`: metrics, progress lines, checkpoints every
``--checkpoint_every`` steps, divergence checks); at each phase boundary the trained state is
checkpointed first, then the phase changes (:mod:`.phase_change`) and the new state is
checkpointed, so a failed evaluation loses no training and a rerun repeats only the change.
The final results are checkpointed with the final state, and ``results.json`` and
``params.npz`` are written from them (atomically), so rerunning a finished run rewrites the
same files from verified data.

``exp`` below is the run's :class:`~ebsp_jax.train.trainer.Experiment`.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, Dict

import jax
import numpy as np

from ebsp_jax import admm as admm_lib
from ebsp_jax import cli
from ebsp_jax.numerics.tree import path_str
from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import divergence, evaluation, export_model, files, phase_change, resume
from ebsp_jax.train import sharding as sharding_lib
from ebsp_jax.train.metrics import MetricWriter, Progress, format_duration
from ebsp_jax.train.steps import TrainState

PyTree = Any
RESULTS_FILE = "results.json"
# The final (hard-projected) params, '/'-joined paths -> arrays: the portable artifact that
# experiments/hardware.py --params and other tools read without knowing the training state.
PARAMS_FILE = "params.npz"


class _Rate:
  """Training steps and seconds timed so far (each phase from its second step on)."""

  def __init__(self):
    self.seconds, self.steps = 0.0, 0

  def steps_per_second(self):
    return self.steps / self.seconds if self.seconds > 0 else None


def run(exp) -> Dict[str, Any]:
  """Runs (or resumes) the whole pipeline; returns the results (also in results.json)."""
  t_start = time.time()
  cfg = exp.cfg
  ckpt, state, results, wall_before, resumed, notes = resume.open_run(exp)
  exp.notes = notes
  step = int(state.step)
  writer = MetricWriter(exp.workdir, resume_step=step if resumed else None,
                        enabled=exp.primary)
  progress = Progress(exp.total_steps, cfg.batch_size, exp.progress_stream, exp.primary)
  info = exp.data.info
  progress.message(
      f"{cfg.model} on {cfg.dataset}: {info.num_train} train / "
      f"{info.num_eval} eval examples, {info.steps_per_epoch} steps/epoch, "
      f"phases float {exp.steps['float']} + admm {exp.steps['admm']} + finetune "
      f"{exp.steps['finetune']} = {exp.total_steps} steps, {cfg.weights_text()}, "
      f"activations {cfg.activation_bits or 'float'}, {jax.device_count()} device(s)"
      + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
      + (f"; resumed at step {step} ({state.phase})" if resumed else ""))
  for note in notes if resumed else ():
    progress.message(f"warning: {note}")
    if not phase_change.is_final(results):
      results.setdefault("warnings", []).append(note)
  rate = _Rate()

  def wall():
    return wall_before + time.time() - t_start

  try:
    while True:
      want = exp.phase_at(int(state.step))
      if state.phase != want:
        # The trained state first (a no-op when this step is checkpointed already): a failed
        # evaluation below then loses no training, and rerunning repeats only the change.
        resume.save(exp, ckpt, state, results, wall())
        try:
          state, results = phase_change.change_phase(exp, state, results, writer, progress,
                                                     ckpt)
        except (ckpt_lib.CheckpointError, divergence.DivergenceError):
          raise
        except Exception as e:  # noqa: BLE001 - re-raised as one line, traceback in a file
          raise phase_change.evaluation_error(exp, state, want, e) from e
        if state.phase == "done":   # checkpointed with the final state: a rerun rewrites them
          results = phase_change.final_results(exp, state, results, wall(),
                                               rate.steps_per_second())
        resume.save(exp, ckpt, state, results, wall())
        continue
      if want == "done":
        break
      state = train_phase(exp, state, ckpt, writer, progress, results, wall, rate)
    path = os.path.join(exp.workdir, RESULTS_FILE)
    if not phase_change.is_final(results):  # a done checkpoint of an older version, without them
      old = _load_json(path)
      if old is not None:
        progress.message(f"finished run of an older version: {path} left as it is")
        return old
      results = phase_change.final_results(exp, state, results, wall(),
                                           rate.steps_per_second())
    if exp.primary:
      # results.json last: it marks the run finished.
      export_model.write(exp, state)      # quantized_model.safetensors (docs/artifact.md)
      write_params_npz(os.path.join(exp.workdir, PARAMS_FILE), state.params)
      files.write_json_atomic(path, results)
      error_file = os.path.join(exp.workdir, phase_change.ERROR_FILE)
      if os.path.exists(error_file):   # an earlier try's
        os.remove(error_file)
    progress.message(
        f"done in {format_duration(results['wall_seconds'])}: float_top1 "
        f"{phase_change.fmt(results.get('float_top1'))}, quant_top1 "
        f"{phase_change.fmt(results.get('quant_top1'))}, integer_top1 "
        f"{phase_change.fmt(results.get('integer_top1'))} -> {path}")
    return results
  finally:
    writer.close()
    ckpt.close()


def train_phase(exp, state: TrainState, ckpt: ckpt_lib.Checkpointer, writer: MetricWriter,
                progress: Progress, results: Dict[str, Any], wall: Callable[[], float],
                rate: _Rate) -> TrainState:
  """Trains ``state`` to the end of its phase (metrics, progress, checkpoints on the way;
  warnings are added to ``results``; the timed steps to ``rate``)."""
  cfg = exp.cfg
  phase = state.phase
  _, end = exp.bounds[phase]
  fn = exp.train_fn(phase)
  step = int(state.step)
  batches = exp.data.train_iter(step)
  last_print = time.perf_counter()
  progress.start(step)
  t_phase, n_phase = time.perf_counter(), 0
  first = True
  monitor = divergence.Monitor(phase, divergence.uniform_loss(exp.data.info.num_classes),
                               functools.partial(resume.divergence_advice, exp, ckpt, phase))
  while step < end:
    batch = sharding_lib.shard_local_batch(next(batches), exp.mesh, cfg.batch_size)
    state, metrics = fn(state, batch)
    metrics, finite = divergence.pop_flags(metrics)
    step += 1
    n_phase += 1
    monitor.record(step, metrics["loss"], finite)
    if first:  # the first step compiles: time the rate from the second on
      first = False
      jax.block_until_ready(state.step)
      progress.start(step)
      t_phase, n_phase = time.perf_counter(), 0
      last_print = t_phase
    now = time.perf_counter()
    sync = step % cfg.log_every == 0 or step == end
    save_now = step % cfg.checkpoint_every == 0 and step < end
    if sync or save_now:  # the same steps in every process; raises at a non-finite step
      warning = monitor.check()
      if warning:
        progress.message(f"warning: {warning}")
        results.setdefault("warnings", []).append(warning)
    if sync or now - last_print > cfg.progress_every_seconds:
      scalars = dict(jax.device_get(metrics))
      if phase == "admm":  # on local copies: a time-triggered collective could deadlock
        scalars.update(jax.device_get(exp.telemetry_fn(
            sharding_lib.to_local(state.params), sharding_lib.to_local(state.opt_state))))
      if sync:
        writer.write(step, {f"train/{k}" if "/" not in k else k: v for k, v in scalars.items()},
                     phase)
        if phase == "admm" and writer.enabled:  # the weights' nearest levels, per layer
          params, opt = (sharding_lib.to_local(t) for t in (state.params, state.opt_state))
          writer.histograms(step, evaluation.weight_histograms(
              params, admm_lib.tree_rule(opt), admm_lib.tree_scales(params, opt)))
      progress.line(step, phase, scalars)
      last_print = time.perf_counter()
    if save_now:
      resume.save(exp, ckpt, state, results, wall())
      writer.flush()
  jax.block_until_ready(state.params)
  rate.seconds += time.perf_counter() - t_phase
  rate.steps += n_phase
  return state


def write_params_npz(path: str, params: PyTree) -> None:
  """Writes ``params`` as ``PARAMS_FILE`` does: '/'-joined paths -> arrays (atomically)."""
  local = sharding_lib.to_local(params)
  files.write_npz_atomic(path, {path_str(p): np.asarray(v) for p, v in
                                jax.tree_util.tree_flatten_with_path(local)[0]})


def _load_json(path: str):
  """The JSON content of ``path``, or None if it is missing or unreadable."""
  try:
    return cli.load_json(path, path)
  except ValueError:
    return None
