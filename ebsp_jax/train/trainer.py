"""The EBSP pipeline: float training → ADMM QAT → hard projection + fine-tuning → evaluation.

One :class:`Experiment` per run: it builds what the run needs from the configuration (data,
models, the phase schedule and optimizers of :mod:`.phases`, the jitted step and evaluation
functions) and coordinates the jobs done elsewhere: :mod:`.resume` (checkpoints; resume or a
fresh start, :mod:`.pretrained` for ``--pretrained``), :mod:`.loop` (the training loop and the
output files), :mod:`.phase_change` (the evaluations at each phase change, the final results).
Workdir claims, checksums and data fingerprints: :mod:`.workdir`, :mod:`.checkpoint`;
non-finite values stop the run: :mod:`.divergence`.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Dict, List, TextIO, Tuple

import jax
import jax.numpy as jnp

from ebsp_jax import admm as admm_lib
from ebsp_jax import models, quant
from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import evaluation, loop, phases, pretrained, resume
from ebsp_jax.train import sharding as sharding_lib
from ebsp_jax.train import workdir as workdir_lib
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.input_pipeline import Data
from ebsp_jax.train.steps import TrainState, eval_step, train_step

# The names other modules import from here (their homes are the modules above).
from ebsp_jax.train.loop import PARAMS_FILE, RESULTS_FILE  # noqa: F401
from ebsp_jax.train.phase_change import ERROR_FILE, EvaluationError  # noqa: F401
from ebsp_jax.train.phases import check_layer_formats, rho_policy, weight_rule  # noqa: F401


class Experiment:
  """A configured run: data, models, optimizers per phase, jitted functions; :meth:`run` runs
  or resumes it.

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
    self.schedule = phases.schedule(cfg, info.steps_per_epoch)
    self.steps = dict(self.schedule.steps)
    self.bounds = self.schedule.bounds
    self.total_steps = self.schedule.total
    self.float_model = models.get_model(cfg.model, num_classes=info.num_classes)
    self.rule = phases.weight_rule(cfg)
    if cfg.layer_formats is not None:
      phases.check_layer_formats(cfg, self._float_shapes()["params"])
    if cfg.activation_bits:
      dual = {}
      if cfg.dual_lod != "off":
        # Each layer's own pattern length (first/last per --first_last), as the integer mode.
        dual = dict(dual_lod_length=quant.dual_lod_lengths(self.rule,
                                                           self._float_shapes()["params"]),
                    dual_lod_rounding=cfg.dual_lod)
      inj = quant.fake_quant_injection(activation_bits=cfg.activation_bits, **dual)
      self.quant_model = models.get_model(cfg.model, num_classes=info.num_classes, **inj)
    else:
      self.quant_model = self.float_model
    self.txs = {p: phases.optimizer(cfg, p, self.schedule, self.rule)
                for p in phases.TRAINING_PHASES}
    self._train_fns: Dict[str, Any] = {}
    self._eval_fns: Dict[str, Any] = {}
    self.workdir = os.path.abspath(cfg.workdir)
    self.ckpt_dir = os.path.join(self.workdir, "checkpoints")
    #: One-line notices of the last restore (e.g. a checkpoint too old to be verified).
    self.notes: List[str] = []

  def _float_shapes(self):
    return jax.eval_shape(functools.partial(self.float_model.init, train=False),
                          jax.random.key(0), self.data.example_batch()["image"])

  def identity(self) -> Dict[str, Any]:
    """What makes a workdir this run's: the configuration and data fingerprints."""
    return workdir_lib.identity(self.cfg.fingerprint(), self.data.info.fingerprint)

  # ------------------------------------------------------------------------------------------
  # Phases (:mod:`.phases`).
  def phase_at(self, step: int) -> str:
    return self.schedule.phase_at(step)

  def model_for(self, phase: str):
    return self.float_model if phase == "float" else self.quant_model

  def _example_images(self) -> jax.Array:
    return jnp.asarray(self.data.example_batch()["image"])

  def init_state(self, rng: jax.Array) -> TrainState:
    """The float-phase state at step 0 (pure; used under ``eval_shape`` for templates)."""
    return phases.init_state(rng, self.float_model, self.txs["float"], self._example_images())

  def advance(self, state: TrainState) -> TrainState:
    """The state after the next phase change (pure)."""
    quant = self.cfg.activation_bits and state.phase == "float"
    return phases.advance(state, self.txs, self.quant_model if quant else None,
                          self._example_images() if quant else None)

  @functools.cached_property
  def _init_jit(self):
    return jax.jit(lambda rng: _strong(self.init_state(rng)), out_shardings=self.repl)

  @functools.cached_property
  def _advance_jit(self):
    return jax.jit(lambda s: _strong(self.advance(s)), out_shardings=self.repl)

  def initial_state(self) -> TrainState:
    """The state at step 0 of seed ``cfg.seed`` (jitted, replicated over the mesh)."""
    return self._init_jit(jax.random.PRNGKey(self.cfg.seed))

  def next_phase(self, state: TrainState) -> TrainState:
    """:meth:`advance`, jitted (replicated over the mesh)."""
    return self._advance_jit(state)

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
                             label_smoothing=self.cfg.label_smoothing,
                             model_input=self.data.model_input)
      self._train_fns[phase] = jax.jit(fn, out_shardings=self.repl)
    return self._train_fns[phase]

  def eval_fn(self, mode: str):
    if mode not in self._eval_fns:
      model = self.float_model if mode == "float" else self.quant_model
      self._eval_fns[mode] = jax.jit(functools.partial(eval_step, apply_fn=model.apply,
                                                       model_input=self.data.model_input),
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
    datapath = quant.trained_datapath(self.cfg.dual_lod, datapath)
    variables = {"params": state.params, **state.model_state}
    return evaluation.integer_top1(self.cfg.model, variables, self.rule, state.weight_scales,
                                   self.cfg.activation_bits, self.data.eval_batches(), datapath,
                                   model_input=self.data.model_input)

  @functools.cached_property
  def telemetry_fn(self):
    """Jitted ``(params, opt_state) -> scalars`` of the ADMM phase's pattern fit."""
    def fn(params, opt_state):
      states = admm_lib.find_admm_states(opt_state)
      return evaluation.pattern_telemetry(
          params, admm_lib.tree_rule(opt_state), admm_lib.tree_scales(params, opt_state),
          self.cfg.main_pattern(), z=states[0].z if states else None)
    return jax.jit(fn)

  # ------------------------------------------------------------------------------------------
  # Checkpoints (:mod:`.resume`, :mod:`.pretrained`) and the run (:mod:`.loop`).
  def _restore(self, ckpt: ckpt_lib.Checkpointer, latest: int
               ) -> Tuple[TrainState, Dict, float, bool]:
    """Checkpoint ``latest`` of ``ckpt``, validated (:func:`.resume.restore`; its notes go to
    :attr:`notes`)."""
    state, results, wall, self.notes = resume.restore(self, ckpt, latest)
    return state, results, wall, True

  def _save_float_model(self, state: TrainState, float_top1: float) -> None:
    """Saves the float model for ``--pretrained`` (:func:`.pretrained.save_float_model`)."""
    pretrained.save_float_model(self.workdir, self.cfg, state, float_top1,
                                self.data.info.fingerprint)

  def run(self) -> Dict[str, Any]:
    """Runs (or resumes) the whole pipeline; returns the results (also in results.json)."""
    return loop.run(self)


def _strong(tree):
  """Drops weak types so fresh and restored states give the same jit signature."""
  return jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)


def run(cfg: TrainConfig, stream: TextIO = sys.stdout) -> Dict[str, Any]:
  """Runs (or resumes) an experiment; see :class:`Experiment`."""
  return Experiment(cfg, stream).run()
