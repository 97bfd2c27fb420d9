"""Unit tests of the pure step functions on a tiny model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebsp_jax import admm as admm_lib
from ebsp_jax.numerics import BitPattern, make_rule, project
from ebsp_jax.train import evaluation
from ebsp_jax.train.steps import TrainState, cross_entropy, eval_step, train_step


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(8, name="fc1")(x)
    x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
    return nn.Dense(3, name="head")(nn.relu(x))


def _setup(tx, phase="float"):
  model = Tiny()
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 2, 2, 1))
  y = jnp.arange(16) % 3
  v = model.init(jax.random.PRNGKey(1), x)
  params = v["params"]
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     model_state={"batch_stats": v["batch_stats"]}, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(2), phase=phase)
  return model, state, {"image": x, "label": y}


def test_train_step_decreases_loss_and_updates_batch_stats():
  tx = optax.adam(0.05)
  model, state, batch = _setup(tx)
  step = jax.jit(lambda s, b: train_step(s, b, apply_fn=model.apply, tx=tx))
  losses = []
  for _ in range(20):
    new, m = step(state, batch)
    losses.append(float(m["loss"]))
    state = new
  assert losses[-1] < losses[0]
  assert int(state.step) == 20
  assert not np.allclose(state.model_state["batch_stats"]["bn"]["mean"], 0.0)


def test_admm_step_forward_uses_projected_weights():
  rule = make_rule(BitPattern(4, 2))
  tx = optax.chain(admm_lib.admm(rule, rho=0.1), optax.sgd(0.0))  # lr 0: only look at the loss
  model, state, batch = _setup(tx, phase="admm")
  step = jax.jit(lambda s, b, st: train_step(s, b, apply_fn=model.apply, tx=tx,
                                             straight_through=st), static_argnums=2)
  _, m_st = step(state, batch, True)
  _, m_plain = step(state, batch, False)
  proj = admm_lib.finalize(state.params, state.opt_state)
  logits = model.apply({"params": proj, **state.model_state}, batch["image"], train=True,
                       mutable=["batch_stats"])[0]
  expect = jnp.mean(cross_entropy(logits, batch["label"]))
  np.testing.assert_allclose(m_st["loss"], expect, rtol=1e-6)
  assert abs(float(m_st["loss"]) - float(m_plain["loss"])) > 1e-7
  assert {"admm/rho", "admm/primal_residual", "admm/primal_residual_now"} <= set(m_st)


def test_eval_step_masks_padding():
  tx = optax.sgd(0.1)
  model, state, batch = _setup(tx)
  padded = evaluation.pad_batch({k: np.asarray(v)[:10] for k, v in batch.items()}, 16)
  ev = jax.jit(lambda p, s, b: eval_step(p, s, b, apply_fn=model.apply))
  out = ev(state.params, state.model_state, padded)
  full = ev(state.params, state.model_state,
          dict({k: np.asarray(v)[:10] for k, v in batch.items()}, mask=np.ones(10)))
  assert int(out["count"]) == 10
  assert int(out["correct"]) == int(full["correct"])
  np.testing.assert_allclose(out["loss_sum"], full["loss_sum"], rtol=1e-6)
  with pytest.raises(ValueError, match="exceeds"):
    evaluation.pad_batch({k: np.asarray(v) for k, v in batch.items()}, 8)


def test_pattern_telemetry_and_layer_stats():
  rule = make_rule(BitPattern(6, 3))
  params = {"fc": {"kernel": jax.random.normal(jax.random.PRNGKey(0), (16, 4)), "bias": jnp.ones(4)}}
  state = admm_lib.admm(rule).init(params)
  scales = admm_lib.tree_scales(params, state)
  tel = jax.jit(lambda p, s, z: evaluation.pattern_telemetry(p, rule, s, BitPattern(6, 3), z=z))(
      params, scales, state.z)
  assert 0 <= float(tel["pattern/zero_fraction"]) <= 1
  assert float(tel["pattern/z_agreement"]) == 1.0  # Z is the projection of W at init
  shifts = sum(float(tel[f"pattern/shift_{k}"]) for k in range(BitPattern(6, 3).max_shift + 1))
  assert shifts == pytest.approx(1.0)
  proj = {"fc": {"kernel": project(params["fc"]["kernel"], BitPattern(6, 3),
                                   scales["fc"]["kernel"]), "bias": params["fc"]["bias"]}}
  stats = evaluation.layer_stats(proj, rule, scales)
  assert stats["fc/kernel"]["on_grid"] and stats["fc/kernel"]["pattern"] == "6b(L3)"
  assert not evaluation.layer_stats(params, rule, scales)["fc/kernel"]["on_grid"]


def test_pattern_telemetry_skips_huge_histograms():
  rule = make_rule(BitPattern(16, 15))
  params = {"fc": {"kernel": jax.random.normal(jax.random.PRNGKey(0), (8, 4))}}
  state = admm_lib.admm(rule).init(params)
  tel = evaluation.pattern_telemetry(params, rule, admm_lib.tree_scales(params, state),
                                     BitPattern(16, 15))
  assert len(tel) < 10 and "pattern/rel_error" in tel
