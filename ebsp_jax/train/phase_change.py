"""What happens at a phase change: the evaluations due there, the change of the state, and the
run's final results.

Leaving ``float``: the float model is evaluated and saved for ``--pretrained``. Entering
``finetune``: the hard-projected model is evaluated. Entering ``done``: the final evaluation
(fake-quant and integer modes, per-layer pattern statistics). The change of the state itself is
:func:`.phases.advance`. A failed evaluation is one line (:class:`EvaluationError`), its
traceback in :data:`ERROR_FILE`.

``exp`` below is the run's :class:`~ebsp_jax.train.trainer.Experiment`.
"""

from __future__ import annotations

import functools
import os
import traceback
from typing import Any, Dict, Optional

import jax

from ebsp_jax.train import divergence, evaluation, files, pretrained, resume
from ebsp_jax.train import sharding as sharding_lib
from ebsp_jax.train.steps import TrainState, count_params

#: The traceback of the last failed evaluation (the error itself is one line).
ERROR_FILE = "evaluation_error.txt"


class EvaluationError(RuntimeError):
  """An evaluation at a phase change (e.g. the final one) failed; the trained state before it
  is checkpointed, so rerunning the command retries it. The message is one line."""


def fmt(v: Optional[float]) -> str:
  """A top-1 accuracy (or ``n/a``) for progress lines."""
  return "n/a" if v is None else f"{v:.4f}"


def evaluation_error(exp, state: TrainState, want: str, e: Exception) -> EvaluationError:
  """The one-line error of a failed change to phase ``want`` (traceback to ``ERROR_FILE``)."""
  path = os.path.join(exp.workdir, ERROR_FILE)
  if exp.primary:
    files.write_text_atomic(path, "".join(traceback.format_exception(type(e), e,
                                                                     e.__traceback__)))
  what = "the final evaluation" if want == "done" else f"entering phase '{want}'"
  first = str(e).splitlines()[0] if str(e) else ""
  hint = (", or add --nointeger_eval to skip the integer mode"
          if want == "done" and exp.cfg.integer_eval else "")
  return EvaluationError(
      f"{what} failed at step {int(state.step)}: {type(e).__name__}"
      f"{': ' + first if first else ''} (traceback in {path}); the trained state is "
      f"checkpointed in {exp.ckpt_dir}: rerun the same command to retry{hint}")


def change_phase(exp, state: TrainState, results: Dict[str, Any], writer, progress, ckpt):
  """``(state, results)`` after the next phase change and the evaluations due at it (written
  to ``writer`` and ``progress``)."""
  results = dict(results)
  step = int(state.step)
  if state.phase == "float":
    ev = exp.evaluate(state, "float")
    divergence.check_finite_results(ev, f"the float model's evaluation at step {step}",
                                    functools.partial(resume.divergence_advice, exp, ckpt,
                                                      "float"))
    results["float_top1"] = ev["top1"]
    results["float_loss"] = ev["loss"]
    writer.write(step, {"eval/float_top1": ev["top1"], "eval/float_loss": ev["loss"]}, "float")
    progress.message(f"float model: top1 {ev['top1']:.4f} (loss {ev['loss']:.4f}, "
                     f"{ev['count']} examples)")
    pretrained.save_float_model(exp.workdir, exp.cfg, state, ev["top1"],
                                exp.data.info.fingerprint)  # every process (orbax coordinates)
  state = exp.next_phase(state)
  progress.message(f"step {step}: entering phase '{state.phase}'")
  if state.phase == "finetune":
    ev = exp.evaluate(state, "quant")
    results["projected_top1"] = ev["top1"]
    writer.write(step, {"eval/projected_top1": ev["top1"]}, "finetune")
    progress.message(f"hard projection: fake-quant top1 {ev['top1']:.4f}")
  if state.phase == "done":
    results.update(_final_evaluation(exp, state, writer, progress))
  writer.flush()
  return state, results


def _final_evaluation(exp, state: TrainState, writer, progress) -> Dict[str, Any]:
  step = int(state.step)
  results: Dict[str, Any] = {}
  ev = exp.evaluate(state, "quant")
  results["quant_top1"] = ev["top1"]
  results["quant_loss"] = ev["loss"]
  writer.write(step, {"eval/quant_top1": ev["top1"]}, "done")
  progress.message(f"final fake-quant model: top1 {ev['top1']:.4f}")
  if exp.cfg.integer_eval:
    top1, note, overflows, float_ops = exp.integer_eval(state)
  else:
    top1, note, overflows, float_ops = None, "disabled by --nointeger_eval", None, ()
  results["integer_top1"] = top1
  results["integer_note"] = note
  results["integer_overflows"] = overflows
  results["integer_float_ops"] = list(float_ops)
  if top1 is not None:
    writer.write(step, {"eval/integer_top1": top1}, "done")
  over = "" if overflows is None else f", {overflows} accumulator overflows"
  in_float = f"; in float: {', '.join(float_ops)}" if float_ops else ""
  progress.message(f"integer mode: top1 {fmt(top1)} ({note}{over}{in_float})")
  params, scales = (sharding_lib.to_local(t) for t in (state.params, state.weight_scales))
  results["layers"] = evaluation.layer_stats(params, exp.rule, scales)
  if writer.enabled:
    writer.histograms(step, evaluation.weight_histograms(params, exp.rule, scales))
  return results


def is_final(results: Dict[str, Any]) -> bool:
  """Whether ``results`` are a run's final results (only :func:`final_results` records the
  wall time in them)."""
  return "wall_seconds" in results


def final_results(exp, state: TrainState, results: Dict[str, Any], wall: float,
                  steps_per_second: Optional[float]) -> Dict[str, Any]:
  """``results`` with what describes the finished run (model, formats, sizes, steps, wall time,
  devices, configuration, data fingerprint): the content of ``results.json``."""
  cfg = exp.cfg
  out = dict(results)
  override, fl = cfg.first_last_pattern()
  quantized = sum(w.size for _, _, w, _ in evaluation.quantized_leaves(
      state.params, exp.rule, state.weight_scales))
  out.update({
      "model": cfg.model, "dataset": cfg.dataset,
      "pattern": ({"bits": cfg.pattern_bits, "length": cfg.pattern_length,
                   "name": str(cfg.pattern), "code_bits": cfg.pattern.code_bits,
                   "num_levels": cfg.pattern.num_levels}
                  if cfg.layer_formats is None else None),
      "layer_formats": ({k: str(f) for k, f in cfg.layer_format_map().items()}
                        if cfg.layer_formats is not None else None),
      "first_last": cfg.first_last if override else "same",
      "first_last_pattern": (str(fl) if fl is not None else ("float" if override else None)),
      "activation_bits": cfg.activation_bits,
      "num_params": count_params(state.params),
      "num_quantized_params": int(quantized),
      "steps": int(state.step),
      "phase_steps": dict(exp.steps),
      "steps_per_epoch": exp.data.info.steps_per_epoch,
      "train_examples": exp.data.info.num_train,
      "eval_examples": exp.data.info.num_eval,
      "wall_seconds": wall,
      "train_steps_per_second": steps_per_second,
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "device_kind": jax.devices()[0].device_kind,
      "platform": jax.devices()[0].platform,
      "jax_version": jax.__version__,
      "config": resume.jsonable(dict(cfg.fingerprint())),
      "data_fingerprint": dict(exp.data.info.fingerprint),
      "warnings": list(results.get("warnings", [])),
  })
  return out
