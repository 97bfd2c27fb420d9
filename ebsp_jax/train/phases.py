"""The phases of a run, as pure functions of its configuration.

The global step counts training batches over all phases; the phase of step ``t`` follows from
the configured epoch counts (:class:`Schedule`)::

    [0, F)            float      plain training (or continue from --pretrained)
    [F, F+A)          admm       ADMM QAT onto the pattern grids, forward with projected weights
                                 and fake-quantized activations
    [F+A, F+A+T)      finetune   weights hard-projected and frozen; what stays float trains
    F+A+T             done       final evaluation

Also here: which weights are quantized (:func:`weight_rule`), each phase's optimizer
(:func:`optimizer`, with the ADMM ρ policy), the state at step 0 (:func:`init_state`) and the
state after a phase change (:func:`advance`), so a resumed run makes exactly the same change.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from ebsp_jax import admm as admm_lib
from ebsp_jax import models
from ebsp_jax.numerics import make_rule
from ebsp_jax.numerics.tree import Rule, path_str
from ebsp_jax.train.config import PHASES, TrainConfig
from ebsp_jax.train.steps import TrainState

PyTree = Any
#: The phases that train (``done`` only evaluates).
TRAINING_PHASES = PHASES[:3]


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How many steps each training phase takes.

  Attributes:
    steps: ``{'float': F, 'admm': A, 'finetune': T}``.
    steps_per_epoch: training steps per epoch (the warm-up is given in epochs).
  """

  steps: Mapping[str, int]
  steps_per_epoch: int

  @property
  def bounds(self) -> Dict[str, Tuple[int, int]]:
    """``{phase: (first step, end)}`` of every training phase."""
    f, a, t = (self.steps[p] for p in TRAINING_PHASES)
    return {"float": (0, f), "admm": (f, f + a), "finetune": (f + a, f + a + t)}

  @property
  def total(self) -> int:
    """Training steps of the whole run."""
    return sum(self.steps[p] for p in TRAINING_PHASES)

  def phase_at(self, step: int) -> str:
    """The phase that trains step ``step`` (``'done'`` from the last step on)."""
    for p, (lo, hi) in self.bounds.items():
      if lo <= step < hi:
        return p
    return "done"


def schedule(cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
  """The :class:`Schedule` of ``cfg``'s epoch counts (rounded to whole steps)."""
  return Schedule({p: int(round(getattr(cfg, f"{p}_epochs") * steps_per_epoch))
                   for p in TRAINING_PHASES}, steps_per_epoch)


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


def base_optimizer(cfg: TrainConfig, lr) -> optax.GradientTransformation:
  """SGD (Nesterov momentum when ``cfg.momentum > 0``) or Adam (``b1 = cfg.momentum``) at
  ``lr`` (a float or an optax schedule)."""
  if cfg.optimizer == "sgd":
    return optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.momentum > 0)
  return optax.adam(lr, b1=cfg.momentum)


def _kernel_mask(params: PyTree) -> PyTree:
  return jax.tree_util.tree_map(lambda x: x.ndim > 1, params)


def optimizer(cfg: TrainConfig, phase: str, sched: Schedule, rule: Rule
              ) -> optax.GradientTransformation:
  """The optimizer of training phase ``phase``.

  * float: weight decay on kernels + the base optimizer, linear warm-up then cosine decay.
  * admm: the ADMM transformation onto ``rule``'s grids (ρ per :func:`rho_policy`), then as
    float at ``cfg.effective_admm_lr`` with cosine decay.
  * finetune: the base optimizer at ``cfg.effective_finetune_lr`` with cosine decay on what
    ``rule`` leaves float; the quantized weights are frozen (zero updates).
  """
  n = max(sched.steps[phase], 1)
  if phase == "float":
    warm = min(int(round(cfg.warmup_epochs * sched.steps_per_epoch)), n - 1)
    lr = optax.warmup_cosine_decay_schedule(0.0 if warm else cfg.learning_rate,
                                            cfg.learning_rate, max(warm, 0), n, 0.0)
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay, _kernel_mask),
                       base_optimizer(cfg, lr))
  if phase == "admm":
    lr = optax.cosine_decay_schedule(cfg.effective_admm_lr, n)
    return optax.chain(
        admm_lib.admm(rule, rho=rho_policy(cfg), update_every=cfg.admm_update_every,
                      per_channel=cfg.per_channel),
        optax.add_decayed_weights(cfg.weight_decay, _kernel_mask),
        base_optimizer(cfg, lr))
  lr = optax.cosine_decay_schedule(cfg.effective_finetune_lr, n)

  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda p, w: "frozen" if rule(path_str(p), w) is not None else "train", params)

  return optax.multi_transform({"train": base_optimizer(cfg, lr),
                                "frozen": optax.set_to_zero()}, labels)


def init_state(rng: jax.Array, model, tx: optax.GradientTransformation,
               x: jax.Array) -> TrainState:
  """The float-phase state at step 0: ``model`` initialised on the example images ``x``
  (float (N, H, W, C)) with a key split from ``rng`` (the rest becomes ``state.rng``)."""
  init_rng, train_rng = jax.random.split(rng)
  variables = dict(model.init(init_rng, x, train=False))
  params = variables.pop("params")
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                    opt_state=tx.init(params), rng=train_rng, weight_scales=None, phase="float")


def advance(state: TrainState, txs: Mapping[str, optax.GradientTransformation],
            quant_model=None, x: Optional[jax.Array] = None) -> TrainState:
  """The state after the next phase change.

  Entering ``admm``: fresh ``quant_stats`` of ``quant_model`` initialised on ``x`` (``None``:
  float activations, none) and the ADMM optimizer's state. Entering ``finetune``: the weights
  hard-projected (:func:`ebsp_jax.admm.finalize`) with their scales, the fine-tuning
  optimizer's state. Then ``done``.
  """
  nxt = PHASES[PHASES.index(state.phase) + 1]
  if nxt == "admm":
    model_state = dict(state.model_state)
    if quant_model is not None:
      qvars = quant_model.init(jax.random.PRNGKey(0), x, train=False)
      model_state["quant_stats"] = qvars["quant_stats"]
    return state.replace(model_state=model_state, opt_state=txs["admm"].init(state.params),
                         phase="admm")
  if nxt == "finetune":
    params = admm_lib.finalize(state.params, state.opt_state)
    scales = admm_lib.tree_scales(params, state.opt_state)
    return state.replace(params=params, weight_scales=scales,
                         opt_state=txs["finetune"].init(params), phase="finetune")
  return state.replace(phase="done")
