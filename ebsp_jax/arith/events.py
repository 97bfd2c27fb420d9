"""Per-layer event counts of the EBSP datapath, from actual data, for the hardware model.

:func:`dot_general_events` and :func:`conv_general_dilated_events` take the same arguments as
the datapath calls (``lax`` conventions) and return a plain dict of Python ints / lists. A
*product slot* is one (activation, weight) pair of the contraction of one output; padding and
dilation holes of a convolution count as zero activations. Keys:

``macs``
    product slots: ``outputs * contraction``.
``outputs``, ``contraction``
    number of outputs, and products per output (``K``).
``zero_weight_products``
    slots whose weight is 0: skippable (no LUT read, no shift, no add).
``zero_activation_products``
    slots with a non-zero weight and a zero activation (also skippable by a zero-gating design;
    they are still counted in ``lut_reads``/``adds`` below).
``lut_reads``
    slots with a non-zero weight: one LUT read each (exact mode: the activation's LUT at the
    weight mantissa; dual LOD: the constant mantissa-product table).
``shift_hist``
    list: ``shift_hist[s]`` = slots with a non-zero weight whose barrel shift is ``s`` (exact
    mode: the weight shift, ``len = max_shift + 1``; dual LOD: weight shift + activation shift,
    ``len = max_shift + max_activation_shift + 1``). ``sum(shift_hist) == lut_reads``.
``adds``
    accumulator additions: one per non-zero-weight slot (``== lut_reads``).
``lut_fills``
    LUT fills, assuming each activation element fills its LUT once and the LUT serves every
    product of that activation (broadcast dataflow): the number of non-zero activation elements
    of ``lhs`` (a zero activation needs no fill). 0 in dual-LOD mode (the table is constant).
``lut_fill_adds``
    adds spent filling LUTs: ``lut_fills * (2**(L-1) - 1)`` (odd entries ``>= 3``; even entries
    are wired shifts).
``lod_uses``, ``lod_uses_weights``, ``lod_uses_activations``
    leading-one detections: one per weight element (done once, when the weights are encoded;
    they are static) plus, in dual-LOD mode, one per activation element.
``acc_high_water_bits``
    two's-complement bits that hold every partial sum. ``high_water="bound"`` (default): from
    ``max(P, N)`` over outputs, with ``P``/``N`` the sums of the positive/negative products —
    every partial sum in *any* accumulation order lies in ``[-N, P]``, so this is the exact
    high-water mark of the worst order and an upper bound for all orders.
    ``high_water="sequential"``: the exact mark of the reference order (runs
    ``method="reference"``; slow).
``acc_final_bits``
    bits that hold every final sum (order-independent; ``<= acc_high_water_bits``).
``acc_bits_needed``
    ``acc_high_water_bits`` for ``high_water="bound"``: an accumulator this wide never
    overflows, in any order.

:func:`recording` collects these dicts for every ``arith.dot_general`` /
``arith.conv_general_dilated`` call made inside it (eager or under a ``jax.jit`` traced inside
it, ``jax.vmap`` included), with a ``name`` per call, e.g. for a whole network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from typing import Any, Dict, Iterator, List, Optional

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
import numpy as np

from ebsp_jax.arith import datapath, fast, reference, wide
from ebsp_jax.arith.config import Config, make_config
from ebsp_jax.arith.geometry import (ConvGeometry, conv_geometry, conv_taps, dot_canonical,
                                     dot_geometry, normalize_dot_dims, window)
from ebsp_jax.numerics import BitPattern

Events = Dict[str, Any]
HIGH_WATER = ("bound", "sequential")


def _config(lhs, rhs, pattern, mode, rounding, act_bits, act_signed, op) -> Config:
  return make_config(lhs.dtype, rhs.dtype, pattern=pattern, acc_bits=32, overflow="wrap",
                     mode=mode, method="fast", rounding=rounding, act_bits=act_bits,
                     act_signed=act_signed, with_stats=False, accumulation="int32", op=op)


def _max_act_shift(cfg: Config) -> int:
  """Largest dual-LOD activation shift for the activation format."""
  return max(0, cfg.max_abs_act.bit_length() - cfg.pattern.length)


def _weight_features(w: jax.Array, pattern: BitPattern) -> jax.Array:
  """Per weight: one-hot ``[zero, shift 0, ..., shift max_shift]`` (int32, last axis)."""
  _, shift, _ = datapath.split_weight(w, pattern)
  idx = jnp.where(w == 0, 0, shift + 1)
  return jax.nn.one_hot(idx, pattern.max_shift + 2, dtype=jnp.int32)


def _act_features(a: jax.Array, cfg: Config) -> jax.Array:
  """Per activation: one-hot ``[zero, shift 0, ..., shift max]`` of its dual-LOD shift
  (exact mode: ``[zero, non-zero]``)."""
  if cfg.mode == "dual_lod":
    n = _max_act_shift(cfg) + 1
    _, shift, _ = datapath.act_split(a, cfg.pattern.length, cfg.rounding)
  else:
    n = 1
    shift = jnp.zeros(a.shape, jnp.int32)
  idx = jnp.where(a == 0, 0, jnp.minimum(shift, n - 1) + 1)
  return jax.nn.one_hot(idx, n + 1, dtype=jnp.int32)


def _bits(v: int) -> int:
  return v.bit_length() + 1 if v >= 0 else (~v).bit_length() + 1


def _from_marginals(fa: np.ndarray, fw: np.ndarray, cfg: Config, *, outputs: int,
                    contraction: int, lhs_nonzero: int, n_weights: int, n_acts: int) -> Events:
  """Events from per-contraction-index marginals.

  Args:
    fa: int64 ``(I, 1 + A)``: for each contraction index ``i`` (over every group), how many
      product slots see a zero activation (column 0) or a non-zero one with activation shift
      ``j`` (column ``1 + j``).
    fw: int64 ``(I, 2 + max_shift)``: how many outputs use, at index ``i``, a zero weight
      (column 0) or a non-zero weight with shift ``s`` (column ``1 + s``).
  """
  fa = fa.astype(np.int64)
  fw = fw.astype(np.int64)
  joint = np.einsum("ia,iw->aw", fa, fw)                 # (1 + A, 2 + S)
  L = cfg.pattern.length
  zero_w = int(joint[:, 0].sum())
  zero_a = int(joint[0, 1:].sum())
  nonzero_w = joint[:, 1:]                                # rows: act class, cols: weight shift
  if cfg.mode == "dual_lod":
    n_s = nonzero_w.shape[1]
    hist = np.zeros(n_s + fa.shape[1], np.int64)
    hist[:n_s] += nonzero_w[0]                            # zero activation: shift 0 (mant 0)
    for j in range(1, fa.shape[1]):
      hist[j - 1:j - 1 + n_s] += nonzero_w[j]
    hist = hist[:cfg.pattern.max_shift + _max_act_shift(cfg) + 1]
  else:
    hist = nonzero_w.sum(axis=0)[:cfg.pattern.max_shift + 1]
  reads = int(hist.sum())
  fills = 0 if cfg.mode == "dual_lod" else lhs_nonzero
  return {
      "macs": int(outputs) * int(contraction),
      "outputs": int(outputs),
      "contraction": int(contraction),
      "zero_weight_products": zero_w,
      "zero_activation_products": zero_a,
      "lut_reads": reads,
      "shift_hist": [int(h) for h in hist],
      "adds": reads,
      "lut_fills": int(fills),
      "lut_fill_adds": int(fills) * ((1 << (L - 1)) - 1),
      "lod_uses_weights": int(n_weights),
      "lod_uses_activations": int(n_acts) if cfg.mode == "dual_lod" else 0,
      "lod_uses": int(n_weights) + (int(n_acts) if cfg.mode == "dual_lod" else 0),
  }


def _pos_neg(a, w):
  """(positive, negative) parts of the activation (as used) and of the weights."""
  return (jnp.maximum(a, 0), jnp.maximum(-a, 0)), (jnp.maximum(w, 0), jnp.maximum(-w, 0))


def _sum_cfg(cfg: Config) -> Config:
  lo, hi = cfg.datapath_act_range
  bits = max(-lo, hi).bit_length()
  return Config(pattern=cfg.pattern, act_bits=max(bits, 1), act_signed=False,
                accumulation="int32", with_stats=True)


def _high_water(p: wide.Wide, n: wide.Wide, s: wide.Wide) -> Dict[str, int]:
  pv = wide.to_python(p)
  nv = wide.to_python(n)
  sv = wide.to_python(s)
  hw = max(_bits(int(pv.max(initial=0))), _bits(-int(nv.max(initial=0))))
  final = max(_bits(int(sv.max(initial=0))), _bits(int(sv.min(initial=0))))
  return {"acc_high_water_bits": hw, "acc_final_bits": final, "acc_bits_needed": hw}


def _check_high_water(high_water):
  if high_water not in HIGH_WATER:
    raise ValueError(f"high_water={high_water!r} is not supported; allowed: {', '.join(HIGH_WATER)}")


@functools.partial(jax.jit, static_argnames=("geo", "cfg"))
def _dot_kernel(lhs, rhs, geo, cfg: Config):
  a, w = dot_canonical(lhs.astype(jnp.int32), rhs.astype(jnp.int32), geo)     # (G,X,K), (G,K,Y)
  fa = jnp.sum(_act_features(a, cfg), axis=1).reshape(geo.g * geo.k, -1)
  fw = jnp.sum(_weight_features(w, cfg.pattern), axis=2).reshape(geo.g * geo.k, -1)
  used = datapath.act_approx(a, cfg.pattern.length, cfg.rounding) if cfg.mode == "dual_lod" else a
  (ap, an), (wp, wn) = _pos_neg(used, w)
  scfg = _sum_cfg(cfg)
  pl = fast.plan(scfg, geo.k)
  dot = lambda x, y: _exact_dot(x, y, scfg, pl)
  p = wide.add(dot(ap, wp), dot(an, wn))
  n = wide.add(dot(ap, wn), dot(an, wp))
  return fa, fw, jnp.sum(lhs != 0, dtype=jnp.int32), p, n, wide.add(p, wide.neg(n))


def dot_general_events(lhs, rhs, dimension_numbers, *, pattern: BitPattern, mode: str = "exact",
                       rounding: str = "truncate", act_bits: Optional[int] = None,
                       act_signed: Optional[bool] = None, high_water: str = "bound") -> Events:
  """Event counts of ``arith.dot_general(lhs, rhs, dimension_numbers, ...)`` (eager).

  Arguments as :func:`ebsp_jax.arith.dot_general`; returns the dict described in the module
  docstring.
  """
  _check_high_water(high_water)
  lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
  cfg = _config(lhs, rhs, pattern, mode, rounding, act_bits, act_signed, "dot")
  geo = dot_geometry(lhs.shape, rhs.shape, normalize_dot_dims(dimension_numbers, lhs.ndim, rhs.ndim))
  fa, fw, nonzero, p, n, total_sum = _dot_kernel(lhs, rhs, geo=geo, cfg=cfg)
  ev = _from_marginals(np.asarray(fa), np.asarray(fw), cfg, outputs=geo.g * geo.x * geo.y,
                       contraction=geo.k, lhs_nonzero=int(nonzero), n_weights=rhs.size,
                       n_acts=lhs.size)
  ev.update(_high_water(p, n, total_sum))
  if high_water == "sequential":
    ev["acc_high_water_bits"] = int(_dot_sequential(lhs, rhs, geo=geo,
                                                    cfg=dataclasses.replace(cfg, method="reference")))
  return ev


@functools.partial(jax.jit, static_argnames=("geo", "cfg"))
def _dot_sequential(lhs, rhs, geo, cfg: Config):
  a, w = dot_canonical(lhs.astype(jnp.int32), rhs.astype(jnp.int32), geo)
  _, _, state = reference.dot(a, w, cfg, high_water=True)
  return jnp.max(state["high_water"], initial=1)


def _exact_dot(a, w, cfg: Config, pl: fast.Plan) -> wide.Wide:
  k = a.shape[2]
  dims = (((2,), (1,)), ((0,), (0,)))

  def native(alpha, omega, u0, u1):
    return jax.lax.dot_general(alpha[:, :, u0:u1], omega[:, u0:u1, :], dims,
                               preferred_element_type=jnp.int32)

  def native_ones(omega, u0, u1):
    return jnp.sum(omega[:, u0:u1, :].astype(jnp.int32), axis=1, keepdims=True)

  shape = (a.shape[0], a.shape[1], w.shape[2])
  if k == 0:
    return wide.zeros(shape)
  v = fast.combine(pl, a, w, cfg, native, native_ones, exact=True)
  return wide.Wide(*(jnp.broadcast_to(t, shape) for t in v))


def _exact_conv(x, w, geo: ConvGeometry, cfg: Config) -> wide.Wide:
  pl = fast.plan(cfg, geo.group_in, geo.taps)
  dn = geo.dnums
  kwargs = dict(window_strides=geo.strides, padding=geo.padding, lhs_dilation=geo.lhs_dilation,
                rhs_dilation=geo.rhs_dilation, dimension_numbers=dn,
                feature_group_count=geo.groups, preferred_element_type=jnp.int32)
  cg = geo.group_in

  def select(alpha, omega, u0, u1):
    if (u0, u1) == (0, cg):
      return alpha, omega
    idx = [g * cg + c for g in range(geo.groups) for c in range(u0, u1)]
    return (jnp.take(alpha, jnp.asarray(idx), axis=dn.lhs_spec[1]),
            jax.lax.slice_in_dim(omega, u0, u1, axis=dn.rhs_spec[1]))

  def native(alpha, omega, u0, u1):
    return jax.lax.conv_general_dilated(*select(alpha, omega, u0, u1), **kwargs)

  def native_ones(omega, u0, u1):
    shape = list(x.shape)
    shape[dn.lhs_spec[0]] = 1
    return jax.lax.conv_general_dilated(*select(jnp.ones(shape, jnp.int8), omega, u0, u1),
                                        **kwargs)

  if geo.k == 0 or 0 in geo.out_shape:
    return wide.zeros(geo.out_shape)
  v = fast.combine(pl, x, w, cfg, native, native_ones, exact=True)
  return wide.Wide(*(jnp.broadcast_to(t, geo.out_shape) for t in v))


@functools.partial(jax.jit, static_argnames=("geo", "cfg"))
def _conv_kernel(lhs, rhs, geo: ConvGeometry, cfg: Config):
  pattern = cfg.pattern
  groups, cg, og, taps = geo.groups, geo.group_in, geo.group_out, geo.taps
  x = geo.lhs_logical(lhs).astype(jnp.int32)                        # (N, C, *S)
  feats = jnp.moveaxis(_act_features(x, cfg), -1, 1)                # (N, F, C, *S)
  n_f = feats.shape[1]
  x_pad, offsets, span = conv_taps(geo, feats.reshape((feats.shape[0], n_f * x.shape[1])
                                                      + feats.shape[3:]))
  per_tap = []
  for t in range(taps):
    win = window(x_pad, jnp.asarray(offsets[t]), span, geo.strides)   # (N, F*C, *out)
    per_tap.append(jnp.sum(win.reshape(win.shape[0], n_f, x.shape[1], -1), axis=(0, 3)))
  fa = jnp.stack(per_tap)                                           # (T, F, C)
  # Padding / dilation holes hold all-zero features: count them as zero activations.
  slots = geo.batch * int(np.prod(geo.out_spatial))
  fa = fa.at[:, 0, :].add(slots - jnp.sum(fa, axis=1))
  fa = fa.transpose(0, 2, 1).reshape(taps * geo.in_features, n_f)   # (T*C, F)
  w = geo.rhs_logical(rhs).astype(jnp.int32).reshape(groups, og, cg, taps)
  fw = jnp.sum(_weight_features(w, pattern), axis=1)                # (G, Cg, T, S+2)
  fw = fw.transpose(2, 0, 1, 3).reshape(taps * geo.in_features, -1)
  used = datapath.act_approx(lhs, pattern.length, cfg.rounding) if cfg.mode == "dual_lod" else lhs
  (ap, an), (wp, wn) = _pos_neg(used.astype(jnp.int32), rhs.astype(jnp.int32))
  scfg = _sum_cfg(cfg)
  conv = lambda a, b: _exact_conv(a, b, geo, scfg)
  p = wide.add(conv(ap, wp), conv(an, wn))
  n = wide.add(conv(ap, wn), conv(an, wp))
  return fa, fw, jnp.sum(lhs != 0, dtype=jnp.int32), p, n, wide.add(p, wide.neg(n))


@functools.partial(jax.jit, static_argnames=("geo", "cfg"))
def _conv_sequential(lhs, rhs, geo: ConvGeometry, cfg: Config):
  _, _, state = reference.conv(lhs, rhs, geo, cfg, high_water=True)
  return jnp.max(state["high_water"], initial=1)


def conv_general_dilated_events(lhs, rhs, window_strides, padding, lhs_dilation=None,
                                rhs_dilation=None, dimension_numbers=None,
                                feature_group_count: int = 1, *, pattern: BitPattern,
                                mode: str = "exact", rounding: str = "truncate",
                                act_bits: Optional[int] = None, act_signed: Optional[bool] = None,
                                high_water: str = "bound") -> Events:
  """Event counts of ``arith.conv_general_dilated(...)`` with the same arguments (eager)."""
  _check_high_water(high_water)
  lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
  cfg = _config(lhs, rhs, pattern, mode, rounding, act_bits, act_signed, "conv")
  geo = conv_geometry(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                      dimension_numbers, feature_group_count)
  outputs = int(np.prod(geo.out_shape))
  if outputs and geo.k:
    fa, fw, nonzero, p, n, total_sum = _conv_kernel(lhs, rhs, geo=geo, cfg=cfg)
    fa, fw, nonzero = np.asarray(fa), np.asarray(fw), int(nonzero)
  else:
    fa = np.zeros((0, _max_act_shift(cfg) + 2 if mode == "dual_lod" else 2), np.int64)
    fw = np.zeros((0, pattern.max_shift + 2), np.int64)
    nonzero = int(np.count_nonzero(np.asarray(lhs)))
    p = n = total_sum = wide.zeros(geo.out_shape)
  ev = _from_marginals(fa, fw, cfg, outputs=outputs, contraction=geo.k, lhs_nonzero=nonzero,
                       n_weights=rhs.size, n_acts=lhs.size)
  ev.update(_high_water(p, n, total_sum))
  if high_water == "sequential":
    ev["acc_high_water_bits"] = (int(_conv_sequential(
        lhs, rhs, geo=geo, cfg=dataclasses.replace(cfg, method="reference"))) if outputs else 1)
  return ev


def total(events: List[Events]) -> Events:
  """Sums a list of event dicts (histograms padded to the longest); bit widths take the max."""
  out: Events = {}
  for ev in events:
    for k, v in ev.items():
      if k == "name":
        continue
      if isinstance(v, list):
        cur = out.get(k, [])
        n = max(len(cur), len(v))
        out[k] = [(cur[i] if i < len(cur) else 0) + (v[i] if i < len(v) else 0) for i in range(n)]
      elif k.endswith("_bits") or k == "acc_bits_needed":
        out[k] = max(out.get(k, 0), v)
      elif k == "contraction":
        out[k] = max(out.get(k, 0), v)
      else:
        out[k] = out.get(k, 0) + v
  return out


# ------------------------------------------------------------------------------------------
# Recording every datapath call of a network.

_LOCAL = threading.local()


def _active() -> Optional[list]:
  return getattr(_LOCAL, "log", None)


@contextlib.contextmanager
def recording() -> Iterator[List[Events]]:
  """Collects :func:`*_events` dicts for every datapath call made inside the block.

  Eager calls are counted directly; calls traced under ``jax.jit`` inside the block add a
  ``jax.debug.callback`` that counts when the compiled function runs (a function traced before
  the block, i.e. served from jit's cache, is not recorded: trace it inside). A call under
  ``jax.vmap`` (any nesting, inside or outside ``jit``) gives ONE dict per run: the
  :func:`total` of the events of the unbatched calls it stands for (an unbatched operand counts
  once per call, like a Python loop over the batch). Each dict gets a
  ``"name"`` (the ``name=`` keyword of the call, else ``"dot_general_<i>"`` /
  ``"conv_<i>"``). Example::

    with arith.events.recording() as log:
      logits = integer_model(images)
    per_layer = {ev["name"]: ev for ev in log}; whole = arith.events.total(log)
  """
  prev = _active()
  _LOCAL.log = []
  try:
    yield _LOCAL.log
  finally:
    log = _LOCAL.log
    _LOCAL.log = prev


def maybe_record(kind: str, lhs, rhs, name: Optional[str], args: tuple, kwargs: dict) -> None:
  """Called by the datapath entry points; records the call's events when recording."""
  log = _active()
  if log is None:
    return
  fn = dot_general_events if kind == "dot" else conv_general_dilated_events
  label = name or f"{'dot_general' if kind == 'dot' else 'conv'}_{len(log)}"

  def record(batch_dims, lhs_v, rhs_v):
    lhs_v, rhs_v = np.asarray(lhs_v), np.asarray(rhs_v)
    if batch_dims == 0:
      ev = fn(lhs_v, rhs_v, *args, **kwargs)
    else:  # under vmap: the unbatched calls, in row-major order of the batch dimensions
      ev = total([fn(lhs_v[i], rhs_v[i], *args, **kwargs)
                  for i in np.ndindex(lhs_v.shape[:batch_dims])])
    ev["name"] = label
    log.append(ev)

  if isinstance(lhs, jax.core.Tracer) or isinstance(rhs, jax.core.Tracer):
    _tap(record, 0)(lhs, rhs)
  else:
    record(0, lhs, rhs)


def _tap(record, batch_dims: int):
  """``tap(lhs, rhs)`` calls ``record(batch_dims, lhs, rhs)`` when the computation runs.

  A ``jax.debug.callback`` on its own is unrolled by ``vmap`` into one callback per batch
  element (several dicts under one name, in no fixed order under ``jit``); here ``vmap`` instead
  moves its axis to the front of both operands (broadcasting an unbatched one) and taps once
  with one more leading batch dimension.
  """
  @custom_vmap
  def tap(lhs, rhs):
    jax.debug.callback(functools.partial(record, batch_dims), lhs, rhs)
    return lhs

  @tap.def_vmap
  def _rule(axis_size, in_batched, lhs, rhs):
    lhs, rhs = (x if b else jnp.broadcast_to(x, (axis_size,) + x.shape)
                for x, b in zip((lhs, rhs), in_batched))
    return _tap(record, batch_dims + 1)(lhs, rhs), True

  return tap
