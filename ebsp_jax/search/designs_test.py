"""The mixed-design search against brute force: every choice costed on the design it needs."""

import itertools

import numpy as np
import pytest

from ebsp_jax import hw
from ebsp_jax.hw import arch
from ebsp_jax.numerics import BitPattern
from ebsp_jax.search import costs, designs, solver

# Distinct maxima: 6b(L3) the widest, 5b(L4) the longest, 4b(L1) and 6b(L3) shift 2; 4b(L2)
# fits every design with a shift >= 1 without attaining any of its maxima.
FMTS = (BitPattern(4, 1), BitPattern(5, 4), BitPattern(6, 3), BitPattern(4, 2))


@pytest.fixture(scope="module")
def lenet():
  return hw.model_workload("lenet5", "fashion_mnist")


def _allowed():
  a = np.ones((5, 4), bool)
  a[0] = [False, False, True, False]     # conv_init fixed to 6b(L3), head to 4b(L1)
  a[4] = [True, False, False, False]
  return a


@pytest.fixture(scope="module")
def tables(lenet):
  return designs.design_costs(lenet, FMTS, _allowed(), search="fast")


def test_needed_designs_are_those_choices_need():
  allowed = _allowed()
  got = designs.needed_designs(FMTS, allowed)
  rows = [np.flatnonzero(a) for a in allowed]
  want = sorted({costs.design_of([FMTS[k] for k in x]) for x in itertools.product(*rows)})
  assert got == want
  assert designs.cover_mask(BitPattern(4, 1), (6, 4, 2)) == designs.SHIFT
  assert designs.cover_mask(BitPattern(8, 7), (6, 4, 2)) == 0


def test_frontier_and_solutions_match_brute_force(lenet, tables):
  """Every choice evaluated by the hardware model on its own design: the exact frontier and
  the budgeted optima are the brute-force ones."""
  allowed = _allowed()
  rng = np.random.default_rng(0)
  sens = rng.exponential(1.0, (5, 4))
  pts = []
  for x in itertools.product(*[np.flatnonzero(a) for a in allowed]):
    fm = {l.name: FMTS[k] for l, k in zip(lenet.layers, x)}
    acc = arch.build_ebsp_for(fm.values())
    res = hw.evaluate_network(lenet, {"ebsp": acc}, search="fast",
                              layer_formats=fm).results["ebsp"]
    c = s = 0.0
    for i, (lc, k) in enumerate(zip(res.layers, x)):
      c += lc.energy_pj
      s += float(sens[i, k])
    assert c == pytest.approx(res.energy_pj, rel=1e-12)
    pts.append((c, s, x, costs.design_of(fm.values())))
  brute = sorted({(c, s) for c, s, _, _ in pts})
  brute = [p for p in brute if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in brute)]
  front = designs.frontier(tables, sens, "energy", allowed)
  assert list(zip(front.cost.tolist(), front.sensitivity.tolist())) == brute
  by_choice = {x: (c, s, d) for c, s, x, d in pts}
  for row, c, s, j in zip(front.choice, front.cost, front.sensitivity, front.design):
    assert by_choice[tuple(int(v) for v in row)] == (c, s, front.designs[j])
  budget = float(np.median([c for c, *_ in pts]))
  sol = designs.solve(front, budget)
  want = min((s, c) for c, s, *_ in pts if c <= budget)
  assert (sol.sensitivity, sol.cost) == want
  assert sol.design == costs.design_of([FMTS[k] for k in sol.choice])
  bound = float(np.median([s for _, s, *_ in pts]))
  sol = designs.solve(front, bound, least="cost")
  assert (sol.cost, sol.sensitivity) == min((c, s) for c, s, *_ in pts if s <= bound)
  with pytest.raises(solver.InfeasibleError, match="below the least achievable cost"):
    designs.solve(front, front.cost[0] * 0.999)


def test_a_long_pattern_anywhere_costs_every_layer(lenet):
  """The coupling the search must see: one layer in 8b(L7) shrinks the PE array for all."""
  small = costs.layer_costs(lenet, [BitPattern(4, 3)], design=(4, 3, 0), search="fast")
  big = costs.layer_costs(lenet, [BitPattern(4, 3)], design=(8, 7, 0), search="fast")
  # Convolutions are compute bound (fewer PEs: slower); the dense layers wait for DRAM.
  assert (big.latency_s[:2] > small.latency_s[:2]).all()
  assert (big.latency_s >= small.latency_s).all()
  assert big.energy_pj.sum() > small.energy_pj.sum()
  np.testing.assert_array_equal(big.weight_bits, small.weight_bits)
  with pytest.raises(ValueError, match="does not fit the EBSP design"):
    costs.layer_costs(lenet, [BitPattern(8, 7)], design=(6, 3, 2))


def test_a_narrower_allowed_reuses_the_tables(lenet, tables):
  """Restricting the candidates afterwards (e.g. one family) equals costing them alone."""
  allowed = _allowed().copy()
  allowed[1:4, 1] = False                  # 5b(L4) nowhere: no design needs length 4
  sens = np.random.default_rng(1).exponential(1.0, (5, 4))
  a = designs.frontier(tables, sens, "energy", allowed)
  b = designs.frontier(designs.design_costs(lenet, FMTS, allowed, search="fast"), sens,
                       "energy", allowed)
  assert a.cost.tolist() == b.cost.tolist() and a.choice.tolist() == b.choice.tolist()
  assert all(a.designs[j][1] < 4 for j in a.design)
