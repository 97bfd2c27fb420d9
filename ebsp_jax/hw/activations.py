"""Activation sparsity captured from a model run on real data: zero fraction of every layer's input.

Designs that exploit zero activations (Eyeriss gates the MAC, ZeNA and OLAccel skip the cycle;
Eyeriss also run-length codes fmaps in DRAM) need, per conv/dense layer, the fraction of its
input activations that are zero. :func:`capture_zero_fractions` runs a Flax model on a batch
and records it for every ``nn.Conv`` / ``nn.Dense`` call (through ``nn.intercept_methods``);
:func:`activation_stats` turns it into the per-layer ``Activity`` records of
:func:`ebsp_jax.hw.report.evaluate_network` (``activation_stats=``). JSON: ``{layer: zero
fraction}`` (:func:`save_zero_fractions`, :func:`load_zero_fractions`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np

from ebsp_jax import cli
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Workload


def capture_zero_fractions(model: nn.Module, variables: Any, x: np.ndarray) -> dict[str, float]:
  """``{layer: fraction of zero input values}`` of every conv/dense ``model`` applies to ``x``.

  The layer name is the module path without the top-level model (``'conv_init'``,
  ``'stage1_block0/conv1'``): the workload's layer names. A module called several times
  accumulates over its calls.

  Args:
    model: a Flax linen model (``model.apply(variables, x, train=False)``).
    variables: its variables.
    x: an input batch (NHWC float).
  """
  zeros: dict[str, list[float]] = {}

  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if context.method_name == "__call__" and isinstance(mod, (nn.Conv, nn.Dense)) and args:
      a = args[0]
      name = "/".join(str(p) for p in mod.path)
      z = zeros.setdefault(name, [0.0, 0.0])
      z[0] += float(jax.numpy.sum(a == 0))
      z[1] += float(a.size)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    try:
      model.apply(variables, x, train=False)
    except TypeError:
      model.apply(variables, x)
  return {k: v[0] / v[1] for k, v in zeros.items() if v[1]}


def activation_stats(workload: Workload, zero_fractions: Mapping[str, float]
                     ) -> dict[str, Activity]:
  """Per-layer ``Activity`` (input density, output density = the next layer's input density,
  the first layer's input not compressible) from captured zero fractions.

  Raises:
    ValueError: a workload layer without a captured value (one line naming them).
  """
  names = [l.name for l in workload.layers]
  missing = [n for n in names if n not in zero_fractions]
  if missing:
    raise ValueError(f"no captured zero fraction for layer(s) {', '.join(missing)}; captured: "
                     f"{', '.join(zero_fractions) or '(none)'}")
  z = [float(zero_fractions[n]) for n in names]
  for n, v in zip(names, z):
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
      raise ValueError(f"zero fraction of layer {n} must be in [0, 1]; got {v}")
  return {n: Activity(act_density=1 - z[i], out_density=1 - (z[i + 1] if i + 1 < len(z) else z[i]),
                      compress_input=i > 0) for i, n in enumerate(names)}


def uniform_stats(workload: Workload, zero_fraction: float, first_layer_zero: float = 0.0
                  ) -> dict[str, Activity]:
  """The same assumed zero fraction for every layer but the first (the raw input)."""
  if not (math.isfinite(zero_fraction) and 0.0 <= zero_fraction < 1.0):
    raise ValueError(f"zero fraction must be in [0, 1); got {zero_fraction}")
  names = [l.name for l in workload.layers]
  return activation_stats(workload, {n: (first_layer_zero if i == 0 else zero_fraction)
                                     for i, n in enumerate(names)})


def save_zero_fractions(zero_fractions: Mapping[str, float], path: str) -> None:
  """Writes ``{layer: zero fraction}`` as JSON."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(zero_fractions), f, indent=1, allow_nan=False)


def load_zero_fractions(path: str) -> dict[str, float]:
  """Reads ``{layer: zero fraction}`` (one-line ``ValueError`` for a missing/bad file)."""
  d = cli.load_json(path, f"activation statistics file {path!r}")
  if not isinstance(d, dict) or not all(isinstance(v, (int, float)) for v in d.values()):
    raise ValueError(f"activation statistics file {path!r}: expected a JSON object "
                     "{layer: zero fraction}")
  return {str(k): float(v) for k, v in d.items()}
