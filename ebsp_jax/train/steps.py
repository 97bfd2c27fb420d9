"""The training state and the pure step functions (jit them with the model/optimizer bound).

Nothing here touches files, flags or devices: ``train_step`` and ``eval_step`` are pure
functions of arrays, so the same code runs on one device, data-parallel over a mesh (jit + sharded
inputs), and inside tests.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import chex
import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct

from ebsp_jax import admm as admm_lib
from ebsp_jax.train import divergence

PyTree = Any


@struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly.

  Attributes:
    step: int32 global step (= number of training batches consumed = data position).
    params: the model parameters ``W``.
    model_state: non-parameter collections (``batch_stats``, ``quant_stats``), possibly empty.
    opt_state: the current phase's optimizer state (ADMM's Z/U/scales/ρ during ``admm``).
    rng: PRNG key; step ``t`` uses ``fold_in(rng, t)`` (dropout), so it never changes.
    weight_scales: after the hard projection, the scale of every quantized leaf (``None`` at
      float leaves); ``None`` before.
    phase: ``float`` | ``admm`` | ``finetune`` | ``done`` (static: it fixes the structure).
  """

  step: jax.Array
  params: PyTree
  model_state: Dict[str, PyTree]
  opt_state: PyTree
  rng: jax.Array
  weight_scales: PyTree = None
  phase: str = struct.field(pytree_node=False, default="float")


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing."""
  num_classes = logits.shape[-1]
  onehot = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    onehot = onehot * (1 - label_smoothing) + label_smoothing / num_classes
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)


def _apply(apply_fn, variables, images, *, train: bool, mutable, rng):
  if mutable:
    logits, new_state = apply_fn(variables, images, train=train, mutable=list(mutable),
                                 rngs={"dropout": rng})
    return logits, dict(flax.core.unfreeze(new_state))
  logits = apply_fn(variables, images, train=train, rngs={"dropout": rng})
  return logits, {}


def train_step(state: TrainState, batch: Mapping[str, jax.Array], *,
               apply_fn: Callable[..., Any], tx: optax.GradientTransformation,
               straight_through: bool = False, label_smoothing: float = 0.0,
               model_input: Optional[Callable[[jax.Array], jax.Array]] = None
               ) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One optimizer step on one (global) batch.

  Args:
    state: the training state.
    batch: ``{'image': float (N, H, W, C), 'label': int (N,)}`` (uint8 images with
      ``model_input``).
    apply_fn: ``model.apply``.
    model_input: images -> the model's float input (e.g. the dataset's
      :func:`ebsp_jax.data.device.model_input`: uint8 batches normalized here); None: as given.
    tx: the phase's optimizer (``state.opt_state`` is its state).
    straight_through: forward with ``admm.straight_through(params, opt_state)`` (projected
      weights, straight-through gradient): the ADMM phase of the method.
    label_smoothing: cross-entropy label smoothing.

  Returns:
    ``(new_state, metrics)`` with scalar ``loss``, ``accuracy``, ``grad_norm``, ``lr``-free
    metrics and, during ADMM, ρ and the residuals; the bools ``finite_loss`` and
    ``finite_state`` (params, model and optimizer state) of :func:`.divergence.finite_flags`.
  """
  chex.assert_rank(batch["image"], 4)
  images = batch["image"] if model_input is None else model_input(batch["image"])
  rng = jax.random.fold_in(state.rng, state.step)
  mutable = tuple(sorted(state.model_state))

  def loss_fn(params):
    fwd = admm_lib.straight_through(params, state.opt_state) if straight_through else params
    logits, new_model_state = _apply(apply_fn, {"params": fwd, **state.model_state},
                                     images, train=True, mutable=mutable, rng=rng)
    loss = jnp.mean(cross_entropy(logits, batch["label"], label_smoothing))
    return loss, (logits, new_model_state)

  (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
      "loss": loss,
      "accuracy": jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)),
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(params),
  }
  if state.phase == "admm":
    metrics.update(admm_lib.admm_metrics(opt_state))
    metrics["admm/primal_residual_now"] = admm_lib.primal_residual(params, opt_state)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            model_state={**state.model_state, **new_model_state})
  metrics.update(divergence.finite_flags(loss, params, new_state.model_state, opt_state))
  return new_state, metrics


def eval_step(params: PyTree, model_state: Mapping[str, PyTree], batch: Mapping[str, jax.Array],
              *, apply_fn: Callable[..., Any],
              model_input: Optional[Callable[[jax.Array], jax.Array]] = None
              ) -> Dict[str, jax.Array]:
  """Sums over one evaluation batch (inference mode, nothing mutated).

  Args:
    params: the parameters to evaluate (already projected for the quantized modes).
    model_state: ``batch_stats`` / ``quant_stats``.
    batch: ``image``, ``label`` and a float ``mask`` (1 real example, 0 padding).
    apply_fn: ``model.apply``.
    model_input: as in :func:`train_step`.

  Returns:
    ``{'correct': int32, 'count': int32, 'loss_sum': float32}`` over the real examples.
  """
  images = batch["image"] if model_input is None else model_input(batch["image"])
  logits = apply_fn({"params": params, **model_state}, images, train=False)
  mask = batch["mask"]
  correct = (jnp.argmax(logits, -1) == batch["label"]) & (mask > 0)
  loss = cross_entropy(logits, batch["label"]) * mask
  return {"correct": jnp.sum(correct.astype(jnp.int32)),
          "count": jnp.sum((mask > 0).astype(jnp.int32)),
          "loss_sum": jnp.sum(loss)}


def count_params(params: PyTree) -> int:
  """Number of scalars in a params pytree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
