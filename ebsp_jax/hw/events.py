"""Data-aware statistics of trained EBSP weights: the ``LayerEvents`` schema.

The hardware model costs EBSP from shapes alone unless it is given per-layer *event counts*.
They come either from the datapath emulator (``ebsp_jax.arith``, which counts events while it
runs real data) or, when only trained weights are at hand, from the integer weight codes
(:func:`events_from_codes`; every weight takes part in ``N*P*Q`` products).

Schema (one record per conv/dense layer; JSON: a list of such dicts, or ``{name: dict}``)::

    {
      "name": "stage1_block0/conv1",   # Layer.name (param path without 'params/' and '/kernel';
                                       #   'params/.../kernel' is accepted too)
      "macs": 12845056,                # products evaluated, zero weights included (= Layer.macs)
      "zero_weight_products": 1234567, # products whose weight code is 0 (skippable / gated)
      "shift_hist": [900, 400, 100],   # NON-ZERO products by weight shift s = 0..max_shift
      "mantissa_hist": [0, 5, ...],    # optional: non-zero products by mantissa m < 2**length
      "lut_fills": null,               # optional: LUT fills counted by the emulator
      "lut_reads": null,               # optional: LUT reads (= non-zero products)
      "lod_uses": null,                # optional: leading-one detections of the encoding (below)
      "adds": null,                    # optional: accumulator additions
      "acc_high_water_bits": 21,       # optional: accumulator width the recorded data needed
      "acc_bound_bits": 24,            # optional: static worst case over any activations
      "zero_activation_products": 0    # optional: non-zero weight x zero activation products
    }

One definition per key, whoever produces the record; ``ebsp_jax.arith.events`` (the bit-exact
datapath emulator) is the reference:

* ``lod_uses``: leading-one detections that *encode* operands into ``(s, m)``: one per weight
  element (weights are static, docs/method.md §3: the code is computed once, when the weights are
  encoded; a layer run ``repeat`` times counts its weights ``repeat`` times), plus one per
  activation element in the emulator's dual-LOD mode. It is not the per-product LOD activity
  of a ``weight_format='raw'`` PE (which re-detects the stored magnitude every product): the
  cost model derives that from ``macs`` and ``zero_weight_products``, not from this count.
* ``acc_high_water_bits``: two's-complement bits that hold every partial sum of the recorded
  data (the emulator's; see ``ebsp_jax/arith/events.py``). Producers that see no activations
  leave it ``None``.
* ``acc_bound_bits``: a data-independent bound from the weights alone: the widest output
  channel's ``sum |q|`` times the largest activation magnitude of the format (unsigned
  ``2^a - 1``; signed sign-magnitude ``2^(a-1) - 1``, the integer lowering's range), in
  two's-complement bits (``bit_length + 1``, as ``ebsp_jax.quant`` reports ``acc_bound_bits``).

``ebsp_jax.arith.events`` produces these keys (plus a few extra ones that are ignored:
``outputs``, ``contraction``, ``lut_fill_adds``, ``acc_final_bits``, ...), so its recorded
dicts can be saved as JSON and passed to ``experiments/hardware.py --events``; the names must
be the workload's layer names (``experiments/hardware.py`` checks that every layer has a
record and every record a layer).

What the cost model uses: ``zero_weight_products / macs`` (zero-weight products do no datapath
work: operand isolation gates the LOD, mux, LUT read, shifter and adder; the cycle is still
spent) and the share of non-zero products with ``s > 0`` (only those pass the barrel shifter;
``s = 0`` bypasses it). LUT fills are counted by the dataflow model from the mapping (they
depend on it, not on the data); the emulator's counts are reported beside it. The mantissa
histogram gives the LUT entries actually used, the high-water mark the accumulator width the
data actually needed and the bound the width any data could need; they are reported, not fed
back into the hardware (which is sized for the worst case).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Collection, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax import cli
from ebsp_jax.numerics import BitPattern, artifact, fit_scale, quantize
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Layer, Workload


@dataclasses.dataclass(frozen=True)
class LayerEvents:
  """Event counts of one layer (see the module docstring for the JSON schema).

  Attributes:
    name: layer name.
    macs: products evaluated (zero weights included).
    zero_weight_products: products with a zero weight.
    shift_hist: non-zero products by shift ``s = 0..max_shift``.
    mantissa_hist: non-zero products by mantissa ``m`` (optional).
    lut_fills: LUT fills (optional; from the emulator).
    lut_reads: LUT reads (optional).
    lod_uses: leading-one detections of the encoding: one per weight element (+ one per
      activation element in dual-LOD mode) (optional).
    adds: accumulator additions (optional).
    acc_high_water_bits: accumulator bits the recorded data needed (optional; emulator).
    acc_bound_bits: static accumulator bound from the weights, bits (optional).
    zero_activation_products: products with a non-zero weight and a zero activation
      (optional; reported, not used: no design here gates on activations).
  """

  name: str
  macs: int
  zero_weight_products: int
  shift_hist: tuple[int, ...]
  mantissa_hist: tuple[int, ...] | None = None
  lut_fills: int | None = None
  lut_reads: int | None = None
  lod_uses: int | None = None
  adds: int | None = None
  acc_high_water_bits: int | None = None
  zero_activation_products: int | None = None
  acc_bound_bits: int | None = None

  def __post_init__(self):
    if self.macs < 0 or self.zero_weight_products < 0:
      raise ValueError(f"{self.name}: counts must be >= 0")
    if self.zero_weight_products > self.macs:
      raise ValueError(f"{self.name}: zero_weight_products ({self.zero_weight_products}) > "
                       f"macs ({self.macs})")
    nz = self.macs - self.zero_weight_products
    if self.shift_hist and sum(self.shift_hist) != nz:
      raise ValueError(f"{self.name}: shift_hist sums to {sum(self.shift_hist)}, expected the "
                       f"{nz} non-zero products")

  @property
  def zero_weight_fraction(self) -> float:
    """Fraction of products with a zero weight."""
    return self.zero_weight_products / self.macs if self.macs else 0.0

  @property
  def shifted_fraction(self) -> float:
    """Fraction of non-zero products whose shift is > 0."""
    nz = sum(self.shift_hist)
    return (nz - self.shift_hist[0]) / nz if nz else 0.0

  @property
  def lut_entries_used(self) -> int | None:
    """Distinct mantissas used (the LUT entries that ever get read), when known."""
    if self.mantissa_hist is None:
      return None
    return int(sum(1 for c in self.mantissa_hist if c > 0))

  def activity(self) -> Activity:
    """The :class:`~ebsp_jax.hw.pe.Activity` the PE energy model uses."""
    return Activity(nonzero_fraction=1.0 - self.zero_weight_fraction,
                    shifted_fraction=self.shifted_fraction)

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready dict (the schema's form)."""
    d = dataclasses.asdict(self)
    d["shift_hist"] = list(self.shift_hist)
    if self.mantissa_hist is not None:
      d["mantissa_hist"] = list(self.mantissa_hist)
    return d

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "LayerEvents":
    """Builds from the schema's dict form (unknown keys are ignored).

    Raises:
      ValueError: not a dict, a required key missing, or a value of the wrong type (one line).
    """
    if not isinstance(d, Mapping):
      raise ValueError(f"a LayerEvents record must be a JSON object; got {type(d).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in d.items() if k in fields}
    missing = {"name", "macs", "zero_weight_products", "shift_hist"} - set(kw)
    if missing:
      raise ValueError(f"LayerEvents record {d.get('name', '(unnamed)')!r} lacks "
                       f"{sorted(missing)}")
    if not isinstance(kw["name"], str):
      raise ValueError(f"LayerEvents record: 'name' must be a string; got {kw['name']!r}")
    kw["name"] = normalize_name(kw["name"])
    where = f"LayerEvents record {kw['name']!r}"
    for k in ("shift_hist", "mantissa_hist"):
      if k == "mantissa_hist" and kw.get(k) is None:
        continue
      if not isinstance(kw[k], list):
        raise ValueError(f"{where}: {k!r} must be a list of integers; got {kw[k]!r:.60}")
      kw[k] = tuple(_int(x, where, k) for x in kw[k])
    for k in ("macs", "zero_weight_products"):
      kw[k] = _int(kw[k], where, k)
    for k in ("lut_fills", "lut_reads", "lod_uses", "adds", "acc_high_water_bits",
              "zero_activation_products", "acc_bound_bits"):
      if kw.get(k) is not None:
        kw[k] = _int(kw[k], where, k)
    return cls(**kw)


def _int(v: Any, where: str, key: str) -> int:
  """``v`` as an int, or a one-line ValueError (bools and non-integral floats are refused)."""
  if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
    raise ValueError(f"{where}: {key!r} must be an integer; got {v!r:.60}")
  return int(v)


def normalize_name(name: str) -> str:
  """``'params/a/b/kernel'`` -> ``'a/b'`` (layer names as :class:`Layer` uses them)."""
  parts = name.split("/")
  if parts and parts[0] == "params":
    parts = parts[1:]
  if parts and parts[-1] == "kernel":
    parts = parts[:-1]
  return "/".join(parts)


def pattern_fields(bits: int, length: int, signed: bool = True) -> tuple[int, int]:
  """``(magnitude_bits, max_shift)`` of ``BitPattern(bits, length, signed)``."""
  n = bits - 1 if signed else bits
  return n, n - length


def split_codes(q: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(nonzero mask, shift, mantissa)`` of integer weights ``q`` under pattern length L.

  ``s = max(0, floor(log2|q|) - L + 1)``, ``m = |q| >> s`` (the canonical code of
  docs/method.md §2); zero weights get ``s = m = 0``.
  """
  mag = np.abs(np.asarray(q).astype(np.int64))
  nz = mag > 0
  pos = np.zeros_like(mag)
  pos[nz] = np.floor(np.log2(mag[nz])).astype(np.int64)
  shift = np.where(nz, np.maximum(0, pos - length + 1), 0)
  mant = np.where(nz, mag >> shift, 0)
  return nz, shift, mant


def events_from_codes(q: np.ndarray, layer: Layer, bits: int, length: int,
                      activation_bits: int = 8, signed: bool = True,
                      check_grid: bool = True, activation_signed: bool = False) -> LayerEvents:
  """Event counts of ``layer`` from its integer weight codes ``q`` (any shape, HWIO for convs).

  Every weight is used ``layer.uses_per_weight`` (= N*P*Q) times per run; ``lod_uses`` is one
  per weight element per run (the encoding, see the module docstring). Without activations
  there is no high-water mark (``acc_high_water_bits`` is ``None``); ``acc_bound_bits`` is the
  static worst case over output channels (the last axis of ``q``), ``sum |q|`` times the
  largest activation magnitude: ``2^a - 1`` unsigned, ``2^(a-1) - 1`` when
  ``activation_signed`` (sign-magnitude, the integer lowering's range). The unsigned bound
  also bounds a signed layer (it is larger), so it is the safe default when the activation
  format is not known.

  Raises:
    ValueError: ``q`` has the wrong number of weights, or (``check_grid``) values off the
      pattern grid.
  """
  q = np.asarray(q)
  if q.size != layer.weight_count:
    raise ValueError(f"{layer.name}: got {q.size} weight codes, the layer has "
                     f"{layer.weight_count}")
  n, s_max = pattern_fields(bits, length, signed)
  nz, shift, mant = split_codes(q, length)
  if check_grid:
    mag = np.abs(q.astype(np.int64))
    off = nz & (((mant << shift) != mag) | (mant >= (1 << length)) | (shift > s_max))
    if np.any(off) or np.any(mag >= (1 << n)):
      raise ValueError(f"{layer.name}: {int(np.sum(off))} weight codes are off the "
                       f"{bits}b(L{length}) grid")
  uses = layer.uses_per_weight * layer.repeat
  shift_hist = np.bincount(shift[nz].ravel(), minlength=s_max + 1)[: s_max + 1] * uses
  mant_hist = np.bincount(mant[nz].ravel(), minlength=1 << length)[: 1 << length] * uses
  zero = int(np.sum(~nz)) * uses
  per_out = np.abs(q.astype(np.int64)).reshape(-1, q.shape[-1]).sum(axis=0) if q.ndim else 0
  max_act = (1 << (activation_bits - 1)) - 1 if activation_signed else (1 << activation_bits) - 1
  worst = int(np.max(per_out)) * max_act if np.size(per_out) else 0
  macs = layer.macs * layer.repeat
  nzp = macs - zero
  return LayerEvents(name=layer.name, macs=macs, zero_weight_products=zero,
                     shift_hist=tuple(int(x) for x in shift_hist),
                     mantissa_hist=tuple(int(x) for x in mant_hist), lut_reads=nzp,
                     lod_uses=layer.weight_count * layer.repeat, adds=nzp,
                     acc_bound_bits=worst.bit_length() + 1)


def uniform_events(layer: Layer, bits: int, length: int, signed: bool = True) -> LayerEvents:
  """Events for weights spread uniformly over the pattern's levels (a shape-only default)."""
  levels = BitPattern(bits, length, signed).levels
  reps = math.ceil(layer.weight_count / len(levels))
  q = np.tile(levels, reps)[: layer.weight_count]
  return events_from_codes(q, layer, bits, length, signed=signed)


# ----------------------------------------------------------------------------------------------
# I/O.


def save_events(events: Iterable[LayerEvents], path: str) -> None:
  """Writes events as a JSON list (the schema's file form)."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump([e.to_dict() for e in events], f, indent=1)


def load_events(path: str) -> dict[str, LayerEvents]:
  """Reads a JSON list of records or a ``{name: record}`` dict; returns ``{name: events}``.

  Raises:
    ValueError: the file is missing, not JSON, not one of the two forms (e.g. a hardware
      report), has an invalid record, or names a layer twice (one line, naming the file).
  """
  where = f"events file {path!r}"
  expected = ("expected a JSON list of LayerEvents records or {layer name: record} (what "
              "ebsp_jax.arith.events records; schema in ebsp_jax/hw/events.py)")
  data = cli.load_json(path, where)
  if isinstance(data, list):
    records = data
  elif isinstance(data, dict):
    bad = next((k for k, v in data.items() if not isinstance(v, dict)), None)
    if bad is not None:
      raise ValueError(f"{where}: {expected}; got an object whose {bad!r} is "
                       f"{_json_kind(data[bad])}, not a record")
    records = [dict(v, name=v.get("name", k)) for k, v in data.items()]
  else:
    raise ValueError(f"{where}: {expected}; got {_json_kind(data)}")
  if not records:
    raise ValueError(f"{where}: no records; {expected}")
  out = {}
  for i, r in enumerate(records):
    if not isinstance(r, dict):
      raise ValueError(f"{where}: record {i} is {_json_kind(r)}; {expected}")
    try:
      e = LayerEvents.from_dict(r)
    except (ValueError, TypeError) as err:
      raise ValueError(f"{where}: {str(err).splitlines()[0]}") from None
    if e.name in out:
      raise ValueError(f"{where}: layer {e.name!r} has more than one record (sum a layer's "
                       "records into one first, e.g. with ebsp_jax.arith.events.total)")
    out[e.name] = e
  return out


def _json_kind(v: Any) -> str:
  """``'an object'``, ``'an array'``, ``'a string'``, ...: a JSON value's kind, for messages."""
  if isinstance(v, bool):
    return "a boolean"
  if v is None:
    return "null"
  return {dict: "an object", list: "an array", str: "a string"}.get(
      type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)


def load_params(path: str) -> dict[str, np.ndarray]:
  """Flat ``{'a/b/kernel': array}`` of a checkpoint.

  Accepts a ``.npz`` file (keys are '/'-joined paths), or an orbax checkpoint directory (a
  ``CheckpointManager`` directory picks its latest numeric step; the first sub-item that
  restores is used). Raises ``ValueError`` with one line when nothing can be read.
  """
  if not os.path.exists(path):
    raise ValueError(f"params checkpoint {path!r} does not exist")
  if os.path.isfile(path):
    if path.endswith(".npz"):
      with np.load(path) as z:
        return {k: np.asarray(z[k]) for k in z.files}
    raise ValueError(f"unsupported params file {path!r} (expected .npz or an orbax directory)")
  import orbax.checkpoint as ocp  # deferred heavy import (orbax): only this reader needs it
  steps = [d for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d))]
  root = os.path.join(path, max(steps, key=int)) if steps else path
  candidates = [root] + [os.path.join(root, d) for d in sorted(os.listdir(root))
                         if os.path.isdir(os.path.join(root, d))]
  last_err = None
  for c in candidates:
    try:
      tree = ocp.PyTreeCheckpointer().restore(c)
    except Exception as e:  # pylint: disable=broad-except
      last_err = e
      continue
    flat = {}
    for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      key = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                     for k in kp)
      if hasattr(leaf, "shape"):
        flat[key] = np.asarray(leaf)
    if flat:
      return flat
  raise ValueError(f"could not restore an orbax checkpoint from {path!r}: "
                   f"{str(last_err).splitlines()[0] if last_err else 'no arrays found'}")


def find_kernel(flat: Mapping[str, np.ndarray], layer: Layer) -> np.ndarray | None:
  """The kernel of ``layer`` in a flat params dict, by its exact parameter path (the traced
  ``Layer.param_path``, e.g. ``params/conv1/kernel``, or the same without ``params/``), or
  None. No suffix matching: a checkpoint whose paths are nested otherwise is not guessed at."""
  path = layer.param_path or f"params/{layer.name}/kernel"
  for key in (path, path[len("params/"):] if path.startswith("params/") else None):
    if key is not None and key in flat and np.size(flat[key]) == layer.weight_count:
      return flat[key]
  return None


def events_from_params(flat: Mapping[str, np.ndarray], workload: Workload, bits: int,
                       length: int, activation_bits: int = 8,
                       per_channel: bool = True,
                       signed_activation_layers: Collection[str] = ()) -> dict[str, LayerEvents]:
  """Event counts of every layer whose kernel is in a flat params dict (foreign float weights;
  a training run's own codes: :func:`events_from_artifact`).

  A layer's kernel is the entry at its exact parameter path (:func:`find_kernel`).

  Integer kernels are taken as the codes; float kernels are quantized onto the pattern with
  ``ebsp_jax.fit_scale`` / ``ebsp_jax.quantize`` (per output channel by default) first, which
  is exact for weights that ADMM already put on the grid. Layers whose kernel is not found
  have no entry (callers that cost a whole network must check coverage).
  ``signed_activation_layers`` names the layers whose input activations are signed (their
  ``acc_bound_bits`` uses ``2^(a-1) - 1``; the others the larger unsigned ``2^a - 1``).

  Raises:
    ValueError: a float kernel with NaN or infinite values (one line naming the layer).
  """
  out = {}
  for layer in workload.layers:
    k = find_kernel(flat, layer)
    if k is None:
      continue
    if np.issubdtype(k.dtype, np.integer):
      q = k
    else:
      bad = int(np.size(k) - np.count_nonzero(np.isfinite(k)))
      if bad:
        raise ValueError(f"the kernel of layer {layer.name} has {bad} NaN/inf value(s) of "
                         f"{np.size(k)}; a trained checkpoint has finite weights only")
      q = quantize_kernel(k, bits, length, per_channel)
    out[layer.name] = events_from_codes(
        q, layer, bits, length, activation_bits,
        activation_signed=layer.name in set(signed_activation_layers))
  return out


def quantize_kernel(w: np.ndarray, bits: int, length: int, per_channel: bool = True) -> np.ndarray:
  """Integer codes of float kernel ``w`` on ``BitPattern(bits, length)`` (last axis = out)."""
  p = BitPattern(bits, length)
  x = jnp.asarray(w, jnp.float32)
  axis = tuple(range(x.ndim - 1)) if (per_channel and x.ndim > 1) else None
  scale = fit_scale(x, p, axis=axis)
  return np.asarray(quantize(x, p, scale))


def events_from_artifact(qm: artifact.QuantizedModel, workload: Workload,
                         activation_bits: int | None = None) -> dict[str, LayerEvents]:
  """Event counts of every layer of ``workload`` from a run's quantized model.

  Each workload layer is matched to the artifact's layer of exactly its parameter path
  (``Layer.param_path`` without ``params/`` and ``/kernel``); its codes are counted in its
  own weight format, its ``acc_bound_bits`` with its recorded input-activation signedness.

  Args:
    qm: the run's :class:`~ebsp_jax.numerics.artifact.QuantizedModel`.
    workload: the traced workload of ``qm.model``.
    activation_bits: input bits for ``acc_bound_bits`` (default: the run's, else 8).

  Raises:
    ValueError: a workload layer without quantized codes (e.g. kept in float) or a quantized
      layer the workload lacks (one line).
  """
  by_path = {normalize_name(l.param_path or l.name): l for l in workload.layers}
  missing = [n for n in by_path if n not in qm.layers]
  extra = [n for n in qm.layers if n not in by_path]
  if missing or extra:
    raise ValueError(
        f"the quantized model of {qm.model} does not match the workload of {workload.name}: "
        + "; ".join(([f"no codes for layer(s) {', '.join(missing)} (kept in float by the run?"
                      " EBSP costs every layer in a pattern format)"] if missing else [])
                    + ([f"layer(s) {', '.join(extra)} not in the workload"] if extra else [])))
  bits = activation_bits or qm.activation_bits or 8
  out = {}
  for path, layer in by_path.items():
    ql = qm.layers[path]
    out[layer.name] = events_from_codes(
        ql.codes, layer, ql.format.bits, ql.format.length, bits, signed=ql.format.signed,
        activation_signed=bool(ql.activation is not None and ql.activation.signed))
  return out


def activities(events: Mapping[str, LayerEvents]) -> dict[str, Activity]:
  """``{layer name: Activity}`` for the network evaluation."""
  return {k: e.activity() for k, e in events.items()}


def summarize_events(events: Sequence[LayerEvents]) -> dict[str, Any]:
  """Network-level totals: zero fraction, shifted fraction, LUT entries, accumulator bits.

  ``acc_high_water_bits`` (recorded data) and ``acc_bound_bits`` (static bound) are the maxima
  over the layers that have them, ``None`` where no layer has.
  """
  macs = sum(e.macs for e in events)
  zero = sum(e.zero_weight_products for e in events)
  nz = macs - zero
  shifted = sum(sum(e.shift_hist[1:]) for e in events)
  hw = [e.acc_high_water_bits for e in events if e.acc_high_water_bits is not None]
  bound = [e.acc_bound_bits for e in events if e.acc_bound_bits is not None]
  used = [e.lut_entries_used for e in events if e.lut_entries_used is not None]
  return {"macs": macs, "zero_weight_fraction": zero / macs if macs else 0.0,
          "shifted_fraction": shifted / nz if nz else 0.0,
          "acc_high_water_bits": max(hw) if hw else None,
          "acc_bound_bits": max(bound) if bound else None,
          "lut_entries_used_max": max(used) if used else None}
