"""Exact per-layer format choice: a multiple-choice knapsack solved on the Pareto frontier.

Layer ``i`` takes one candidate ``k`` of cost ``cost[i, k]`` and sensitivity
``sensitivity[i, k]``; a choice ``x`` costs ``sum_i cost[i, x_i]`` and has sensitivity
``sum_i sensitivity[i, x_i]``. The two searches are

* :func:`min_sensitivity`: least sensitivity with cost ``<= budget``;
* :func:`min_cost`: least cost with sensitivity ``<= bound``;

both with ties broken towards the other quantity (lexicographic optimum).

Method: dynamic programming over layers on the Pareto frontier of partial sums. After layer
``i`` the frontier holds, for every non-dominated ``(cost, sensitivity)`` pair that a choice of
layers ``0..i`` reaches, one choice reaching it; layer ``i+1`` extends every point by every
candidate and the result is filtered again. Dropping a dominated partial choice loses nothing:
whatever the later layers add, the dominating one stays at least as good, because floating-
point addition is monotonic (``a <= b`` implies ``fl(a + c) <= fl(b + c)``). Sums are formed
in layer order starting from 0.0 (``((0 + c_0) + c_1) + ...``), so the values reported are
exactly those of that left-to-right sum, and the optimum is exact over the reals as far as
those sums are: no discretisation of the budget. A partial choice is also dropped when even
the cheapest completion (the candidates of least cost, or least sensitivity, added in the same
order) exceeds the budget, which by the same monotonicity loses no feasible choice.

The frontier can grow with the product of the candidate counts in the worst case; with
real-valued costs it stays in the thousands for tens of layers and ~10 candidates
(``pareto_frontier``'s result for the whole trade-off curve).

*Coverage* (``cover``, ``need``): each candidate at each layer may carry a bit mask, and only
choices whose masks OR to a superset of ``need`` count. The DP then keeps one frontier per
mask of the partial choice (at most ``2^bits`` of them): a partial choice is only compared
with partial choices of the same mask, so the dominance argument holds within each. This is
what makes the hardware-aware search exact when the accelerator depends on the choice: for a
design built for the widest bits, longest pattern and largest shift, the choices that run on
exactly that design are those attaining each of the three maxima (:mod:`ebsp_jax.search.costs`).
"""

from __future__ import annotations

import dataclasses
import math
import numpy as np


class InfeasibleError(ValueError):
  """No choice of candidates meets the budget or bound (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Frontier:
  """The Pareto-optimal choices, cheapest first.

  Attributes:
    cost: float64 ``(P,)``, strictly increasing.
    sensitivity: float64 ``(P,)``, strictly decreasing.
    choice: int32 ``(P, L)``: the candidate index of every layer for each point.
  """

  cost: np.ndarray
  sensitivity: np.ndarray
  choice: np.ndarray

  def __len__(self) -> int:
    return int(self.cost.shape[0])


@dataclasses.dataclass(frozen=True)
class Solution:
  """One choice: ``choice[i]`` is layer ``i``'s candidate index; its total cost and
  sensitivity (left-to-right sums over the layers)."""

  choice: np.ndarray
  cost: float
  sensitivity: float


def _check_cover(cover, need, shape) -> tuple[np.ndarray | None, int]:
  if cover is None:
    if need:
      raise ValueError("need is given without cover")
    return None, 0
  cover = np.asarray(cover)
  if cover.shape != shape or not np.issubdtype(cover.dtype, np.integer) or (cover < 0).any():
    raise ValueError(f"cover must be a non-negative integer array of shape {shape}; got "
                     f"{cover.dtype} {cover.shape}")
  if isinstance(need, bool) or not isinstance(need, (int, np.integer)) or need < 0:
    raise ValueError(f"need must be an int bit mask >= 0; got {need!r}")
  return cover.astype(np.int64), int(need)


def _check(cost, sensitivity, allowed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  cost = np.asarray(cost, np.float64)
  sensitivity = np.asarray(sensitivity, np.float64)
  if cost.ndim != 2 or cost.shape[0] < 1 or cost.shape[1] < 1:
    raise ValueError(f"cost must be a (layers, candidates) array with both sizes >= 1; got "
                     f"shape {cost.shape}")
  if sensitivity.shape != cost.shape:
    raise ValueError(f"sensitivity has shape {sensitivity.shape}, cost {cost.shape}: they must "
                     "match (layers, candidates)")
  if allowed is None:
    allowed = np.ones(cost.shape, bool)
  else:
    allowed = np.asarray(allowed)
    if allowed.shape != cost.shape or allowed.dtype != np.bool_:
      raise ValueError(f"allowed must be a boolean array of shape {cost.shape}; got "
                       f"{allowed.dtype} {allowed.shape}")
  empty = np.flatnonzero(~allowed.any(axis=1))
  if empty.size:
    raise ValueError(f"layer {int(empty[0])} has no allowed candidate")
  for name, a in (("cost", cost), ("sensitivity", sensitivity)):
    bad = allowed & ~np.isfinite(a)
    if bad.any():
      i, k = np.argwhere(bad)[0]
      raise ValueError(f"{name}[{i}, {k}] = {a[i, k]} is not finite (allowed candidates need "
                       "finite values)")
  return cost, sensitivity, allowed


def _least_total(values: np.ndarray, allowed: np.ndarray) -> float:
  """The least left-to-right sum over layers of an allowed value per layer."""
  total = 0.0
  for row, ok in zip(values, allowed):
    total += float(np.min(row[ok]))
  return total


def _tail_bound(partial: np.ndarray, row_mins: np.ndarray) -> np.ndarray:
  """Lower bound of every completion: ``partial`` plus the later rows' minima, in layer order."""
  out = partial
  for m in row_mins:
    out = out + m
  return out


def pareto_filter(cost: np.ndarray, sens: np.ndarray) -> np.ndarray:
  """Indices of the non-dominated points (one per distinct pair), by increasing cost."""
  if cost.size == 0:
    return np.zeros(0, np.int64)
  order = np.lexsort((sens, cost))
  s = sens[order]
  prev_min = np.minimum.accumulate(np.concatenate([[np.inf], s[:-1]]))
  return order[s < prev_min]


def _grouped_pareto(cost: np.ndarray, sens: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Indices of the non-dominated points within each mask group."""
  if mask.size == 0 or (mask == mask[0]).all():
    return pareto_filter(cost, sens)
  out = []
  for m in np.unique(mask):
    idx = np.flatnonzero(mask == m)
    out.append(idx[pareto_filter(cost[idx], sens[idx])])
  return np.concatenate(out)


def pareto_frontier(cost, sensitivity, allowed=None, *, max_cost: float = math.inf,
                    max_sensitivity: float = math.inf, cover=None, need: int = 0) -> Frontier:
  """Every Pareto-optimal ``(total cost, total sensitivity)`` pair and a choice reaching it.

  Args:
    cost: ``(L, K)`` real array: cost of candidate ``k`` at layer ``i``.
    sensitivity: ``(L, K)`` real array.
    allowed: optional ``(L, K)`` bool array; ``False`` excludes a candidate at a layer.
    max_cost / max_sensitivity: only points with total cost / sensitivity at most these are
      kept (partial choices that cannot meet them are pruned early).
    cover: optional ``(L, K)`` non-negative int array of bit masks.
    need: with ``cover``: only choices ``x`` whose ``cover[i, x_i]`` OR (over layers) contains
      every bit of ``need`` count (see the module docstring).

  Returns:
    The :class:`Frontier` (possibly empty when nothing meets the limits).

  Raises:
    ValueError: bad shapes, a layer without an allowed candidate, a non-finite allowed value,
      a bad ``cover``/``need``.
  """
  cost, sens, allowed = _check(cost, sensitivity, allowed)
  cover, need = _check_cover(cover, need, cost.shape)
  n_layers = cost.shape[0]
  cost_mins = np.array([np.min(c[a]) for c, a in zip(cost, allowed)])
  sens_mins = np.array([np.min(s[a]) for s, a in zip(sens, allowed)])
  # Bits of ``need`` each layer onwards can still add (a partial choice that cannot complete
  # its mask is dropped).
  reach = [0] * (n_layers + 1)
  if cover is not None:
    for i in range(n_layers - 1, -1, -1):
      row = 0
      for v in cover[i][allowed[i]]:
        row |= int(v)
      reach[i] = reach[i + 1] | (row & need)
  f_cost = np.zeros(1)
  f_sens = np.zeros(1)
  f_mask = np.zeros(1, np.int64)
  parents: list[tuple[np.ndarray, np.ndarray]] = []
  for i in range(n_layers):
    ks = np.flatnonzero(allowed[i])
    new_cost = (f_cost[:, None] + cost[i, ks][None, :]).ravel()
    new_sens = (f_sens[:, None] + sens[i, ks][None, :]).ravel()
    parent = np.repeat(np.arange(f_cost.size), ks.size)
    pick = np.tile(ks, f_cost.size)
    ok = ((_tail_bound(new_cost, cost_mins[i + 1:]) <= max_cost)
          & (_tail_bound(new_sens, sens_mins[i + 1:]) <= max_sensitivity))
    if cover is not None:
      new_mask = (f_mask[:, None] | (cover[i, ks][None, :] & need)).ravel()
      ok &= ((new_mask | reach[i + 1]) & need) == need
    else:
      new_mask = np.zeros(new_cost.size, np.int64)
    keep = np.flatnonzero(ok)
    keep = keep[_grouped_pareto(new_cost[keep], new_sens[keep], new_mask[keep])]
    f_cost, f_sens, f_mask = new_cost[keep], new_sens[keep], new_mask[keep]
    parents.append((parent[keep], pick[keep]))
  # After the last layer every survivor covers ``need`` (masks hold ``need``'s bits only): one
  # group, so the last filter left one frontier sorted by cost.
  choice = np.zeros((f_cost.size, n_layers), np.int32)
  idx = np.arange(f_cost.size)
  for i in range(n_layers - 1, -1, -1):
    parent, pick = parents[i]
    choice[:, i] = pick[idx]
    idx = parent[idx]
  return Frontier(f_cost, f_sens, choice)


def min_sensitivity(cost, sensitivity, budget: float, allowed=None, *, cover=None,
                    need: int = 0) -> Solution:
  """The choice of least total sensitivity whose total cost is ``<= budget`` (ties: least cost).

  Args:
    cost, sensitivity, allowed, cover, need: as in :func:`pareto_frontier`.
    budget: the cost limit.

  Raises:
    InfeasibleError: even the cheapest choice costs more than ``budget``.
    ValueError: bad inputs (see :func:`pareto_frontier`).
  """
  return _solve(cost, sensitivity, allowed, budget, True, cover, need)


def min_cost(cost, sensitivity, bound: float, allowed=None, *, cover=None,
             need: int = 0) -> Solution:
  """The choice of least total cost whose total sensitivity is ``<= bound`` (ties: least
  sensitivity).

  Args:
    cost, sensitivity, allowed, cover, need: as in :func:`pareto_frontier`.
    bound: the sensitivity limit.

  Raises:
    InfeasibleError: even the least sensitive choice exceeds ``bound``.
    ValueError: bad inputs (see :func:`pareto_frontier`).
  """
  return _solve(cost, sensitivity, allowed, bound, False, cover, need)


def _solve(cost, sensitivity, allowed, limit, limit_cost: bool, cover=None,
           need: int = 0) -> Solution:
  """The frontier point of least sensitivity within a cost limit, or least cost within a
  sensitivity limit (the frontier is sorted by cost, so: its last / first point)."""
  cost, sens, allowed = _check(cost, sensitivity, allowed)
  if limit_cost:
    name, values, quantity, how = "budget", cost, "cost", "cheapest"
  else:
    name, values, quantity, how = "sensitivity bound", sens, "sensitivity", "least sensitive"
  limit = check_limit(name, limit)
  front = pareto_frontier(cost, sens, allowed, cover=cover, need=need, **{
      "max_cost" if limit_cost else "max_sensitivity": limit})
  if not len(front) and cover is not None:
    raise InfeasibleError(f"no choice that covers mask {need} meets the {name} {limit:.6g}")
  if not len(front):
    raise InfeasibleError(f"{name} {limit:.6g} is below the least achievable {quantity} "
                          f"{_least_total(values, allowed):.6g} (every layer at its {how} "
                          "candidate)")
  i = len(front) - 1 if limit_cost else 0
  return Solution(front.choice[i].copy(), float(front.cost[i]), float(front.sensitivity[i]))


def check_limit(name: str, value) -> float:
  """``value`` as a float (``ValueError`` naming ``name`` if it is not a real number)."""
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a real number; got {value!r}") from None
  if math.isnan(v):
    raise ValueError(f"{name} must be a real number; got nan")
  return v
