"""Per-layer hardware costs of every candidate format: plain ``(layers, candidates)`` arrays.

:func:`layer_costs` evaluates each layer of a :class:`~ebsp_jax.hw.Workload` in each candidate
``BitPattern(bits, L)`` and returns energy (pJ), latency (s) and weight storage (bits) per
layer and candidate, on one of two kinds of accelerator:

* ``design=None``: each candidate on the EBSP accelerator built for it alone
  (:func:`ebsp_jax.hw.build_accelerator`, equal area). A column is exactly that format's
  per-layer result in :func:`ebsp_jax.hw.evaluate_network`: an all-one-format network costs
  what ``experiments/hardware.py --pattern_bits --pattern_length`` reports.
* ``design=(bits, length, max_shift)`` (:func:`design_of`): every candidate on the *one* EBSP
  design for those maxima (:func:`ebsp_jax.hw.arch.build_ebsp_for`: its PE has the widest
  LOD and weight register, the longest LUT, the largest shift; its area sets the PE count),
  each layer through :func:`ebsp_jax.hw.designs.ebsp.layer_view` (its own weight width, LUT
  fills of the entries it reads). A mixed choice's sum on the design it needs is what
  ``experiments/hardware.py --layer_formats`` reports for it.

Which design a mixed choice needs depends on the choice; :mod:`ebsp_jax.search.designs` makes
the search exact over that. Costs are additive over layers (layers run one after another;
leakage is charged per layer).
Results can be kept in a ``cache`` mapping (e.g. a JSON file through :func:`load_cache` /
:func:`save_cache`), keyed by the hardware model's source, the layer shapes, the format and
the design settings, so a stale entry is never reused after the model changes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any, Mapping, MutableMapping, Optional, Sequence

import numpy as np

from ebsp_jax import hw
from ebsp_jax.numerics.pattern import BitPattern

#: metric name -> (CostTable attribute, unit).
METRICS: Mapping[str, tuple[str, str]] = {
    "energy": ("energy_pj", "pJ"), "latency": ("latency_s", "s"), "bits": ("weight_bits", "bits")}


@dataclasses.dataclass(frozen=True)
class CostTable:
  """Costs of candidate ``k`` at layer ``i``.

  Attributes:
    layers: layer names (parameter-tree module paths, e.g. ``'conv_init'``), workload order.
    formats: the candidates.
    energy_pj: float64 ``(L, K)``, pJ per inference of the workload's batch.
    latency_s: float64 ``(L, K)``, seconds per inference of the workload's batch.
    weight_bits: float64 ``(L, K)``: weights x bits per stored weight (integral values).
  """

  layers: tuple[str, ...]
  formats: tuple[BitPattern, ...]
  energy_pj: np.ndarray
  latency_s: np.ndarray
  weight_bits: np.ndarray

  def metric(self, name: str) -> np.ndarray:
    """The ``(L, K)`` array of ``'energy'``, ``'latency'`` or ``'bits'``."""
    if name not in METRICS:
      raise ValueError(f"unknown cost metric {name!r}; known: {', '.join(METRICS)}")
    return getattr(self, METRICS[name][0])

  def index(self, fmt: BitPattern) -> int:
    """Column of ``fmt``."""
    if fmt not in self.formats:
      raise ValueError(f"format {fmt} is not in the cost table "
                       f"({', '.join(map(str, self.formats))})")
    return self.formats.index(fmt)

  def totals(self, choice: Sequence[int]) -> dict[str, float]:
    """``{'energy_pj', 'latency_s', 'weight_bits'}`` of a choice (left-to-right sums)."""
    out = {}
    for name, (attr, _) in METRICS.items():
      arr = getattr(self, attr)
      t = 0.0
      for i, k in enumerate(choice):
        t += float(arr[i, k])
      out[attr] = t
    return out


def layer_name(param_path: str) -> str:
  """``'params/stage1_block0/conv1/kernel'`` -> ``'stage1_block0/conv1'``."""
  parts = param_path.split("/")
  if parts and parts[0] == "params":
    parts = parts[1:]
  if parts and parts[-1] == "kernel":
    parts = parts[:-1]
  return "/".join(parts)


def workload_layer_names(workload: hw.Workload) -> tuple[str, ...]:
  """The parameter-tree name of every workload layer, in order.

  Raises:
    ValueError: a layer whose weight is not a ``kernel`` parameter (e.g. activation x
      activation products), or two layers sharing one kernel: neither can take a format of
      its own (one line).
  """
  names = []
  for l in workload.layers:
    if not l.weight_param or not l.param_path.endswith("kernel"):
      raise ValueError(f"workload layer {l.name!r} has no kernel parameter "
                       f"({l.param_path or 'an activation x activation product'}): a per-layer "
                       "format needs one kernel per layer")
    n = layer_name(l.param_path)
    if n in names:
      raise ValueError(f"kernel {l.param_path!r} is used by more than one workload layer")
    names.append(n)
  return tuple(names)


#: ``ebsp_jax/hw`` sources that cannot change an EBSP cost: the other designs, figures, exports,
#: the baselines' validation, data-aware statistics (the search costs shapes only) and flags.
#: Every other source (and any new one) is part of :func:`hw_version`.
NOT_EBSP_COST = ("designs/eyeriss.py", "designs/bitfusion.py", "designs/wax.py",
                 "designs/olaccel.py", "designs/zena.py", "figures.py", "validation.py",
                 "zigzag_export.py", "timeloop_export.py", "activations.py", "events.py",
                 "flags.py")


@functools.lru_cache(maxsize=1)
def hw_version() -> str:
  """SHA-256 (16 hex digits) of the hardware model's EBSP cost sources (``ebsp_jax/hw`` and
  its subpackages, tests and :data:`NOT_EBSP_COST` excluded): part of every cache key."""
  d = os.path.dirname(hw.__file__)
  h = hashlib.sha256()
  files = []
  for root, _, names in os.walk(d):      # hw/ and its subpackages (hw/designs/)
    files += [os.path.relpath(os.path.join(root, f), d).replace(os.sep, "/") for f in names
              if f.endswith(".py") and not f.endswith("_test.py")]
  for f in sorted(set(files) - set(NOT_EBSP_COST)):
    with open(os.path.join(d, f), "rb") as fh:
      h.update(f.encode() + b"\0" + fh.read())
  return h.hexdigest()[:16]


def _key(workload: hw.Workload, fmt: BitPattern, objective: str, search: str,
         accelerator: Mapping[str, Any], design: Optional[Design] = None) -> str:
  layers = [[l.name, l.param_path, l.repeat, repr(l.signature())] for l in workload.layers]
  return json.dumps([hw_version(), layers, str(fmt), objective, search,
                     sorted((k, repr(v)) for k, v in accelerator.items())]
                    + ([list(design)] if design is not None else []))


#: An EBSP design for several formats: ``(bits, length, max_shift)``, the widest bits, the
#: longest pattern and the largest shift it runs.
Design = tuple[int, int, int]


def design_of(formats: Sequence[BitPattern]) -> Design:
  """``(bits, length, max_shift)`` of the one EBSP design that runs every format (e.g. every
  layer's choice): :func:`ebsp_jax.hw.pe.ebsp_support`."""
  return hw.pe.ebsp_support(formats)


def fits(fmt: BitPattern, design: Design) -> bool:
  """Whether ``design`` runs ``fmt`` (no wider, no longer, no larger shift)."""
  b, l, s = design
  return fmt.bits <= b and fmt.length <= l and fmt.max_shift <= s


def build_design(design: Design, **accelerator: Any) -> hw.Accelerator:
  """The EBSP accelerator for ``design`` (:func:`ebsp_jax.hw.arch.build_accelerator` with its
  pattern and shifter range; ``accelerator``: the other design settings)."""
  b, l, s = design
  return hw.build_accelerator("ebsp", pattern_bits=b, pattern_length=l,
                              pattern_max_shift=None if s == b - 1 - l else s, **accelerator)


def layer_costs(workload: hw.Workload, formats: Sequence[BitPattern], *, objective: str = "edp",
                search: str = "default", cache: Optional[MutableMapping[str, Any]] = None,
                design: Optional[Design] = None, **accelerator: Any) -> CostTable:
  """Energy, latency and weight bits of every layer of ``workload`` in every format.

  Args:
    workload: the layers (e.g. :func:`ebsp_jax.hw.model_workload`).
    formats: signed :class:`BitPattern` candidates.
    objective, search: the mapper's objective and preset (as in ``evaluate_network``).
    cache: optional mapping of earlier results (filled with new ones).
    design: ``None``: each format on the EBSP design built for it alone; else
      ``(bits, length, max_shift)`` (:func:`design_of`): every format on that one design
      (each must :func:`fits` it).
    **accelerator: keyword arguments of :func:`ebsp_jax.hw.build_accelerator` for EBSP other
      than the pattern (``area_mm2``, ``activation_bits``, ``acc_bits``, ``weight_format``,
      ``tech``, ...).

  Returns:
    The :class:`CostTable`; weight bits count ``repeat`` copies of a repeated layer's kernel.

  Raises:
    ValueError: a format the EBSP hardware model cannot build (not a signed ``BitPattern``),
      one that does not fit ``design``, a ``pattern_bits``/``pattern_length``/
      ``pattern_max_shift`` in ``accelerator``, a workload layer without its own kernel;
      ``hw.ConfigError`` for an impossible design (one line each).
  """
  names = workload_layer_names(workload)
  for f in formats:
    if not isinstance(f, BitPattern) or not f.signed:
      raise ValueError(f"format {f}: the EBSP hardware model costs signed BitPatterns only")
    if design is not None and not fits(f, design):
      raise ValueError(f"format {f} does not fit the EBSP design for <={design[0]}b, "
                       f"L<={design[1]}, shift<={design[2]}")
  clash = {"pattern_bits", "pattern_length", "pattern_max_shift"} & set(accelerator)
  if clash:
    raise ValueError(f"{', '.join(sorted(clash))}: set by each candidate format, not by the "
                     "caller")
  if design is not None:
    design = tuple(int(v) for v in design)
  rows = []
  for f in formats:
    key = _key(workload, f, objective, search, accelerator, design)
    if cache is not None and key in cache:
      rows.append(np.asarray(cache[key], np.float64))
      continue
    acc = build_design(design if design is not None else design_of([f]), **accelerator)
    res = hw.evaluate_network(workload, {"ebsp": acc}, objective=objective, search=search,
                              layer_formats={l.name: (f.bits, f.length)
                                             for l in workload.layers}).results["ebsp"]
    hz = acc.tech.clock_mhz * 1e6
    wbits = acc.pe.weight_bits if acc.pe.weight_format != "raw" else float(f.bits)
    row = np.array([[c.energy_pj * l.repeat, c.cycles * l.repeat / hz,
                     l.weight_count * l.repeat * wbits]
                    for c, l in zip(res.layers, workload.layers)], np.float64)
    if cache is not None:
      cache[key] = row.tolist()
    rows.append(row)
  table = np.stack(rows, axis=1) if rows else np.zeros((len(names), 0, 3))
  return CostTable(names, tuple(formats), table[..., 0], table[..., 1], table[..., 2])


def load_cache(path: str) -> dict[str, Any]:
  """The cost cache stored at ``path`` (empty when the file does not exist).

  Raises:
    ValueError: the file exists but is not a JSON object (one line).
  """
  if not os.path.exists(path):
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"cost cache {path} is not readable JSON ({type(e).__name__}); delete it "
                     "to rebuild") from None
  if not isinstance(obj, dict):
    raise ValueError(f"cost cache {path} is not a JSON object; delete it to rebuild")
  return obj


def save_cache(path: str, cache: Mapping[str, Any]) -> None:
  """Writes ``cache`` to ``path`` atomically (temporary file + rename)."""
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(dict(cache), f)
  os.replace(tmp, path)
