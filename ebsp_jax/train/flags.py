"""absl flags shared by the experiment mains, and the main function they all call.

Each ``experiments/<dataset>.py`` is three lines: define the flags with its dataset's defaults,
adopt them as its own (so ``--help`` lists them) and call :func:`main`. A bad flag value, an
unusable workdir, data or checkpoint, a diverged run or a failed evaluation ends the program with
a one-line ``error: ...`` on stderr and exit status 2 (absl's own parsing errors too); the
workdir is checked before any data are loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

from absl import app, flags, logging

from ebsp_jax import cli
from ebsp_jax.train.config import TrainConfig

FLAGS = flags.FLAGS

_HELP = {
    "model": "model name (ebsp_jax.models.MODELS)",
    "workdir": "run directory: checkpoints, metrics, TensorBoard events, results.json",
    "data_dir": "dataset directory (default: the dataset's standard location)",
    "float_epochs": "epochs of float training (fractional allowed)",
    "admm_epochs": "epochs of ADMM quantization-aware training (0: post-training projection)",
    "finetune_epochs": "epochs of fine-tuning what stays float after the hard projection",
    "train_examples": "cap on training examples (0: all)",
    "eval_examples": "cap on evaluation examples (0: all)",
    "batch_size": "global training batch size (split over all devices)",
    "eval_batch_size": "global evaluation batch size",
    "optimizer": "sgd (momentum, nesterov) or adam",
    "learning_rate": "peak learning rate of float training (cosine decay)",
    "admm_learning_rate": "peak learning rate of the ADMM phase (default 0.1 x learning_rate)",
    "finetune_learning_rate": "peak learning rate of fine-tuning (default 0.01 x learning_rate)",
    "momentum": "SGD momentum / Adam b1",
    "weight_decay": "L2 weight decay on conv/dense kernels",
    "warmup_epochs": "linear learning-rate warmup of float training",
    "label_smoothing": "label smoothing of the cross-entropy",
    "augment": "random-crop/flip augmentation where the dataset supports it",
    "pattern_bits": "bits of the weight format (sign included)",
    "pattern_length": "pattern length L (= bits-1: uniform; 1: power of two)",
    "first_last": "first conv and classifier: same | float | BITS | BITS,LENGTH",
    "per_channel": "one weight scale per output channel (else per tensor)",
    "activation_bits": "activation bits after float training (0: float activations)",
    "admm_rho": "initial ADMM penalty rho",
    "admm_rho_policy": "constant | geometric | balance (residual balancing)",
    "admm_rho_growth": "geometric policy: rho factor per Z-step",
    "admm_rho_max": "cap on rho",
    "admm_update_every": "training steps between ADMM Z/U updates",
    "admm_straight_through": "forward with projected weights during ADMM (off: plain ADMM)",
    "seed": "random seed (init, shuffling, dropout)",
    "pretrained": "workdir (or its float_model/) of an earlier run to start from",
    "checkpoint_every": "steps between checkpoints",
    "keep_checkpoints": "checkpoints kept",
    "log_every": "steps between metric writes",
    "progress_every_seconds": "longest time between progress lines",
    "data_workers": "threads of the grain loader that read, decode and augment batches ahead of "
                    "the training step (0: in the training thread); the batches do not depend on "
                    "it, so a run may resume with another value",
    "normalize_on_device": "load uint8 images (a quarter of the bytes, no host normalization) "
                           "and normalize them inside the jitted steps, bit-identical to the "
                           "host's normalization; a run may resume with another value",
    "integer_eval": "evaluate the integer (emulated hardware) mode at the end (may change when a "
                    "run resumes, e.g. --nointeger_eval after a failed integer evaluation)",
    "dual_lod": "off | truncate | round: train for (and evaluate) the approximate dual-LOD "
                "datapath: each layer's activations cut to its weight pattern's length of "
                "significant bits (--pattern_length; --first_last's for the first conv and the "
                "classifier, no cut where that is float)",
    "layer_formats": "JSON file of per-layer weight formats (experiments/search.py's output or a "
                     "{layer: '5b(L3)'} map naming every conv/dense layer) instead of "
                     "--pattern_bits/--pattern_length; needs --first_last=same",
    "multihost": "multi-process data parallelism: call jax.distributed.initialize() first. Start "
                 "the same command in every process (e.g. one per host); the --workdir must be on "
                 "a filesystem all processes share. --coordinator_address/--num_processes/"
                 "--process_id are auto-detected on Slurm, Open MPI and TPU pods; give all three "
                 "elsewhere",
}

#: Flags that configure the process, not the run (not TrainConfig fields): jax.distributed.
_DISTRIBUTED_HELP = {
    "coordinator_address": "with --multihost: host:port of process 0's coordinator service, the "
                           "same in every process (default: auto-detected, or "
                           "$JAX_COORDINATOR_ADDRESS)",
    "num_processes": "with --multihost: number of processes (default: auto-detected)",
    "process_id": "with --multihost: this process's index in [0, --num_processes); process 0 "
                  "writes results.json, metrics and progress lines (default: auto-detected)",
}


def define_flags(flag_values: flags.FlagValues = FLAGS, **defaults: Any) -> None:
  """Defines one flag per :class:`TrainConfig` field (except ``dataset``) with ``defaults``,
  and the ``jax.distributed`` flags of ``--multihost``."""
  for f in dataclasses.fields(TrainConfig):
    if f.name == "dataset":
      continue
    default = defaults.get(f.name, f.default)
    if default is dataclasses.MISSING:
      default = None
    help_ = _HELP.get(f.name, f.name)
    typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if "bool" in typ:
      flags.DEFINE_bool(f.name, default, help_, flag_values=flag_values)
    elif typ.startswith("Optional[float]"):
      flags.DEFINE_float(f.name, default, help_, flag_values=flag_values)
    elif "float" in typ:
      flags.DEFINE_float(f.name, default, help_, flag_values=flag_values)
    elif "int" in typ:
      flags.DEFINE_integer(f.name, default, help_, flag_values=flag_values)
    else:
      flags.DEFINE_string(f.name, default, help_, flag_values=flag_values)
  flags.DEFINE_string("coordinator_address", None, _DISTRIBUTED_HELP["coordinator_address"],
                      flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, _DISTRIBUTED_HELP["num_processes"], lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, _DISTRIBUTED_HELP["process_id"], lower_bound=0,
                       flag_values=flag_values)
  from ebsp_jax.train import ptq_run  # pylint: disable=import-outside-toplevel
  ptq_run.define_flags(flag_values)   # --ptq and its options (post-training quantization)


def distributed_from_flags(cfg: TrainConfig, flag_values: flags.FlagValues = FLAGS
                           ) -> Dict[str, Any]:
  """The ``jax.distributed.initialize`` arguments (``ValueError`` with one line if invalid)."""
  args = {k: flag_values[k].value for k in _DISTRIBUTED_HELP}
  given = [k for k, v in args.items() if v not in (None, "")]
  if given and not cfg.multihost:
    raise ValueError(f"--{given[0]} applies only with --multihost")
  n, pid = args["num_processes"], args["process_id"]
  if n is not None and pid is not None and pid >= n:
    raise ValueError(f"--process_id={pid}: must be in [0, --num_processes={n})")
  return args


def config_from_flags(dataset: str, flag_values: flags.FlagValues = FLAGS) -> TrainConfig:
  """The :class:`TrainConfig` of parsed flags (``ValueError`` with one line if invalid)."""
  values: Dict[str, Any] = {"dataset": dataset}
  for f in dataclasses.fields(TrainConfig):
    if f.name != "dataset":
      values[f.name] = flag_values[f.name].value
  for k in ("data_dir", "pretrained", "layer_formats"):
    if values[k] == "":
      values[k] = None
  if values["layer_formats"] is not None:
    given = [f"--{k}" for k in ("pattern_bits", "pattern_length") if flag_values[k].present]
    if given:
      raise ValueError(f"{' and '.join(given)} and --layer_formats are exclusive: the file "
                       "gives every layer's format (a --flagfile that sets them counts: use one "
                       "without them)")
  if values["model"] is None:
    raise ValueError("--model is required")
  if values["workdir"] is None:
    raise ValueError("--workdir is required")
  return TrainConfig(**values)


def main(dataset: str):
  """The body of every experiment main."""
  def _main(argv):
    if len(argv) > 1:
      cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from ebsp_jax.train import workdir
    try:
      cfg = config_from_flags(dataset)
      distributed = distributed_from_flags(cfg)
      workdir.check_writable(cfg.workdir)
    except (ValueError, TypeError) as e:
      cli.fail(cli.one_line(e))
    from ebsp_jax.train import ptq_run
    if cfg.layer_formats is not None and FLAGS["ptq"].value:
      cli.fail("--ptq with --layer_formats is not supported: post-training quantization takes "
               "one --pattern_bits/--pattern_length (and --first_last)")
    if ptq_run.main(cfg, FLAGS):   # --ptq: post-training quantization instead of training
      return
    if cfg.multihost:
      from ebsp_jax.train import sharding
      try:
        sharding.initialize_distributed(**distributed)
      except (ValueError, TypeError, RuntimeError) as e:
        cli.fail(f"--multihost: {cli.one_line(e)}")
    from ebsp_jax.train import checkpoint, divergence, trainer
    try:
      experiment = trainer.Experiment(cfg)
    except (checkpoint.CheckpointError, ValueError, OSError) as e:  # FileNotFoundError: no data
      cli.fail(cli.one_line(e))
    try:
      experiment.run()
    except (checkpoint.CheckpointError, trainer.EvaluationError, divergence.DivergenceError,
            workdir.WorkdirError, OSError) as e:
      # EvaluationError: the trained state is checkpointed; the message says how to retry.
      cli.fail(cli.one_line(e))

  app.run(_main, flags_parser=cli.parse_flags)
