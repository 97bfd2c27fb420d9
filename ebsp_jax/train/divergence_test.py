"""Non-finite steps stop a run at the first bad step; a runaway loss warns once."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.train import divergence


def _flags(loss, state_ok=True):
  return divergence.finite_flags(jnp.float32(loss), {"w": jnp.float32(0.0 if state_ok else np.nan)})


def test_finite_flags_and_tree_all_finite():
  f = divergence.finite_flags(jnp.float32(1.0), {"w": jnp.ones(3), "n": jnp.int32(7)}, None)
  assert bool(f["finite_loss"]) and bool(f["finite_state"])
  f = divergence.finite_flags(jnp.float32(np.inf), {"w": jnp.array([1.0, np.nan])})
  assert not bool(f["finite_loss"]) and not bool(f["finite_state"])
  assert bool(divergence.tree_all_finite({}))                   # nothing to check
  assert not bool(divergence.tree_all_finite([jnp.float32(np.inf), -jnp.ones(2) * np.inf]))
  assert not bool(divergence.tree_all_finite({"b": jnp.array([1.0, np.nan], jnp.bfloat16)}))
  assert divergence.host_all_finite({"a": jnp.ones(2), "k": jnp.uint32(3)})
  assert not divergence.host_all_finite({"a": jnp.array([0.0, -np.inf])})
  metrics, flags = divergence.pop_flags({"loss": 1.0, **f})
  assert metrics == {"loss": 1.0} and set(flags) == set(divergence.FLAG_KEYS)


def test_monitor_raises_at_the_first_non_finite_step():
  m = divergence.Monitor("admm", math.log(10), lambda: "kept step 4")
  for step, loss, ok in [(5, 2.0, True), (6, 1.5, True), (7, np.nan, False), (8, np.nan, False)]:
    m.record(step, jnp.float32(loss), _flags(loss, ok))
  with pytest.raises(divergence.DivergenceError) as e:
    m.check()
  assert str(e.value) == ("training diverged at step 7 (phase 'admm'): the loss is nan and the "
                          "parameters or optimizer state are no longer finite; kept step 4")
  m.record(9, jnp.float32(1.0), _flags(1.0, state_ok=False))
  with pytest.raises(divergence.DivergenceError, match="step 9 .* the loss is 1 and the param"):
    m.check()


def test_monitor_warns_once_when_the_loss_runs_away():
  m = divergence.Monitor("float", math.log(10), lambda: "")
  for step, loss in enumerate([2.3, 2.1, 5.0, 22.9], 1):   # below 10 x 2.3
    m.record(step, jnp.float32(loss), _flags(loss))
  assert m.check() is None
  m.record(5, jnp.float32(4e16), _flags(4e16))
  warning = m.check()
  assert warning.startswith("the float loss grew to 4e+16 at step 5, 1.74e+16 x its start (2.303)")
  m.record(6, jnp.float32(5e16), _flags(5e16))
  assert m.check() is None                                     # once per phase
  # The start is at least ln(num_classes): a phase that starts near 0 does not warn at 0.1.
  m = divergence.Monitor("finetune", math.log(10), lambda: "")
  for step, loss in enumerate([0.01, 0.1, 2.0], 1):
    m.record(step, jnp.float32(loss), _flags(loss))
  assert m.check() is None and m.start == pytest.approx(math.log(10))


def test_check_finite_results():
  divergence.check_finite_results({"top1": 0.5, "layers": {"a": {"z": 0.1}}}, "x", None)
  with pytest.raises(divergence.DivergenceError,
                     match="^the results at step 3: 'quant_loss' is nan; start over$"):
    divergence.check_finite_results({"quant_loss": float("nan")}, "the results at step 3",
                                    lambda: "start over")


def test_advice_names_the_phase_learning_rate_and_what_was_kept():
  from ebsp_jax.train.config import TrainConfig  # pylint: disable=g-import-not-at-top
  cfg = TrainConfig(dataset="fashion_mnist", model="lenet5", workdir="/w", learning_rate=100.0)
  assert divergence.advice(cfg, "admm", "step 3, phase 'admm'", "/w/c") == (
      "nothing from that step on was saved (the last checkpoint (step 3, phase 'admm') in /w/c "
      "holds finite values) and no results were written; the same command would diverge again: "
      "start over in another --workdir with a lower --admm_learning_rate (now 10)")
  assert "(no checkpoint was saved)" in divergence.advice(cfg, "float", None, "/w/c")
  assert divergence.advice(cfg, "float", None, "/w/c").endswith("--learning_rate (now 100)")
