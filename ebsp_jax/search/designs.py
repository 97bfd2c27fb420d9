"""The exact hardware-aware search when the accelerator depends on the choice.

One EBSP accelerator runs every layer, so a choice ``x`` of per-layer formats needs the design
``D(x) = (max bits, max length, max shift)`` over its formats (:func:`~.costs.design_of`:
widest LOD and weight register, longest LUT, largest shift), and its cost is the sum of its
layers' costs *on that design* (:func:`~.costs.layer_costs` with ``design=D(x)``). Costs are
therefore not a fixed ``(layers, candidates)`` table: a layer's cost in one format changes with
the formats of the others (a longer LUT anywhere shrinks the PE count everywhere).

The search stays exact by splitting the choices by the design they need. For each design
``D`` some choice needs (:func:`needed_designs`), the choices with ``D(x) = D`` are those whose
formats all fit ``D`` and that *attain* each of its three maxima: a coverage constraint
(candidate bit masks 1 = widest bits, 2 = longest length, 4 = largest shift; every mask
bit covered) that :func:`ebsp_jax.search.solver.pareto_frontier` solves exactly. The Pareto
frontier over all choices is the Pareto filter of the union of the per-design frontiers
(:func:`frontier`), and both searches are read off it (:func:`solve`). Every choice belongs to
exactly one design, so nothing is double counted and nothing is missed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, MutableMapping, Optional, Sequence

import numpy as np

from ebsp_jax import hw
from ebsp_jax.numerics.pattern import BitPattern
from ebsp_jax.search import costs as costs_lib
from ebsp_jax.search import solver

#: Coverage bits of a candidate on a design: attains its bits, its length, its shift.
BITS, LENGTH, SHIFT = 1, 2, 4
ALL = BITS | LENGTH | SHIFT


def cover_mask(fmt: BitPattern, design: costs_lib.Design) -> int:
  """Which of ``design``'s maxima ``fmt`` attains (0: none, or it does not fit; see
  :func:`~.costs.fits`)."""
  if not costs_lib.fits(fmt, design):
    return 0
  b, l, s = design
  return (BITS * (fmt.bits == b)) | (LENGTH * (fmt.length == l)) | (SHIFT * (fmt.max_shift == s))


def needed_designs(formats: Sequence[BitPattern], allowed: np.ndarray
                   ) -> list[costs_lib.Design]:
  """Every design some allowed choice needs, in increasing ``(bits, length, shift)`` order.

  Args:
    formats: the ``K`` candidate columns.
    allowed: ``(L, K)`` bool, as in the solver.

  Returns:
    The designs ``D`` for which some choice of allowed candidates has ``D(x) = D``.
  """
  allowed = np.asarray(allowed, bool)
  used = [f for k, f in enumerate(formats) if allowed[:, k].any()]
  out = []
  for b in sorted({f.bits for f in used}):
    for l in sorted({f.length for f in used}):
      for s in sorted({f.max_shift for f in used}):
        d = (b, l, s)
        masks = np.array([cover_mask(f, d) for f in formats])
        ok = allowed & np.array([costs_lib.fits(f, d) for f in formats])[None, :]
        if not ok.any(axis=1).all():
          continue                      # some layer has no format that fits
        reach = 0
        for m in masks[ok.any(axis=0)]:
          reach |= int(m)
        if reach == ALL:
          out.append(d)
  return out


@dataclasses.dataclass(frozen=True)
class DesignCosts:
  """Every candidate's per-layer costs on one design.

  Attributes:
    design: ``(bits, length, max_shift)``.
    table: the :class:`~.costs.CostTable` over all candidate columns (NaN where a format does
      not fit the design or is allowed at no layer).
    fit: bool ``(K,)``: the column fits the design and is costed.
    cover: int ``(K,)``: :func:`cover_mask` of each column.
  """

  design: costs_lib.Design
  table: costs_lib.CostTable
  fit: np.ndarray
  cover: np.ndarray


def design_costs(workload: hw.Workload, formats: Sequence[BitPattern], allowed: np.ndarray, *,
                 cache: Optional[MutableMapping[str, Any]] = None, objective: str = "edp",
                 search: str = "default", **accelerator: Any) -> list[DesignCosts]:
  """:func:`~.costs.layer_costs` of the fitting columns on every :func:`needed_designs` design.

  Raises:
    ValueError / ``hw.ConfigError``: as :func:`~.costs.layer_costs` (one line).
  """
  formats = tuple(formats)
  out = []
  for d in needed_designs(formats, allowed):
    cover = np.array([cover_mask(f, d) for f in formats], np.int64)
    cols = [k for k in range(len(formats))
            if costs_lib.fits(formats[k], d) and np.asarray(allowed)[:, k].any()]
    t = costs_lib.layer_costs(workload, [formats[k] for k in cols], design=d, cache=cache,
                              objective=objective, search=search, **accelerator)
    full = {}
    for attr in ("energy_pj", "latency_s", "weight_bits"):
      a = np.full((len(t.layers), len(formats)), np.nan)
      a[:, cols] = getattr(t, attr)
      full[attr] = a
    fit = np.zeros(len(formats), bool)
    fit[cols] = True
    out.append(DesignCosts(d, costs_lib.CostTable(t.layers, formats, **full), fit, cover))
  return out


@dataclasses.dataclass(frozen=True)
class MixedFrontier:
  """The Pareto frontier over all choices, each on the design it needs.

  Attributes:
    cost, sensitivity, choice: as :class:`~.solver.Frontier` (cheapest first).
    design: int ``(P,)``: index into ``designs`` of each point's design.
    designs: the designs.
  """

  cost: np.ndarray
  sensitivity: np.ndarray
  choice: np.ndarray
  design: np.ndarray
  designs: tuple[costs_lib.Design, ...]

  def __len__(self) -> int:
    return int(self.cost.shape[0])


def frontier(designs: Sequence[DesignCosts], sensitivity: np.ndarray, metric: str,
             allowed: np.ndarray) -> MixedFrontier:
  """The exact frontier of ``(metric, sensitivity)`` (see the module docstring).

  Args:
    designs: from :func:`design_costs`.
    sensitivity: ``(L, K)`` over the same columns.
    metric: ``'energy'``, ``'latency'`` or ``'bits'``.
    allowed: ``(L, K)`` bool (may be narrower than the ``allowed`` of :func:`design_costs`:
      a search restricted to some candidates reuses the tables).
  """
  allowed = np.asarray(allowed, bool)
  parts = []
  for j, dc in enumerate(designs):
    ok = allowed & dc.fit[None, :]
    if not ok.any(axis=1).all():       # no choice runs on this design (a narrower allowed)
      continue
    cover = np.broadcast_to(dc.cover, ok.shape)
    f = solver.pareto_frontier(dc.table.metric(metric), sensitivity, ok, cover=cover, need=ALL)
    parts.append((f, j))
  n_layers = np.asarray(sensitivity).shape[0]
  cost = np.concatenate([f.cost for f, _ in parts]) if parts else np.zeros(0)
  sens = np.concatenate([f.sensitivity for f, _ in parts]) if parts else np.zeros(0)
  choice = (np.concatenate([f.choice for f, _ in parts]) if parts
            else np.zeros((0, n_layers), np.int32))
  which = (np.concatenate([np.full(len(f), j) for f, j in parts]) if parts
           else np.zeros(0, np.int64))
  keep = solver.pareto_filter(cost, sens)
  return MixedFrontier(cost[keep], sens[keep], choice[keep], which[keep].astype(np.int64),
                       tuple(dc.design for dc in designs))


@dataclasses.dataclass(frozen=True)
class MixedSolution:
  """One choice, its totals and the design it runs on (``designs[design]``)."""

  choice: np.ndarray
  cost: float
  sensitivity: float
  design: costs_lib.Design


def solve(front: MixedFrontier, limit: float, least: str = "sensitivity") -> MixedSolution:
  """Least sensitivity with cost ``<= limit`` (``least='sensitivity'``), or least cost with
  sensitivity ``<= limit`` (``least='cost'``), read off the exact frontier (ties: the other
  quantity, as the solver).

  Raises:
    InfeasibleError: nothing meets ``limit`` (one line).
    ValueError: bad ``least`` or ``limit``.
  """
  if least not in ("sensitivity", "cost"):
    raise ValueError(f"least must be 'sensitivity' or 'cost'; got {least!r}")
  limit = solver.check_limit("budget" if least == "sensitivity" else "sensitivity bound", limit)
  if not len(front):
    raise solver.InfeasibleError("no choice of the candidates is possible")
  if least == "sensitivity":
    ok = np.flatnonzero(front.cost <= limit)
    if not ok.size:
      raise solver.InfeasibleError(
          f"budget {limit:.6g} is below the least achievable cost {front.cost[0]:.6g} (over "
          "every EBSP design a choice can need)")
    i = int(ok[-1])
  else:
    ok = np.flatnonzero(front.sensitivity <= limit)
    if not ok.size:
      raise solver.InfeasibleError(
          f"sensitivity bound {limit:.6g} is below the least achievable sensitivity "
          f"{front.sensitivity[-1]:.6g}")
    i = int(ok[0])
  return MixedSolution(front.choice[i].copy(), float(front.cost[i]),
                       float(front.sensitivity[i]), front.designs[int(front.design[i])])
