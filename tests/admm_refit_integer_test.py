"""ADMM with refit scales into the integer mode: the scales must match the finalized weights.

The audit repro: ``admm.finalize(params, state, refit_scales=True)`` projects at refit scales;
``to_integer(..., weight_scales=admm.tree_scales(params, state))`` (the ADMM state's scales)
then re-rounds the weights (a ~10% logit error), while the scales from
``finalize(..., return_scales=True)`` reproduce the fake-quant model.
"""

from __future__ import annotations

import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ebsp_jax import BitPattern, admm, make_rule, quant, uniform


class _Net(nn.Module):
  dot_general_cls: Any = None
  conv_general_dilated_cls: Any = None

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), conv_general_dilated_cls=self.conv_general_dilated_cls, name="stem")(x)
    x = nn.relu(x).mean(axis=(1, 2))
    x = nn.relu(nn.Dense(16, dot_general_cls=self.dot_general_cls, name="fc")(x))
    return nn.Dense(10, dot_general_cls=self.dot_general_cls, name="head")(x)


def test_refit_finalize_scales_reproduce_fake_quant_in_integer_mode():
  x = jax.random.normal(jax.random.key(0), (16, 10, 10, 3))
  labels = jax.random.randint(jax.random.key(5), (16,), 0, 10)
  rule = make_rule(BitPattern(6, 3), overrides=[("^stem/", uniform(8)),
                                                ("^head/", BitPattern(5, 2))])
  fq = _Net(**quant.fake_quant_injection(6))
  variables = fq.init(jax.random.key(1), x, train=False)
  params, other = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  tx = optax.chain(admm.admm(rule, rho=1e-2, update_every=5), optax.adam(1e-2))
  state = tx.init(params)

  def loss_fn(p, other, state):
    out, upd = fq.apply({**other, "params": admm.straight_through(p, state)}, x, train=True,
                        mutable=["quant_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), upd

  @jax.jit
  def step(p, other, state):
    (_, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(p, other, state)
    u, state = tx.update(g, state, p)
    return optax.apply_updates(p, u), {**other, **upd}, state

  for _ in range(12):
    params, other, state = step(params, other, state)
  final, scales = admm.finalize(params, state, refit_scales=True, return_scales=True)
  v = {**other, "params": final}
  ref = fq.apply(v, x, train=False)

  def max_error(weight_scales):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")   # quantize_weights warns about off-grid weights
      im = quant.to_integer(_Net(), v, weight_rule=admm.tree_rule(state),
                            weight_scales=weight_scales, activation_bits=6)
    return float(jnp.max(jnp.abs(im.apply(x) - ref)))

  top = float(jnp.max(jnp.abs(ref)))
  assert max_error(scales) <= 1e-4 * top                       # the refit scales: exact
  # The ADMM state's scales do not fit the refit weights (what tree_scales documents).
  assert max_error(admm.tree_scales(final, state)) > 1e-2 * top
