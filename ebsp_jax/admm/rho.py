"""Penalty-parameter (ρ) policies for :func:`ebsp_jax.admm.admm`.

A policy says how ρ evolves at each Z-step of ADMM. Three families cover the method and its
usual variants (EBSP_SPEC.md §4, Boyd et al. 2011 §3.4.1):

* :func:`constant_rho` — ρ never changes.
* :func:`geometric_rho` — ρ ← min(factor · ρ, max_value) at every Z-step (Leng et al. 2018 grow ρ
  over training so the weights are pulled ever harder onto the grid).
* :func:`residual_balancing_rho` — Boyd's rule: ρ ← τρ when the primal residual exceeds μ times
  the dual one, ρ ← ρ/τ in the opposite case, else unchanged.
* :func:`scheduled_rho` — any optax-style schedule of the Z-step index.

A policy is a pair of pure functions, so it runs under ``jit`` and its ρ lives in the optimizer
state (checkpointed with it). When ρ changes, the ADMM transformation rescales the scaled dual
variable ``U`` by ``ρ_old / ρ_new`` (Boyd §3.4.1) unless told otherwise.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp


class RhoPolicy(NamedTuple):
  """How ρ starts and how it changes at each Z-step.

  Attributes:
    init: ``() -> float``: the initial ρ (> 0).
    update: ``(rho, num_z_steps, primal_residual, dual_residual) -> new rho``, traceable.
      ``num_z_steps`` counts the Z-steps done including the current one (1 at the first),
      the residuals are the global L2 norms of that Z-step (see ``ADMMState``).
    name: for logs and configs.
  """

  init: Callable[[], float]
  update: Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
  name: str = "rho"


def _check_positive(name: str, value: float) -> float:
  value = float(value)
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{name} must be a positive finite number, got {value!r}")
  return value


def constant_rho(value: float) -> RhoPolicy:
  """ρ fixed at ``value``."""
  value = _check_positive("rho", value)
  return RhoPolicy(lambda: value, lambda rho, n, r, s: rho, f"constant({value:g})")


def geometric_rho(init: float, factor: float, max_value: float = math.inf) -> RhoPolicy:
  """ρ multiplied by ``factor`` at every Z-step, capped at ``max_value``.

  Args:
    init: initial ρ.
    factor: growth factor per Z-step (>= 1 grows; any positive value is accepted).
    max_value: cap (inclusive).
  """
  init = _check_positive("rho", init)
  factor = _check_positive("rho factor", factor)
  if not max_value > 0:
    raise ValueError(f"max rho must be positive, got {max_value!r}")

  def update(rho, n, r, s):
    del n, r, s
    return jnp.minimum(rho * factor, max_value).astype(rho.dtype)

  return RhoPolicy(lambda: init, update, f"geometric({init:g}x{factor:g}<={max_value:g})")


def residual_balancing_rho(init: float, mu: float = 10.0, tau: float = 2.0,
                           min_value: float = 0.0, max_value: float = math.inf) -> RhoPolicy:
  """Residual balancing (Boyd et al. 2011, eq. 3.13).

  ``ρ ← τρ`` if ``r > μ s``; ``ρ ← ρ/τ`` if ``s > μ r``; else unchanged; then clipped to
  ``[min_value, max_value]``. ``r`` is the primal residual ``||W − Z||`` and ``s`` the dual
  residual ``ρ ||Z − Z_prev||``.
  """
  init = _check_positive("rho", init)
  mu = _check_positive("mu", mu)
  tau = _check_positive("tau", tau)

  def update(rho, n, r, s):
    del n
    rho_new = jnp.where(r > mu * s, rho * tau, jnp.where(s > mu * r, rho / tau, rho))
    return jnp.clip(rho_new, min_value, max_value).astype(rho.dtype)

  return RhoPolicy(lambda: init, update, f"residual_balancing({init:g},mu={mu:g},tau={tau:g})")


def scheduled_rho(schedule: Callable[[jax.Array], jax.Array]) -> RhoPolicy:
  """ρ given by ``schedule(z_step_index)`` (an optax schedule of the Z-step count).

  The initial ρ is ``schedule(0)``; after the n-th Z-step it is ``schedule(n)``.
  """
  init = float(schedule(0))
  _check_positive("rho", init)

  def update(rho, n, r, s):
    del r, s
    return jnp.asarray(schedule(n), rho.dtype)

  return RhoPolicy(lambda: init, update, "scheduled")


RhoLike = Union[float, RhoPolicy]


def as_policy(rho: RhoLike) -> RhoPolicy:
  """A :class:`RhoPolicy` from a policy or a plain number (constant ρ)."""
  if isinstance(rho, RhoPolicy):
    return rho
  if isinstance(rho, (int, float)) and not isinstance(rho, bool):
    return constant_rho(rho)
  raise TypeError(f"rho must be a number or a RhoPolicy, got {type(rho).__name__}")
