"""The EBSP pipeline: float training → ADMM QAT → hard projection + fine-tuning → evaluation.

One :class:`Experiment` per run. The global step counts training batches over all phases; the
phase of step ``t`` follows from the configured epoch counts::

    [0, F)            float      plain training (or continue from --pretrained)
    [F, F+A)          admm       ADMM QAT onto the pattern grids, forward with projected weights
                                 and fake-quantized activations
    [F+A, F+A+T)      finetune   weights hard-projected and frozen; what stays float trains
    F+A+T             done       final evaluation: fake-quant and integer modes, pattern stats

A phase change is a pure function of the state (so a resumed run makes exactly the same change)
followed by the evaluations due at that point and a checkpoint. Results measured so far travel in
the checkpoint metadata; the final results are checkpointed with the final state, and
``results.json`` and ``params.npz`` are written from them (atomically), so rerunning a finished
run rewrites the same files from verified data. Workdir claims, checksums and data fingerprints:
:mod:`.workdir`, :mod:`.checkpoint`; non-finite values stop the run: :mod:`.divergence`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from typing import Any, Dict, List, TextIO, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebsp_jax import admm as admm_lib
from ebsp_jax import cli
from ebsp_jax import models
from ebsp_jax.numerics import make_rule
from ebsp_jax.numerics.tree import Rule, path_str
from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import divergence, evaluation, export_model, files
from ebsp_jax.train import sharding as sharding_lib
from ebsp_jax.train import workdir as workdir_lib
from ebsp_jax.train.config import NON_SEMANTIC_FIELDS, PHASES, TrainConfig
from ebsp_jax.train.input_pipeline import Data
from ebsp_jax.train.metrics import MetricWriter, Progress, format_duration
from ebsp_jax.train.steps import TrainState, count_params, eval_step, train_step

PyTree = Any
RESULTS_FILE = "results.json"
# The final (hard-projected) params, '/'-joined paths -> arrays: the portable artifact that
# experiments/hardware.py --params and other tools read without knowing the training state.
PARAMS_FILE = "params.npz"
# The traceback of the last failed evaluation (the error itself is one line).
ERROR_FILE = "evaluation_error.txt"


class EvaluationError(RuntimeError):
  """An evaluation at a phase change (e.g. the final one) failed; the trained state before it
  is checkpointed, so rerunning the command retries it. The message is one line."""


def _kernel_mask(params: PyTree) -> PyTree:
  return jax.tree_util.tree_map(lambda x: x.ndim > 1, params)


def weight_rule(cfg: TrainConfig) -> Rule:
  """Which weights are quantized and how: every conv/dense kernel in ``cfg.pattern``, the first
  conv and the classifier per ``--first_last``; or each layer's kernel in its own format with
  ``--layer_formats`` (:func:`check_layer_formats` checks that they name the model's layers)."""
  if cfg.layer_formats is not None:
    from ebsp_jax import search  # pylint: disable=import-outside-toplevel
    return search.layer_formats_rule(cfg.layer_format_map())
  override, pattern = cfg.first_last_pattern()
  overrides = []
  if override:
    first, last = models.FIRST_LAYER, models.LAST_LAYER
    overrides = [(f"^{first}/", pattern), (f"^{last}/", pattern)]
  return make_rule(cfg.pattern, overrides=overrides)


def check_layer_formats(cfg: TrainConfig, params: PyTree) -> None:
  """``--layer_formats`` names exactly the conv/dense layers of ``params`` (shapes suffice).

  Raises:
    ValueError: unknown or missing layers (one line, listing the model's).
  """
  from ebsp_jax import search  # pylint: disable=import-outside-toplevel
  from ebsp_jax.numerics import layer_patterns  # pylint: disable=import-outside-toplevel
  src = cfg.layer_formats if isinstance(cfg.layer_formats, str) else "(the recorded map)"
  search.check_layer_names(cfg.layer_format_map(),
                           list(layer_patterns(params, lambda p, l: None)),
                           f"--layer_formats={src}")


def rho_policy(cfg: TrainConfig) -> admm_lib.RhoPolicy:
  """The ADMM ρ policy named by ``cfg.admm_rho_policy`` (constant, geometric, balance)."""
  if cfg.admm_rho_policy == "constant":
    return admm_lib.constant_rho(cfg.admm_rho)
  if cfg.admm_rho_policy == "geometric":
    return admm_lib.geometric_rho(cfg.admm_rho, cfg.admm_rho_growth, cfg.admm_rho_max)
  return admm_lib.residual_balancing_rho(cfg.admm_rho, max_value=cfg.admm_rho_max)


def _base_optimizer(cfg: TrainConfig, lr) -> optax.GradientTransformation:
  if cfg.optimizer == "sgd":
    return optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.momentum > 0)
  return optax.adam(lr, b1=cfg.momentum)


class Experiment:
  """A configured run: data, models, optimizers per phase, checkpoints, metrics.

  Args:
    cfg: the configuration.
    stream: where progress lines go.
  """

  def __init__(self, cfg: TrainConfig, stream: TextIO = sys.stdout):
    self.cfg = cfg
    self.primary = jax.process_index() == 0
    self.progress_stream = stream
    self.mesh = sharding_lib.make_mesh()
    sharding_lib.check_batch_size(cfg.batch_size, self.mesh)
    sharding_lib.check_batch_size(cfg.eval_batch_size, self.mesh, "eval_batch_size")
    self.repl = sharding_lib.replicated(self.mesh)
    # Each process loads only its rows of every global batch (all of them on one process).
    self.data = Data(cfg, sharding_lib.process_rows(self.mesh, cfg.batch_size),
                     sharding_lib.process_rows(self.mesh, cfg.eval_batch_size))
    info = self.data.info
    spe = info.steps_per_epoch
    self.steps = {p: int(round(getattr(cfg, f"{p}_epochs") * spe))
                  for p in ("float", "admm", "finetune")}
    f, a, t = self.steps["float"], self.steps["admm"], self.steps["finetune"]
    self.bounds = {"float": (0, f), "admm": (f, f + a), "finetune": (f + a, f + a + t)}
    self.total_steps = f + a + t
    self.float_model = models.get_model(cfg.model, num_classes=info.num_classes)
    self.rule = weight_rule(cfg)
    if cfg.layer_formats is not None:
      check_layer_formats(cfg, jax.eval_shape(functools.partial(
          self.float_model.init, train=False), jax.random.key(0),
          self.data.example_batch()["image"])["params"])
    if cfg.activation_bits:
      from ebsp_jax import quant
      dual = {}
      if cfg.dual_lod != "off":
        # Each layer's own pattern length (first/last per --first_last), as the integer mode.
        shapes = jax.eval_shape(functools.partial(self.float_model.init, train=False),
                                jax.random.key(0), self.data.example_batch()["image"])
        dual = dict(dual_lod_length=quant.dual_lod_lengths(self.rule, shapes["params"]),
                    dual_lod_rounding=cfg.dual_lod)
      inj = quant.fake_quant_injection(activation_bits=cfg.activation_bits, **dual)
      self.quant_model = models.get_model(cfg.model, num_classes=info.num_classes, **inj)
    else:
      self.quant_model = self.float_model
    self.txs = {p: self._make_tx(p) for p in ("float", "admm", "finetune")}
    self._train_fns: Dict[str, Any] = {}
    self._eval_fns: Dict[str, Any] = {}
    self.workdir = os.path.abspath(cfg.workdir)
    self.ckpt_dir = os.path.join(self.workdir, "checkpoints")
    #: One-line notices of the last restore (e.g. a checkpoint too old to be verified).
    self.notes: List[str] = []

  def identity(self) -> Dict[str, Any]:
    """What makes a workdir this run's: the configuration and data fingerprints."""
    return workdir_lib.identity(self.cfg.fingerprint(), self.data.info.fingerprint)

  # ------------------------------------------------------------------------------------------
  # Phases.
  def phase_at(self, step: int) -> str:
    for p in ("float", "admm", "finetune"):
      lo, hi = self.bounds[p]
      if lo <= step < hi:
        return p
    return "done"

  def model_for(self, phase: str):
    return self.float_model if phase == "float" else self.quant_model

  def _make_tx(self, phase: str) -> optax.GradientTransformation:
    cfg = self.cfg
    n = max(self.steps[phase], 1)
    if phase == "float":
      warm = min(int(round(cfg.warmup_epochs * self.data.info.steps_per_epoch)), n - 1)
      lr = optax.warmup_cosine_decay_schedule(0.0 if warm else cfg.learning_rate,
                                              cfg.learning_rate, max(warm, 0), n, 0.0)
      return optax.chain(optax.add_decayed_weights(cfg.weight_decay, _kernel_mask),
                         _base_optimizer(cfg, lr))
    if phase == "admm":
      lr = optax.cosine_decay_schedule(cfg.effective_admm_lr, n)
      return optax.chain(
          admm_lib.admm(self.rule, rho=rho_policy(cfg), update_every=cfg.admm_update_every,
                        per_channel=cfg.per_channel),
          optax.add_decayed_weights(cfg.weight_decay, _kernel_mask),
          _base_optimizer(cfg, lr))
    lr = optax.cosine_decay_schedule(cfg.effective_finetune_lr, n)

    def labels(params):
      return jax.tree_util.tree_map_with_path(
          lambda p, w: "frozen" if self.rule(path_str(p), w) is not None else "train", params)

    return optax.multi_transform({"train": _base_optimizer(cfg, lr),
                                  "frozen": optax.set_to_zero()}, labels)

  def init_state(self, rng: jax.Array) -> TrainState:
    """The float-phase state at step 0 (pure; used under ``eval_shape`` for templates)."""
    init_rng, train_rng = jax.random.split(rng)
    x = jnp.asarray(self.data.example_batch()["image"])
    variables = dict(self.float_model.init(init_rng, x, train=False))
    params = variables.pop("params")
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                      opt_state=self.txs["float"].init(params), rng=train_rng,
                      weight_scales=None, phase="float")

  def advance(self, state: TrainState) -> TrainState:
    """The state after the next phase change (pure)."""
    nxt = PHASES[PHASES.index(state.phase) + 1]
    if nxt == "admm":
      model_state = dict(state.model_state)
      if self.cfg.activation_bits:
        x = jnp.asarray(self.data.example_batch()["image"])
        qvars = self.quant_model.init(jax.random.PRNGKey(0), x, train=False)
        model_state["quant_stats"] = qvars["quant_stats"]
      return state.replace(model_state=model_state, opt_state=self.txs["admm"].init(state.params),
                           phase="admm")
    if nxt == "finetune":
      params = admm_lib.finalize(state.params, state.opt_state)
      scales = admm_lib.tree_scales(params, state.opt_state)
      return state.replace(params=params, weight_scales=scales,
                           opt_state=self.txs["finetune"].init(params), phase="finetune")
    return state.replace(phase="done")

  @functools.cached_property
  def _init_jit(self):
    return jax.jit(lambda rng: _strong(self.init_state(rng)), out_shardings=self.repl)

  @functools.cached_property
  def _advance_jit(self):
    return jax.jit(lambda s: _strong(self.advance(s)), out_shardings=self.repl)

  def template(self, phase: str) -> TrainState:
    """Abstract state (shapes/dtypes) of ``phase``."""
    def build(rng):
      s = self.init_state(rng)
      while s.phase != phase:
        s = self.advance(s)
      return s
    return jax.eval_shape(build, jax.random.PRNGKey(0))

  # ------------------------------------------------------------------------------------------
  # Jitted functions.
  def train_fn(self, phase: str):
    if phase not in self._train_fns:
      fn = functools.partial(train_step, apply_fn=self.model_for(phase).apply,
                             tx=self.txs[phase],
                             straight_through=phase == "admm" and self.cfg.admm_straight_through,
                             label_smoothing=self.cfg.label_smoothing)
      self._train_fns[phase] = jax.jit(fn, out_shardings=self.repl)
    return self._train_fns[phase]

  def eval_fn(self, mode: str):
    if mode not in self._eval_fns:
      model = self.float_model if mode == "float" else self.quant_model
      self._eval_fns[mode] = jax.jit(functools.partial(eval_step, apply_fn=model.apply),
                                     out_shardings=self.repl)
    return self._eval_fns[mode]

  def evaluate(self, state: TrainState, mode: str) -> Dict[str, float]:
    return evaluation.evaluate(self.eval_fn(mode), state.params, state.model_state,
                               self.data.eval_batches(), self.cfg.eval_batch_size, self.mesh)

  def integer_eval(self, state: TrainState, **datapath) -> evaluation.IntegerResult:
    """Integer-mode top-1, overflow count and float ops of ``state`` on the evaluation split.

    ``datapath``: options of ``ebsp_jax.quant.to_integer`` (``acc_bits``, ``overflow``,
    ``mode``, ``rounding``, ...); default: the datapath the run trained for (exact, or
    ``mode='dual_lod'`` with ``--dual_lod``'s rounding; an explicit ``mode='dual_lod'``
    also takes that rounding unless ``rounding`` is given). See
    :func:`ebsp_jax.train.evaluation.integer_top1`.
    """
    if self.cfg.dual_lod != "off":
      datapath = dict(datapath)
      datapath.setdefault("mode", "dual_lod")
      if datapath["mode"] == "dual_lod":
        datapath.setdefault("rounding", self.cfg.dual_lod)
    variables = {"params": state.params, **state.model_state}
    return evaluation.integer_top1(self.cfg.model, variables, self.rule, state.weight_scales,
                                   self.cfg.activation_bits, self.data.eval_batches(), datapath)

  @functools.cached_property
  def _telemetry_fn(self):
    def fn(params, opt_state):
      return evaluation.pattern_telemetry(
          params, admm_lib.tree_rule(opt_state), admm_lib.tree_scales(params, opt_state),
          self.cfg.main_pattern(), z=_z_tree(opt_state))
    return jax.jit(fn)

  # ------------------------------------------------------------------------------------------
  # Checkpoints.
  def _meta(self, state: TrainState, results: Dict[str, Any], wall: float) -> Dict[str, Any]:
    step = int(state.step)
    return {"step": step, "phase": state.phase, "config": _jsonable(self.cfg.fingerprint()),
            "results": results, "wall_seconds": wall,
            "data": {"position": step, "steps_per_epoch": self.data.info.steps_per_epoch},
            "data_fingerprint": dict(self.data.info.fingerprint),
            "total_steps": self.total_steps}

  def save(self, ckpt: ckpt_lib.Checkpointer, state: TrainState, results, wall: float) -> None:
    """Checkpoints ``state`` with ``results`` (``DivergenceError`` if either is not finite)."""
    where = f"at step {int(state.step)} (phase '{state.phase}')"
    if not divergence.host_all_finite(state):
      raise divergence.DivergenceError(f"the training state {where} is not finite; "
                                       f"{self._divergence_advice(ckpt, state.phase)}")
    divergence.check_finite_results(results, f"the results {where}", functools.partial(
        self._divergence_advice, ckpt, state.phase))
    ckpt.save(_ckpt_id(state), state, self._meta(state, results, wall))

  def _divergence_advice(self, ckpt: ckpt_lib.Checkpointer, phase: str) -> str:
    latest = ckpt.latest_id()
    return divergence.advice(self.cfg, phase, None if latest is None else _describe(latest),
                             self.ckpt_dir)

  def restore_or_init(self, ckpt: ckpt_lib.Checkpointer, pretrained=None
                      ) -> Tuple[TrainState, Dict, float, bool]:
    """Latest checkpoint (validated), or a fresh/pretrained state. Never silently restarts.

    ``pretrained``: ``(checkpointer, id)`` from :meth:`_open_pretrained`, already opened (it is
    opened here when needed otherwise); closed before returning.
    """
    try:
      latest = ckpt.latest_id()
      if latest is not None:
        return self._restore(ckpt, latest)
      if pretrained is None and self.cfg.pretrained:
        pretrained = self._open_pretrained()
      state = self._init_jit(jax.random.PRNGKey(self.cfg.seed))
      if pretrained is not None:
        state = sharding_lib.replicate(self._load_pretrained(state, *pretrained), self.mesh)
      return state, {}, 0.0, False
    finally:
      if pretrained is not None:
        pretrained[0].close()

  def _restore(self, ckpt: ckpt_lib.Checkpointer, latest: int
               ) -> Tuple[TrainState, Dict, float, bool]:
    """Checkpoint ``latest`` of ``ckpt``, verified, and validated against this run's
    configuration and data (notices about old checkpoints go to :attr:`notes`)."""
    try:
      meta = ckpt.read_meta(latest)
      saved = {k: v for k, v in meta.get("config", {}).items() if k not in NON_SEMANTIC_FIELDS}
      diff = ckpt_lib.config_difference(saved, _jsonable(self.cfg.fingerprint()))
      if diff:
        raise ckpt_lib.CheckpointError(
            f"{self.workdir} holds a run with a different configuration ({'; '.join(diff[:4])}"
            f"{'; ...' if len(diff) > 4 else ''}); use another --workdir, or delete it to start "
            "over")
      self.notes = []
      if "data_fingerprint" in meta:
        data_diff = workdir_lib.data_difference(meta["data_fingerprint"],
                                                self.data.info.fingerprint)
        if data_diff:
          raise ckpt_lib.CheckpointError(
              f"{self.workdir} holds a run trained on other data: with --data_dir="
              f"{self.cfg.data_dir or '<default>'}, {data_diff}; resume with the run's data, or "
              "use another --workdir")
      else:
        self.notes.append(f"checkpoint {latest} predates data fingerprints: the data cannot be "
                          "checked against the run's (from now on they are)")
      phase = meta.get("phase")
      if phase not in PHASES:
        raise ckpt_lib.CheckpointError(f"checkpoint {latest} in {self.ckpt_dir} has unknown "
                                       f"phase {phase!r}")
      template = self.template(phase)
      shardings = jax.tree_util.tree_map(lambda _: self.repl, template)
      state, meta = ckpt.restore(latest, template, shardings)
    except ckpt_lib.CorruptCheckpointError as e:
      raise ckpt_lib.CheckpointError(e.with_offer(ckpt.all_ids(), _describe, self.workdir)
                                     ) from e
    if not ckpt_lib.is_verified(meta):
      self.notes.append(f"checkpoint {latest} predates checksums (format {meta.get('format')}): "
                        "its arrays could not be verified")
    if int(state.step) != meta["step"]:
      raise ckpt_lib.CheckpointError(f"checkpoint {latest} is inconsistent: step leaf "
                                     f"{int(state.step)} vs metadata {meta['step']}")
    return state, dict(meta.get("results", {})), float(meta.get("wall_seconds", 0.0)), True

  def _pretrained_dir(self) -> str:
    """The directory of the --pretrained float model (``CheckpointError`` if there is none)."""
    path = os.path.abspath(self.cfg.pretrained)
    if os.path.isdir(os.path.join(path, "float_model")):
      path = os.path.join(path, "float_model")
    if not os.path.isdir(path):
      raise ckpt_lib.CheckpointError(f"--pretrained={self.cfg.pretrained}: no such directory "
                                     "(expected a workdir of an earlier run or its float_model/)")
    return path

  def _open_pretrained(self):
    """``(checkpointer, id)`` of the --pretrained float model, validated against this run."""
    path = self._pretrained_dir()
    fm = ckpt_lib.Checkpointer(path, read_only=True)  # creates and cleans up nothing there
    try:
      latest = fm.latest_id()
      if latest is None:
        raise ckpt_lib.CheckpointError(
            f"--pretrained={self.cfg.pretrained}: {path} holds no float-model checkpoint "
            "(expected a workdir of an earlier run or its float_model/)")
      meta = fm.read_meta(latest)
      for key in ("model", "dataset"):
        if meta.get(key) != getattr(self.cfg, key):
          raise ckpt_lib.CheckpointError(
              f"--pretrained={self.cfg.pretrained}: a {meta.get('model')} on "
              f"{meta.get('dataset')}, but this run trains a {self.cfg.model} on "
              f"{self.cfg.dataset}")
    except BaseException:
      fm.close()
      raise
    return fm, latest

  def _load_pretrained(self, state: TrainState, fm: ckpt_lib.Checkpointer, ckpt_id: int
                       ) -> TrainState:
    template = {"params": state.params, "model_state": state.model_state}
    try:
      loaded, _ = fm.restore(ckpt_id, template,
                             jax.tree_util.tree_map(lambda _: self.repl, template))
    finally:
      fm.close()
    return state.replace(params=loaded["params"], model_state=loaded["model_state"])

  def _save_float_model(self, state: TrainState, float_top1: float) -> None:
    """Saves the float model for ``--pretrained``, replacing one that holds other weights."""
    path = os.path.join(self.workdir, "float_model")
    with ckpt_lib.Checkpointer(path, max_to_keep=1) as fm:
      fm.save(0, {"params": state.params, "model_state": state.model_state},
              {"model": self.cfg.model, "dataset": self.cfg.dataset, "float_top1": float_top1,
               "step": int(state.step), "data_fingerprint": dict(self.data.info.fingerprint)},
              replace=True)

  # ------------------------------------------------------------------------------------------
  def _open(self) -> Tuple[ckpt_lib.Checkpointer, TrainState, Dict, float, bool]:
    """Claims the workdir and opens its checkpoints: ``(ckpt, state, results, wall, resumed)``.

    Everything is checked before anything is created: the workdir (writable; a fresh start
    only in an empty directory or one whose ``run.json`` records this run) and --pretrained.
    With several processes, each checks the same directory state before process 0 writes.
    """
    cfg = self.cfg
    workdir_lib.check_writable(self.workdir)
    resuming = ckpt_lib.has_checkpoint_files(self.ckpt_dir)
    ident = self.identity()
    if not resuming:
      workdir_lib.check_fresh_start(self.workdir, ident)
    # With several processes only the --pretrained directory check comes first: the orbax
    # managers must be opened in the same order in every process.
    pretrained = None
    if cfg.pretrained and not resuming:
      self._pretrained_dir()
      if jax.process_count() == 1:
        pretrained = self._open_pretrained()
    try:
      sharding_lib.barrier("ebsp_jax.trainer.workdir_checked")
      os.makedirs(self.workdir, exist_ok=True)
      if self.primary and not resuming:
        workdir_lib.write_marker(self.workdir, ident)  # before anything else is created
      ckpt = ckpt_lib.Checkpointer(self.ckpt_dir, cfg.keep_checkpoints)
    except BaseException:
      if pretrained is not None:
        pretrained[0].close()
      raise
    try:
      opened = self.restore_or_init(ckpt, pretrained)
      if self.primary and resuming and workdir_lib.read_marker(self.workdir) != ident:
        workdir_lib.write_marker(self.workdir, ident)   # a run from before markers, or moved
    except BaseException:
      ckpt.close()
      raise
    return (ckpt,) + opened

  def run(self) -> Dict[str, Any]:
    """Runs (or resumes) the whole pipeline; returns the results (also in results.json)."""
    t_start = time.time()
    cfg = self.cfg
    ckpt, state, results, wall_before, resumed = self._open()
    step = int(state.step)
    writer = MetricWriter(self.workdir, resume_step=step if resumed else None,
                          enabled=self.primary)
    progress = Progress(self.total_steps, cfg.batch_size, self.progress_stream, self.primary)
    progress.message(
        f"{cfg.model} on {cfg.dataset}: {self.data.info.num_train} train / "
        f"{self.data.info.num_eval} eval examples, {self.data.info.steps_per_epoch} steps/epoch, "
        f"phases float {self.steps['float']} + admm {self.steps['admm']} + finetune "
        f"{self.steps['finetune']} = {self.total_steps} steps, {cfg.weights_text()}, "
        f"activations {cfg.activation_bits or 'float'}, {jax.device_count()} device(s)"
        + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
        + (f"; resumed at step {step} ({state.phase})" if resumed else ""))
    for note in self.notes if resumed else ():
      progress.message(f"warning: {note}")
      if not _is_final(results):
        results.setdefault("warnings", []).append(note)
    self._loop_time, self._loop_steps = 0.0, 0

    def wall():
      return wall_before + time.time() - t_start

    try:
      while True:
        want = self.phase_at(int(state.step))
        if state.phase != want:
          # The trained state first (a no-op when this step is checkpointed already): a failed
          # evaluation below then loses no training, and rerunning repeats only the change.
          self.save(ckpt, state, results, wall())
          try:
            state, results = self._change_phase(state, results, writer, progress, ckpt)
          except (ckpt_lib.CheckpointError, divergence.DivergenceError):
            raise
          except Exception as e:  # noqa: BLE001 - re-raised as one line, traceback in a file
            raise self._evaluation_error(state, want, e) from e
          if state.phase == "done":   # checkpointed with the final state: a rerun rewrites them
            results = self._final_results(state, results, wall())
          self.save(ckpt, state, results, wall())
          continue
        if want == "done":
          break
        state = self._train_phase(state, ckpt, writer, progress, results, wall)
      path = os.path.join(self.workdir, RESULTS_FILE)
      if not _is_final(results):  # a done checkpoint of an older version, without them
        old = _load_json(path)
        if old is not None:
          progress.message(f"finished run of an older version: {path} left as it is")
          return old
        results = self._final_results(state, results, wall())
      if self.primary:
        files.write_json_atomic(path, results)
        _write_params_npz(os.path.join(self.workdir, PARAMS_FILE), state.params)
        export_model.write(self, state)      # quantized_model.safetensors (docs/artifact.md)
        if os.path.exists(os.path.join(self.workdir, ERROR_FILE)):   # an earlier try's
          os.remove(os.path.join(self.workdir, ERROR_FILE))
      progress.message(
          f"done in {format_duration(results['wall_seconds'])}: float_top1 "
          f"{_fmt(results.get('float_top1'))}, quant_top1 {_fmt(results.get('quant_top1'))}, "
          f"integer_top1 {_fmt(results.get('integer_top1'))} -> {path}")
      return results
    finally:
      writer.close()
      ckpt.close()

  def _evaluation_error(self, state: TrainState, want: str, e: Exception) -> EvaluationError:
    """The one-line error of a failed phase change (its traceback goes to ``ERROR_FILE``)."""
    path = os.path.join(self.workdir, ERROR_FILE)
    if self.primary:
      files.write_text_atomic(path, "".join(traceback.format_exception(type(e), e,
                                                                       e.__traceback__)))
    what = "the final evaluation" if want == "done" else f"entering phase '{want}'"
    first = str(e).splitlines()[0] if str(e) else ""
    hint = (", or add --nointeger_eval to skip the integer mode"
            if want == "done" and self.cfg.integer_eval else "")
    return EvaluationError(
        f"{what} failed at step {int(state.step)}: {type(e).__name__}"
        f"{': ' + first if first else ''} (traceback in {path}); the trained state is "
        f"checkpointed in {self.ckpt_dir}: rerun the same command to retry{hint}")

  def _change_phase(self, state, results, writer, progress, ckpt):
    results = dict(results)
    step = int(state.step)
    if state.phase == "float":
      ev = self.evaluate(state, "float")
      divergence.check_finite_results(ev, f"the float model's evaluation at step {step}",
                                      functools.partial(self._divergence_advice, ckpt, "float"))
      results["float_top1"] = ev["top1"]
      results["float_loss"] = ev["loss"]
      writer.write(step, {"eval/float_top1": ev["top1"], "eval/float_loss": ev["loss"]}, "float")
      progress.message(f"float model: top1 {ev['top1']:.4f} (loss {ev['loss']:.4f}, "
                       f"{ev['count']} examples)")
      self._save_float_model(state, ev["top1"])  # every process (orbax coordinates)
    state = self._advance_jit(state)
    progress.message(f"step {step}: entering phase '{state.phase}'")
    if state.phase == "finetune":
      ev = self.evaluate(state, "quant")
      results["projected_top1"] = ev["top1"]
      writer.write(step, {"eval/projected_top1": ev["top1"]}, "finetune")
      progress.message(f"hard projection: fake-quant top1 {ev['top1']:.4f}")
    if state.phase == "done":
      ev = self.evaluate(state, "quant")
      results["quant_top1"] = ev["top1"]
      results["quant_loss"] = ev["loss"]
      writer.write(step, {"eval/quant_top1": ev["top1"]}, "done")
      progress.message(f"final fake-quant model: top1 {ev['top1']:.4f}")
      if self.cfg.integer_eval:
        top1, note, overflows, float_ops = self.integer_eval(state)
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
      progress.message(f"integer mode: top1 {_fmt(top1)} ({note}{over}{in_float})")
      results["layers"] = evaluation.layer_stats(sharding_lib.to_local(state.params), self.rule,
                                                 sharding_lib.to_local(state.weight_scales))
      if writer.enabled:
        writer.histograms(step, evaluation.weight_histograms(
            sharding_lib.to_local(state.params), self.rule,
            sharding_lib.to_local(state.weight_scales)))
    writer.flush()
    return state, results

  def _train_phase(self, state, ckpt, writer, progress, results, wall):
    cfg = self.cfg
    phase = state.phase
    _, end = self.bounds[phase]
    fn = self.train_fn(phase)
    step = int(state.step)
    batches = self.data.train_iter(step)
    last_print = time.perf_counter()
    progress.start(step)
    t_phase, n_phase = time.perf_counter(), 0
    first = True
    monitor = divergence.Monitor(phase, divergence.uniform_loss(self.data.info.num_classes),
                                 functools.partial(self._divergence_advice, ckpt, phase))
    while step < end:
      batch = sharding_lib.shard_local_batch(next(batches), self.mesh, cfg.batch_size)
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
          scalars.update(jax.device_get(self._telemetry_fn(
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
        self.save(ckpt, state, results, wall())
        writer.flush()
    jax.block_until_ready(state.params)
    self._loop_time += time.perf_counter() - t_phase
    self._loop_steps += n_phase
    return state

  def _final_results(self, state: TrainState, results: Dict[str, Any], wall: float):
    cfg = self.cfg
    out = dict(results)
    override, fl = cfg.first_last_pattern()
    quantized = sum(w.size for _, _, w, _ in evaluation.quantized_leaves(
        state.params, self.rule, state.weight_scales))
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
        "phase_steps": dict(self.steps),
        "steps_per_epoch": self.data.info.steps_per_epoch,
        "train_examples": self.data.info.num_train,
        "eval_examples": self.data.info.num_eval,
        "wall_seconds": wall,
        "train_steps_per_second": (self._loop_steps / self._loop_time
                                   if self._loop_time > 0 else None),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "jax_version": jax.__version__,
        "config": _jsonable(dict(cfg.fingerprint())),
        "data_fingerprint": dict(self.data.info.fingerprint),
        "warnings": list(results.get("warnings", [])),
    })
    return out


def _write_params_npz(path: str, params: PyTree) -> None:
  local = sharding_lib.to_local(params)
  files.write_npz_atomic(path, {path_str(p): np.asarray(v) for p, v in
                                jax.tree_util.tree_flatten_with_path(local)[0]})


def _is_final(results: Dict[str, Any]) -> bool:
  """Whether ``results`` are a run's final results (only :meth:`Experiment._final_results`
  records the wall time in them)."""
  return "wall_seconds" in results


def _load_json(path: str):
  """The JSON content of ``path``, or None if it is missing or unreadable."""
  try:
    return cli.load_json(path, path)
  except ValueError:
    return None


def _describe(ckpt_id: int) -> str:
  """``step S, phase 'P'`` of a checkpoint id (``4 * step + phase index``)."""
  return f"step {ckpt_id // 4}, phase '{PHASES[ckpt_id % 4]}'"


def _z_tree(opt_state):
  states = admm_lib.find_admm_states(opt_state)
  return states[0].z if states else None


def _ckpt_id(state: TrainState) -> int:
  return 4 * int(state.step) + PHASES.index(state.phase)


def _strong(tree):
  """Drops weak types so fresh and restored states give the same jit signature."""
  return jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)


def _jsonable(d):
  return json.loads(json.dumps(d, default=str))


def _fmt(v) -> str:
  return "n/a" if v is None else f"{v:.4f}"


def run(cfg: TrainConfig, stream: TextIO = sys.stdout) -> Dict[str, Any]:
  """Runs (or resumes) an experiment; see :class:`Experiment`."""
  return Experiment(cfg, stream).run()
