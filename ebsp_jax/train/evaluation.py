"""Evaluation in the three modes, and pattern statistics of the quantized weights.

* float / fake-quant: :func:`evaluate` runs a jitted :func:`~ebsp_jax.train.steps.eval_step`
  over the evaluation split (padded to full batches with a mask, so every batch has one shape and
  splits evenly over the devices); counts are exact integers. Each process passes its rows of
  every batch (multi-host); the jitted step adds them up.
* integer: :func:`integer_top1` — the emulated integer datapath of :mod:`ebsp_jax.quant`
  (``quant.to_integer``): top-1, the number of accumulator overflows and the ops run in float
  (the layers the weight rule keeps in float).
* :func:`pattern_telemetry` — scalars describing how the weights populate their patterns (logged
  over time during ADMM); :func:`weight_histograms` — per-layer histograms of levels, shifts and
  mantissas (TensorBoard); :func:`layer_stats` — the per-layer final statistics for results.json.

Evaluations show a progress bar (:mod:`ebsp_jax.progress`: batches done / total, images/s, ETA)
on stderr when it is a terminal or when asked (``$EBSP_JAX_PROGRESS=1``), in process 0 only.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax import progress, quant
from ebsp_jax.numerics import BitPattern, pattern_stats, quantize
from ebsp_jax.numerics.tree import Rule, layer_patterns, path_str
from ebsp_jax.train import sharding as sharding_lib

PyTree = Any
#: Histograms with more bins than this are not logged as scalars (e.g. 16-bit uniform formats).
MAX_HISTOGRAM_BINS = 32


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> Dict[str, np.ndarray]:
  """Pads a batch to ``size`` examples and adds ``mask`` (1 real, 0 padding)."""
  n = len(batch["label"])
  if n > size:
    raise ValueError(f"eval batch of {n} examples exceeds --eval_batch_size={size}")
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    pad = np.zeros((size - n,) + v.shape[1:], v.dtype)
    out[k] = np.concatenate([v, pad]) if n < size else v
  out["mask"] = np.concatenate([np.ones(n, np.float32), np.zeros(size - n, np.float32)])
  return out


def _tracked(batches: Iterable[Mapping[str, np.ndarray]], desc: str,
             show: Optional[bool]) -> Iterable[Mapping[str, np.ndarray]]:
  """``batches`` with a progress bar (batches done / total when ``batches`` has a length,
  images/s, ETA); never shown outside process 0."""
  return progress.track(batches, desc=desc, unit="batch", count=lambda b: len(b["label"]),
                        count_unit="img", enabled=show if jax.process_index() == 0 else False)


def evaluate(eval_fn: Callable[..., Dict[str, jax.Array]], params: PyTree,
             model_state: Mapping[str, PyTree], batches: Iterable[Mapping[str, np.ndarray]],
             batch_size: int, mesh, *, desc: str = "evaluation",
             show_progress: Optional[bool] = None) -> Dict[str, float]:
  """Top-1 accuracy and mean loss of ``eval_fn(params, model_state, batch)`` over ``batches``.

  Args:
    batches: this process's rows (:func:`~ebsp_jax.train.sharding.process_rows`) of every
      global evaluation batch of at most ``batch_size`` (the whole batches on one process);
      every process must iterate over the same number of batches. With a ``len`` (e.g. a
      :class:`ebsp_jax.data.Dataset`) the progress bar shows the total and an ETA.
    batch_size: the global evaluation batch size (each batch is padded to it).
    desc: the progress bar's label.
    show_progress: ``enabled`` of :func:`ebsp_jax.progress.track` (None: on a terminal).
  """
  start, stop = sharding_lib.process_rows(mesh, batch_size)
  correct = count = 0
  loss = 0.0
  for b in _tracked(batches, desc, show_progress):
    local = sharding_lib.shard_local_batch(pad_batch(b, stop - start), mesh, batch_size)
    out = jax.device_get(eval_fn(params, model_state, local))
    correct += int(out["correct"])
    count += int(out["count"])
    loss += float(out["loss_sum"])
  if count == 0:
    raise ValueError("the evaluation split is empty")
  return {"top1": correct / count, "loss": loss / count, "count": count}


# ------------------------------------------------------------------------------------------
# Integer mode (pluggable).
class IntegerResult(NamedTuple):
  """What :func:`integer_top1` measured.

  Attributes:
    top1: top-1 accuracy (``None`` without quantized activations).
    note: how it was measured (the backend), or why not.
    overflows: accumulator outputs over all layers and images that did not fit ``acc_bits``
      (``None`` when not measured).
    float_ops: the ops the integer lowering ran in float (``IntegerModel.float_ops``), e.g. the
      first conv and the classifier with ``--first_last=float``; empty when integer-only.
  """

  top1: Optional[float]
  note: str
  overflows: Optional[int]
  float_ops: Tuple[str, ...] = ()


def integer_top1(model_name: str, variables: Mapping[str, PyTree], weight_rule: Rule,
                 weight_scales: PyTree, activation_bits: int,
                 batches: Iterable[Mapping[str, np.ndarray]],
                 datapath: Optional[Mapping[str, Any]] = None, *,
                 show_progress: Optional[bool] = None,
                 model_input: Optional[Callable[[jax.Array], jax.Array]] = None
                 ) -> IntegerResult:
  """Top-1 of the emulated integer datapath, its accumulator overflows and its float ops.

  Uses ``ebsp_jax.quant.to_integer(model_name, variables, weight_rule=..., weight_scales=...,
  activation_bits=..., strict=...)`` and ``apply(images, with_stats=True)``. ``strict`` is
  False exactly when ``weight_rule`` keeps some conv/dense layer in float (``--first_last=float``):
  the lowering then runs those layers in float on a fake-quantized input, as the fake-quant
  model does, and lists them in ``float_ops``; any other op that cannot be lowered still raises.
  Runs on process-local copies of the (replicated) variables; with several processes, each
  passes its rows of the evaluation batches and the counts are added over processes (every
  process must call it). ``datapath``: extra options of ``to_integer`` (``acc_bits``,
  ``overflow``, ``mode``, ``rounding``, ``method``, ``accumulation``; default: exact, 32-bit,
  wrap). ``show_progress``: as in :func:`evaluate`. ``model_input``: images -> the model's
  float input (``Data.model_input``: uint8 batches normalized on the device); None: as given.

  Returns:
    An :class:`IntegerResult` ``(top1, note, overflows, float_ops)``; ``(None, why, None, ())``
    without quantized activations.
  """
  if activation_bits == 0:
    return IntegerResult(None, "integer mode needs quantized activations (--activation_bits > 0)",
                         None)
  local = sharding_lib.to_local(variables)
  float_kept = [k for k, p in layer_patterns(local["params"], weight_rule).items() if p is None]
  int_model = quant.to_integer(model_name, local, weight_rule=weight_rule,
                               weight_scales=sharding_lib.to_local(weight_scales),
                               activation_bits=activation_bits, strict=not float_kept,
                               **dict(datapath or {}))
  correct = count = overflows = 0
  float_ops: Tuple[str, ...] = ()
  for b in _tracked(batches, "integer evaluation", show_progress):
    if len(b["label"]) == 0:  # this process's rows lie past a short last batch
      continue
    images = jnp.asarray(b["image"]) if model_input is None else model_input(b["image"])
    logits, counts = int_model.apply(images, with_stats=True)
    correct += int(np.sum(np.argmax(np.asarray(logits), -1) == np.asarray(b["label"])))
    count += len(b["label"])
    overflows += sum(int(c) for c in counts.values())
    float_ops = tuple(dict.fromkeys(float_ops + tuple(int_model.float_ops)))
  correct, count, overflows = (int(v) for v in
                               sharding_lib.sum_over_processes([correct, count, overflows]))
  return IntegerResult(correct / max(count, 1), "ebsp_jax.quant.to_integer", overflows,
                       float_ops)


# ------------------------------------------------------------------------------------------
# Pattern statistics.
def quantized_leaves(params: PyTree, rule: Rule, scales: PyTree):
  """Yields ``(path, pattern, weight, scale)`` for every leaf the rule quantizes."""
  flat_scales = {path_str(p): s for p, s in
                 jax.tree_util.tree_flatten_with_path(scales, is_leaf=lambda x: x is None)[0]
                 if s is not None}
  for p, w in jax.tree_util.tree_flatten_with_path(params)[0]:
    key = path_str(p)
    pat = rule(key, w)
    if pat is not None and key in flat_scales:
      yield key, pat, w, flat_scales[key]


def pattern_telemetry(params: PyTree, rule: Rule, scales: PyTree, main: BitPattern,
                      z: Optional[PyTree] = None) -> Dict[str, jax.Array]:
  """Scalars over all quantized weights (traceable; jit it with ``rule``/``main`` static).

  Returns ``pattern/zero_fraction`` (weights whose nearest level is 0), ``pattern/near_grid``
  (within 0.05 of a level, in units of the scale), ``pattern/rel_error``
  (``||W - Proj W|| / ||W||``), ``pattern/z_agreement`` (nearest level equals Z's, when ``z`` is
  given) and, over the leaves in the ``main`` pattern, the fraction of non-zero weights per shift
  (``pattern/shift_k``) and of all weights per mantissa (``pattern/mantissa_m``), each only
  while it has at most ``MAX_HISTOGRAM_BINS`` bins.
  """
  z_flat = ({path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(
      z, is_leaf=lambda x: x is None)[0] if v is not None} if z is not None else {})
  total = zeros = near = agree = 0
  err2 = norm2 = jnp.zeros((), jnp.float32)
  shift = jnp.zeros((main.max_shift + 2,), jnp.int32)
  mant = jnp.zeros((1 << main.length,), jnp.int32)
  for key, pat, w, s in quantized_leaves(params, rule, scales):
    w = w.astype(jnp.float32)
    q = quantize(w, pat, s)
    y = w / s
    total += w.size
    zeros = zeros + jnp.sum(q == 0)
    near = near + jnp.sum(jnp.abs(y - q) < 0.05)
    err2 = err2 + jnp.sum(jnp.square(w - q * s))
    norm2 = norm2 + jnp.sum(jnp.square(w))
    if key in z_flat:
      agree = agree + jnp.sum(q == quantize(z_flat[key], pat, s))
    if pat == main:
      st = pattern_stats(q, pat)
      shift = shift + st["shift"]
      mant = mant + st["mantissa"]
  if total == 0:
    return {}
  out = {"pattern/zero_fraction": zeros / total, "pattern/near_grid": near / total,
         "pattern/rel_error": jnp.sqrt(err2 / jnp.maximum(norm2, 1e-30))}
  if z_flat:
    out["pattern/z_agreement"] = agree / total
  if main.max_shift + 1 <= MAX_HISTOGRAM_BINS:
    nz = jnp.maximum(jnp.sum(shift), 1)
    for k in range(main.max_shift + 1):
      out[f"pattern/shift_{k}"] = shift[k] / nz
  if (1 << main.length) <= MAX_HISTOGRAM_BINS:
    mt = jnp.maximum(jnp.sum(mant), 1)
    for m in range(1 << main.length):
      out[f"pattern/mantissa_{m}"] = mant[m] / mt
  return out


@functools.partial(jax.jit, static_argnums=2)
def _leaf_stats(w: jax.Array, s: jax.Array, pat: BitPattern):
  """``(pattern_stats, on_grid, level_counts)`` of one weight leaf (one compiled program, not
  dozens of ops); ``level_counts[i]``: weights whose nearest level is ``pat.levels[i]``."""
  q = quantize(w, pat, s)
  levels = jnp.asarray(pat.levels)
  idx = jnp.clip(jnp.searchsorted(levels, q.reshape(-1)), 0, levels.size - 1)
  counts = jnp.bincount(idx, length=levels.size).astype(jnp.int32)
  return pattern_stats(q, pat), jnp.all(q * s == w), counts


def weight_histograms(params: PyTree, rule: Rule, scales: PyTree
                      ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """TensorBoard histograms ``{tag: (values, counts)}`` of every quantized leaf (host values).

  For the layer ``key`` (e.g. ``Conv_0/kernel``) in a :class:`BitPattern`:

  * ``weights/levels/<key>``: the weights on the grid: how many have each level of the pattern
    (``pattern.levels``, in units of the scale) as their nearest level (the level they are
    projected to);
  * ``weights/shift/<key>``: the non-zero weights per shift ``k = 0..max_shift`` of their code;
  * ``weights/mantissa/<key>``: the weights per mantissa ``m = 0..2**L - 1`` (0: the zeros).

  Leaves in other number formats are left out. Used during ADMM (the weights' nearest levels
  while they converge) and after the hard projection (where the weights are).
  """
  out = {}
  for key, pat, w, s in quantized_leaves(params, rule, scales):
    if not isinstance(pat, BitPattern):
      continue
    st, _, counts = jax.device_get(_leaf_stats(w, s, pat))
    out[f"weights/levels/{key}"] = (pat.levels, np.asarray(counts))
    out[f"weights/shift/{key}"] = (np.arange(pat.max_shift + 1),
                                   np.asarray(st["shift"][:pat.max_shift + 1]))
    out[f"weights/mantissa/{key}"] = (np.arange(1 << pat.length), np.asarray(st["mantissa"]))
  return out


def layer_stats(params: PyTree, rule: Rule, scales: PyTree) -> Dict[str, Dict[str, Any]]:
  """Per quantized leaf: pattern, size, on-grid check, zero fraction, histograms (host values)."""
  out = {}
  for key, pat, w, s in quantized_leaves(params, rule, scales):
    st, exact, _ = jax.device_get(_leaf_stats(w, s, pat))
    exact = bool(exact)
    out[key] = {
        "pattern": str(pat), "size": int(w.size), "on_grid": exact,
        "zero_fraction": float(st["zero_fraction"]),
        "on_grid_fraction": float(st["on_grid_fraction"]),
        "shift_hist": ([int(v) for v in st["shift"]] if len(st["shift"]) <= 256 else None),
        "mantissa_hist": ([int(v) for v in st["mantissa"]] if len(st["mantissa"]) <= 256
                          else None),
        "scale_shape": list(np.shape(s)),
    }
  return out
