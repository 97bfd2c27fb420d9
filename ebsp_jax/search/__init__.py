"""Per-layer number formats chosen under a hardware budget (issue: hardware-aware search).

* :mod:`.formats` — candidate formats by name (``'5b(L3)'``, sets ``ebsp``/``uniform``/
  ``power_of_two``), ``{layer: format}`` maps as files and as :func:`make_rule` rules.
* :mod:`.sensitivity` — HAWQ-V3 sensitivity ``Tr(H_i)/n_i * ||Q(W_i) - W_i||^2``, traces by
  Hutchinson (``jax.jvp`` of ``jax.grad``) or the empirical Fisher.
* :mod:`.costs` — per-layer energy, latency and weight bits of every candidate from
  :mod:`ebsp_jax.hw`, as ``(layers, candidates)`` arrays.
* :mod:`.solver` — exact multiple-choice knapsack (DP on the Pareto frontier): least
  sensitivity under a cost budget, least cost under a sensitivity bound.

The command line is ``experiments/search.py``; method and results: ``docs/results/search/``.
"""

from ebsp_jax.search.costs import METRICS, CostTable, layer_costs, load_cache, save_cache
from ebsp_jax.search.formats import (CANDIDATE_SETS, DEFAULT_CANDIDATES, check_layer_names,
                                     layer_formats_from_json, layer_formats_rule, parse_format,
                                     parse_formats)
from ebsp_jax.search.sensitivity import (TraceEstimate, fisher_traces, hessian_traces,
                                         quantization_error, sensitivity_matrix)
from ebsp_jax.search.solver import (Frontier, InfeasibleError, Solution, min_cost,
                                    min_sensitivity, pareto_frontier)

__all__ = [
    "CANDIDATE_SETS", "DEFAULT_CANDIDATES", "METRICS", "CostTable", "Frontier",
    "InfeasibleError", "Solution", "TraceEstimate", "check_layer_names", "fisher_traces",
    "hessian_traces", "layer_costs", "layer_formats_from_json", "layer_formats_rule",
    "load_cache", "min_cost", "min_sensitivity", "pareto_frontier", "parse_format",
    "parse_formats", "quantization_error", "save_cache", "sensitivity_matrix",
]
