"""A run's quantized model, written once at the end of training: the hand-off to hardware.

The trainer calls :func:`write` when it publishes ``results.json`` and ``params.npz`` from the
verified final state; the file is ``<workdir>/quantized_model.safetensors``
(:mod:`ebsp_jax.numerics.artifact`, specified in ``docs/artifact.md``). It holds the integer
weight codes and scales exactly as the run's integer mode computes them
(``quant.quantize_weights`` with the run's weight rule and trained scales, on the CPU backend as
``quant.to_integer`` does), each layer's weight format (so ``--first_last`` and
``--layer_formats`` are in it), the calibrated input-activation formats and scales, and every
other variable. Its readers (``experiments/hardware.py --run``, ``experiments/datapath_sweep.py``,
:func:`integer_eval`, ``ebsp_jax.quant.from_artifact.integer_model`` for the golden export)
re-quantize nothing.

Runs finished before this file existed: ``python -m ebsp_jax.train.export_run --workdir=RUN
[--data_dir=DIR]`` (:mod:`ebsp_jax.train.export_run`) writes it from the run's final checkpoint.
"""

from __future__ import annotations

import json
import os
import types
from typing import Any

import jax
import numpy as np

from ebsp_jax import quant
from ebsp_jax.numerics import artifact
from ebsp_jax.numerics.tree import path_str
from ebsp_jax.quant import from_artifact
from ebsp_jax.quant.calibration import STATS_COLLECTION, activation_formats
from ebsp_jax.quant.lowering import cpu_device
from ebsp_jax.train import evaluation, files
from ebsp_jax.train import sharding as sharding_lib

FILE_NAME = artifact.FILE_NAME
#: The command that writes the file for a finished run (named in readers' errors).
COMMAND = "python -m ebsp_jax.train.export_run --workdir={workdir}"


def build(exp, state) -> artifact.QuantizedModel:
  """The :class:`~ebsp_jax.numerics.artifact.QuantizedModel` of an experiment's state.

  Args:
    exp: the run's :class:`~ebsp_jax.train.trainer.Experiment` (configuration, weight rule).
    state: its final ``TrainState`` (phase ``'done'``).
  """
  cfg = exp.cfg
  params = sharding_lib.to_local(state.params)
  scales = sharding_lib.to_local(state.weight_scales)
  model_state = dict(sharding_lib.to_local(state.model_state))
  with jax.default_device(cpu_device()):   # as quant.to_integer computes them
    qweights = quant.quantize_weights(params, exp.rule, scales)
    acts = (activation_formats(model_state, cfg.activation_bits)
            if cfg.activation_bits and STATS_COLLECTION in model_state else {})
  layers = {}
  for name, (q, pattern, s) in qweights.items():
    act = acts.get(name)
    layers[name] = artifact.QuantizedLayer(name, np.asarray(q), np.asarray(s, np.float32),
                                           pattern, act[0] if act else None,
                                           act[1] if act else None)
  kernels = {f"params/{n}/kernel" for n in layers}
  variables = {}
  for coll, tree in [("params", params)] + sorted(model_state.items()):
    for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]:
      key = f"{coll}/{path_str(p)}"
      if key not in kernels:
        variables[key] = np.asarray(v)
  source = {"writer": "ebsp_jax.train.export_model", "step": int(state.step),
            "config": json.loads(json.dumps(dict(cfg.fingerprint()), default=str)),
            "data_fingerprint": dict(exp.data.info.fingerprint)}
  return artifact.QuantizedModel(cfg.model, cfg.dataset, exp.data.info.num_classes,
                                 cfg.activation_bits, cfg.dual_lod, layers, variables, source)


def has_quantized_model(cfg) -> bool:
  """Whether a run of ``cfg`` ends with a quantized model: it trains an ADMM or fine-tuning
  phase (a run with ``--admm_epochs=0 --finetune_epochs=0`` never calibrates its activations)."""
  return cfg.admm_epochs > 0 or cfg.finetune_epochs > 0


def write(exp, state) -> str | None:
  """Writes ``<workdir>/quantized_model.safetensors`` of ``state`` atomically; returns the path
  (None, and nothing written, for a run without one: :func:`has_quantized_model`)."""
  if not has_quantized_model(exp.cfg):
    return None
  path = os.path.join(exp.workdir, FILE_NAME)
  files.write_bytes_atomic(path, artifact.to_bytes(build(exp, state)))
  return path


def read_run(workdir: str) -> artifact.QuantizedModel:
  """The quantized model of a run's workdir (:func:`ebsp_jax.numerics.artifact.read`).

  Raises:
    ValueError: the file is missing (the message names the command that writes it) or bad.
  """
  path = os.path.join(workdir, FILE_NAME)
  if os.path.isdir(workdir) and not os.path.exists(path):
    if _float_only(workdir):
      raise ValueError(f"{workdir}: the run trained no ADMM or fine-tuning phase, so its "
                       "activations were never calibrated and it has no quantized model "
                       "(post-training quantization: --ptq)")
    raise ValueError(f"{workdir} holds no {FILE_NAME} (a run finished before this file "
                     f"existed): write it with {COMMAND.format(workdir=workdir)}")
  return artifact.read(path)


def _float_only(workdir: str) -> bool:
  """Whether the run's results.json says it trained no quantized phase
  (:func:`has_quantized_model` of its recorded configuration)."""
  try:
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
      cfg = json.load(f).get("config", {})
    return not has_quantized_model(types.SimpleNamespace(
        admm_epochs=float(cfg.get("admm_epochs", 1)),
        finetune_epochs=float(cfg.get("finetune_epochs", 1))))
  except (OSError, ValueError, TypeError, AttributeError):
    return False


def integer_eval(qm: artifact.QuantizedModel, batches,
                 **datapath: Any) -> evaluation.IntegerResult:
  """Integer-mode top-1 of ``qm`` on ``batches`` (:func:`evaluation.integer_top1` of the
  artifact's variables, rule and scales), by default on the datapath the run trained for
  (``quant.from_artifact.datapath_options``)."""
  variables = qm.variable_tree()
  return evaluation.integer_top1(qm.model, variables, qm.weight_rule(),
                                 qm.weight_scales(variables["params"]), qm.activation_bits,
                                 batches, from_artifact.datapath_options(qm, datapath))
