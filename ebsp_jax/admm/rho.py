"""Penalty-parameter (ρ) policies for :func:`ebsp_jax.admm.admm`.

A policy says how ρ evolves at each Z-step of ADMM. Three families cover the method and its
usual variants (docs/method.md §6, Boyd et al. 2011 §3.4.1):

* :func:`constant_rho` — ρ never changes.
* :func:`geometric_rho` — ρ ← min(factor · ρ, max_value) at every Z-step (Leng et al. 2018 grow ρ
  over training so the weights are pulled ever harder onto the grid).
* :func:`residual_balancing_rho` — Boyd's rule: ρ ← τρ when the primal residual exceeds μ times
  the dual one, ρ ← ρ/τ in the opposite case, else unchanged.
* :func:`scheduled_rho` — any optax-style schedule of the Z-step index.

A policy is a pair of pure functions, so it runs under ``jit`` and its ρ lives in the optimizer
state (checkpointed with it). When ρ changes, the ADMM transformation rescales the scaled dual
variable ``U`` by ``ρ_old / ρ_new`` (Boyd §3.4.1) unless told otherwise.

ρ must stay positive and finite (a non-positive ρ turns the penalty into a reward and the dual
rescaling divides by it). The constructors check their arguments eagerly, so every ρ the built-in
policies can produce is in range; numbers may be Python or NumPy scalars (bools, strings and
arrays of several elements are rejected with a one-line error). :func:`scheduled_rho` can only
check its schedule where the value is concrete: see its docstring.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.admm import _checks


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


def check_rho_value(rho: jax.Array, where: str) -> None:
  """Eager check of a ρ a policy produced: a scalar, and, when concrete, positive and finite.

  The shape is static and always checked. Under ``jit`` the value is a tracer and cannot be
  checked without a host round trip: it is then the policy's documented responsibility.

  Raises:
    ValueError: (one line) ρ is not a scalar, or is concrete and not a positive finite number.
  """
  if jnp.ndim(rho) != 0:
    raise ValueError(f"{where} must return a scalar rho, got shape {tuple(jnp.shape(rho))}")
  if isinstance(rho, jax.core.Tracer):
    return
  value = float(rho)
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{where} gave rho={value!r}; rho must stay a positive finite number")


def constant_rho(value: float) -> RhoPolicy:
  """ρ fixed at ``value`` (a positive finite number)."""
  value = _checks.positive("rho", value)
  return RhoPolicy(lambda: value, lambda rho, n, r, s: rho, f"constant({value:g})")


def geometric_rho(init: float, factor: float, max_value: float = math.inf) -> RhoPolicy:
  """ρ multiplied by ``factor`` at every Z-step, capped at ``max_value``.

  Args:
    init: initial ρ (positive, finite).
    factor: growth factor per Z-step (>= 1 grows; any positive finite value is accepted).
    max_value: cap (inclusive), ``>= init`` (``inf``: no cap).

  Raises:
    ValueError: a value out of range (e.g. ``max_value < init``: the cap would be below the
      starting ρ).
    TypeError: an argument that is not a number.
  """
  init = _checks.positive("rho", init)
  factor = _checks.positive("rho factor", factor)
  max_value = _checks.real("max_value", max_value)
  if not max_value >= init:  # NaN fails too
    raise ValueError(f"geometric_rho: max_value must be >= init (the cap is inclusive, rho starts "
                     f"at init), got max_value={max_value!r} < init={init!r}")

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

  Args:
    init: initial ρ, in ``[min_value, max_value]``.
    mu: balance threshold, finite and ``>= 1`` (below 1 both conditions can hold at once).
    tau: step factor, finite and ``> 1`` (``tau < 1`` would invert the rule: ρ would shrink when
      the primal residual is too large).
    min_value: floor, finite and ``>= 0``.
    max_value: cap, ``>= min_value`` (``inf``: no cap).

  Raises:
    ValueError: a value out of range (e.g. ``min_value > max_value``).
    TypeError: an argument that is not a number.
  """
  init = _checks.positive("rho", init)
  mu = _checks.real("mu", mu)
  if not (math.isfinite(mu) and mu >= 1):
    raise ValueError(f"residual_balancing_rho: mu must be a finite number >= 1, got {mu!r}")
  tau = _checks.real("tau", tau)
  if not (math.isfinite(tau) and tau > 1):
    raise ValueError(f"residual_balancing_rho: tau must be a finite number > 1, got {tau!r}")
  min_value = _checks.real("min_value", min_value)
  if not (math.isfinite(min_value) and min_value >= 0):
    raise ValueError(f"residual_balancing_rho: min_value must be a finite number >= 0, got "
                     f"{min_value!r}")
  max_value = _checks.real("max_value", max_value)
  if not max_value >= min_value:  # NaN fails too
    raise ValueError(f"residual_balancing_rho: max_value must be >= min_value, got "
                     f"min_value={min_value!r}, max_value={max_value!r}")
  if not min_value <= init <= max_value:
    raise ValueError(f"residual_balancing_rho: init must lie in [min_value, max_value] = "
                     f"[{min_value!r}, {max_value!r}], got {init!r}")

  def update(rho, n, r, s):
    del n
    rho_new = jnp.where(r > mu * s, rho * tau, jnp.where(s > mu * r, rho / tau, rho))
    return jnp.clip(rho_new, min_value, max_value).astype(rho.dtype)

  return RhoPolicy(lambda: init, update,
                   f"residual_balancing({init:g},mu={mu:g},tau={tau:g},"
                   f"[{min_value:g},{max_value:g}])")


def scheduled_rho(schedule: Callable[[jax.Array], jax.Array]) -> RhoPolicy:
  """ρ given by ``schedule(z_step_index)`` (an optax schedule of the Z-step count).

  The initial ρ is ``schedule(0)``; after the n-th Z-step it is ``schedule(n)``.

  Requirement: ``schedule(n)`` must be a positive finite scalar for every Z-step index ``n`` the
  run reaches (e.g. ``optax.exponential_decay``/``cosine_decay_schedule`` with a positive final
  value; not ``linear_schedule(..., end_value=0)``). It is checked:

  * at construction, eagerly: ``schedule(0)`` (the initial ρ);
  * at every ``update`` whose value is concrete (``admm`` run without ``jit``): a non-positive
    or non-finite ρ raises a ``ValueError`` there.

  Under ``jit`` the value is traced and is *not* checked or altered (no clipping: a clipped ρ
  would silently be a different schedule); a schedule that leaves the positive range there
  gives that ρ to the optimizer, so check the schedule over the run's Z-step count beforehand.
  The output must be a scalar (checked at trace time too).

  Raises:
    TypeError: ``schedule`` is not callable, or ``schedule(0)`` is not a number.
    ValueError: ``schedule(0)`` (or a concrete ``schedule(n)`` in ``update``) is not a
      positive finite scalar.
  """
  if not callable(schedule):
    raise TypeError(f"scheduled_rho: schedule must be a callable of the Z-step count, got "
                    f"{type(schedule).__name__} {_checks.short_repr(schedule)}")
  init = _checks.positive("scheduled_rho: schedule(0)", schedule(0))

  def update(rho, n, r, s):
    del r, s
    out = schedule(n)
    where = ("scheduled_rho: the schedule" if isinstance(n, jax.core.Tracer)
             else f"scheduled_rho: schedule({int(n)})")
    check_rho_value(out, where)
    return jnp.asarray(out, rho.dtype)

  return RhoPolicy(lambda: init, update, "scheduled")


RhoLike = Union[float, np.floating, np.integer, RhoPolicy]


def as_policy(rho: RhoLike) -> RhoPolicy:
  """A :class:`RhoPolicy` from a policy or a plain number (constant ρ).

  A number may be a Python or NumPy scalar (or a one-element array); it must be positive and
  finite. Bools, strings, bare schedules and arrays of several elements are rejected.
  """
  if isinstance(rho, RhoPolicy):
    return rho
  if callable(rho):
    raise TypeError(f"rho must be a number or a RhoPolicy, got the callable "
                    f"{_checks.short_repr(rho)} (wrap a schedule in scheduled_rho(...))")
  return constant_rho(_checks.real("rho", rho, allowed="a number or a RhoPolicy"))
