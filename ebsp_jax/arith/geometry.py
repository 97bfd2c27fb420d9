"""Shapes and layouts: ``lax`` dimension numbers to canonical contraction layouts and back.

* dot_general: ``lhs -> (G, X, K)``, ``rhs -> (G, K, Y)`` with ``G`` the flattened batch dims,
  ``X``/``Y`` the flattened free dims and ``K`` the contracting dims flattened in the order the
  dimension numbers list them (row-major); the output is ``lax``'s ``batch + lhs free + rhs free``.
* conv_general_dilated: a :class:`ConvGeometry` with the resolved dimension numbers, explicit
  padding (``'SAME'``/``'VALID'`` resolved exactly as ``lax`` does) and the output shape.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DotDims = Tuple[Tuple[Tuple[int, ...], Tuple[int, ...]], Tuple[Tuple[int, ...], Tuple[int, ...]]]


def normalize_dot_dims(dimension_numbers, lhs_ndim: int, rhs_ndim: int) -> DotDims:
  """Validates ``((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))``; returns int tuples."""
  try:
    (lc, rc), (lb, rb) = dimension_numbers
    lc, rc, lb, rb = (tuple(int(d) for d in ds) for ds in (lc, rc, lb, rb))
  except (TypeError, ValueError) as e:
    raise ValueError(f"dimension_numbers must be ((lhs_contracting, rhs_contracting), "
                     f"(lhs_batch, rhs_batch)), got {dimension_numbers!r}") from e
  for name, dims, ndim in (("lhs", lc + lb, lhs_ndim), ("rhs", rc + rb, rhs_ndim)):
    dims = tuple(d + ndim if d < 0 else d for d in dims)
    if any(not 0 <= d < ndim for d in dims) or len(set(dims)) != len(dims):
      raise ValueError(f"dimension_numbers: {name} dims {dims} must be distinct axes of a "
                       f"rank-{ndim} array")
  if len(lc) != len(rc) or len(lb) != len(rb):
    raise ValueError(f"dimension_numbers: contracting {lc}/{rc} and batch {lb}/{rb} dims must "
                     f"pair up one to one")
  norm = lambda ds, n: tuple(d + n if d < 0 else d for d in ds)
  return ((norm(lc, lhs_ndim), norm(rc, rhs_ndim)), (norm(lb, lhs_ndim), norm(rb, rhs_ndim)))


@dataclasses.dataclass(frozen=True)
class DotGeometry:
  """Static layout of a dot_general as a batched (g, x, k) x (g, k, y) product: permutations and sizes."""
  lhs_perm: Tuple[int, ...]
  rhs_perm: Tuple[int, ...]
  g: int
  x: int
  k: int
  y: int
  out_shape: Tuple[int, ...]


def dot_geometry(lhs_shape: Sequence[int], rhs_shape: Sequence[int], dims: DotDims) -> DotGeometry:
  """Validates ``dims`` against the operand shapes and returns the batched-matmul :class:`DotGeometry`."""
  (lc, rc), (lb, rb) = dims
  for a, b in zip(lc, rc):
    if lhs_shape[a] != rhs_shape[b]:
      raise ValueError(f"dot_general: contracting dims differ in size: lhs axis {a} has "
                       f"{lhs_shape[a]}, rhs axis {b} has {rhs_shape[b]}")
  for a, b in zip(lb, rb):
    if lhs_shape[a] != rhs_shape[b]:
      raise ValueError(f"dot_general: batch dims differ in size: lhs axis {a} has "
                       f"{lhs_shape[a]}, rhs axis {b} has {rhs_shape[b]}")
  lf = tuple(d for d in range(len(lhs_shape)) if d not in lc + lb)
  rf = tuple(d for d in range(len(rhs_shape)) if d not in rc + rb)
  size = lambda shape, ds: int(math.prod(shape[d] for d in ds))
  out_shape = (tuple(lhs_shape[d] for d in lb) + tuple(lhs_shape[d] for d in lf)
               + tuple(rhs_shape[d] for d in rf))
  return DotGeometry(lhs_perm=lb + lf + lc, rhs_perm=rb + rc + rf, g=size(lhs_shape, lb),
                     x=size(lhs_shape, lf), k=size(lhs_shape, lc), y=size(rhs_shape, rf),
                     out_shape=out_shape)


def dot_canonical(lhs: jax.Array, rhs: jax.Array, geo: DotGeometry):
  """``(G, X, K)`` and ``(G, K, Y)`` views of ``lhs`` and ``rhs``."""
  a = jnp.transpose(lhs, geo.lhs_perm).reshape(geo.g, geo.x, geo.k)
  w = jnp.transpose(rhs, geo.rhs_perm).reshape(geo.g, geo.k, geo.y)
  return a, w


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
  """A convolution in ``lax`` semantics, every argument resolved and static."""

  dnums: lax.ConvDimensionNumbers
  strides: Tuple[int, ...]
  padding: Tuple[Tuple[int, int], ...]
  lhs_dilation: Tuple[int, ...]
  rhs_dilation: Tuple[int, ...]
  groups: int
  batch: int
  in_features: int
  out_features: int
  in_spatial: Tuple[int, ...]
  kernel: Tuple[int, ...]
  out_spatial: Tuple[int, ...]

  @property
  def group_in(self) -> int:
    return self.in_features // self.groups

  @property
  def group_out(self) -> int:
    return self.out_features // self.groups

  @property
  def taps(self) -> int:
    return int(math.prod(self.kernel))

  @property
  def pointwise(self) -> bool:
    """A 1x1 (one-tap), ungrouped, unpadded, undilated convolution: a strided matmul."""
    return (self.taps == 1 and self.groups == 1 and all(d == 1 for d in self.lhs_dilation)
            and all(p == (0, 0) for p in self.padding))

  @property
  def k(self) -> int:
    """Contraction length per output: taps x input channels per group."""
    return self.taps * self.group_in

  @property
  def out_shape(self) -> Tuple[int, ...]:
    logical = (self.batch, self.out_features) + self.out_spatial
    shape = [0] * len(logical)
    for j, d in enumerate(self.dnums.out_spec):
      shape[d] = logical[j]
    return tuple(shape)

  def lhs_logical(self, lhs: jax.Array) -> jax.Array:
    """``(N, C, *spatial)``."""
    return jnp.transpose(lhs, self.dnums.lhs_spec)

  def rhs_logical(self, rhs: jax.Array) -> jax.Array:
    """``(O, I, *kernel)``."""
    return jnp.transpose(rhs, self.dnums.rhs_spec)

  def out_physical(self, out: jax.Array) -> jax.Array:
    """From ``(N, O, *out_spatial)`` to the ``out_spec`` layout."""
    return jnp.transpose(out, tuple(int(i) for i in np.argsort(self.dnums.out_spec)))


def _tuple(name, value, n, default):
  if value is None:
    return (default,) * n
  try:
    out = tuple(int(v) for v in value)
  except TypeError as e:
    raise ValueError(f"{name} must be a sequence of {n} ints, got {value!r}") from e
  if len(out) != n or any(v < 1 for v in out):
    raise ValueError(f"{name} must be {n} positive ints (one per spatial dim), got {value!r}")
  return out


def conv_geometry(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation, rhs_dilation,
                  dimension_numbers, feature_group_count) -> ConvGeometry:
  """Resolves a ``lax.conv_general_dilated`` call (same rules, same errors as ``lax``)."""
  lhs_shape, rhs_shape = tuple(lhs_shape), tuple(rhs_shape)
  if len(lhs_shape) != len(rhs_shape) or len(lhs_shape) < 2:
    raise ValueError(f"conv: lhs and rhs must have the same rank >= 2, got shapes {lhs_shape} "
                     f"and {rhs_shape}")
  n_sp = len(lhs_shape) - 2
  try:
    dnums = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  except Exception as e:  # lax raises TypeError/ValueError with its own message
    raise ValueError(f"dimension_numbers {dimension_numbers!r} are invalid: {e}") from e
  strides = _tuple("window_strides", window_strides, n_sp, 1)
  ldil = _tuple("lhs_dilation", lhs_dilation, n_sp, 1)
  rdil = _tuple("rhs_dilation", rhs_dilation, n_sp, 1)
  if isinstance(feature_group_count, bool) or not isinstance(feature_group_count,
                                                             (int, np.integer)):
    raise TypeError(f"feature_group_count must be an int >= 1, got "
                    f"{type(feature_group_count).__name__} {feature_group_count!r}")
  groups = int(feature_group_count)
  if groups < 1:
    raise ValueError(f"feature_group_count must be >= 1 (got {groups})")
  lhs_l = tuple(lhs_shape[d] for d in dnums.lhs_spec)
  rhs_l = tuple(rhs_shape[d] for d in dnums.rhs_spec)
  n, c, in_sp = lhs_l[0], lhs_l[1], lhs_l[2:]
  o, i, kern = rhs_l[0], rhs_l[1], rhs_l[2:]
  if c % groups or o % groups or c // groups != i:
    raise ValueError(f"feature_group_count={feature_group_count} does not fit: lhs features {c} "
                     f"and rhs output features {o} must be multiples of it and rhs input "
                     f"features {i} must equal {c}/{feature_group_count}")
  if isinstance(padding, str):
    if any(d != 1 for d in ldil):
      raise ValueError("padding: string padding is not implemented with lhs_dilation (as in "
                       "lax); pass explicit (low, high) pairs")
    eff = [(k - 1) * r + 1 for k, r in zip(kern, rdil)]
    try:
      pads = lax.padtype_to_pads(in_sp, eff, strides, padding)
    except (RuntimeError, TypeError) as e:
      raise ValueError(f"padding={padding!r} is not supported: use 'SAME', 'SAME_LOWER', "
                       f"'VALID' or (low, high) pairs") from e
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  else:
    try:
      pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError) as e:
      raise ValueError(f"padding must be a string or a sequence of (low, high) int pairs, got "
                       f"{padding!r}") from e
    if len(pads) != n_sp:
      raise ValueError(f"padding needs {n_sp} (low, high) pairs, got {padding!r}")
  out_sp = []
  for s, k, st, ld, rd, (lo, hi) in zip(in_sp, kern, strides, ldil, rdil, pads):
    padded = (s - 1) * ld + 1 + lo + hi if s > 0 else lo + hi
    eff = (k - 1) * rd + 1 if k > 0 else 0
    out_sp.append(max(0, (padded - eff) // st + 1) if padded >= eff else 0)
  return ConvGeometry(dnums=dnums, strides=strides, padding=pads, lhs_dilation=ldil,
                      rhs_dilation=rdil, groups=groups, batch=n, in_features=c, out_features=o,
                      in_spatial=tuple(in_sp), kernel=tuple(kern), out_spatial=tuple(out_sp))


def conv_taps(geo: ConvGeometry, x_logical: jax.Array):
  """Per-tap input windows, the building block of the literal convolution.

  Args:
    geo: the geometry.
    x_logical: ``(N, C, *in_spatial)`` array (any dtype).

  Returns:
    ``(x_pad, offsets, span)``: ``x_pad`` the dilated and padded input (zeros inserted, as
    ``lax`` does), ``offsets`` an int32 numpy ``(taps, n_spatial)`` array of window starts in
    row-major tap order, and ``span`` the static window size per spatial dim; the window of
    tap ``t`` is ``x_pad[:, :, off_t : off_t + span : strides]`` of shape ``(N, C, *out)``.
  """
  cfg = [(0, 0, 0), (0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in
                                  zip(geo.padding, geo.lhs_dilation)]
  x_pad = lax.pad(x_logical, jnp.zeros((), x_logical.dtype), cfg)
  grids = np.meshgrid(*[np.arange(k) * r for k, r in zip(geo.kernel, geo.rhs_dilation)],
                      indexing="ij")
  offsets = np.stack([g.reshape(-1) for g in grids], axis=-1).astype(np.int32)
  span = tuple((o - 1) * s + 1 for o, s in zip(geo.out_spatial, geo.strides))
  return x_pad, offsets.reshape(geo.taps, len(geo.kernel)), span


def window(x_pad: jax.Array, offset, span, strides) -> jax.Array:
  """One tap's strided window of ``x_pad`` (``offset`` may be traced)."""
  n, c = x_pad.shape[:2]
  start = [jnp.int32(0), jnp.int32(0)] + [offset[i] for i in range(len(span))]
  win = lax.dynamic_slice(x_pad, start, (n, c) + tuple(span))
  return lax.slice(win, (0,) * win.ndim, win.shape, (1, 1) + tuple(strides))
