"""``method="reference"``: the datapath performed literally, one product at a time.

For every contraction index ``k`` (in the documented order, below) and every output, the product
goes through the hardware pieces of :mod:`ebsp_jax.arith.datapath`: the weight code
``(sign, shift, mant)`` from the LOD + mux, the LUT of the activation filled by shifts and adds,
the LUT read at ``mant``, the barrel shift, the sign, and the add into the accumulator
(dual-LOD mode: activation LOD + mux, the constant mantissa-product table, shift by the sum of
both shifts). Memory is bounded by scanning (``lax.scan``) over the contraction: one step holds
the LUTs of one activation slice and one output-sized block of products, never a
``(outputs x contraction)`` tensor, so a ResNet-50 layer needs a few output-sized buffers.

Accumulation order, the datapath's K order (it decides the ``saturate`` result and the
high-water mark; ``wrap`` and ``clip`` are order-independent, see :mod:`ebsp_jax.arith.api`):

* dot_general: the contracting dims flattened row-major in the order the dimension numbers
  list them;
* conv: kernel taps in row-major order of the kernel's spatial dims (in ``rhs_spec`` order),
  and within a tap the input channels of the group in ascending order.

The accumulator is modelled by up to three registers: an ``acc_bits``-bit two's-complement
register that wraps at every add (the ``wrap`` result), for ``overflow="saturate"`` one that
clamps at every add (:func:`ebsp_jax.arith.datapath.saturating_accumulate`) with its count of
clamping adds, and the exact sum as a 64-bit pair (:mod:`ebsp_jax.arith.wide`) from which
``clip``, the overflow count and the high-water mark are read. By the ring property of two's
complement the wrapped register equals the exact sum modulo ``2**acc_bits`` after every step,
whatever the order.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from ebsp_jax.arith import datapath, wide
from ebsp_jax.arith.config import Config
from ebsp_jax.arith.geometry import ConvGeometry, conv_taps, window

# Dual-LOD mantissa tables with more entries than this are not materialised (computed by the
# same shift-and-add recurrence instead); 2**8 x 2**8 = 65,536 entries is the largest table.
MAX_MATERIALISED_TABLE = 1 << 16


def products(a: jax.Array, w_sign: jax.Array, w_shift: jax.Array, w_mant: jax.Array,
             cfg: Config) -> jax.Array:
  """The products of one contraction step, literally.

  Args:
    a: int32 ``(G, X)`` activations (one contraction index, every output row).
    w_sign, w_shift, w_mant: int32 ``(G, Y)`` weight codes of the same contraction index.
    cfg: the static configuration.

  Returns:
    int32 ``(G, X, Y)`` products ``a[g, x] * q[g, y]`` (dual LOD: with the approximated ``a``).
  """
  length = cfg.pattern.length
  if cfg.mode == "exact":
    if (1 << length) <= datapath.MAX_MATERIALISED_LUT:
      lut = datapath.lut_fill(a, length)                        # (G, X, 2**L)
      mag = jax.vmap(datapath.lut_read)(lut, w_mant)             # (G, X, Y)
    else:
      mag = datapath.lut_entry(a[:, :, None], w_mant[:, None, :], length)
    mag = datapath.barrel_shift(mag, w_shift[:, None, :])
    return datapath.apply_sign(mag, w_sign[:, None, :])
  a_sign, a_shift, a_mant = datapath.act_split(a, length, cfg.rounding)      # (G, X)
  if (1 << (2 * length)) <= MAX_MATERIALISED_TABLE:
    table = jnp.asarray(datapath.mantissa_table(length)).reshape(-1)
    mag = jnp.take(table, (w_mant[:, None, :] << length) + a_mant[:, :, None], mode="clip")
  else:
    mag = datapath.lut_entry(a_mant[:, :, None], w_mant[:, None, :], length)
  mag = datapath.barrel_shift(mag, w_shift[:, None, :] + a_shift[:, :, None])
  return datapath.apply_sign(mag, w_sign[:, None, :] ^ a_sign[:, :, None])


def init_state(shape, cfg: Config, high_water: bool = False) -> Dict[str, object]:
  """Accumulator state of the reference scan: int32 ``acc`` (+ exact wide sum, + high-water
  bits, + for ``saturate`` the saturating register ``sat`` and its ``clamps`` count)."""
  state = {"acc": jnp.zeros(shape, jnp.int32)}
  if cfg.overflow == "saturate":
    state["sat"] = jnp.zeros(shape, jnp.int32)
    state["clamps"] = jnp.zeros(shape, jnp.int32)
  if (cfg.needs_exact and cfg.overflow != "saturate") or high_water:
    state["exact"] = wide.zeros(shape)
  if high_water:
    state["high_water"] = jnp.ones(shape, jnp.int32)   # 0 needs 1 bit
  return state


def step(state, p: jax.Array, cfg: Config):
  """Adds one block of products into the accumulator state."""
  out = {"acc": datapath.accumulate(state["acc"], p, cfg.acc_bits)}
  if "sat" in state:
    out["sat"], clipped = datapath.saturating_accumulate(state["sat"], p, cfg.acc_bits)
    out["clamps"] = state["clamps"] + clipped.astype(jnp.int32)
  if "exact" in state:
    out["exact"] = wide.add_int32(state["exact"], p)
  if "high_water" in state:
    out["high_water"] = jnp.maximum(state["high_water"], wide.signed_bits(out["exact"]))
  return out


def finalize(state, cfg: Config) -> Tuple[jax.Array, Optional[jax.Array]]:
  """The accumulator's output under ``cfg.overflow`` and the per-output overflow mask.

  The mask: for ``saturate``, outputs whose register clamped at least once (the counts are
  ``state["clamps"]``); otherwise outputs whose exact sum does not fit ``acc_bits`` bits.
  """
  if cfg.overflow == "saturate":
    return state["sat"], state["clamps"] > 0
  if "exact" not in state:
    return state["acc"], None
  exact = state["exact"]
  overflowed = ~wide.in_range(exact, cfg.acc_bits)
  if cfg.overflow == "clip":
    return wide.saturate(exact, cfg.acc_bits), overflowed
  return state["acc"], overflowed


def scan_contraction(state, a_seq: jax.Array, w_sign: jax.Array, w_shift: jax.Array,
                     w_mant: jax.Array, cfg: Config):
  """Accumulates ``sum_k a_seq[k] (x) q[k]`` product by product, ``k`` ascending.

  Not unrolled: unrolling amortises the loop overhead of small steps but multiplies compile
  time, and the reference is meant for large layers, where one step is big.

  Args:
    state: from :func:`init_state` with shape ``(G, X, Y)``.
    a_seq: int32 ``(K, G, X)``; ``w_*``: int32 ``(K, G, Y)`` weight codes.
  """
  def body(st, xs):
    a, s, k, m = xs
    return step(st, products(a, s, k, m, cfg), cfg), None

  if a_seq.shape[0] == 0:
    return state
  state, _ = lax.scan(body, state, (a_seq, w_sign, w_shift, w_mant))
  return state


def dot(a: jax.Array, w: jax.Array, cfg: Config, high_water: bool = False):
  """Literal ``(G, X, K) x (G, K, Y) -> (G, X, Y)``.

  Returns:
    ``(out, overflowed, state)``: int32 output, bool per-output overflow mask (or None when
    not needed) and the final accumulator state.
  """
  g, x, k = a.shape
  y = w.shape[-1]
  sign, shift, mant = datapath.split_weight(w, cfg.pattern)       # (G, K, Y)
  state = init_state((g, x, y), cfg, high_water)
  to_k = lambda t: jnp.moveaxis(t, 1, 0)
  state = scan_contraction(state, jnp.moveaxis(a.astype(jnp.int32), 2, 0), to_k(sign),
                           to_k(shift), to_k(mant), cfg)
  out, overflowed = finalize(state, cfg)
  return out, overflowed, state


def conv(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, cfg: Config,
         high_water: bool = False):
  """Literal convolution in ``lax`` semantics (layout of ``geo``).

  Returns:
    ``(out, overflowed, state)`` as :func:`dot`, with ``out`` and ``overflowed`` in the
    physical output layout.
  """
  groups, cg, og = geo.groups, geo.group_in, geo.group_out
  n, p = geo.batch, 1
  for s in geo.out_spatial:
    p *= s
  x = n * p
  shape = (groups, x, og)
  state = init_state(shape, cfg, high_water)
  if x > 0 and og > 0 and geo.k > 0:
    x_pad, offsets, span = conv_taps(geo, geo.lhs_logical(lhs).astype(jnp.int32))
    w = geo.rhs_logical(rhs).reshape(groups, og, cg, geo.taps)       # (G, Og, Cg, T)
    codes = datapath.split_weight(w, cfg.pattern)
    codes = [jnp.transpose(c, (3, 2, 0, 1)) for c in codes]         # (T, Cg, G, Og)

    def tap_body(st, xs):
      off, s, k, m = xs
      win = window(x_pad, off, span, geo.strides)                   # (N, C, *out)
      win = win.reshape(n, groups, cg, p).transpose(2, 1, 0, 3).reshape(cg, groups, x)
      return scan_contraction(st, win, s, k, m, cfg), None

    state, _ = lax.scan(tap_body, state, (jnp.asarray(offsets), *codes))
  out, overflowed = finalize(state, cfg)

  def physical(t):
    t = t.reshape((groups, n) + geo.out_spatial + (og,))
    t = jnp.moveaxis(t, -1, 1)                      # (G, Og, N, *out)
    t = jnp.moveaxis(t, 2, 0)                       # (N, G, Og, *out)
    return geo.out_physical(t.reshape((n, groups * og) + geo.out_spatial))

  state = jax.tree.map(lambda t: physical(t) if t.shape == shape else t, state)
  return physical(out), (None if overflowed is None else physical(overflowed)), state
