"""An independent int64 NumPy model of the datapath's results, for tests and golden checks.

Shares no code with the JAX implementation: contractions are ``np.einsum`` (dot) and explicit
per-tap loops (convolution) in int64, padding and layouts are parsed from scratch, and the
dual-LOD approximation is written with Python integers. Everything here is slow and simple.
"""

from __future__ import annotations

import itertools
import string
from typing import Tuple

import numpy as np


def dot(lhs: np.ndarray, rhs: np.ndarray, dimension_numbers) -> np.ndarray:
  """Exact ``lax.dot_general`` semantics in int64 via ``np.einsum``."""
  (lc, rc), (lb, rb) = dimension_numbers
  letters = iter(string.ascii_letters)
  ls = [None] * lhs.ndim
  rs = [None] * rhs.ndim
  for a, b in list(zip(lb, rb)) + list(zip(lc, rc)):
    ls[a] = rs[b] = next(letters)
  for i in range(lhs.ndim):
    ls[i] = ls[i] or next(letters)
  for i in range(rhs.ndim):
    rs[i] = rs[i] or next(letters)
  out = ([ls[a] for a in lb] + [ls[i] for i in range(lhs.ndim) if i not in tuple(lc) + tuple(lb)]
         + [rs[i] for i in range(rhs.ndim) if i not in tuple(rc) + tuple(rb)])
  spec = f"{''.join(ls)},{''.join(rs)}->{''.join(out)}"
  return np.einsum(spec, lhs.astype(np.int64), rhs.astype(np.int64))


def _specs(dimension_numbers, ndim):
  """(lhs, rhs, out) axis lists [batch/out-feature, feature/in-feature, spatial...]."""
  if dimension_numbers is None:
    sp = list(range(2, ndim))
    return [0, 1] + sp, [0, 1] + sp, [0, 1] + sp
  if all(isinstance(s, str) for s in dimension_numbers):
    lhs_s, rhs_s, out_s = dimension_numbers
    spatial = [c for c in rhs_s if c not in "OI"]     # lax orders spatial dims as in rhs_spec
    return ([lhs_s.index("N"), lhs_s.index("C")] + [lhs_s.index(c) for c in spatial],
            [rhs_s.index("O"), rhs_s.index("I")] + [rhs_s.index(c) for c in spatial],
            [out_s.index("N"), out_s.index("C")] + [out_s.index(c) for c in spatial])
  lhs_s, rhs_s, out_s = dimension_numbers          # ConvDimensionNumbers: already permutations
  return list(lhs_s), list(rhs_s), list(out_s)


def _same_pads(in_sp, eff_k, strides, lower=False):
  pads = []
  for n, k, s in zip(in_sp, eff_k, strides):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    small, big = total // 2, total - total // 2
    pads.append((big, small) if lower else (small, big))
  return pads


def conv(lhs: np.ndarray, rhs: np.ndarray, window_strides, padding, lhs_dilation=None,
         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1) -> np.ndarray:
  """Exact ``lax.conv_general_dilated`` semantics in int64, by explicit loops over taps."""
  nd = lhs.ndim - 2
  lspec, rspec, ospec = _specs(dimension_numbers, lhs.ndim)
  x = np.transpose(lhs.astype(np.int64), lspec)        # N, C, *S
  w = np.transpose(rhs.astype(np.int64), rspec)        # O, I, *K
  strides = list(window_strides)
  ld = list(lhs_dilation or [1] * nd)
  rd = list(rhs_dilation or [1] * nd)
  n, c = x.shape[:2]
  o, i = w.shape[:2]
  kern = w.shape[2:]
  eff_k = [(k - 1) * r + 1 for k, r in zip(kern, rd)]
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      pads = [(0, 0)] * nd
    else:
      pads = _same_pads(x.shape[2:], eff_k, strides, padding.upper() == "SAME_LOWER")
  else:
    pads = [tuple(p) for p in padding]
  # Dilate the input (insert ld-1 zeros between elements), then pad (negative pads crop).
  dil_shape = [(s - 1) * d + 1 if s else 0 for s, d in zip(x.shape[2:], ld)]
  xd = np.zeros((n, c, *dil_shape), np.int64)
  xd[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in ld)] = x
  for ax, (lo, hi) in enumerate(pads):
    axis = ax + 2
    if lo > 0 or hi > 0:
      widths = [(0, 0)] * xd.ndim
      widths[axis] = (max(lo, 0), max(hi, 0))
      xd = np.pad(xd, widths)
    if lo < 0 or hi < 0:
      start = -lo if lo < 0 else 0
      stop = xd.shape[axis] + hi if hi < 0 else xd.shape[axis]
      xd = np.take(xd, np.arange(start, stop), axis=axis)
  out_sp = [max(0, (p - e) // s + 1) if p >= e else 0
            for p, e, s in zip(xd.shape[2:], eff_k, strides)]
  g = feature_group_count
  cg, og = c // g, o // g
  out = np.zeros((n, o, *out_sp), np.int64)
  for tap in itertools.product(*[range(k) for k in kern]):
    sl = tuple(slice(t * r, t * r + (m - 1) * s + 1, s) if m else slice(0, 0)
               for t, r, m, s in zip(tap, rd, out_sp, strides))
    win = xd[(slice(None), slice(None)) + sl]           # N, C, *out
    for gi in range(g):
      xa = win[:, gi * cg:(gi + 1) * cg]                  # N, Cg, *out
      wk = w[(slice(gi * og, (gi + 1) * og), slice(None)) + tuple(tap)]   # Og, Cg
      out[:, gi * og:(gi + 1) * og] += np.einsum("nc...,oc->no...", xa, wk)
  inv = np.argsort(ospec)
  return np.transpose(out, inv)


def accumulator(s: np.ndarray, acc_bits: int, overflow: str) -> Tuple[np.ndarray, int]:
  """``(result, overflow_count)`` of exact sums ``s`` (int64 or object) in an ``acc_bits``
  register: ``overflow`` ``"wrap"`` (modulo) or ``"clip"`` (the exact sum clipped once).
  The per-add ``"saturate"`` register needs the products: :func:`register`."""
  if overflow not in ("wrap", "clip"):
    raise ValueError(f"accumulator: overflow={overflow!r}; use register() for 'saturate'")
  s = np.asarray(s, dtype=object)
  lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
  over = np.vectorize(lambda v: v < lo or v > hi, otypes=[bool])(s) if s.size else np.zeros(s.shape, bool)
  if overflow == "clip":
    res = np.vectorize(lambda v: min(max(v, lo), hi), otypes=[object])(s) if s.size else s
  else:
    mod = 1 << acc_bits
    res = np.vectorize(lambda v: (v - lo) % mod + lo, otypes=[object])(s) if s.size else s
  return np.asarray(res, dtype=np.int64).reshape(s.shape), int(over.sum())


def register(a_slots: np.ndarray, w_slots: np.ndarray, acc_bits: int) -> Tuple[np.ndarray,
                                                                               np.ndarray]:
  """A saturating ``acc_bits`` register, one Python-integer add at a time, per output.

  Args:
    a_slots, w_slots: ``(outputs, K)`` activations and weights in the order of the adds (e.g.
      from :func:`dot_slots` / :func:`conv_slots`).

  Returns:
    ``(result, clamps)`` int64 ``(outputs,)``: the register after the last add, starting from
    0 and clamped to ``[-2**(acc_bits-1), 2**(acc_bits-1) - 1]`` after every add, and the
    number of adds whose exact result lay outside that range.
  """
  lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
  out = np.zeros(a_slots.shape[0], np.int64)
  clamps = np.zeros(a_slots.shape[0], np.int64)
  for i, (ar, wr) in enumerate(zip(a_slots.tolist(), w_slots.tolist())):
    acc = n = 0
    for a, w in zip(ar, wr):
      acc += a * w
      if acc > hi or acc < lo:
        acc = hi if acc > hi else lo
        n += 1
    out[i], clamps[i] = acc, n
  return out, clamps


def dot_register(lhs, rhs, dimension_numbers, acc_bits: int):
  """:func:`register` of a dot_general in its K order, shaped as ``lax``'s output."""
  a_slots, w_slots = dot_slots(lhs, rhs, dimension_numbers)
  shape = dot(np.zeros(lhs.shape, np.int64), np.zeros(rhs.shape, np.int64),
              dimension_numbers).shape
  out, clamps = register(a_slots, w_slots, acc_bits)
  return out.reshape(shape), clamps.reshape(shape)


def conv_register(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                  dimension_numbers=None, feature_group_count: int = 1, *, acc_bits: int):
  """:func:`register` of a convolution in window order (taps row-major, then the group's input
  channels ascending), in ``lax``'s output layout."""
  args = (window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
          feature_group_count)
  a_slots, w_slots = conv_slots(lhs, rhs, *args)
  logical_out = conv(np.zeros(lhs.shape, np.int64), np.zeros(rhs.shape, np.int64), *args)
  _, _, ospec = _specs(dimension_numbers, lhs.ndim)
  logical_shape = tuple(logical_out.shape[d] for d in ospec)
  out, clamps = register(a_slots, w_slots, acc_bits)
  inv = np.argsort(ospec)
  back = lambda t: np.transpose(t.reshape(logical_shape), inv)
  return back(out), back(clamps)


def dual_lod_approx(a: np.ndarray, length: int, rounding: str = "truncate") -> np.ndarray:
  """The dual-LOD activation: sign-magnitude, keep ``length`` significant bits (Python ints)."""
  def one(v):
    v = int(v)
    mag = abs(v)
    if mag == 0:
      return 0
    shift = max(0, mag.bit_length() - length)
    if rounding == "truncate":
      m = mag >> shift
    else:
      m = (mag + ((1 << (shift - 1)) if shift else 0)) >> shift
    return -(m << shift) if v < 0 else (m << shift)
  a = np.asarray(a)
  return np.vectorize(one, otypes=[np.int64])(a) if a.size else a.astype(np.int64)


def pattern_levels(bits: int, length: int, signed: bool = True) -> np.ndarray:
  """All integers whose set bits fit a window of ``length`` (independent of BitPattern)."""
  n = bits - 1 if signed else bits
  mags = [q for q in range(1 << n)
          if q == 0 or (q >> max(0, q.bit_length() - length)) << max(0, q.bit_length() - length) == q]
  mags = np.array(mags, np.int64)
  return np.unique(np.concatenate([-mags, mags])) if signed else mags


def dot_slots(lhs: np.ndarray, rhs: np.ndarray, dimension_numbers):
  """Every product slot of a dot_general: ``(A, W)`` int64 arrays ``(outputs, K)``.

  Outputs in ``lax`` output order; ``K`` the contracting dims flattened row-major in the order
  the dimension numbers list them.
  """
  (lc, rc), (lb, rb) = dimension_numbers
  lf = [i for i in range(lhs.ndim) if i not in tuple(lc) + tuple(lb)]
  rf = [i for i in range(rhs.ndim) if i not in tuple(rc) + tuple(rb)]
  a = np.transpose(lhs.astype(np.int64), list(lb) + lf + list(lc))
  w = np.transpose(rhs.astype(np.int64), list(rb) + rf + list(rc))
  nb = int(np.prod([lhs.shape[i] for i in lb]))
  k = int(np.prod([lhs.shape[i] for i in lc]))
  a = a.reshape(nb, -1, k)
  w = w.reshape(nb, -1, k)
  A = np.broadcast_to(a[:, :, None, :], (nb, a.shape[1], w.shape[1], k)).reshape(-1, k)
  W = np.broadcast_to(w[:, None, :, :], (nb, a.shape[1], w.shape[1], k)).reshape(-1, k)
  return A, W


def conv_slots(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count: int = 1):
  """Every product slot of a convolution: ``(A, W)`` int64 ``(outputs, K)``.

  Outputs in logical ``(N, O, *out)`` order; ``K`` ordered by kernel tap (row-major) then input
  channel of the group. Padding and dilation holes appear as zero activations.
  """
  nd = lhs.ndim - 2
  lspec, rspec, _ = _specs(dimension_numbers, lhs.ndim)
  x = np.transpose(lhs.astype(np.int64), lspec)
  w = np.transpose(rhs.astype(np.int64), rspec)
  # Reuse the model: convolve one-hot "probe" kernels to read each window element.
  o, cg = w.shape[:2]
  kern = w.shape[2:]
  g = feature_group_count
  taps = list(itertools.product(*[range(k) for k in kern]))
  cols_a, cols_w = [], []
  for tap in taps:
    for ci in range(cg):
      probe = np.zeros((o, cg) + tuple(kern), np.int64)
      probe[(slice(None), ci) + tuple(tap)] = 1
      a_win = conv(x, probe, window_strides, padding, lhs_dilation, rhs_dilation, None, g)
      cols_a.append(a_win.reshape(-1))          # (N, O, *out) flattened
      wv = w[(slice(None), ci) + tuple(tap)]     # (O,)
      cols_w.append(np.broadcast_to(wv[None, :, None], (a_win.shape[0], o, int(np.prod(a_win.shape[2:])))).reshape(-1))
  return np.stack(cols_a, axis=1), np.stack(cols_w, axis=1)
