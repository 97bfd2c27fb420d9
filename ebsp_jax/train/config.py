"""Experiment configuration: one frozen dataclass, validated with one-line errors.

The three experiment mains (``experiments/{fashion_mnist,cifar10,imagenet}.py``) turn absl flags
into a :class:`TrainConfig` (:mod:`ebsp_jax.train.flags`); the training library only sees the
dataclass (configs as data, as in flax's examples).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

from ebsp_jax.numerics import BitPattern, NumberFormat, uniform

DATASETS = ("fashion_mnist", "cifar10", "imagenet")
OPTIMIZERS = ("sgd", "adam")
RHO_POLICIES = ("constant", "geometric", "balance")
PHASES = ("float", "admm", "finetune", "done")

DUAL_LOD = ("off", "truncate", "round")
#: Fields that do not change the training: they may differ when a run is resumed (and are left
#: out of the fingerprint; a checkpoint that records one, from before it was listed here, still
#: resumes). ``integer_eval`` only decides whether the final evaluation includes the integer
#: mode, e.g. ``--nointeger_eval`` to finish a run whose integer evaluation failed.
NON_SEMANTIC_FIELDS = ("workdir", "data_dir", "checkpoint_every", "keep_checkpoints", "log_every",
                       "multihost", "progress_every_seconds", "integer_eval", "data_workers",
                       "normalize_on_device")
#: Upper bound of ``data_workers`` (loader threads): more is a typo, not a machine.
MAX_DATA_WORKERS = 256


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run depends on. Epoch counts may be fractional (rounded to whole steps).

  Attributes (flags of the same name; see ``experiments/configs/*.flags``):
    dataset: fashion_mnist | cifar10 | imagenet.
    model: a name of ``ebsp_jax.models.MODELS``.
    workdir: where checkpoints, metrics, TensorBoard events and results.json go.
    data_dir: dataset directory (None: the dataset's default).
    float_epochs / admm_epochs / finetune_epochs: length of the three phases. ``admm_epochs=0``
      is post-training quantization (projection straight after float training).
    train_examples / eval_examples: caps (0: the whole split).
    batch_size / eval_batch_size: global batch sizes (split over all devices).
    optimizer: sgd (momentum, nesterov) | adam.
    learning_rate: peak float-phase learning rate (cosine decay, linear warmup).
    admm_learning_rate / finetune_learning_rate: peak rates of the later phases (None: 0.1x and
      0.01x ``learning_rate``), cosine-decayed over their phase.
    momentum: SGD momentum (Adam's b1).
    weight_decay: L2 on conv/dense kernels (all phases; fine-tuning trains no kernels).
    warmup_epochs: linear warmup of the float phase.
    label_smoothing: cross-entropy label smoothing.
    augment: random crop + flip (CIFAR/ImageNet; ignored by Fashion-MNIST pipelines if unsupported).
    pattern_bits / pattern_length: the weight format ``BitPattern(bits, length)``.
    first_last: format of the first conv and the classifier: ``same``, ``float``, ``B`` (uniform
      B-bit) or ``B,L`` (a pattern).
    per_channel: one weight scale per output channel (else per tensor).
    activation_bits: fake-quant bits of every conv/dense input after float training (0: float).
    admm_rho / admm_rho_policy / admm_rho_growth / admm_rho_max / admm_update_every: ADMM.
    admm_straight_through: forward pass with the projected weights during ADMM (the method);
      False is plain ADMM (forward with the float weights).
    seed: initialisation, shuffling and dropout.
    pretrained: a workdir (or its ``float_model`` dir) of an earlier run whose float model
      initialises this one (float training then continues for ``float_epochs``, often 0).
    checkpoint_every: steps between checkpoints (also saved at every phase change and at the end).
    keep_checkpoints: how many to keep.
    log_every: steps between metric writes / progress lines.
    progress_every_seconds: also print a progress line at least this often.
    integer_eval: evaluate the integer (emulated hardware) mode at the end (not part of
      :meth:`fingerprint`: a run may be resumed with it changed). Layers kept in float
      (``first_last=float``) run in float there, on a fake-quantized input as in training, and
      are listed in results.json ``integer_float_ops``.
    dual_lod: ``off`` (exact datapath), or ``truncate`` / ``round``: train for the approximate
      dual-LOD datapath (each layer's activation levels cut to its weight pattern's length of
      significant bits in the fake-quant forward pass: ``pattern_length``, or the
      ``first_last`` format's for the first conv and the classifier, no cut for a float one)
      and evaluate the integer mode with ``mode='dual_lod'`` and this rounding. Needs
      quantized activations, and some quantized layer with ``L < activation_bits`` (else no
      activation level, at most ``activation_bits`` significant bits, would be cut).
      Left out of :meth:`fingerprint` when ``off``, so runs from before it resume unchanged.
    multihost: multi-process data parallelism; the experiment mains call
      ``jax.distributed.initialize()`` first (their ``--coordinator_address``, ``--num_processes``
      and ``--process_id`` flags, auto-detected on clusters jax knows). Every process runs the
      same command on a shared ``workdir``; process 0 writes results, metrics and progress.
    data_workers: threads of the grain loader that read, decode and augment batches ahead of the
      training step (0: in the training thread). The batches do not depend on it (not part of
      :meth:`fingerprint`; a run may resume with another value).
    normalize_on_device: the loader hands uint8 images to the accelerator (a quarter of the
      bytes, no normalization on the host) and the jitted steps normalize them with the
      dataset's mean/std (:func:`ebsp_jax.data.device.model_input`), giving the same bits as
      the host's normalization (not part of :meth:`fingerprint`; a run may resume with another
      value).
    layer_formats: per-layer weight formats instead of ``pattern_bits``/``pattern_length``: a
      JSON file (an ``experiments/search.py`` output, its ``"layers"``, or a plain
      ``{layer: '5b(L3)'}`` map) naming every conv/dense kernel's layer exactly
      (:func:`ebsp_jax.search.check_layer_names`, checked by the trainer against the model),
      or that map itself (a reloaded run). ADMM projects each layer onto its own grid and the
      integer mode builds each layer's LUT from its own pattern. Needs ``first_last=same``.
      The fingerprint holds the map (the file's content), not the path.
  """

  dataset: str
  model: str
  workdir: str
  data_dir: Optional[str] = None
  float_epochs: float = 1.0
  admm_epochs: float = 1.0
  finetune_epochs: float = 0.0
  train_examples: int = 0
  eval_examples: int = 0
  batch_size: int = 128
  eval_batch_size: int = 500
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  admm_learning_rate: Optional[float] = None
  finetune_learning_rate: Optional[float] = None
  momentum: float = 0.9
  weight_decay: float = 5e-4
  warmup_epochs: float = 0.0
  label_smoothing: float = 0.0
  augment: bool = False
  pattern_bits: int = 6
  pattern_length: int = 3
  first_last: str = "same"
  per_channel: bool = True
  activation_bits: int = 8
  admm_rho: float = 1e-3
  admm_rho_policy: str = "geometric"
  admm_rho_growth: float = 1.1
  admm_rho_max: float = 1.0
  admm_update_every: int = 100
  admm_straight_through: bool = True
  seed: int = 0
  pretrained: Optional[str] = None
  checkpoint_every: int = 500
  keep_checkpoints: int = 2
  log_every: int = 50
  progress_every_seconds: float = 10.0
  integer_eval: bool = True
  multihost: bool = False
  dual_lod: str = "off"
  data_workers: int = 2
  normalize_on_device: bool = False
  layer_formats: Optional[Any] = None

  def __post_init__(self):
    if isinstance(self.layer_formats, dict):   # a reloaded run's map: hashable, in order
      object.__setattr__(self, "layer_formats", tuple(self.layer_formats.items()))
    elif isinstance(self.layer_formats, list):
      object.__setattr__(self, "layer_formats", tuple(tuple(p) for p in self.layer_formats))
    self.validate()

  # ------------------------------------------------------------------------------------------
  def validate(self) -> None:
    """Raises ``ValueError`` with a one-line message naming the bad field."""
    def bad(name: str, why: str):
      raise ValueError(f"--{name}={getattr(self, name)!r}: {why}")

    if self.dataset not in DATASETS:
      bad("dataset", f"unknown dataset; known: {', '.join(DATASETS)}")
    from ebsp_jax import models  # local: keep config importable cheaply
    if self.model not in models.MODELS:
      bad("model", f"unknown model; known: {', '.join(sorted(models.MODELS))}")
    if not self.workdir:
      bad("workdir", "a working directory is required")
    for name in ("float_epochs", "admm_epochs", "finetune_epochs", "warmup_epochs"):
      v = getattr(self, name)
      if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
        bad(name, "must be a finite number >= 0")
    for name in ("train_examples", "eval_examples"):
      if getattr(self, name) < 0:
        bad(name, "must be >= 0 (0: the whole split)")
    for name in ("batch_size", "eval_batch_size", "admm_update_every", "checkpoint_every",
                 "keep_checkpoints", "log_every"):
      if getattr(self, name) < 1:
        bad(name, "must be >= 1")
    if self.train_examples and self.train_examples < self.batch_size:
      bad("train_examples", f"is smaller than --batch_size={self.batch_size}: no full batch")
    if self.optimizer not in OPTIMIZERS:
      bad("optimizer", f"unknown optimizer; known: {', '.join(OPTIMIZERS)}")
    for name in ("learning_rate", "admm_learning_rate", "finetune_learning_rate"):
      v = getattr(self, name)
      if v is not None and not (math.isfinite(v) and v > 0):
        bad(name, "must be a positive number")
    if not 0 <= self.momentum < 1:
      bad("momentum", "must be in [0, 1)")
    if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
      bad("weight_decay", "must be >= 0")
    if not 0 <= self.label_smoothing < 1:
      bad("label_smoothing", "must be in [0, 1)")
    try:
      BitPattern(self.pattern_bits, self.pattern_length)
    except (ValueError, TypeError) as e:
      raise ValueError(f"--pattern_bits={self.pattern_bits} --pattern_length="
                       f"{self.pattern_length}: {e}") from None
    try:
      self.first_last_pattern()
    except (ValueError, TypeError) as e:
      raise ValueError(f"--first_last={self.first_last!r}: {e}") from None
    if self.layer_formats is not None:
      self.layer_format_map()      # readable and valid, else one line naming the file
      if self.first_last.strip().lower() != "same":
        raise ValueError(f"--first_last={self.first_last} and --layer_formats are exclusive: "
                         "the file gives the first and last layers' formats too")
    if self.activation_bits != 0 and not 2 <= self.activation_bits <= 16:
      bad("activation_bits", "must be 0 (float activations) or in [2, 16]")
    if not (math.isfinite(self.admm_rho) and self.admm_rho > 0):
      bad("admm_rho", "must be a positive number")
    if self.admm_rho_policy not in RHO_POLICIES:
      bad("admm_rho_policy", f"unknown policy; known: {', '.join(RHO_POLICIES)}")
    if not (math.isfinite(self.admm_rho_growth) and self.admm_rho_growth > 0):
      bad("admm_rho_growth", "must be a positive number")
    if not self.admm_rho_max >= self.admm_rho:
      bad("admm_rho_max", f"must be >= --admm_rho={self.admm_rho}")
    if self.dual_lod not in DUAL_LOD:
      bad("dual_lod", f"must be one of {', '.join(DUAL_LOD)}")
    if self.dual_lod != "off" and not self.activation_bits:
      bad("dual_lod", "needs quantized activations (--activation_bits > 0)")
    if self.dual_lod != "off":
      lengths = self.dual_lod_lengths()
      if min(lengths) >= self.activation_bits:
        bad("dual_lod", f"cuts no activation: every quantized layer's pattern length (L = "
                        f"{', '.join(str(v) for v in sorted(set(lengths)))}) is >= "
                        f"--activation_bits={self.activation_bits}, the most significant bits an "
                        f"activation level has ({self.activation_bits - 1} when signed); use a "
                        f"shorter --pattern_length (or --first_last format), more "
                        f"--activation_bits, or --dual_lod=off")
    if self.seed < 0:
      bad("seed", "must be >= 0")
    if self.progress_every_seconds <= 0:
      bad("progress_every_seconds", "must be > 0")
    if (isinstance(self.data_workers, bool) or not isinstance(self.data_workers, int)
        or not 0 <= self.data_workers <= MAX_DATA_WORKERS):
      bad("data_workers", f"must be an integer in [0, {MAX_DATA_WORKERS}] (loader threads; 0: "
                          "load in the training thread)")
    if not isinstance(self.normalize_on_device, bool):
      bad("normalize_on_device", "must be True or False")

  # ------------------------------------------------------------------------------------------
  @property
  def pattern(self) -> BitPattern:
    """The weight format of every quantized layer (except ``first_last`` overrides)."""
    return BitPattern(self.pattern_bits, self.pattern_length)

  def first_last_pattern(self) -> Tuple[bool, Optional[BitPattern]]:
    """``(override, pattern)`` for the first conv / classifier: ``(False, None)`` for ``same``,
    ``(True, None)`` for ``float``, ``(True, pattern)`` otherwise."""
    v = self.first_last.strip().lower()
    if v == "same":
      return False, None
    if v == "float":
      return True, None
    parts = [p.strip() for p in v.split(",")]
    if len(parts) == 1 and parts[0].isdigit():
      return True, uniform(int(parts[0]))
    if len(parts) == 2 and all(p.isdigit() for p in parts):
      return True, BitPattern(int(parts[0]), int(parts[1]))
    raise ValueError("expected same, float, BITS (uniform) or BITS,LENGTH")

  def layer_format_map(self) -> Optional[Dict[str, NumberFormat]]:
    """``{layer: format}`` of ``layer_formats`` (read from its file), or ``None``.

    Raises:
      ValueError: an unreadable file, or not a ``{layer: format name}`` map (one line).
    """
    if self.layer_formats is None:
      return None
    from ebsp_jax import cli  # pylint: disable=import-outside-toplevel
    from ebsp_jax import search  # pylint: disable=import-outside-toplevel
    src = self.layer_formats
    if isinstance(src, str):
      what = f"--layer_formats={src}"
      obj = cli.load_json(src, what)
    else:
      what = "layer_formats"
      obj = dict(src)
    return search.layer_formats_from_json(obj, what)

  def weights_text(self) -> str:
    """``'pattern 6b(L3)'`` or ``'per-layer formats conv_init 8b(L5), ...'`` (progress lines)."""
    m = self.layer_format_map()
    if not m:
      return f"pattern {self.pattern}"
    return "per-layer formats " + ", ".join(f"{k} {f}" for k, f in m.items())

  def main_pattern(self) -> BitPattern:
    """The format of most layers (ties: the first listed) with ``layer_formats``, else
    ``pattern`` (ADMM's shift/mantissa telemetry counts its layers)."""
    m = self.layer_format_map()
    if not m:
      return self.pattern
    names = [str(f) for f in m.values()]
    best = max(dict.fromkeys(names), key=names.count)
    return next(f for f in m.values() if str(f) == best)

  def dual_lod_lengths(self) -> Tuple[int, ...]:
    """The pattern lengths ``L`` of the quantized layers (``--dual_lod`` cuts their inputs):
    ``pattern_length``, and the ``first_last`` format's (``bits - 1`` for uniform ``B``) unless
    that is ``same`` or ``float`` (a float layer's input is not cut); every layer's with
    ``layer_formats``."""
    m = self.layer_format_map()
    if m:
      return tuple(sorted({int(f.length) for f in m.values()}))
    override, fl = self.first_last_pattern()
    out = (self.pattern_length,)
    if override and fl is not None:
      out += (int(fl.length),)
    return out

  @property
  def effective_admm_lr(self) -> float:
    return self.admm_learning_rate if self.admm_learning_rate is not None else 0.1 * self.learning_rate

  @property
  def effective_finetune_lr(self) -> float:
    return (self.finetune_learning_rate if self.finetune_learning_rate is not None
            else 0.01 * self.learning_rate)

  def fingerprint(self) -> Dict[str, Any]:
    """The fields that determine the results (compared when a run resumes)."""
    d = dataclasses.asdict(self)
    for k in NON_SEMANTIC_FIELDS:
      d.pop(k, None)
    if d.get("dual_lod") == "off":   # added later: earlier runs' fingerprints stay valid
      d.pop("dual_lod")
    if d.get("layer_formats") is None:   # likewise
      d.pop("layer_formats", None)
    else:                                # the content, not where the file lies
      d["layer_formats"] = {k: str(f) for k, f in self.layer_format_map().items()}
    return d

  def replace(self, **kwargs) -> "TrainConfig":
    return dataclasses.replace(self, **kwargs)
