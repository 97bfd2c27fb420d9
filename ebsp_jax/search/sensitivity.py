"""Per-layer sensitivity of a trained float model to quantizing one layer's weights.

The measure is HAWQ-V3's (Yao et al., ICML 2021, eq. 8; HAWQ-V2, NeurIPS 2020)::

    Omega[i, k] = Tr(H_i) / n_i * || Q_k(W_i) - W_i ||^2

with ``H_i`` the Hessian of the training loss with respect to layer ``i``'s kernel ``W_i``
(``n_i`` weights) at the trained float weights, and ``Q_k`` the projection onto candidate
format ``k`` with its fitted scale (:func:`ebsp_jax.numerics.fit_scale`, per output channel
by default). Why: at a minimum the gradient vanishes, so the loss change of a perturbation
``D`` is ``1/2 D^T H D`` to second order; replacing ``H_i`` by its average eigenvalue
``Tr(H_i)/n_i`` (a perturbation with no preferred direction) and ignoring cross-layer terms
makes the total additive over layers, ``sum_i Omega[i, x_i] / 2``, which is what the exact
solver (:mod:`ebsp_jax.search.solver`) needs. ``Omega`` is kept without the 1/2, as in
HAWQ-V3.

``Tr(H_i)`` comes from Hutchinson's estimator (:func:`hessian_traces`):
``Tr(H_i) = E[v_i^T (H v)_i]`` for Rademacher ``v`` (independent +-1 entries) over all kernels at
once, the cross-layer terms vanishing in expectation; ``H v`` is forward-over-reverse,
``jax.jvp`` of ``jax.grad`` (one Hessian-vector product costs about two gradients), on a fixed
sample of training data in evaluation mode. :func:`fisher_traces` gives the alternative
``Tr(F_i) = 1/N sum_n ||grad_{W_i} loss_n||^2`` of the empirical Fisher (per-example gradients;
positive semi-definite, cheap, but only an approximation of the Hessian near a minimum).
A Hessian trace can come out negative when the model is not at a minimum or with too few
probes: callers must check (``experiments/search.py`` refuses it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics.pattern import NumberFormat
from ebsp_jax.numerics.quantizers import fit_scale, project
from ebsp_jax.numerics.tree import channel_axes, path_str

PyTree = Any
Batch = Mapping[str, Any]
LossFn = Callable[[PyTree, Batch], jax.Array]


@dataclasses.dataclass(frozen=True)
class TraceEstimate:
  """A per-layer trace estimate.

  Attributes:
    layers: layer names (module paths before ``/kernel``).
    trace: float64 ``(L,)``: the estimate (mean over probes for Hutchinson).
    stderr: float64 ``(L,)``: its standard error (over probes; 0 for the Fisher trace, which
      is exact on the sample).
    num_weights: int64 ``(L,)``: weights of each kernel (``n_i``).
    num_examples: examples the loss was averaged over.
    num_probes: Hutchinson probes (0 for the Fisher trace).
    method: ``'hessian'`` or ``'fisher'``.
  """

  layers: tuple[str, ...]
  trace: np.ndarray
  stderr: np.ndarray
  num_weights: np.ndarray
  num_examples: int
  num_probes: int
  method: str


def kernel_paths(params: PyTree, layers: Sequence[str]) -> list[str]:
  """``'<layer>/kernel'`` for each layer, checked to exist in ``params``.

  Raises:
    ValueError: a layer without a kernel leaf (one line, listing the kernels there are).
  """
  have = {path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
  out = []
  for l in layers:
    p = f"{l}/kernel"
    if p not in have:
      kernels = sorted(h[:-len("/kernel")] for h in have if h.endswith("/kernel"))
      raise ValueError(f"layer {l!r} has no kernel in the parameters; layers: "
                       f"{', '.join(kernels)}")
    out.append(p)
  return out


def kernels(params: PyTree, layers: Sequence[str]) -> list[jax.Array]:
  """The kernel array of each layer."""
  want = kernel_paths(params, layers)
  flat = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  return [flat[p] for p in want]


def quantization_error(weights: Sequence[jax.Array], formats: Sequence[NumberFormat], *,
                       per_channel: bool = True) -> np.ndarray:
  """``||Q_k(W_i) - W_i||^2`` for every kernel ``i`` and format ``k``.

  Args:
    weights: the kernels (float arrays, output channel last).
    formats: the candidate formats.
    per_channel: one scale per output channel (else one per tensor), fitted by
      :func:`ebsp_jax.numerics.fit_scale` with 16 alternations, as ADMM's projection does.

  Returns:
    float64 ``(L, K)``.
  """
  weights = [jnp.asarray(w, jnp.float32) for w in weights]
  out = np.zeros((len(weights), len(formats)))
  for k, f in enumerate(formats):
    proj = _projected(weights, f, bool(per_channel))
    out[:, k] = [float(jnp.sum(jnp.square(p - w))) for p, w in zip(proj, weights)]
  return out


def projected_kernels(weights: Sequence[jax.Array], fmt: NumberFormat, *,
                      per_channel: bool = True) -> list[jax.Array]:
  """Every kernel projected onto ``fmt`` with its fitted scale (one compilation per format).

  Args:
    weights: float kernels (output channel last).
    fmt: the format.
    per_channel: per-output-channel scales (else per tensor), 16 ``fit_scale`` alternations.

  Returns:
    float32 arrays of the kernels' shapes.
  """
  return list(_projected([jnp.asarray(w, jnp.float32) for w in weights], fmt,
                         bool(per_channel)))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _projected(weights, fmt, per_channel):
  out = []
  for w in weights:
    scale = fit_scale(w, fmt, channel_axes(w, per_channel), num_iters=16)
    out.append(project(w, fmt, scale))
  return out


def replace_kernels(params: PyTree, new: Mapping[str, jax.Array]) -> PyTree:
  """``params`` with the kernel of each layer in ``new`` replaced."""
  kernel_paths(params, list(new))
  want = {f"{l}/kernel": w for l, w in new.items()}
  return jax.tree_util.tree_map_with_path(lambda p, x: want.get(path_str(p), x), params)


def mean_loss(loss_fn: LossFn, params: PyTree, batches: Sequence[Batch]) -> float:
  """The example-weighted mean of ``loss_fn`` over ``batches`` (``loss_fn`` jitted)."""
  fn = jax.jit(loss_fn)
  total, count = 0.0, 0
  for b in batches:
    n = _batch_size(b)
    total += n * float(fn(params, b))
    count += n
  return total / count


def loss_increase(loss_fn: LossFn, params: PyTree, batches: Sequence[Batch],
                  layers: Sequence[str], formats: Sequence[NumberFormat], *,
                  per_channel: bool = True) -> np.ndarray:
  """Measured ``loss(W with W_i -> Q_k(W_i)) - loss(W)`` for every layer ``i`` and format
  ``k``, one layer quantized at a time: what ``Omega[i, k] / 2`` predicts.

  Returns:
    float64 ``(L, K)``.
  """
  batches = list(batches)
  base = mean_loss(loss_fn, params, batches)
  ws = kernels(params, layers)
  out = np.zeros((len(layers), len(formats)))
  for k, f in enumerate(formats):
    proj = projected_kernels(ws, f, per_channel=per_channel)
    for i, l in enumerate(layers):
      out[i, k] = mean_loss(loss_fn, replace_kernels(params, {l: proj[i]}), batches) - base
  return out


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rank correlation of two equally shaped arrays (ties ranked by position)."""
  a = np.asarray(a, np.float64).ravel()
  b = np.asarray(b, np.float64).ravel()
  ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
  rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
  return float(np.corrcoef(ra, rb)[0, 1])


def sensitivity_matrix(trace: TraceEstimate, error: np.ndarray) -> np.ndarray:
  """``Omega[i, k] = trace_i / n_i * error[i, k]`` (float64 ``(L, K)``)."""
  error = np.asarray(error, np.float64)
  if error.shape[0] != len(trace.layers):
    raise ValueError(f"error has {error.shape[0]} rows; the trace estimate has "
                     f"{len(trace.layers)} layers")
  return (trace.trace / trace.num_weights)[:, None] * error


def _probe_mask(params: PyTree, paths: Sequence[str]) -> PyTree:
  """Layer index of every kernel leaf in ``paths``, -1 elsewhere (static tree of ints)."""
  index = {p: i for i, p in enumerate(paths)}
  return jax.tree_util.tree_map_with_path(lambda p, _: index.get(path_str(p), -1), params)


def hessian_traces(loss_fn: LossFn, params: PyTree, batches: Iterable[Batch],
                   layers: Sequence[str], *, num_probes: int = 32, seed: int = 0,
                   probe_chunk: int = 8) -> TraceEstimate:
  """Hutchinson estimates of ``Tr(H_i)`` for each layer's kernel.

  The loss is the example-weighted mean of ``loss_fn`` over ``batches`` (so ``H`` is the
  Hessian of the mean loss over all their examples); every probe uses all batches.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over the batch (evaluation mode).
    params: the trained parameters.
    batches: the data sample: dicts of arrays with a common leading (example) dimension.
    layers: layer names (their ``<layer>/kernel`` leaves are probed).
    num_probes: Rademacher probes (>= 2, for the standard error).
    seed: seeds the probes (probe ``p`` uses ``fold_in(key(seed), p)``).
    probe_chunk: probes evaluated together (``jax.vmap``; memory grows with it).

  Returns:
    :class:`TraceEstimate` with ``method='hessian'``.
  """
  if num_probes < 2:
    raise ValueError(f"num_probes must be >= 2 (for a standard error); got {num_probes}")
  batches = list(batches)
  sizes = np.array([_batch_size(b) for b in batches], np.float64)
  if not batches or sizes.sum() < 1:
    raise ValueError("hessian_traces needs at least one non-empty batch")
  paths = kernel_paths(params, layers)
  mask = _probe_mask(params, paths)
  n_layers = len(paths)

  def vhv(params, batch, key):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    idx = treedef.flatten_up_to(mask)
    keys = jax.random.split(key, len(leaves))
    v = [jax.random.rademacher(kk, x.shape, x.dtype) if i >= 0 else jnp.zeros_like(x)
         for kk, x, i in zip(keys, leaves, idx)]
    v_tree = jax.tree_util.tree_unflatten(treedef, v)
    grad = jax.grad(lambda p: loss_fn(p, batch))
    _, hv = jax.jvp(grad, (params,), (v_tree,))
    hv = treedef.flatten_up_to(hv)
    out = jnp.zeros((n_layers,), jnp.float32)
    for vi, hvi, i in zip(v, hv, idx):
      if i >= 0:
        out = out.at[i].add(jnp.sum(vi * hvi))
    return out

  vhv_many = jax.jit(jax.vmap(vhv, in_axes=(None, None, 0)))
  chunk = max(1, min(int(probe_chunk), num_probes))
  weights = sizes / sizes.sum()
  base = jax.random.key(seed)
  ids = np.arange(-(-num_probes // chunk) * chunk)        # padded to whole chunks
  keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(ids))
  samples = np.zeros((ids.size, n_layers))
  for start in range(0, ids.size, chunk):
    for b, wgt in zip(batches, weights):
      samples[start:start + chunk] += wgt * np.asarray(
          vhv_many(params, b, keys[start:start + chunk]), np.float64)
  samples = samples[:num_probes]
  flat = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  n = np.array([int(np.prod(flat[p].shape)) for p in paths], np.int64)
  return TraceEstimate(tuple(layers), samples.mean(0),
                       samples.std(0, ddof=1) / math.sqrt(num_probes), n,
                       int(sizes.sum()), num_probes, "hessian")


def fisher_traces(loss_fn: LossFn, params: PyTree, batches: Iterable[Batch],
                  layers: Sequence[str]) -> TraceEstimate:
  """Empirical-Fisher traces ``1/N sum_n ||grad_{W_i} loss_n||^2`` (per-example gradients).

  Args:
    loss_fn: as in :func:`hessian_traces`; called on one-example batches.
    params, batches, layers: as in :func:`hessian_traces`.

  Returns:
    :class:`TraceEstimate` with ``method='fisher'`` (``stderr`` 0, ``num_probes`` 0).
  """
  batches = list(batches)
  paths = kernel_paths(params, layers)
  mask = _probe_mask(params, paths)
  n_layers = len(paths)

  def one(params, example):
    return loss_fn(params, jax.tree_util.tree_map(lambda x: x[None], example))

  @jax.jit
  def sq_norms(params, batch):
    g = jax.vmap(jax.grad(one), in_axes=(None, 0))(params, batch)
    leaves, treedef = jax.tree_util.tree_flatten(g)
    idx = treedef.flatten_up_to(mask)
    out = jnp.zeros((n_layers,), jnp.float32)
    for gi, i in zip(leaves, idx):
      if i >= 0:
        out = out.at[i].add(jnp.sum(jnp.square(gi)))
    return out

  total = np.zeros(n_layers)
  count = 0
  for b in batches:
    total += np.asarray(sq_norms(params, b), np.float64)
    count += _batch_size(b)
  if count < 1:
    raise ValueError("fisher_traces needs at least one non-empty batch")
  flat = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  n = np.array([int(np.prod(flat[p].shape)) for p in paths], np.int64)
  return TraceEstimate(tuple(layers), total / count, np.zeros(n_layers), n, count, 0, "fisher")


def _batch_size(batch: Batch) -> int:
  leaves = jax.tree_util.tree_leaves(batch)
  if not leaves:
    raise ValueError("a batch holds no arrays")
  return int(np.shape(leaves[0])[0])
