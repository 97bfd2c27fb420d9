"""Tests of the phase schedule, the optimizer of each phase and the phase changes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax import admm as admm_lib
from ebsp_jax import models, quant
from ebsp_jax.numerics import project
from ebsp_jax.train import evaluation, phases
from ebsp_jax.train.config import TrainConfig


def _cfg(**kw):
  base = dict(dataset="fashion_mnist", model="lenet5", workdir="/tmp/x", warmup_epochs=0.0)
  base.update(kw)
  return TrainConfig(**base)


def test_schedule_rounds_epochs_to_steps_and_skips_empty_phases():
  s = phases.schedule(_cfg(float_epochs=1.5, admm_epochs=1.0, finetune_epochs=0.5), 4)
  assert dict(s.steps) == {"float": 6, "admm": 4, "finetune": 2} and s.total == 12
  assert s.bounds == {"float": (0, 6), "admm": (6, 10), "finetune": (10, 12)}
  assert [s.phase_at(t) for t in (0, 5, 6, 9, 10, 11, 12, 99)] == [
      "float", "float", "admm", "admm", "finetune", "finetune", "done", "done"]
  no_admm = phases.schedule(_cfg(float_epochs=1.0, admm_epochs=0.0, finetune_epochs=1.0), 3)
  assert [no_admm.phase_at(t) for t in (2, 3, 5, 6)] == ["float", "finetune", "finetune",
                                                         "done"]


@pytest.mark.parametrize("name", ["constant", "geometric", "balance"])
def test_rho_policy_starts_at_admm_rho(name):
  policy = phases.rho_policy(_cfg(admm_rho_policy=name, admm_rho=0.01))
  assert float(policy.init()) == pytest.approx(0.01)


def test_rho_policies_differ_in_their_updates():
  cfg = dict(admm_rho=0.01, admm_rho_growth=2.0, admm_rho_max=1.0)
  rho, one = jnp.float32(0.01), jnp.float32(1.0)
  const = phases.rho_policy(_cfg(admm_rho_policy="constant", **cfg)).update(rho, 1, one, one)
  geo = phases.rho_policy(_cfg(admm_rho_policy="geometric", **cfg)).update(rho, 1, one, one)
  assert float(const) == pytest.approx(0.01) and float(geo) == pytest.approx(0.02)


def _params():
  k = jax.random.normal(jax.random.key(1), (3, 3, 1, 4)) * 0.1
  return {"conv1": {"kernel": k, "bias": jnp.full((4,), 0.5)}}


def test_float_optimizer_decays_kernels_only():
  cfg = _cfg(float_epochs=1.0, admm_epochs=0.0, finetune_epochs=0.0, optimizer="sgd",
             momentum=0.0, weight_decay=0.1, learning_rate=0.5)
  tx = phases.optimizer(cfg, "float", phases.schedule(cfg, 10), phases.weight_rule(cfg))
  params = _params()
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["conv1"]["kernel"], -0.5 * 0.1 * params["conv1"]["kernel"],
                             rtol=1e-6)
  np.testing.assert_array_equal(updates["conv1"]["bias"], np.zeros(4))


def test_finetune_optimizer_freezes_the_quantized_weights():
  cfg = _cfg(optimizer="sgd", momentum=0.0, finetune_learning_rate=0.5)
  tx = phases.optimizer(cfg, "finetune", phases.schedule(cfg, 10), phases.weight_rule(cfg))
  params = _params()
  ones = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = tx.update(ones, tx.init(params), params)
  np.testing.assert_array_equal(updates["conv1"]["kernel"], np.zeros((3, 3, 1, 4)))
  np.testing.assert_allclose(updates["conv1"]["bias"], np.full(4, -cfg.effective_finetune_lr),
                             rtol=1e-6)


def test_phase_changes_from_init_to_done():
  """float -> admm (ADMM state, quant_stats) -> finetune (weights on the grid) -> done, jitted
  as the trainer runs them."""
  cfg = _cfg(activation_bits=8, float_epochs=1.0, admm_epochs=1.0, finetune_epochs=1.0)
  rule = phases.weight_rule(cfg)
  txs = {p: phases.optimizer(cfg, p, phases.schedule(cfg, 2), rule)
         for p in phases.TRAINING_PHASES}
  float_model = models.get_model("lenet5", num_classes=10)
  quant_model = models.get_model("lenet5", num_classes=10,
                                 **quant.fake_quant_injection(activation_bits=8))
  x = jnp.zeros((2, 28, 28, 1))
  s = jax.jit(lambda k: phases.init_state(k, float_model, txs["float"], x))(jax.random.key(0))
  assert s.phase == "float" and int(s.step) == 0 and s.weight_scales is None
  assert "quant_stats" not in s.model_state
  s = jax.jit(lambda s: phases.advance(s, txs, quant_model, x))(s)
  assert s.phase == "admm" and "quant_stats" in s.model_state
  assert admm_lib.find_admm_states(s.opt_state)
  s = jax.jit(lambda s: phases.advance(s, txs))(s)
  assert s.phase == "finetune" and not admm_lib.find_admm_states(s.opt_state)
  leaves = list(evaluation.quantized_leaves(s.params, rule, s.weight_scales))
  assert len(leaves) == 5   # lenet5's conv and dense kernels
  for _, fmt, w, scale in leaves:
    np.testing.assert_array_equal(w, project(w, fmt, scale))
  assert phases.advance(s, txs).phase == "done"
