"""ADMM quantization as an optax transformation (docs/method.md §6; Leng et al., AAAI 2018).

Problem: minimise ``f(W)`` subject to ``W ∈ C``, the grid of a bit-sparsity pattern with a
per-channel scale. ADMM splits it with an auxiliary ``Z ∈ C`` and a scaled dual ``U``:

* W-step (every call): the downstream optimizer descends ``f(W) + (ρ/2)||W − Z + U||²``; this
  transformation adds the penalty gradient ``ρ (W − Z + U)`` to the incoming gradient of every
  quantized leaf (float leaves pass through untouched).
* Z-step (every ``update_every`` calls): refit the scale on ``W + U`` (``fit_scale``), set
  ``Z = Proj_C(W + U)``, then ``U ← U + W − Z``; update ρ with its policy (and rescale ``U`` by
  ``ρ_old/ρ_new``, Boyd et al. 2011 §3.4.1). The Z-step runs at the *start* of call ``t`` when
  ``t > 0`` and ``t % update_every == 0``, so it sees the weights after exactly ``t`` W-steps.

Usage::

    rule = ebsp_jax.make_rule(ebsp_jax.BitPattern(6, 3))
    tx = optax.chain(admm(rule, rho=1e-3, update_every=100), optax.sgd(0.01, momentum=0.9))
    opt_state = tx.init(params)
    # forward pass with the projected weights (straight-through), as the method prescribes:
    loss, grads = jax.value_and_grad(lambda p: loss_fn(straight_through(p, opt_state)))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    ...
    params = finalize(params, opt_state)          # hard projection onto the grids

The state carries the pattern of every quantized leaf as static pytree metadata, so
:func:`finalize`, :func:`straight_through` and :func:`tree_scales` need only the optimizer state
(any nesting: ``chain``, ``masked``, ``multi_transform``, several ADMM groups). They check that
the ``params`` they are given have the leaf paths (and, at quantized leaves, the shapes) of the
tree the ADMM state was initialised with, and raise a ``ValueError`` otherwise, e.g. for flax
``variables`` passed instead of ``variables['params']`` (no leaf is skipped silently).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, NamedTuple, Tuple, Union

import jax
import jax.numpy as jnp
import optax

from ebsp_jax.admm import _checks
from ebsp_jax.admm.rho import RhoLike, as_policy, check_rho_value
from ebsp_jax.numerics.quantizers import fake_quant, fit_scale, project
from ebsp_jax.numerics.tree import Rule, channel_axes, path_str

PyTree = Any


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class StaticPattern:
  """A number format held as static pytree metadata (no array leaves) inside ``ADMMState``."""

  pattern: Any


class ADMMState(NamedTuple):
  """State of :func:`admm`.

  Trees ``z``, ``u``, ``scales`` and ``patterns`` have the structure of the params the
  transformation was initialised with, ``None`` at unquantized (float) leaves.

  Attributes:
    count: int32, number of ``update`` calls so far (W-steps).
    rho: float32, the current penalty parameter ρ.
    z: the projection ``Proj_C(W + U)`` of the last Z-step (on-grid values, float dtype of W).
    u: the scaled dual variable.
    scales: float32 scales of ``z`` (per output channel: shape ``(1, ..., 1, out)``, or ``()``).
    patterns: :class:`StaticPattern` per quantized leaf (static: no array leaves).
    num_z_steps: int32, Z-steps done (the initial projection in ``init`` is not counted).
    primal_residual: float32, ``||W − Z||₂`` over all quantized leaves at the last Z-step.
    dual_residual: float32, ``ρ ||Z − Z_prev||₂`` at the last Z-step (ρ before its update).
  """

  count: jax.Array
  rho: jax.Array
  z: PyTree
  u: PyTree
  scales: PyTree
  patterns: PyTree
  num_z_steps: jax.Array
  primal_residual: jax.Array
  dual_residual: jax.Array


def _is_none(x) -> bool:
  return x is None


def _map_quantized(fn, patterns: PyTree, *trees: PyTree) -> PyTree:
  """``fn(pattern, *leaves)`` at quantized leaves (``None`` elsewhere), over ``patterns``' shape.

  ``trees`` must have the structure of the params with ``None`` or arrays at every leaf; masked
  nodes (``optax.MaskedNode``) are empty subtrees and stay as they are.
  """
  def leaf_fn(p, *xs):
    if p is None:
      return None
    return fn(p.pattern, *xs)
  return jax.tree_util.tree_map(leaf_fn, patterns, *trees,
                                is_leaf=lambda x: x is None or isinstance(x, StaticPattern))


def _sum_sq(tree: PyTree) -> jax.Array:
  leaves = [jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in jax.tree_util.tree_leaves(tree)]
  return sum(leaves, jnp.zeros((), jnp.float32))


def admm(rule: Rule, rho: RhoLike = 1e-3, update_every: int = 1, *, per_channel: bool = True,
         scale_iters: int = 16, rescale_dual: bool = True) -> optax.GradientTransformation:
  """ADMM onto bit-sparsity-pattern grids, as a gradient transformation.

  Place it before the optimizer that turns gradients into updates (``optax.chain(admm(...),
  optax.sgd(...))``) so the penalty gradient goes through momentum/Adam like the loss gradient.

  Args:
    rule: ``(path, leaf) -> BitPattern | None`` (see ``ebsp_jax.make_rule``): which leaves are
      quantized and onto which pattern; ``None`` keeps a leaf float (no penalty, no Z/U).
    rho: the penalty parameter: a positive finite number (constant; a Python or NumPy scalar)
      or a :class:`~ebsp_jax.admm.rho.RhoPolicy` (``geometric_rho``, ``residual_balancing_rho``,
      ``scheduled_rho``) whose initial ρ is positive and finite.
    update_every: W-steps between Z-steps: an int ``>= 1`` (Python or NumPy integer).
    per_channel: one scale per output channel (last axis) instead of one per tensor.
    scale_iters: alternations of :func:`ebsp_jax.fit_scale` at each Z-step.
    rescale_dual: rescale ``U`` by ``ρ_old/ρ_new`` when ρ changes (Boyd §3.4.1), keeping the
      unscaled dual ``ρU`` continuous.

  Returns:
    An ``optax.GradientTransformation`` whose ``update`` requires ``params``.

  Raises:
    TypeError: ``rho`` is not a number or a ``RhoPolicy`` (bools included), or ``update_every``
      is not an integer.
    ValueError: ``rho`` (or the policy's initial ρ) is not positive and finite, or
      ``update_every < 1``, or a number is an array of several elements.
  """
  update_every = _checks.positive_int("update_every", update_every)
  policy = as_policy(rho)
  rho0 = _checks.positive(f"rho (initial value of the policy {policy.name!r})", policy.init())

  def patterns_of(params):
    def fn(path, leaf):
      p = rule(path_str(path), leaf)
      return None if p is None else StaticPattern(p)
    return jax.tree_util.tree_map_with_path(fn, params)

  def fit(pattern, v):
    return fit_scale(v, pattern, channel_axes(v, per_channel), num_iters=scale_iters)

  def init_fn(params):
    patterns = patterns_of(params)
    scales = _map_quantized(fit, patterns, params)
    z = _map_quantized(lambda p, w, s: project(w, p, s), patterns, params, scales)
    u = _map_quantized(lambda p, w: jnp.zeros_like(w), patterns, params)
    return ADMMState(count=jnp.zeros((), jnp.int32), rho=jnp.asarray(rho0, jnp.float32),
                     z=z, u=u, scales=scales, patterns=patterns,
                     num_z_steps=jnp.zeros((), jnp.int32),
                     primal_residual=jnp.zeros((), jnp.float32),
                     dual_residual=jnp.zeros((), jnp.float32))

  def z_step(state: ADMMState, params) -> ADMMState:
    pats = state.patterns
    v = _map_quantized(lambda p, w, u: w + u, pats, params, state.u)
    scales = _map_quantized(fit, pats, v)
    z = _map_quantized(lambda p, x, s: project(x, p, s), pats, v, scales)
    u = _map_quantized(lambda p, u, w, z_: u + w - z_, pats, state.u, params, z)
    primal = jnp.sqrt(_sum_sq(_map_quantized(lambda p, w, z_: w - z_, pats, params, z)))
    dual = state.rho * jnp.sqrt(_sum_sq(_map_quantized(lambda p, a, b: a - b, pats, z, state.z)))
    n = state.num_z_steps + 1
    rho_new = policy.update(state.rho, n, primal, dual)
    check_rho_value(rho_new, f"the rho policy {policy.name!r}")  # shape; value when concrete
    rho_new = jnp.asarray(rho_new, jnp.float32)
    if rescale_dual:
      ratio = state.rho / rho_new
      u = _map_quantized(lambda p, x: (x * ratio).astype(x.dtype), pats, u)
    return state._replace(rho=rho_new, z=z, u=u, scales=scales, num_z_steps=n,
                          primal_residual=primal, dual_residual=dual)

  def update_fn(updates, state: ADMMState, params=None):
    if params is None:
      raise ValueError("admm: update() needs params (the current weights W)")
    do_z = (state.count > 0) & (state.count % update_every == 0)
    if isinstance(do_z, jax.core.Tracer):
      state = jax.lax.cond(do_z, z_step, lambda s, p: s, state, params)
    elif bool(do_z):  # eager: skip tracing the untaken branch
      state = z_step(state, params)

    def add_penalty(p, g, w, z, u):
      return (g + state.rho * (w - z + u)).astype(g.dtype)

    new_updates = jax.tree_util.tree_map(
        lambda pat, g, w, z, u: g if pat is None else add_penalty(pat, g, w, z, u),
        state.patterns, updates, params, state.z, state.u,
        is_leaf=lambda x: x is None or isinstance(x, StaticPattern))
    return new_updates, state._replace(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def with_admm(inner: optax.GradientTransformation, rule: Rule, **kwargs) -> optax.GradientTransformation:
  """``optax.chain(admm(rule, **kwargs), inner)``: ADMM wrapped around an inner optimizer."""
  return optax.chain(admm(rule, **kwargs), inner)


# ------------------------------------------------------------------------------------------
# Reading the state (works on any optimizer state that contains ADMMStates).
def find_admm_states(opt_state: PyTree) -> List[ADMMState]:
  """Every :class:`ADMMState` inside an optimizer state (``chain``/``masked``/... nesting)."""
  found = []

  def visit(x):
    if isinstance(x, ADMMState):
      found.append(x)
      return True
    return False

  jax.tree_util.tree_flatten(opt_state, is_leaf=visit)
  return found


def _states(opt_state: PyTree) -> List[ADMMState]:
  states = [opt_state] if isinstance(opt_state, ADMMState) else find_admm_states(opt_state)
  if not states:
    raise ValueError("no ADMMState found in the optimizer state (was it built with admm()?)")
  return states


def _is_state_leaf(x) -> bool:
  """Leaves of ``ADMMState.patterns``: a pattern, ``None`` (float leaf) or a masked-out subtree."""
  return x is None or isinstance(x, (StaticPattern, optax.MaskedNode))


def _wrapping_hint(expected: set, given: set) -> str:
  """A hint when one tree is the other wrapped under a single key (flax ``variables``)."""
  wrapped = " (passed `variables` instead of `variables[{!r}]`?)"
  unwrapped = (" (the ADMM state was initialised on a tree that holds these params under {!r}: "
               "pass that tree)")
  for outer, inner, fmt in ((given, expected, wrapped), (expected, given, unwrapped)):
    tops = {p.split("/", 1)[0] for p in outer}
    if len(tops) == 1 and inner:
      top = next(iter(tops))
      if all(_overlaps(f"{top}/{p}", outer) for p in inner if p):
        return fmt.format(top)
  return ""


def _overlaps(path: str, paths: set) -> bool:
  """``path`` is in ``paths``, or above or below one of them (masked subtrees are prefixes)."""
  return path in paths or any(q.startswith(path + "/") or path.startswith(q + "/") for q in paths)


def _check_params(fn_name: str, params: PyTree, states: List[ADMMState]) -> None:
  """Raises a one-line ``ValueError`` unless ``params`` is laid out like every ADMM state.

  Each state's ``patterns`` tree has the leaf paths of the params the transformation was
  initialised with (``optax.masked``/``multi_transform`` leave an ``optax.MaskedNode`` where a
  leaf or subtree went to another transformation). ``params`` must have exactly those leaf paths
  (anything under a masked node is accepted) and, at quantized leaves, the shape of ``z``.
  Paths are compared as ``'/'``-joined strings, so ``dict`` and ``FrozenDict`` params both pass.
  """
  given = {path_str(k): w for k, w in
           jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_none)[0]}
  for st in states:
    expected, masked = {}, set()
    for k, leaf in jax.tree_util.tree_flatten_with_path(st.patterns, is_leaf=_is_state_leaf)[0]:
      if isinstance(leaf, optax.MaskedNode):
        masked.add(path_str(k))
      else:
        expected[path_str(k)] = leaf

    def covered(path: str) -> bool:
      if path in expected or "" in masked:
        return True
      parts = path.split("/")
      return any("/".join(parts[:i]) in masked for i in range(1, len(parts) + 1))

    missing = [p for p in expected if p not in given]
    missing += [p for p in masked if p and p not in given
                and not any(g.startswith(p + "/") for g in given)]
    unknown = [p for p in given if not covered(p)]
    if missing or unknown:
      problems = []
      if missing:
        problems.append(f"{len(missing)} of its {len(expected) + len(masked)} leaf paths are "
                        f"missing from params (first: {sorted(missing)[0]!r})")
      if unknown:
        problems.append(f"{len(unknown)} params leaves are unknown to it (first: "
                        f"{sorted(unknown)[0]!r})")
      raise ValueError(f"{fn_name}: params do not match the ADMM state: {', '.join(problems)}; "
                       f"pass the params tree the optimizer was initialised with"
                       f"{_wrapping_hint(set(expected) | masked, set(given))}")
    for k, z in jax.tree_util.tree_flatten_with_path(st.z, is_leaf=_is_none)[0]:
      if z is None:
        continue
      path, shape, got = path_str(k), tuple(z.shape), tuple(jnp.shape(given[path_str(k)]))
      if got != shape:
        raise ValueError(f"{fn_name}: params leaf {path!r} has shape {got}, the ADMM state "
                         f"quantizes it with shape {shape}; pass the params tree the optimizer "
                         f"was initialised with")


def _entries(opt_state: PyTree) -> Dict[str, Tuple[Any, jax.Array, jax.Array]]:
  """``{param path: (pattern, scale, z)}`` over all ADMM states (a path may appear once)."""
  return _entries_of(_states(opt_state))


def _entries_of(states: List[ADMMState]) -> Dict[str, Tuple[Any, jax.Array, jax.Array]]:
  out: Dict[str, Tuple[Any, jax.Array, jax.Array]] = {}
  for st in states:
    is_leaf = lambda x: x is None or isinstance(x, StaticPattern)  # noqa: E731
    pats = jax.tree_util.tree_flatten_with_path(st.patterns, is_leaf=is_leaf)[0]
    scales = jax.tree_util.tree_flatten_with_path(st.scales, is_leaf=_is_none)[0]
    scale_by_path = {path_str(k): s for k, s in scales if s is not None}
    z_by_path = {path_str(k): z for k, z in
                 jax.tree_util.tree_flatten_with_path(st.z, is_leaf=_is_none)[0] if z is not None}
    for k, p in pats:
      if p is None:
        continue
      key = path_str(k)
      if key in out:
        raise ValueError(f"parameter '{key}' is quantized by two ADMM transformations")
      out[key] = (p.pattern, scale_by_path[key], z_by_path[key])
  return out


def _checked_entries(fn_name: str, params: PyTree,
                     opt_state: PyTree) -> Dict[str, Tuple[Any, jax.Array, jax.Array]]:
  """:func:`_entries` after checking that ``params`` matches the ADMM state(s)."""
  states = _states(opt_state)
  _check_params(fn_name, params, states)
  return _entries_of(states)


def _map_params(fn_name: str, fn, params: PyTree, opt_state: PyTree) -> PyTree:
  entries = _checked_entries(fn_name, params, opt_state)

  def leaf_fn(path, w):
    e = entries.get(path_str(path))
    return w if e is None else fn(w, *e[:2])

  return jax.tree_util.tree_map_with_path(leaf_fn, params)


def straight_through(params: PyTree, opt_state: PyTree) -> PyTree:
  """The weights the ADMM forward pass computes with: ``fake_quant(W)`` at the current scales.

  Forward: every quantized leaf projected onto its grid with the scale of the last Z-step;
  backward: straight-through to ``W`` (zero where ``W/scale`` saturates); no gradient to the
  scales. Float leaves pass through.

  Raises:
    ValueError: ``params`` does not have the leaf paths and quantized shapes of the tree the
      ADMM state was initialised with (e.g. flax ``variables`` instead of ``variables['params']``).
  """
  return _map_params("straight_through",
                     lambda w, p, s: fake_quant(w, p, jax.lax.stop_gradient(s)), params, opt_state)


def finalize(params: PyTree, opt_state: PyTree, *, refit_scales: bool = False,
             return_scales: bool = False) -> Union[PyTree, Tuple[PyTree, PyTree]]:
  """Hard projection of every ADMM-quantized leaf onto its grid.

  Args:
    params: the weights ``W``.
    opt_state: an optimizer state containing the ADMM state(s) (or an ``ADMMState``).
    refit_scales: refit each scale on ``W`` (``fit_scale``, per output channel) instead of using
      the scale of the last Z-step. The default reproduces exactly what the straight-through
      forward pass computed with, and matches :func:`tree_scales`; refit scales differ from
      the state's, so pass ``return_scales=True`` to get them.
    return_scales: also return the scales the leaves were projected with.

  Returns:
    params with every quantized leaf equal to ``scale * level``; with ``return_scales``,
    ``(params, scales)``, ``scales`` shaped like ``params`` (``None`` at float leaves), e.g. the
    ``weight_scales`` of ``ebsp_jax.quant.to_integer`` (with ``refit_scales=False`` they equal
    :func:`tree_scales`).

  Raises:
    ValueError: ``params`` does not have the leaf paths and quantized shapes of the tree the
      ADMM state was initialised with (e.g. flax ``variables`` instead of ``variables['params']``).
  """
  entries = _checked_entries("finalize", params, opt_state)

  def scale_of(path, w):
    e = entries.get(path_str(path))
    if e is None:
      return None
    pattern, s = e[:2]
    if refit_scales:
      return fit_scale(w, pattern, None if jnp.ndim(s) == 0 else channel_axes(w))
    return s

  scales = jax.tree_util.tree_map_with_path(scale_of, params)
  final = jax.tree_util.tree_map_with_path(
      lambda path, w, s: w if s is None else project(w, entries[path_str(path)][0], s),
      params, scales, is_leaf=_is_none)
  return (final, scales) if return_scales else final


def tree_scales(params: PyTree, opt_state: PyTree) -> PyTree:
  """The ADMM state's scales (those of the last Z-step) as a tree shaped like ``params``
  (``None`` at float leaves).

  These are the scales of the straight-through forward pass and of :func:`finalize` with the
  default ``refit_scales=False``. After ``finalize(..., refit_scales=True)`` they do *not*
  match the finalized weights (quantizing those at these scales rounds them again): take the
  refit scales from ``finalize(..., refit_scales=True, return_scales=True)`` instead.

  Raises:
    ValueError: ``params`` does not match the ADMM state (as in :func:`finalize`).
  """
  entries = _checked_entries("tree_scales", params, opt_state)
  return jax.tree_util.tree_map_with_path(
      lambda path, w: entries[path_str(path)][1] if path_str(path) in entries else None, params)


def tree_rule(opt_state: PyTree) -> Rule:
  """A rule that reproduces the ADMM state's per-leaf patterns (for evaluation/export)."""
  entries = _entries(opt_state)
  return lambda path, leaf: entries[path][0] if path in entries else None


def admm_metrics(opt_state: PyTree) -> Dict[str, jax.Array]:
  """Scalars to log: ρ, residuals and Z-step count of the (first) ADMM state."""
  states = [opt_state] if isinstance(opt_state, ADMMState) else find_admm_states(opt_state)
  if not states:
    return {}
  st = states[0]
  return {"admm/rho": st.rho, "admm/primal_residual": st.primal_residual,
          "admm/dual_residual": st.dual_residual, "admm/num_z_steps": st.num_z_steps}


def primal_residual(params: PyTree, opt_state: PyTree) -> jax.Array:
  """``||W − Z||₂`` now (not only at the last Z-step), over all ADMM-quantized leaves.

  Raises:
    ValueError: ``params`` does not match the ADMM state (as in :func:`finalize`).
  """
  entries = _checked_entries("primal_residual", params, opt_state)
  diffs = [w - entries[path_str(k)][2] for k, w in jax.tree_util.tree_flatten_with_path(params)[0]
           if path_str(k) in entries]
  return jnp.sqrt(_sum_sq(diffs))

