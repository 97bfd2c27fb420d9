"""Quantization onto a number format: ``quantize``, ``project``, ``fake_quant``, ``fit_scale``.

A real tensor is represented as ``w ≈ scale * q`` with integer levels ``q`` of a
:class:`~ebsp_jax.numerics.pattern.NumberFormat` (normally a ``BitPattern``) and a positive
``scale`` per tensor or per channel (any shape that broadcasts against ``w``).

Rules shared by every function here:

* Scaling, the one formula of every function here (and of the integer mode's input
  quantization, which calls :func:`quantize`): ``y = x * r`` with ``r = 1 / scale``, both
  correctly rounded in ``result_type(x, float32)``: float32 for float32, bfloat16 and float16
  inputs (upcast), float64 for float64 inputs under ``jax_enable_x64`` (so ``9.000000001``
  rounds to 10, not to the float32 tie 9 -> 8, for ``6b(L3)``). Not ``x / scale``: XLA
  rewrites a division by a broadcast scalar into this multiplication but keeps a division by
  a per-channel array, so ``x / scale`` would round differently per scale shape and per
  program; the explicit reciprocal is the same op eagerly, under ``jit``, for scalar and
  per-channel scales, on every backend. ``y`` can differ from the exact quotient by an ulp,
  so a float32 ``x`` on an exact midpoint of ``scale * levels`` can round either way: the rule
  is the nearest level of ``y``, not of ``x / scale``.
* Nearest level of ``y``, ties to the level with more trailing zero bits (half-to-even at the
  step of the binade; e.g. 2.5 → 2, 3.5 → 4, 9 → 8 for ``6b(L3)`` where the neighbours are
  8 and 10).
* Saturation at ``±max_level`` (unsigned formats saturate negative inputs at 0); ``±Inf``
  saturate like any large value.
* NaN: ``quantize`` maps NaN to 0 (int32 has no NaN; count them with ``pattern_stats`` or
  ``jnp.isnan`` upstream), while ``project`` and ``fake_quant`` return NaN where the input is
  NaN, so a diverging training run stays visible.
* Scale: every element must be finite and ``> 0`` (what :func:`fit_scale` returns: all-zero
  slices get 1), and it and its reciprocal normal numbers of the dtype the division runs in
  (float32, or float64 for float64 inputs): in float32 ``[2**-126, 2**126]`` (``1e39`` is Inf
  and ``1e-40`` a flushed denormal there). A concrete scale (a Python number, NumPy or jax
  array) is checked eagerly, in that dtype, and a zero, negative, NaN, infinite or
  out-of-range one raises ``ValueError``. A traced scale (under
  ``jax.jit``, ``grad``, ``vmap``) is not checked, to keep the jitted path free: there a bad
  scale gives meaningless levels (e.g. all ``max_level`` for 0), so check it upstream if it
  can be bad, e.g. ``checkify.check(jnp.all(scale > 0), ...)`` under ``checkify.checkify``.
* ``pattern`` must be a :class:`~ebsp_jax.numerics.pattern.NumberFormat` (a ``BitPattern``);
  anything else, a string like ``"6b(L3)"`` included, raises a one-line ``TypeError``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics.pattern import NumberFormat, check_format, short_repr

Axis = Optional[Union[int, Sequence[int]]]


def compute_dtype(x: jax.Array) -> np.dtype:
  """The dtype the scaling ``x * (1 / scale)`` is computed in: ``result_type(x, float32)``.

  float32 for float32, bfloat16, float16 and integer inputs; float64 for float64 inputs
  (only under ``jax_enable_x64``: otherwise jax has no float64 arrays).
  """
  return np.dtype(jnp.result_type(x.dtype, jnp.float32))


def check_scale(fn: str, scale: chex.Numeric, dtype=np.float32) -> None:
  """Eagerly checks a concrete ``scale``: every element a finite, normal, positive ``dtype``.

  The check runs in ``dtype``, the dtype of the division (:func:`compute_dtype`): a scale that
  is finite in float64 but Inf (``1e39``) or denormal (``1e-40``, flushed to 0 on most
  backends) in float32 would give level 0 / NaN or wrong levels; so would one above
  ``1 / tiny`` (``2**126`` in float32), whose reciprocal is denormal.

  A traced ``scale`` (under ``jax.jit``/``grad``/``vmap``) is not checked: its values are not
  known, and a run-time check would cost on the hot path.

  Args:
    fn: name of the calling function, for the message.
    scale: the scale, a number or an array.
    dtype: the dtype the division runs in (float32 or float64).

  Raises:
    TypeError: ``scale`` is not a real number or array.
    ValueError: some element is zero, negative, NaN, infinite, or outside
      ``[tiny, 1 / tiny]`` with ``tiny = finfo(dtype).tiny`` (the scale and its reciprocal
      normal: XLA may divide by a scalar as a multiplication by its reciprocal); one line:
      the first such value and how many there are.
  """
  if isinstance(scale, jax.core.Tracer):
    return
  try:
    s = np.asarray(scale)       # a concrete jax array: one small device-to-host copy
  except (TypeError, ValueError, RuntimeError):
    s = None
  if s is None or not (jnp.issubdtype(s.dtype, jnp.floating)
                       or jnp.issubdtype(s.dtype, jnp.integer)):
    what = f"dtype {s.dtype}" if hasattr(scale, "dtype") else short_repr(scale)
    raise TypeError(f"{fn}: scale must be a positive real number or array, got "
                    f"{type(scale).__name__} {what}")
  s = np.atleast_1d(s.astype(np.float64))
  finfo = np.finfo(dtype)
  with np.errstate(over="ignore"):
    c = s.astype(dtype)                      # what the division sees: 1e39 -> inf in float32
  # XLA may divide by a broadcast scalar as x * (1 / scale): 1/scale must be normal too.
  hi = 1 / finfo.tiny                        # 2**126 (float32), 2**1022 (float64)
  bad = ~(np.isfinite(c) & (c >= finfo.tiny) & (c <= hi))
  if bad.any():
    where = f" ({int(bad.sum())} of {s.size} elements)" if s.size > 1 else ""
    normal = ""
    if np.isfinite(s[bad][0]) and s[bad][0] > 0:
      normal = (f" (scale and 1/scale must be normal {finfo.dtype} numbers, the dtype of the "
                f"division: allowed [{finfo.tiny:.4g}, {hi:.4g}])")
    raise ValueError(f"{fn}: scale must be finite and > 0, got {float(s[bad][0])}{where}"
                     f"{normal}; fit it with fit_scale (all-zero slices get 1)")


def scaled(x: chex.Array, scale: chex.Numeric) -> jax.Array:
  """``x * (1 / scale)`` in ``compute_dtype(x)``: the scaling rule of the module docstring.

  Args:
    x: float array; scale: positive scale broadcasting against ``x``.

  Returns:
    ``compute_dtype(x)`` array of the broadcast shape.
  """
  x = jnp.asarray(x)
  dtype = compute_dtype(x)
  reciprocal = jnp.asarray(1, dtype) / jnp.asarray(scale, dtype)
  return x.astype(dtype) * reciprocal


def _round_saturate(x, fmt: NumberFormat, scale):
  """Returns (y, level): y = :func:`scaled` ``(x, scale)``, level = its nearest level, both in
  ``compute_dtype(x)``.

  NaN propagates (``level`` is NaN where ``y`` is); ``±Inf`` saturate.
  """
  x = jnp.asarray(x)
  y = scaled(x, scale)
  sign = jnp.sign(y) if fmt.signed else jnp.ones_like(y)
  mag = jnp.abs(y) if fmt.signed else jnp.maximum(y, 0.0)
  # Clamp before rounding: keeps the exponent trick in range (Inf included); anything at or
  # above 2 * max_level saturates anyway. XLA's min/max propagate NaN, and so does the rest.
  mag = jnp.minimum(mag, 2.0 * fmt.max_level)
  q = jnp.minimum(fmt.round_magnitude(mag), float(fmt.max_level))
  return y, sign * q


def quantize(x: chex.Array, pattern: NumberFormat, scale: chex.Numeric) -> jax.Array:
  """Integer level nearest to ``x * (1 / scale)`` (jitted, ``pattern`` static; see the module
  docstring for the exact formula).

  Args:
    x: float array of any shape (float32, bfloat16, float16, float64).
    pattern: the number format, e.g. ``BitPattern(6, 3)``.
    scale: finite positive scale, a scalar or an array broadcasting against ``x`` (per
      channel); checked when concrete, not when traced (see the module docstring).

  Returns:
    int32 array of ``broadcast(x, scale).shape`` holding levels of ``pattern``.

  Raises:
    TypeError: ``pattern`` is not a ``NumberFormat`` (e.g. a string).
    ValueError: a concrete ``scale`` has an element that is not finite and ``> 0``, or
      outside the normal range of the division's dtype (see the module docstring).
  """
  check_format("quantize", pattern)
  x = jnp.asarray(x)
  check_scale("quantize", scale, compute_dtype(x))
  return _quantize(x, pattern, scale)


@functools.partial(jax.jit, static_argnums=1)
def _quantize(x, pattern: NumberFormat, scale):
  _, q = _round_saturate(x, pattern, scale)
  return jnp.where(jnp.isnan(q), 0.0, q).astype(jnp.int32)


def project(x: chex.Array, pattern: NumberFormat, scale: chex.Numeric) -> jax.Array:
  """``quantize(x, pattern, scale) * scale`` in ``x``'s dtype; NaN stays NaN (jitted).

  Args:
    x: float array (float32, bfloat16, float16).
    pattern: the number format.
    scale: finite positive scale broadcasting against ``x``; checked when concrete.

  Returns:
    array of ``x``'s dtype and the broadcast shape, every element ``scale * level``.

  Raises:
    TypeError: ``pattern`` is not a ``NumberFormat`` (e.g. a string).
    ValueError: a concrete ``scale`` has an element that is not finite and ``> 0``, or
      outside the normal range of the division's dtype (see the module docstring).
  """
  check_format("project", pattern)
  x = jnp.asarray(x)
  check_scale("project", scale, compute_dtype(x))
  return _project(x, pattern, scale)


@functools.partial(jax.jit, static_argnums=1)
def _project(x, pattern: NumberFormat, scale):
  x = jnp.asarray(x)
  _, q = _round_saturate(x, pattern, scale)
  return (q * jnp.asarray(scale, q.dtype)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _fake_quant(x, scale, fmt):
  return _project(x, fmt, scale)


def _fake_quant_fwd(x, scale, fmt):
  y, q = _round_saturate(x, fmt, scale)
  out = (q * jnp.asarray(scale, q.dtype)).astype(x.dtype)
  lo = -fmt.max_level if fmt.signed else 0.0
  inside = (y >= lo) & (y <= fmt.max_level)
  # LSQ (Esser et al., ICLR 2020): d(scale * q(x/scale))/d scale = q - x/scale inside the
  # range (round treated as identity), and the saturated level outside it.
  dscale = jnp.where(inside, q - y, jnp.where(jnp.isnan(q), 0.0, q))
  return out, (inside, dscale, scale)


def _fake_quant_bwd(fmt, res, g):
  del fmt
  inside, dscale, scale = res
  scale_shape, scale_dtype = jnp.shape(scale), scale.dtype
  gx = jnp.where(inside, g, jnp.zeros_like(g))
  g = g.astype(dscale.dtype)
  gs = g * dscale
  # Reduce the scale cotangent to the scale's shape (undo broadcasting).
  extra = gs.ndim - len(scale_shape)
  gs = jnp.sum(gs, axis=tuple(range(extra))) if extra > 0 else gs
  axes = tuple(i for i, d in enumerate(scale_shape) if d == 1 and gs.shape[i] != 1)
  gs = jnp.sum(gs, axis=axes, keepdims=True) if axes else gs
  return gx, gs.reshape(scale_shape).astype(scale_dtype)


_fake_quant.defvjp(_fake_quant_fwd, _fake_quant_bwd)


def fake_quant(x: chex.Array, pattern: NumberFormat, scale: chex.Numeric) -> jax.Array:
  """``project`` forward; straight-through gradient backward.

  Gradients:
    * w.r.t. ``x``: 1 where ``x / scale`` lies inside ``[-max_level, max_level]`` (``[0,
      max_level]`` unsigned), 0 where it saturates (straight-through estimator).
    * w.r.t. ``scale`` (when it is learned): the LSQ gradient, ``q - x/scale`` inside the
      range and the saturated level ``±max_level`` (or 0) outside, summed over broadcast
      dimensions. LSQ's gradient scaling ``1/sqrt(N * max_level)`` is left to the optimizer
      (e.g. ``optax.scale``) so it stays visible.

  Args:
    x: float array of ``x.shape`` and a floating dtype.
    pattern: the number format.
    scale: finite positive scale broadcasting against ``x`` (its shape must not enlarge
      ``x``); checked when concrete, not when traced.

  Returns:
    array of ``x``'s shape and dtype.

  Raises:
    TypeError: ``pattern`` is not a ``NumberFormat`` (e.g. a string).
    ValueError: a concrete ``scale`` has an element that is not finite and ``> 0`` or
      outside the normal range of the division's dtype (see the module docstring); the
      shape of ``scale`` does not broadcast to ``x.shape`` (it would enlarge the result, and
      the gradient could not be reduced to ``x``'s shape), also under ``jax.jit``.
  """
  check_format("fake_quant", pattern)
  x = jnp.asarray(x)
  check_scale("fake_quant", scale, compute_dtype(x))
  chex.assert_type(x, float)
  scale = jnp.asarray(scale, jnp.result_type(float))
  try:
    out_shape = jnp.broadcast_shapes(x.shape, scale.shape)
  except ValueError:
    out_shape = None
  if out_shape != x.shape:
    raise ValueError(f"fake_quant: scale of shape {scale.shape} must broadcast to x's shape "
                     f"{x.shape} (per-channel scales keep x's rank with size-1 dims, e.g. "
                     f"(1, {x.shape[-1] if x.ndim else 1}))")
  return _fake_quant(x, scale, pattern)


def _normalize_axis(axis: Axis, ndim: int):
  if axis is None:
    return tuple(range(ndim))
  axes = (axis,) if isinstance(axis, int) else tuple(axis)
  out = []
  for a in axes:
    if not -ndim <= a < ndim:
      raise ValueError(f"axis {a} is out of range for an array of rank {ndim}")
    out.append(a % ndim)
  return tuple(sorted(set(out)))


def fit_scale(w: chex.Array, pattern: NumberFormat, axis: Axis = None, *,
              num_iters: int = 8, num_grid: int = 16) -> jax.Array:
  """Scale minimising ``||w - scale * quantize(w, pattern, scale)||²``.

  Starts from max-abs scaling (``max|w| / max_level``) and the ``num_grid - 1`` candidates
  ``max_abs_scale * 2**(-k/8)``, keeps the best per slice (a coarse search: on non-uniform
  grids the error is far from convex in the scale), then alternates projection
  (``q = quantize(w, pattern, scale)``) and least squares (``scale = <w, q> / <q, q>``). The
  best scale seen is returned, so the result is never worse than max-abs scaling.

  Args:
    w: float array.
    pattern: the number format.
    axis: the reduced axes. ``None`` gives one scale for the tensor (shape ``()``); otherwise
      the result keeps the reduced dims with size 1 (e.g. ``axis=(0, 1, 2)`` for a per-output
      channel scale of an HWIO conv kernel: shape ``(1, 1, 1, O)``).
    num_iters: least-squares alternations after the coarse search.
    num_grid: candidates of the coarse search (1 = max-abs start only).

  Returns:
    float32 array of positive, finite scales; all-zero slices get scale 1.

  Raises:
    TypeError: ``pattern`` is not a ``NumberFormat`` (e.g. a string).
    ValueError: ``axis`` is out of range.
  """
  check_format("fit_scale", pattern)
  w = jnp.asarray(w)
  return _fit_scale(w, pattern, _normalize_axis(axis, w.ndim) if axis is not None else None,
                    num_iters, num_grid)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _fit_scale(w, pattern, axis, num_iters, num_grid):
  """Jitted body of :func:`fit_scale` (``axis`` normalised to a tuple or None)."""
  w = jnp.asarray(w, jnp.float32)
  axes = _normalize_axis(axis, w.ndim)
  keep = axis is not None
  w = jnp.where(jnp.isfinite(w), w, 0.0)

  def err(s):
    return jnp.sum(jnp.square(w - s * _quantize(w, pattern, s)), axis=axes, keepdims=keep)

  amax = jnp.max(jnp.abs(w), axis=axes, keepdims=keep)
  s0 = jnp.where(amax > 0, amax / pattern.max_level, 1.0)
  s0 = jnp.where(jnp.isfinite(s0) & (s0 > 0), s0, 1.0)

  def keep_best(s_new, best_s, best_e):
    e_new = err(s_new)
    better = e_new < best_e
    return jnp.where(better, s_new, best_s), jnp.where(better, e_new, best_e)

  def grid_body(k, carry):
    return keep_best(s0 * jnp.exp2(-k.astype(jnp.float32) / 8), *carry)

  best = jax.lax.fori_loop(1, max(num_grid, 1), grid_body, (s0, err(s0)))

  def ls_body(_, carry):
    s, best_s, best_e = carry
    q = _quantize(w, pattern, s).astype(jnp.float32)
    num = jnp.sum(w * q, axis=axes, keepdims=keep)
    den = jnp.sum(q * q, axis=axes, keepdims=keep)
    s_new = jnp.where((den > 0) & (num > 0), num / jnp.where(den > 0, den, 1.0), s)
    return (s_new, *keep_best(s_new, best_s, best_e))

  _, best_s, _ = jax.lax.fori_loop(0, num_iters, ls_body, (best[0], *best))
  return best_s

