"""Quantization of whole parameter pytrees under a per-leaf rule.

A *rule* ``(path, leaf) -> BitPattern | None`` says which leaves are quantized and with which
pattern; ``None`` keeps a leaf in float. One rule expresses per-layer patterns, first/last
layer exemptions and bias/batch-norm exemptions (see :func:`make_rule`). ``path`` is the
``'/'``-joined key path, e.g. ``'stage1_block0/conv1/kernel'``.

Scales live in a pytree of the same structure as the params, ``None`` at unquantized leaves.
The default per-channel scale reduces every axis but the last (the output channel of flax's
``Dense`` ``(in, out)`` and ``Conv`` ``(H, W, in, out)`` kernels, depthwise included).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

import jax

from ebsp_jax.numerics.pattern import NumberFormat, check_format
from ebsp_jax.numerics.quantizers import fake_quant, fit_scale, project, quantize

PyTree = Any
Rule = Callable[[str, jax.Array], Optional[NumberFormat]]


def path_str(path: Sequence[Any]) -> str:
  """``'/'``-joined names of a ``jax.tree_util`` key path."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def make_rule(pattern: Optional[NumberFormat], *, include: str = r"(^|/)kernel$",
              exclude: Iterable[str] = (), overrides: Sequence[Tuple[str, Optional[NumberFormat]]] = (),
              min_ndim: int = 2) -> Rule:
  """Builds a rule from regular expressions over leaf paths.

  Candidates are the leaves whose path matches ``include`` (``re.search``) with
  ``ndim >= min_ndim`` (by default: every Dense/Conv kernel; biases and batch norm never);
  other leaves stay float. For a candidate, the first ``overrides`` entry whose regex matches
  decides (its pattern, or ``None`` to keep it float); else it stays float if it matches any
  ``exclude`` regex; else it gets ``pattern``.

  Example — 6b(L3) everywhere, first conv and classifier in 8-bit uniform:
    ``make_rule(BitPattern(6, 3), overrides=[("^conv_init/", uniform(8)), ("^head/", uniform(8))])``

  Raises:
    TypeError: ``pattern`` or an override's pattern is neither ``None`` nor a
      ``NumberFormat`` (e.g. the string ``"6b(L3)"``), checked here rather than at first use.
  """
  if pattern is not None:
    check_format("make_rule", pattern)
  overrides = tuple(overrides)
  for _, p in overrides:
    if p is not None:
      check_format("make_rule (overrides)", p)
  overrides = tuple((re.compile(rx), p) for rx, p in overrides)
  exclude = tuple(re.compile(rx) for rx in exclude)
  include_rx = re.compile(include)

  def rule(path: str, leaf: jax.Array) -> Optional[NumberFormat]:
    if not (include_rx.search(path) and getattr(leaf, "ndim", 0) >= min_ndim):
      return None
    for rx, p in overrides:
      if rx.search(path):
        return p
    if any(rx.search(path) for rx in exclude):
      return None
    return pattern

  return rule


def channel_axes(leaf: jax.Array, per_channel: bool = True):
  """Reduced axes of a leaf's scale: all but the last (per output channel), or ``None``."""
  if not per_channel or leaf.ndim < 2:
    return None
  return tuple(range(leaf.ndim - 1))


def _map(fn, params: PyTree, *others: PyTree) -> PyTree:
  """Maps ``fn(path_str, leaf, *other_leaves)`` over params; others may hold ``None``."""
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
  flat_others = [treedef.flatten_up_to(o) for o in others]
  out = [fn(path_str(p), leaf, *(fo[i] for fo in flat_others))
         for i, (p, leaf) in enumerate(leaves_with_path)]
  return jax.tree_util.tree_unflatten(treedef, out)


def tree_patterns(params: PyTree, rule: Rule) -> PyTree:
  """The pattern (or ``None``) the rule assigns to every leaf."""
  return _map(lambda path, leaf: rule(path, leaf), params)


def layer_patterns(params: PyTree, rule: Rule) -> Dict[str, Optional[NumberFormat]]:
  """``{layer_path: pattern or None}`` for every ``<layer_path>/kernel`` leaf of ``params``.

  ``None`` where the rule keeps the kernel in float. ``params`` may hold arrays or
  ``jax.ShapeDtypeStruct`` s (e.g. from ``jax.eval_shape(model.init, ...)``).
  """
  out: Dict[str, Optional[NumberFormat]] = {}
  for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    path = path_str(p)
    if path == "kernel" or path.endswith("/kernel"):
      out[path[: -len("kernel")].rstrip("/")] = rule(path, leaf)
  return out


def tree_fit_scale(params: PyTree, rule: Rule, *, per_channel: bool = True,
                   num_iters: int = 16) -> PyTree:
  """:func:`fit_scale` for every quantized leaf; ``None`` at float leaves."""
  def fn(path, leaf):
    p = rule(path, leaf)
    if p is None:
      return None
    return fit_scale(leaf, p, channel_axes(leaf, per_channel), num_iters=num_iters)
  return _map(fn, params)


def _with_scales(op, params, rule, scales, keep_float):
  def fn(path, leaf, scale):
    p = rule(path, leaf)
    if p is None:
      return leaf if keep_float else None
    if scale is None:
      raise ValueError(f"no scale for quantized leaf '{path}' (pattern {p}); "
                       "compute scales with tree_fit_scale")
    return op(leaf, p, scale)
  return _map(fn, params, scales)


def tree_quantize(params: PyTree, rule: Rule, scales: PyTree) -> PyTree:
  """int32 levels of every quantized leaf; ``None`` at float leaves."""
  return _with_scales(quantize, params, rule, scales, keep_float=False)


def tree_project(params: PyTree, rule: Rule, scales: Optional[PyTree] = None) -> PyTree:
  """Projects quantized leaves onto their grids (fitting scales when ``scales`` is None);
  float leaves pass through unchanged."""
  if scales is None:
    scales = tree_fit_scale(params, rule)
  return _with_scales(project, params, rule, scales, keep_float=True)


def tree_fake_quant(params: PyTree, rule: Rule, scales: PyTree) -> PyTree:
  """:func:`fake_quant` of quantized leaves (straight-through; LSQ gradient to the scales);
  float leaves pass through unchanged."""
  return _with_scales(fake_quant, params, rule, scales, keep_float=True)
