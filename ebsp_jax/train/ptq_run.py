"""``--ptq``: post-training quantization of a trained float model from the command line.

    python experiments/fashion_mnist.py --ptq --pretrained=runs/fmnist/float \\
        --workdir=runs/fmnist/ptq_6b3 [--calibration_examples=512 --calibration=mse]
    python experiments/imagenet.py --ptq --model=resnet50 \\
        --pretrained_torchvision=resnet50.safetensors --workdir=runs/in_r50_ptq

No training: the float model (``--pretrained``: a workdir of an earlier run or its
``float_model/``; or ``--pretrained_torchvision``: a torchvision ``state_dict`` in safetensors,
:func:`ebsp_jax.models.load_torchvision`) goes through :func:`ebsp_jax.ptq.quantize` with the
run's weight format (``--pattern_bits``/``--pattern_length``/``--first_last``/
``--per_channel``), ``--activation_bits`` and ``--dual_lod``, calibrated on the first
``--calibration_examples`` training images (shuffled with ``--seed``, no augmentation); then
the evaluation split is run in float, fake-quant and integer mode (the bit-exact datapath).
``results.json`` in ``--workdir`` holds the three top-1 accuracies, their agreement and every
layer's formats; ``--export_onnx`` also writes the integer program as ``model_int.onnx``.
The training flags (epochs, learning rates, ADMM) are not used. Single process only.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, TextIO

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from ebsp_jax import cli, models, ptq
from ebsp_jax import data as data_lib
from ebsp_jax.ptq import calibrate
from ebsp_jax.train import files, pretrained
from ebsp_jax.train import workdir as workdir_lib
from ebsp_jax.train.checkpoint import CheckpointError
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.trainer import Experiment, weight_rule

RESULTS_FILE = "results.json"
ONNX_FILE = "model_int.onnx"

_FLAGS = {
    "ptq": (flags.DEFINE_bool, False,
            "post-training quantization of --pretrained or --pretrained_torchvision: calibrate "
            "on --calibration_examples training images, evaluate float/fake-quant/integer; no "
            "training (the epoch and learning-rate flags are not used)"),
    "calibration_examples": (flags.DEFINE_integer, 512,
                             "with --ptq: training images the activation ranges are "
                             "calibrated on"),
    "calibration": (flags.DEFINE_string, "mse",
                    "with --ptq: activation calibration: mse | minmax | percentile"),
    "bias_correction": (flags.DEFINE_bool, False,
                        "with --ptq: subtract each layer's mean output error caused by the "
                        "weight quantization"),
    "pretrained_torchvision": (flags.DEFINE_string, None,
                               "with --ptq: a torchvision state_dict saved with safetensors "
                               "(resnet18, resnet50, mobilenet_v2, alexnet, vgg16) as the "
                               "float model"),
    "export_onnx": (flags.DEFINE_bool, False,
                    f"with --ptq: also write the integer program as {ONNX_FILE} in --workdir"),
}


def define_flags(flag_values: flags.FlagValues) -> None:
  """Defines the ``--ptq`` flags of the training mains."""
  for name, (define, default, help_) in _FLAGS.items():
    define(name, default, help_, flag_values=flag_values)


def options_from_flags(flag_values: flags.FlagValues) -> Optional[Dict[str, Any]]:
  """The ``--ptq`` options (``None`` without ``--ptq``); ``ValueError`` (one line) for a
  ``--ptq`` option given without ``--ptq`` or a bad value."""
  values = {k: flag_values[k].value for k in _FLAGS}
  if not values["ptq"]:
    given = [k for k in _FLAGS if k != "ptq" and flag_values[k].present]
    if given:
      raise ValueError(f"--{given[0]} applies only with --ptq")
    return None
  if values["calibration"] not in calibrate.METHODS:
    raise ValueError(f"--calibration={values['calibration']!r}: allowed: "
                     f"{', '.join(calibrate.METHODS)}")
  if values["calibration_examples"] < 1:
    raise ValueError(f"--calibration_examples={values['calibration_examples']}: must be >= 1")
  values.pop("ptq")
  return values


def _check(cfg: TrainConfig, opts: Mapping[str, Any]) -> None:
  if cfg.multihost or jax.process_count() > 1:
    raise ValueError("--ptq runs in a single process (without --multihost)")
  if not cfg.activation_bits:
    raise ValueError("--ptq needs quantized activations (--activation_bits > 0)")
  tv = opts.get("pretrained_torchvision")
  if bool(cfg.pretrained) == bool(tv):
    raise ValueError("--ptq needs exactly one float model: --pretrained=<workdir of a run> or "
                     "--pretrained_torchvision=<file.safetensors>")


def _float_model(exp, opts):
  """``(model, variables, source)`` of the float model to quantize."""
  cfg = exp.cfg
  tv = opts.get("pretrained_torchvision")
  if tv:
    model, variables = models.load_torchvision(cfg.model, tv)
    if model.num_classes != exp.data.info.num_classes:
      raise ValueError(f"--pretrained_torchvision={tv}: {model.num_classes} classes, but "
                       f"{cfg.dataset} has {exp.data.info.num_classes}")
    return model, variables, f"torchvision:{os.path.abspath(tv)}"
  fm, ckpt_id = pretrained.open_pretrained(cfg)   # the checks and loading of training's
  float_state = exp.template("float")
  loaded = pretrained.load_pretrained(fm, ckpt_id, {"params": float_state.params,
                                                    "model_state": float_state.model_state},
                                      exp.repl)
  variables = jax.device_get({"params": loaded["params"], **loaded["model_state"]})
  return exp.float_model, variables, f"pretrained:{pretrained.pretrained_dir(cfg)}"


def _calibration_images(cfg: TrainConfig, n: int) -> List[np.ndarray]:
  ds = data_lib.get_dataset(cfg.dataset, split="train", data_dir=cfg.data_dir,
                            batch_size=min(n, cfg.eval_batch_size), shuffle=True, seed=cfg.seed,
                            augment=False, num_examples=cfg.train_examples or None,
                            drop_remainder=False, start_step=0, num_epochs=1)
  out, have = [], 0
  for batch in ds:
    take = batch["image"][: n - have]
    out.append(np.asarray(take, np.float32))
    have += len(take)
    if have >= n:
      break
  return out


def _top1(qm, batches, model_input) -> Dict[str, Any]:
  correct = {"float": 0, "fake_quant": 0, "integer": 0}
  agree = count = 0
  for b in batches:
    x, y = jnp.asarray(model_input(b["image"])), np.asarray(b["label"])
    preds = {k: np.argmax(np.asarray(fn(x)), axis=-1) for k, fn in (
        ("float", qm.float_model), ("fake_quant", qm.fake_quant), ("integer", qm.integer))}
    for k, p in preds.items():
      correct[k] += int(np.sum(p == y))
    agree += int(np.sum(preds["fake_quant"] == preds["integer"]))
    count += len(y)
  if not count:
    raise ValueError("the evaluation split is empty")
  out = {f"{k}_top1": v / count for k, v in correct.items()}
  out["integer_agrees_with_fake_quant"] = agree / count
  out["eval_examples"] = count
  return out


def _layers(qm) -> Dict[str, Any]:
  out = {}
  for name, lq in qm.layers.items():
    out[name] = {
        "op": lq.op,
        "weights": None if lq.weight_pattern is None else str(lq.weight_pattern),
        "activations": str(lq.act_pattern), "activation_scale": lq.act_scale,
        "clip": lq.clip, "calibrated_range": [lq.act_min, lq.act_max],
        "bias_correction_max_abs": (None if lq.bias_correction is None
                                    else float(np.max(np.abs(lq.bias_correction)))),
    }
  return out


def run(cfg: TrainConfig, opts: Mapping[str, Any], stream: TextIO = sys.stdout
        ) -> Dict[str, Any]:
  """Runs ``--ptq`` (see the module docstring); returns the results (also in results.json).

  Raises:
    ValueError: bad options or files (one line; ``WorkdirError``, ``TorchvisionLoadError``,
      ``UnsupportedOp`` are ``ValueError`` subclasses); ``FileNotFoundError``;
      ``CheckpointError`` (a bad ``--pretrained``).
  """
  t0 = time.time()
  _check(cfg, opts)
  workdir = os.path.abspath(cfg.workdir)
  workdir_lib.check_writable(workdir)
  tv = opts.get("pretrained_torchvision")
  if tv and not os.path.isfile(tv):
    raise FileNotFoundError(f"--pretrained_torchvision={tv}: no such file")
  exp = Experiment(cfg, stream=stream)
  ptq_opts = {k: v for k, v in opts.items() if k != "export_onnx"}
  if tv:
    ptq_opts["pretrained_torchvision"] = os.path.abspath(tv)
  ident = workdir_lib.identity({**cfg.fingerprint(), "ptq": ptq_opts},
                               exp.data.info.fingerprint)
  workdir_lib.check_fresh_start(workdir, ident)
  model, variables, source = _float_model(exp, opts)
  workdir_lib.write_marker(workdir, ident)
  print(f"ptq: {cfg.model} on {cfg.dataset} from {source}; weights {cfg.pattern} "
        f"(first/last {cfg.first_last}), {cfg.activation_bits}-bit activations, calibration "
        f"{opts['calibration']} on {opts['calibration_examples']} training images",
        file=stream, flush=True)
  dual = ({} if cfg.dual_lod == "off" else dict(mode="dual_lod", rounding=cfg.dual_lod))
  t = time.time()
  qm = ptq.quantize(model, variables, _calibration_images(cfg, opts["calibration_examples"]),
                    weights=weight_rule(cfg), activation_bits=cfg.activation_bits,
                    calibration=opts["calibration"], per_channel=cfg.per_channel,
                    bias_correction=opts["bias_correction"], **dual)
  quantize_seconds = time.time() - t
  results: Dict[str, Any] = {
      "ptq": True, "model": cfg.model, "dataset": cfg.dataset, "float_model": source,
      "pattern": str(cfg.pattern), "first_last": cfg.first_last,
      "activation_bits": cfg.activation_bits, "per_channel": cfg.per_channel,
      "dual_lod": cfg.dual_lod, **{k: v for k, v in ptq_opts.items()},
  }
  results.update(_top1(qm, exp.data.eval_batches(), exp.data.model_input))
  results["integer_float_ops"] = list(qm.integer_model.float_ops)
  onnx_path = os.path.join(workdir, ONNX_FILE) if opts["export_onnx"] else None
  results["onnx"] = onnx_path
  results.update({"layers": _layers(qm), "quantize_seconds": quantize_seconds,
                  "wall_seconds": time.time() - t0, "jax_version": jax.__version__,
                  "platform": jax.devices()[0].platform,
                  "config": {k: v for k, v in cfg.fingerprint().items()},
                  "data_fingerprint": dict(exp.data.info.fingerprint)})
  path = os.path.join(workdir, RESULTS_FILE)
  files.write_json_atomic(path, results)
  if onnx_path is not None:
    try:
      example = exp.data.model_input(next(iter(exp.data.eval_batches()))["image"][:2])
      proto = ptq.export_onnx(qm, np.asarray(example))
    except ValueError as e:
      raise ValueError(f"--export_onnx: {cli.one_line(e)} ({path} is written)") from e
    files.write_bytes_atomic(onnx_path, proto.SerializeToString())
  print(f"ptq done in {results['wall_seconds']:.0f} s: float_top1 {results['float_top1']:.4f}, "
        f"quant_top1 {results['fake_quant_top1']:.4f}, integer_top1 "
        f"{results['integer_top1']:.4f} (integer = fake-quant top-1 on "
        f"{100 * results['integer_agrees_with_fake_quant']:.2f}%) -> {path}", file=stream,
        flush=True)
  return results


def main(cfg: TrainConfig, flag_values: flags.FlagValues) -> bool:
  """The ``--ptq`` branch of the training mains: ``False`` without ``--ptq`` (train as usual),
  else runs it and returns ``True``; a user error ends the program with one line (exit 2)."""
  try:
    opts = options_from_flags(flag_values)
  except ValueError as e:
    cli.fail(cli.one_line(e))
  if opts is None:
    return False
  try:
    run(cfg, opts)
  except (ValueError, FileNotFoundError, TypeError, CheckpointError) as e:
    cli.fail(cli.one_line(e))
  return True
