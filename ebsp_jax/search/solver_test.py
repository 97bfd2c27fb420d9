"""The DP solver against brute force over every choice (small random problems, hypothesis)."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebsp_jax.search import solver


def _totals(cost, sens, choice):
  """Left-to-right sums over layers, as the solver forms them."""
  c = s = 0.0
  for i, k in enumerate(choice):
    c += float(cost[i, k])
    s += float(sens[i, k])
  return c, s


def _all_choices(cost, sens, allowed, cover=None, need=0):
  rows = [np.flatnonzero(a) for a in allowed]
  for choice in itertools.product(*rows):
    if cover is not None:
      m = 0
      for i, k in enumerate(choice):
        m |= int(cover[i, k])
      if m & need != need:
        continue
    yield (choice, *_totals(cost, sens, choice))


def _brute_min_sensitivity(cost, sens, allowed, budget, cover=None, need=0):
  best = None
  for choice, c, s in _all_choices(cost, sens, allowed, cover, need):
    if c <= budget and (best is None or (s, c) < best[:2]):
      best = (s, c, choice)
  return best


def _brute_min_cost(cost, sens, allowed, bound, cover=None, need=0):
  best = None
  for choice, c, s in _all_choices(cost, sens, allowed, cover, need):
    if s <= bound and (best is None or (c, s) < best[:2]):
      best = (c, s, choice)
  return best


def _brute_frontier(cost, sens, allowed, cover=None, need=0):
  pts = {(c, s) for _, c, s in _all_choices(cost, sens, allowed, cover, need)}
  return sorted(p for p in pts
                if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in pts))


@st.composite
def problems(draw):
  """(cost, sensitivity, allowed, limit fraction): real values or small integers (many ties)."""
  n_layers = draw(st.integers(1, 5))
  n_cands = draw(st.integers(1, 4))
  if draw(st.booleans()):
    values = st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False)
  else:
    values = st.integers(0, 6).map(float)
  shape = (n_layers, n_cands)
  cost = np.array(draw(st.lists(values, min_size=n_layers * n_cands,
                                max_size=n_layers * n_cands))).reshape(shape)
  sens = np.array(draw(st.lists(values, min_size=n_layers * n_cands,
                                max_size=n_layers * n_cands))).reshape(shape)
  allowed = np.array(draw(st.lists(st.booleans(), min_size=n_layers * n_cands,
                                   max_size=n_layers * n_cands))).reshape(shape)
  allowed[np.arange(n_layers), draw(st.lists(st.integers(0, n_cands - 1), min_size=n_layers,
                                             max_size=n_layers))] = True
  return cost, sens, allowed, draw(st.floats(-0.1, 1.1))


def _limit(values, allowed, frac):
  """A limit between the least and the greatest total (and a little outside it)."""
  lo = sum(float(np.min(v[a])) for v, a in zip(values, allowed))
  hi = sum(float(np.max(v[a])) for v, a in zip(values, allowed))
  return lo + frac * (hi - lo) if hi > lo else lo + frac - 0.5


@pytest.mark.parametrize("least", ["sensitivity", "cost"])
@given(p=problems())
def test_solvers_match_brute_force(least, p):
  cost, sens, allowed, frac = p
  if least == "sensitivity":
    limit = _limit(cost, allowed, frac)
    best = _brute_min_sensitivity(cost, sens, allowed, limit)
    solve = solver.min_sensitivity
  else:
    limit = _limit(sens, allowed, frac)
    best = _brute_min_cost(cost, sens, allowed, limit)
    solve = solver.min_cost
  if best is None:
    with pytest.raises(solver.InfeasibleError):
      solve(cost, sens, limit, allowed)
    return
  sol = solve(cost, sens, limit, allowed)
  got = (sol.sensitivity, sol.cost) if least == "sensitivity" else (sol.cost, sol.sensitivity)
  assert got == best[:2]
  assert all(allowed[i, k] for i, k in enumerate(sol.choice))
  assert _totals(cost, sens, sol.choice) == (sol.cost, sol.sensitivity)
  assert (sol.cost if least == "sensitivity" else sol.sensitivity) <= limit


@given(problems())
def test_frontier_is_the_brute_force_pareto_set(p):
  cost, sens, allowed, _ = p
  front = solver.pareto_frontier(cost, sens, allowed)
  assert list(zip(front.cost.tolist(), front.sensitivity.tolist())) == \
      _brute_frontier(cost, sens, allowed)
  assert np.all(np.diff(front.cost) > 0) and np.all(np.diff(front.sensitivity) < 0)
  for row, c, s in zip(front.choice, front.cost, front.sensitivity):
    assert _totals(cost, sens, row) == (c, s)
    assert all(allowed[i, k] for i, k in enumerate(row))


@st.composite
def covered_problems(draw):
  """A problem with 0-3 bit masks per candidate and a required mask."""
  cost, sens, allowed, frac = draw(problems())
  cover = np.array(draw(st.lists(st.integers(0, 7), min_size=cost.size,
                                 max_size=cost.size))).reshape(cost.shape)
  return cost, sens, allowed, frac, cover, draw(st.integers(0, 7))


@pytest.mark.parametrize("least", ["sensitivity", "cost"])
@given(p=covered_problems())
def test_covering_solvers_match_brute_force(least, p):
  """Only choices whose masks OR to a superset of ``need`` count (the exact mixed-design
  search): optimum, frontier and infeasibility as brute force over the covering choices."""
  cost, sens, allowed, frac, cover, need = p
  kw = dict(cover=cover, need=need)
  assert list(zip(*[a.tolist() for a in (
      lambda f: (f.cost, f.sensitivity))(solver.pareto_frontier(cost, sens, allowed, **kw))])) \
      == _brute_frontier(cost, sens, allowed, cover, need)
  if least == "sensitivity":
    limit = _limit(cost, allowed, frac)
    best = _brute_min_sensitivity(cost, sens, allowed, limit, cover, need)
    solve = solver.min_sensitivity
  else:
    limit = _limit(sens, allowed, frac)
    best = _brute_min_cost(cost, sens, allowed, limit, cover, need)
    solve = solver.min_cost
  if best is None:
    with pytest.raises(solver.InfeasibleError):
      solve(cost, sens, limit, allowed, **kw)
    return
  sol = solve(cost, sens, limit, allowed, **kw)
  got = (sol.sensitivity, sol.cost) if least == "sensitivity" else (sol.cost, sol.sensitivity)
  assert got == best[:2]
  m = 0
  for i, k in enumerate(sol.choice):
    assert allowed[i, k]
    m |= int(cover[i, k])
  assert m & need == need
  assert _totals(cost, sens, sol.choice) == (sol.cost, sol.sensitivity)


def test_cover_can_force_a_costlier_choice():
  cost = np.array([[1.0, 2.0], [1.0, 2.0]])
  sens = np.array([[0.0, 0.0], [0.0, 0.0]])
  cover = np.array([[0, 1], [0, 2]])
  sol = solver.min_cost(cost, sens, 1.0, cover=cover, need=3)
  assert sol.choice.tolist() == [1, 1] and sol.cost == 4.0
  assert solver.min_cost(cost, sens, 1.0, cover=cover, need=2).choice.tolist() == [0, 1]
  with pytest.raises(solver.InfeasibleError, match="covers mask 4"):
    solver.min_cost(cost, sens, 1.0, cover=cover, need=4)
  with pytest.raises(ValueError, match="need is given without cover"):
    solver.pareto_frontier(cost, sens, need=1)
  with pytest.raises(ValueError, match="cover must be a non-negative integer array"):
    solver.pareto_frontier(cost, sens, cover=np.ones((2, 2)), need=1)


@settings(max_examples=20)
@given(st.integers(0, 2**32 - 1))
def test_larger_random_problem(seed):
  """8 layers x 5 candidates (390625 choices) of real values, brute-forced with numpy."""
  rng = np.random.default_rng(seed)
  cost = rng.uniform(1, 10, (8, 5))
  sens = rng.exponential(1.0, (8, 5))
  grids = np.stack(np.meshgrid(*[np.arange(5)] * 8, indexing="ij"), -1).reshape(-1, 8)
  tc = np.zeros(len(grids))
  ts = np.zeros(len(grids))
  for i in range(8):                       # the same left-to-right order as the solver
    tc = tc + cost[i, grids[:, i]]
    ts = ts + sens[i, grids[:, i]]
  budget = rng.uniform(tc.min(), tc.max())
  feasible = tc <= budget
  best = np.lexsort((tc[feasible], ts[feasible]))[0]
  sol = solver.min_sensitivity(cost, sens, budget)
  assert (sol.sensitivity, sol.cost) == (ts[feasible][best], tc[feasible][best])
  bound = rng.uniform(ts.min(), ts.max())
  ok = ts <= bound
  best = np.lexsort((ts[ok], tc[ok]))[0]
  sol = solver.min_cost(cost, sens, bound)
  assert (sol.cost, sol.sensitivity) == (tc[ok][best], ts[ok][best])


def test_ties_break_towards_the_other_quantity():
  cost = np.array([[1.0, 2.0], [1.0, 1.0]])
  sens = np.array([[1.0, 1.0], [2.0, 1.0]])
  # Least sensitivity (2.0) at costs 2 and 3: the cheaper one, layer 0 candidate 0.
  sol = solver.min_sensitivity(cost, sens, budget=10.0)
  assert sol.choice.tolist() == [0, 1] and (sol.cost, sol.sensitivity) == (2.0, 2.0)
  # Least cost (2.0) at sensitivities 3 and 2: the less sensitive one.
  sol = solver.min_cost(cost, sens, bound=10.0)
  assert sol.choice.tolist() == [0, 1] and (sol.cost, sol.sensitivity) == (2.0, 2.0)


def test_budget_exactly_at_a_total_is_feasible():
  cost = np.array([[0.1, 5.0], [0.2, 5.0]])
  sens = np.array([[1.0, 0.0], [1.0, 0.0]])
  total = 0.0 + 0.1 + 0.2                      # 0.30000000000000004 in float64, not 0.3
  sol = solver.min_sensitivity(cost, sens, total)
  assert sol.choice.tolist() == [0, 0] and sol.cost == total
  with pytest.raises(solver.InfeasibleError):
    solver.min_sensitivity(cost, sens, math.nextafter(total, 0.0))


def test_infeasible_budget_is_one_line():
  cost = np.array([[2.0, 3.0], [1.0, 4.0]])
  sens = np.ones((2, 2))
  with pytest.raises(solver.InfeasibleError, match=r"^budget 2\.5 is below the least achievable "
                     r"cost 3 \(every layer at its cheapest candidate\)$"):
    solver.min_sensitivity(cost, sens, 2.5)
  with pytest.raises(solver.InfeasibleError, match=r"^sensitivity bound 1 is below the least "
                     r"achievable sensitivity 2 "):
    solver.min_cost(cost, sens, 1.0)


def test_allowed_restricts_the_choice():
  cost = np.array([[1.0, 5.0], [1.0, 5.0]])
  sens = np.array([[9.0, 0.0], [9.0, 0.0]])
  allowed = np.array([[True, False], [True, True]])
  sol = solver.min_sensitivity(cost, sens, 100.0, allowed)
  assert sol.choice.tolist() == [0, 1]
  with pytest.raises(solver.InfeasibleError):
    solver.min_sensitivity(cost, sens, 1.5, allowed)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(cost=np.ones(3), sensitivity=np.ones(3)), "cost must be a (layers, candidates) array"),
    (dict(cost=np.ones((2, 2)), sensitivity=np.ones((2, 3))), "sensitivity has shape (2, 3)"),
    (dict(cost=np.ones((2, 2)), sensitivity=np.ones((2, 2)),
          allowed=np.array([[True, True], [False, False]])), "layer 1 has no allowed candidate"),
    (dict(cost=np.array([[1.0, np.nan]]), sensitivity=np.ones((1, 2))),
     "cost[0, 1] = nan is not finite"),
    (dict(cost=np.ones((1, 2)), sensitivity=np.ones((1, 2)), allowed=np.ones((1, 2))),
     "allowed must be a boolean array"),
])
def test_bad_inputs_are_one_line_errors(kwargs, needle):
  with pytest.raises(ValueError) as e:
    solver.pareto_frontier(**kwargs)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_non_finite_disallowed_candidates_are_ignored():
  cost = np.array([[1.0, np.inf], [2.0, 3.0]])
  sens = np.array([[1.0, np.nan], [2.0, 0.0]])
  allowed = np.array([[True, False], [True, True]])
  sol = solver.min_sensitivity(cost, sens, 10.0, allowed)
  assert sol.choice.tolist() == [0, 1] and (sol.cost, sol.sensitivity) == (4.0, 1.0)
