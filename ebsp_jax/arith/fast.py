"""``method="fast"``: the same integer sums with native low-precision matmuls and convolutions.

Every product of the datapath is ``a * q`` exactly (docs/method.md §3), so the accumulated sum is
the bilinear form ``S = sum_k a_k q_k`` and any exact evaluation of it gives the datapath's
result. The fast method splits both operands into int8 *planes*,

    a = sum_i 2**e_i * alpha_i + C        q = sum_j 2**f_j * omega_j

(``alpha_i``, ``omega_j`` int8 arrays of the operands' shapes — bf16 holding 9-bit signed
digits on the ``bfloat16`` path — and ``C`` a constant), so that

    S = sum_ij 2**(e_i + f_j) * (alpha_i . omega_j)  +  C * sum_j 2**f_j * (1 . omega_j)      (*)

where ``.`` is the contraction (matmul or convolution) and ``1`` an all-ones activation. Each
``alpha . omega`` is a native int8 x int8 contraction. ``1 . omega`` is a column sum for a
matmul; for a convolution it is the convolution of a batch-1 image of ones (so padding and
dilation holes are accounted for exactly) with one channel per group against ``omega`` summed
over its input channels — ``C/G`` times cheaper than convolving a full image of ones — with
float32 operands at ``HIGHEST`` precision (exact by the 2**24 argument below) or int32 beyond
that bound.

Activation planes (:class:`ActPlan`): a value in ``[lo, hi]`` that already fits a ``d``-bit
signed digit is its own plane (``C = 0``; e.g. int8 activations). Otherwise ``u = a - lo`` is
cut into ``d``-bit digits ``u_i`` and each full digit is centred, ``alpha_i = u_i - 2**(d-1)``,
so ``C = lo + 2**(d-1) * sum_{centred i} 2**e_i`` (uint8 activations: one plane ``a - 128``,
``C = 128``: the zero-point trick of gemmlowp).

Weight planes (:class:`WeightPlan`): a pattern weight is ``±m << s`` with ``m < 2**L``. Either
*shift bands* (the EBSP view): weights whose shift lies in ``[b*D, (b+1)*D)`` with
``D = d - L`` go to plane ``b`` as ``±m << (s - b*D)``, which fits ``d - 1`` magnitude
bits, with ``f_b = b*D`` — ``A.W = sum_b (A . M_b) << f_b``; or plain ``(d-1)``-bit digits of the
magnitude. Whichever needs fewer planes is used; a pattern with ``max_level < 2**(d-1)``
(every ``bits <= 8`` pattern) is a single plane.

Exactness. (1) Terms: with ``|alpha| <= A``, ``|omega| <= W`` and a chunk of at most ``k_c``
contraction elements, every partial sum of a term, in any order, is bounded by
``k_c * A * W``. The int32 path needs ``k_c * A * W <= 2**31 - 1`` (then the int32 dot is exact,
no wrap; the same bound serves ``accumulation="onednn"``, whose int8 GEMM also accumulates
in int32 — uint8 activations are its operand as they are, without the offset below, and on CPUs
without int8 dot instructions its weight digits are narrowed to 7 bits, see
:mod:`ebsp_jax.arith.onednn`). The float32 path (for GPUs, where XLA has no int8 -> int32
convolution and cuDNN's integer convolutions accumulate into f32; also
``accumulation="bfloat16"``: bf16 operands, f32 accumulation, for CPUs with bf16 dot units)
needs ``k_c * A * W <= 2**24``: every integer of
magnitude ``<= 2**24`` is a float32, so every product and every partial sum — in any order,
with any blocking — is exact, and so is the result. This needs float32 products and sums:
every float op requests ``lax.Precision.HIGHEST`` (:data:`FLOAT_PRECISION`), so XLA may not
use TF32 or bf16 passes. (The digit planes, int8 or 9-bit values, would survive those; the
summed kernel of the offset convolution, up to ``C/G * max|omega|``, would not.) The planner (:func:`plan`) picks digit widths and a
chunking of the contraction (input channels, for convolutions) that satisfy the bound with the
fewest native ops. (2) Combination: the exact chunk results are combined by (*) either in int32
— exact modulo ``2**32`` because two's-complement addition and multiplication are ring
operations on ``Z / 2**32``, hence exact outright when ``|S| <= K * max|a| * max|q| < 2**31``
— or, when the exact value is needed beyond that bound (saturation, overflow counts), as 64-bit
pairs (:mod:`ebsp_jax.arith.wide`). (3) Wrap: ``S mod 2**acc_bits`` is a function of
``S mod 2**32`` for ``acc_bits <= 32``, so the wrapped result is exact from int32 arithmetic.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, List, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from ebsp_jax.arith import datapath, dispatch, onednn, wide
from ebsp_jax.arith.config import Config
from ebsp_jax.arith.geometry import ConvGeometry
from ebsp_jax.numerics import BitPattern, encode

INT32_BOUND = (1 << 31) - 1
FLOAT32_BOUND = 1 << 24
# Every native op with a float result asks for full float32 products and sums: never TF32
# (XLA:GPU's default for float32 operands, 11 significant bits) nor bf16 passes. The 2**24
# argument needs exact float32; with TF32 the offset convolution's summed kernel (up to
# C/G * max|omega|, e.g. > 2**11 for a 6b(L3) layer with more than 73 input channels) would be
# rounded. ``fast_test.py`` asserts it on the lowered StableHLO for CPU and CUDA.
FLOAT_PRECISION = lax.Precision.HIGHEST


def _precision(dtype):
  """``FLOAT_PRECISION`` for a float result type, None (the default) for integer results."""
  return None if jnp.issubdtype(dtype, jnp.integer) else FLOAT_PRECISION


@dataclasses.dataclass(frozen=True)
class ActPlan:
  """Activation planes: ``a = sum_i 2**shifts[i] * plane_i(a) + offset``."""

  lo: int
  hi: int
  digit_bits: int
  direct: bool
  shifts: Tuple[int, ...]
  centred: Tuple[bool, ...]
  max_abs: Tuple[int, ...]
  offset: int

  @property
  def count(self) -> int:
    return len(self.shifts)


def act_plan(lo: int, hi: int, digit_bits: int = 8) -> ActPlan:
  """Plans the int8 planes of activations in ``[lo, hi]`` with ``digit_bits``-bit digits."""
  d = digit_bits
  half = 1 << (d - 1)
  if lo >= -half and hi <= half - 1:
    return ActPlan(lo, hi, d, True, (0,), (False,), (max(-lo, hi),), 0)
  span = hi - lo
  width = span.bit_length()
  n = -(-width // d)
  shifts, centred, max_abs = [], [], []
  offset = lo
  for i in range(n):
    top = span >> (d * i)
    raw_max = min((1 << d) - 1, top)
    c = raw_max > half - 1
    shifts.append(d * i)
    centred.append(c)
    max_abs.append(half if c else raw_max)
    if c:
      offset += half << (d * i)
  return ActPlan(lo, hi, d, False, tuple(shifts), tuple(centred), tuple(max_abs), offset)


def act_planes(a: jax.Array, plan: ActPlan) -> List[jax.Array]:
  """The int32 planes of ``a`` (values fit ``plan.digit_bits``-bit signed digits)."""
  a = a.astype(jnp.int32)
  if plan.direct:
    return [a]
  u = a - plan.lo
  mask = (1 << plan.digit_bits) - 1
  out = []
  for s, c in zip(plan.shifts, plan.centred):
    digit = (u >> s) & mask
    out.append(digit - (1 << (plan.digit_bits - 1)) if c else digit)
  return out


@dataclasses.dataclass(frozen=True)
class WeightPlan:
  """Weight planes: ``q = sum_j 2**shifts[j] * plane_j(q)``."""

  kind: str            # "direct" | "bands" | "digits"
  digit_bits: int
  shifts: Tuple[int, ...]
  max_abs: Tuple[int, ...]
  band: int = 0        # shifts per band (kind == "bands")

  @property
  def count(self) -> int:
    return len(self.shifts)


def weight_plan(pattern: BitPattern, digit_bits: int = 8) -> Optional[WeightPlan]:
  """Plans weight planes whose magnitudes fit ``digit_bits - 1`` bits (None if impossible)."""
  d = digit_bits
  cap = (1 << (d - 1)) - 1
  n, length, max_shift = pattern.magnitude_bits, pattern.length, pattern.max_shift
  if pattern.max_level <= cap:
    return WeightPlan("direct", d, (0,), (pattern.max_level,))
  options = []
  if length <= d - 1:
    band = d - length
    nb = -(-(max_shift + 1) // band)
    shifts = tuple(b * band for b in range(nb))
    max_abs = tuple(((1 << length) - 1) << min(band - 1, max_shift - s) for s in shifts)
    options.append(WeightPlan("bands", d, shifts, max_abs, band))
  if d >= 2:
    width = d - 1
    nd = -(-n // width)
    shifts = tuple(j * width for j in range(nd))
    max_abs = tuple(min(cap, pattern.max_level >> s) for s in shifts)
    options.append(WeightPlan("digits", d, shifts, max_abs))
  if not options:
    return None
  return min(options, key=lambda p: (p.count, p.kind != "bands"))


def weight_planes(q: jax.Array, plan: WeightPlan, pattern: BitPattern) -> List[jax.Array]:
  """The int32 planes of pattern weights ``q`` (magnitudes ``< 2**(digit_bits-1)``)."""
  q = q.astype(jnp.int32)
  if plan.kind == "direct":
    return [q]
  if plan.kind == "bands":
    sign, shift, mant = encode(q, pattern)
    out = []
    for f in plan.shifts:
      inside = (shift >= f) & (shift < f + plan.band)
      mag = jnp.where(inside, mant << jnp.clip(shift - f, 0, plan.band - 1), 0)
      out.append(datapath.apply_sign(mag, sign))
    return out
  mag, neg = jnp.abs(q), q < 0
  mask = (1 << (plan.digit_bits - 1)) - 1
  return [jnp.where(neg, -((mag >> s) & mask), (mag >> s) & mask) for s in plan.shifts]


@dataclasses.dataclass(frozen=True)
class Plan:
  """How the fast method splits one product into exact native ops (digits, accumulation, chunks)."""
  act: ActPlan
  weight: WeightPlan
  accumulation: str
  chunk_units: int     # contraction units (dot: elements; conv: input channels) per native op
  units: int           # total contraction units
  unit_size: int       # contraction elements per unit (conv: kernel taps)
  exact_int32: bool    # |S| < 2**31 guaranteed: int32 combination is the exact sum

  @property
  def chunks(self) -> int:
    return -(-self.units // self.chunk_units) if self.units else 0

  @property
  def native_ops(self) -> int:
    return self.act.count * self.weight.count * self.chunks


def plan(cfg: Config, units: int, unit_size: int = 1, accumulation: Optional[str] = None) -> Plan:
  """Chooses planes and chunking for ``units * unit_size`` contraction elements (see module doc).

  ``accumulation`` overrides ``cfg.accumulation``. ``"auto"`` (left unresolved by the config
  only for dot_general on CPU, where the choice depends on the contraction length) is resolved
  here by :func:`ebsp_jax.arith.dispatch.resolve_accumulation`, given the native ops each
  candidate needs.

  Raises:
    ValueError: if no plan meets the exactness bound (only for absurd kernel sizes).
  """
  accumulation = accumulation or cfg.accumulation
  if accumulation == "auto":
    chosen = dispatch.resolve_accumulation(
        "auto", "dot", target=cfg.backend,
        native_ops=lambda acc: plan(cfg, units, unit_size, acc).native_ops)
    return plan(cfg, units, unit_size, chosen)
  lo, hi = cfg.datapath_act_range
  bound = INT32_BOUND if accumulation in ("int32", "onednn") else FLOAT32_BOUND
  k_total = units * unit_size
  exact_int32 = k_total * cfg.max_abs_product <= INT32_BOUND
  best = None
  # Digit widths: int8 operands hold 8-bit signed digits; bf16 operands hold every integer of
  # magnitude <= 256 exactly, i.e. 9-bit signed digits (uint8 activations need no offset).
  # oneDNN: uint8 or int8 activations as they are (one plane), int8 weight digits, narrower
  # (|digit| <= 63) on CPUs without int8 dot instructions (see ebsp_jax.arith.onednn).
  top = 9 if accumulation == "bfloat16" else 8
  widths = (8,) if accumulation == "int32" else range(top, 1, -1)
  act_widths = weight_widths = widths
  if accumulation == "onednn":
    act_widths = (8,)
    weight_widths = (8,) if onednn.max_exact_weight() >= 127 else (7,)
  for da in act_widths:
    if accumulation == "onednn" and lo >= 0 and hi <= 255:
      ap = ActPlan(lo, hi, 8, True, (0,), (False,), (hi,), 0)     # uint8 operand
    else:
      ap = act_plan(lo, hi, da)
    for dw in weight_widths:
      wp = weight_plan(cfg.pattern, dw)
      if wp is None:
        continue
      per_elem = max(ap.max_abs) * max(wp.max_abs)
      kc = bound // per_elem            # contraction elements per native op
      cu = kc // unit_size
      if cu < 1:
        continue
      cu = min(cu, max(units, 1))
      cand = Plan(ap, wp, accumulation, cu, units, unit_size, exact_int32)
      if best is None or cand.native_ops < best.native_ops:
        best = cand
  if best is None:
    raise ValueError(f"no exact {accumulation} plan: a kernel of {unit_size} taps is too "
                     f"large for the {bound} bound with {cfg.pattern}")
  return best


# ------------------------------------------------------------------------------------------
# Combination of the native terms.

class _Sum:
  """Accumulates ``± t << e`` terms in int32 (mod 2**32) or exactly as 64-bit pairs."""

  def __init__(self, exact: bool):
    self.exact = exact
    self.value = None

  def add(self, t: jax.Array, e: int, negative: bool = False):
    if e >= 32:
      raise AssertionError(f"term shift {e} >= 32")
    if self.exact:
      v = wide.shl(t, e)
      v = wide.neg(v) if negative else v
      self.value = v if self.value is None else wide.add(self.value, v)
    else:
      v = t << e
      v = -v if negative else v
      self.value = v if self.value is None else self.value + v


def _bits_of(c: int):
  """``c`` as a list of (bit, negative) with ``c = sum ±2**bit``."""
  neg = c < 0
  c = abs(c)
  return [(b, neg) for b in range(c.bit_length()) if (c >> b) & 1]


def _native_dtype(accumulation: str):
  return jnp.int32 if accumulation == "int32" else jnp.float32


def _operand_dtype(accumulation: str, float_operands: bool = False):
  """Operand type of the native ops: int8, or bf16 (exact for integers of magnitude <= 256).

  ``float_operands``: float32 instead of bf16 on the ``bfloat16`` path (same 9-bit digits; the
  ops still request ``FLOAT_PRECISION``).
  """
  if accumulation == "bfloat16":
    return jnp.float32 if float_operands else jnp.bfloat16
  return jnp.int8


def _act_operand_dtype(p: Plan, float_operands: bool = False):
  """As :func:`_operand_dtype`; uint8 for oneDNN's direct non-negative activations."""
  if p.accumulation == "onednn" and p.act.direct and p.act.lo >= 0:
    return jnp.uint8
  return _operand_dtype(p.accumulation, float_operands)


def combine(p: Plan, lhs: jax.Array, rhs: jax.Array, cfg: Config,
            native: Callable[[jax.Array, jax.Array, int, int], jax.Array],
            native_ones: Callable[[jax.Array, int, int], jax.Array], exact: bool,
            float_operands: bool = False):
  """Evaluates (*) with ``native(alpha, omega, u0, u1)`` over contraction units ``[u0, u1)``.

  Args:
    native: exact native contraction of int8 planes restricted to a unit range, int32 result.
    native_ones: ``native`` with the all-ones activation (for the offset term), int32 result
      broadcastable to the output.
    exact: combine as 64-bit pairs (else int32 modulo 2**32).
    float_operands: see :func:`_operand_dtype`.

  Returns:
    int32 array (sum mod 2**32) or a :class:`wide.Wide`.
  """
  a = lhs
  if cfg.mode == "dual_lod":
    a = datapath.act_approx(lhs, cfg.pattern.length, cfg.rounding)
  dt = _operand_dtype(p.accumulation, float_operands)
  adt = _act_operand_dtype(p, float_operands)
  # A direct plane already in the operand type is the operand itself (no int32 round trip).
  alphas = ([a] if p.act.direct and a.dtype == adt else
            [x.astype(adt) for x in act_planes(a, p.act)])
  omegas = ([rhs] if p.weight.kind == "direct" and rhs.dtype == dt else
            [x.astype(dt) for x in weight_planes(rhs, p.weight, cfg.pattern)])
  ranges = [(u0, min(u0 + p.chunk_units, p.units)) for u0 in range(0, p.units, p.chunk_units)]
  total = _Sum(exact)
  for alpha, e in zip(alphas, p.act.shifts):
    for omega, f in zip(omegas, p.weight.shifts):
      for u0, u1 in ranges:
        total.add(native(alpha, omega, u0, u1), e + f)
  if p.act.offset:
    for omega, f in zip(omegas, p.weight.shifts):
      for u0, u1 in ranges:
        t = native_ones(omega, u0, u1)
        for bit, negative in _bits_of(p.act.offset):
          total.add(t, bit + f, negative)
  return total.value


def finalize(value, out_shape, cfg: Config, register=None):
  """Applies the overflow policy; returns ``(out int32, overflowed bool mask or None,
  clamps int32 per-output count or None)``.

  ``value`` is a :class:`wide.Wide` (the exact sum), an int32 array holding the exact sum
  (when the plan guarantees ``|S| < 2**31``) or, when ``cfg`` needs no exact value, the sum
  modulo ``2**32``; None for an empty contraction. ``overflow="saturate"`` is
  ``register(value)`` (see :func:`saturating_register`).
  """
  if value is None:
    value = jnp.zeros(out_shape, jnp.int32)
  if cfg.overflow == "saturate":
    return register(value)
  if isinstance(value, wide.Wide):
    value = wide.Wide(*(jnp.broadcast_to(t, out_shape) for t in value))
    overflowed = ~wide.in_range(value, cfg.acc_bits)
    if cfg.overflow == "clip":
      return wide.saturate(value, cfg.acc_bits), overflowed, None
    return wide.wrap_low_bits(wide.low32(value), cfg.acc_bits), overflowed, None
  value = jnp.broadcast_to(value, out_shape)
  wrapped = wide.wrap_low_bits(value, cfg.acc_bits)
  if not cfg.needs_exact:
    return wrapped, None, None
  overflowed = wrapped != value
  if cfg.overflow == "clip":
    lo, hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
    return jnp.clip(value, lo, hi), overflowed, None
  return wrapped, overflowed, None


# ------------------------------------------------------------------------------------------
# overflow="saturate": the saturating register, exactly.
#
# The register clamps after every add, in the datapath's K order (dot: the contracting dims
# flattened row-major in dimension-number order; convolution: kernel taps row-major, within a
# tap the group's input channels ascending — the order of ebsp_jax.arith.reference). Its
# result depends on that order only where some partial sum leaves the range. Bound: with
# P = sum of the positive products of an output and N = sum of its negative ones, every
# partial sum (any prefix, any order) lies in [N, P]. So where N >= lo and P <= hi the register
# never clamps and holds the exact sum S = P + N at the end. P and N come from S and
# T = sum |p_k| (one more exact contraction, |a| x |q|): P = (S + T) / 2, N = (S - T) / 2; the
# test is S + T <= 2 hi and S - T >= 2 lo, in exact 64-bit arithmetic. Where it fails ("unsafe"
# outputs), the register is run literally, add by add in K order, on those outputs only:
# their activations and weights gathered in K order, products a * q (exact in int32, as the
# LUT datapath's), in rounds of at most REGISTER_CAP_ELEMENTS gathered products. Statically,
# K * max|p| <= hi rules out any clamp and skips all of this.

# Products of unsafe outputs gathered per round (elements of each int32 (M, K) array).
REGISTER_CAP_ELEMENTS = 1 << 23


def register_static_safe(cfg: Config, k: int) -> bool:
  """Whether no partial sum of ``k`` products can leave the ``acc_bits`` range."""
  return k * cfg.max_abs_product <= (1 << (cfg.acc_bits - 1)) - 1


def _abs_config(cfg: Config) -> Config:
  """Config of the exact contraction ``|a| x |q|`` (exact mode, unsigned activations)."""
  return dataclasses.replace(cfg, mode="exact", act_signed=False,
                             act_bits=max(1, cfg.max_abs_act.bit_length()), overflow="wrap",
                             with_stats=False)


def _abs_acts(a: jax.Array, cfg: Config) -> jax.Array:
  """``|a|`` (dual-LOD: of the cut activation) as int32."""
  a = a.astype(jnp.int32)
  if cfg.mode == "dual_lod":
    a = datapath.act_approx(a, cfg.pattern.length, cfg.rounding)
  return jnp.abs(a)


def register_rows(acts: jax.Array, weights: jax.Array, cfg: Config):
  """The saturating register literally, one add per step in K order, on rows of products.

  Args:
    acts, weights: int32 ``(M, K)``: the K activations (before any dual-LOD cut) and weights
      of M outputs in K order.

  Returns:
    ``(out, clamps)``: int32 ``(M,)`` register values and numbers of clamping adds.
  """
  a = acts.astype(jnp.int32)
  if cfg.mode == "dual_lod":
    a = datapath.act_approx(a, cfg.pattern.length, cfg.rounding)
  prods = jnp.moveaxis(a * weights.astype(jnp.int32), -1, 0)        # (K, M), exact int32

  def body(carry, p):
    acc, n = carry
    acc, clipped = datapath.saturating_accumulate(acc, p, cfg.acc_bits)
    return (acc, n + clipped.astype(jnp.int32)), None

  m = acts.shape[0]
  init = (jnp.zeros((m,), jnp.int32), jnp.zeros((m,), jnp.int32))
  if prods.shape[0] == 0:
    return init
  (out, clamps), _ = lax.scan(body, init, prods)
  return out, clamps


def saturating_register(value, abs_sum: Callable[[], object], gather, out_shape, k: int,
                        cfg: Config):
  """``overflow="saturate"`` from the exact sums ``value`` (see the comment above).

  Args:
    value: the exact sums S (:class:`wide.Wide` or exact int32) of shape ``out_shape``.
    abs_sum: () -> the exact sums T of ``|a| x |q|`` (Wide or exact int32).
    gather: flat output indices (M,) -> ``(acts, weights)`` int32 ``(M, K)`` in K order.
    out_shape: the (logical) output shape; ``k``: products per output.

  Returns:
    ``(out, overflowed, clamps)``: int32 register values, bool "clamped at least once" and
    int32 clamp counts, all of ``out_shape``.
  """
  as_wide = lambda v: wide.Wide(*(jnp.broadcast_to(t, out_shape) for t in (
      v if isinstance(v, wide.Wide) else wide.from_int32(v))))
  s = as_wide(value)
  zeros = jnp.zeros(out_shape, jnp.int32)
  # No products (k == 0) or no outputs: every sum is 0 and nothing can clamp (and abs_sum,
  # gather would trace ops on empty operands).
  if register_static_safe(cfg, k) or k == 0 or 0 in tuple(out_shape):
    return wide.low32(s), zeros != 0, zeros
  t = as_wide(abs_sum())
  lo, hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1
  over_hi = wide.is_positive(wide.sub(wide.add(s, t), wide.constant(2 * hi)))
  under_lo = wide.is_negative(wide.sub(wide.sub(s, t), wide.constant(2 * lo)))
  unsafe = (over_hi | under_lo).reshape(-1)
  n = int(unsafe.size)
  cap = max(1, min(n, REGISTER_CAP_ELEMENTS // max(k, 1)))
  slots = -(-n // cap) * cap
  # The unsafe outputs first (ascending), then the out-of-range index n (dropped on write).
  order = jnp.nonzero(unsafe, size=slots, fill_value=n)[0]
  rounds = -(-jnp.sum(unsafe, dtype=jnp.int32) // cap)

  def round_body(r, carry):
    out, clamps = carry
    idx = lax.dynamic_slice(order, (r * cap,), (cap,))
    acts, weights = gather(jnp.minimum(idx, n - 1))
    reg, c = register_rows(acts, weights, cfg)
    return out.at[idx].set(reg, mode="drop"), clamps.at[idx].set(c, mode="drop")

  # Exact where safe: S lies in [N, P], inside the range.
  init = (wide.low32(s).reshape(-1), zeros.reshape(-1))
  out, clamps = lax.fori_loop(jnp.int32(0), rounds, round_body, init)
  out, clamps = out.reshape(out_shape), clamps.reshape(out_shape)
  return out, clamps > 0, clamps


def _to_int32(t: jax.Array) -> jax.Array:
  # Float32 results are exact integers of magnitude <= 2**24 (see module doc).
  return t if t.dtype == jnp.int32 else t.astype(jnp.int32)


def _dot_sum(a: jax.Array, w: jax.Array, cfg: Config, need_exact: bool):
  """The sums of ``(G, X, K) x (G, K, Y)``: Wide or int32 (exact, or mod 2**32), or None."""
  k = a.shape[-1]
  if not k:
    return None
  p = plan(cfg, k)
  use_wide = need_exact and not p.exact_int32
  dt = _native_dtype(p.accumulation)
  dims = (((2,), (1,)), ((0,), (0,)))

  def native(alpha, omega, u0, u1):
    if (u0, u1) != (0, k):
      alpha, omega = alpha[:, :, u0:u1], omega[:, u0:u1, :]
    if p.accumulation == "onednn":
      return onednn.gemm(alpha, omega)
    return _to_int32(lax.dot_general(alpha, omega, dims, precision=_precision(dt),
                                     preferred_element_type=dt))

  def native_ones(omega, u0, u1):
    # 1 . omega is a column sum: an exact int32 reduction (|sum| <= K * 127).
    return jnp.sum(omega[:, u0:u1, :].astype(jnp.int32), axis=1, keepdims=True)

  return combine(p, a, w, cfg, native, native_ones, use_wide)


def dot(a: jax.Array, w: jax.Array, cfg: Config):
  """Fast ``(G, X, K) x (G, K, Y) -> (G, X, Y)``; returns ``(out, overflowed or None,
  clamps or None)`` (clamps: per-output clamping adds of ``overflow="saturate"``)."""
  g, x, k = a.shape
  y = w.shape[-1]
  value = _dot_sum(a, w, cfg, cfg.needs_exact)

  def register(value):
    def abs_sum():
      return _dot_sum(_abs_acts(a, cfg), jnp.abs(w.astype(jnp.int32)), _abs_config(cfg), True)

    def gather(idx):
      gi, xi, yi = idx // (x * y), (idx // y) % x, idx % y
      return a[gi, xi, :].astype(jnp.int32), w[gi, :, yi].astype(jnp.int32)

    return saturating_register(value, abs_sum, gather, (g, x, y), k, cfg)

  return finalize(value, (g, x, y), cfg, register)


def pointwise_conv(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, cfg: Config):
  """A :attr:`ConvGeometry.pointwise` convolution as one :func:`dot` (the same products and
  sums, in the same order: ``out[n, o, p] = sum_c lhs[n, c, p * stride] * rhs[o, c]``)."""
  x = geo.lhs_logical(lhs)                                      # (N, C, *S)
  x = lax.slice(x, (0,) * x.ndim,
                x.shape[:2] + tuple((o - 1) * s + 1 for o, s in zip(geo.out_spatial,
                                                                    geo.strides)),
                (1, 1) + tuple(geo.strides))
  x = jnp.moveaxis(x, 1, -1).reshape(1, -1, geo.in_features)   # (1, N * S_out, C)
  w = geo.rhs_logical(rhs).reshape(geo.out_features, geo.in_features).T[None]   # (1, C, O)
  back = lambda t: None if t is None else _rows_to_out(t, geo)
  return tuple(back(t) for t in dot(x, w, cfg))


def _rows_to_out(t: jax.Array, geo: ConvGeometry) -> jax.Array:
  """Output rows ``(..., N * prod(out_spatial), O)`` (images, then positions) -> ``out_spec``."""
  t = t.reshape((geo.batch,) + tuple(geo.out_spatial) + (geo.out_features,))
  return geo.out_physical(jnp.moveaxis(t, -1, 1))


def _logical_out(t, geo: ConvGeometry):
  """An ``out_spec`` (physical) output array, or a Wide of them, as ``(N, O, *out_spatial)``."""
  if isinstance(t, wide.Wide):
    return wide.Wide(*(_logical_out(u, geo) for u in t))
  return jnp.transpose(t, tuple(geo.dnums.out_spec))


def conv_rows(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, idx: jax.Array):
  """The activations and weights of logical outputs ``idx`` in the datapath's K order.

  Args:
    lhs, rhs: the convolution's operands (physical layouts of ``geo``).
    idx: int32 ``(M,)`` flat indices into the logical output ``(N, O, *out_spatial)``.

  Returns:
    ``(acts, weights)`` int32 ``(M, taps * C/G)``: for output ``m``, kernel tap by tap
    (row-major over the kernel's spatial dims), within a tap the group's input channels
    ascending; zero activations at padding and dilation holes.
  """
  cg, og = geo.group_in, geo.group_out
  x = geo.lhs_logical(lhs).astype(jnp.int32)                     # (N, C, *S)
  pads = [(0, 0, 0), (0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in
                                   zip(geo.padding, geo.lhs_dilation)]
  x_pad = lax.pad(x, jnp.int32(0), pads)
  eff = tuple((k - 1) * r + 1 for k, r in zip(geo.kernel, geo.rhs_dilation))
  coords = jnp.unravel_index(idx, (geo.batch, geo.out_features) + tuple(geo.out_spatial))
  n, o, pos = coords[0], coords[1], coords[2:]
  starts = [n, (o // og) * cg] + [p * s for p, s in zip(pos, geo.strides)]

  def one(*start):
    return lax.dynamic_slice(x_pad, start, (1, cg) + eff)[0]       # (Cg, *eff)

  win = jax.vmap(one)(*starts)                                     # (M, Cg, *eff)
  win = win[(slice(None), slice(None)) + tuple(slice(None, None, r) for r in geo.rhs_dilation)]
  w = geo.rhs_logical(rhs).astype(jnp.int32)[o]                    # (M, Cg, *kernel)
  to_k = lambda t: jnp.moveaxis(t, 1, -1).reshape(t.shape[0], geo.k)
  return to_k(win), to_k(w)


# Largest im2col patch matrix materialised at once (bytes); larger batches are cut in chunks.
IM2COL_CHUNK_BYTES = 1 << 27


def im2col_patches(x: jax.Array, geo: ConvGeometry) -> jax.Array:
  """The receptive fields of a convolution as rows of a matrix.

  Args:
    x: ``(N, *spatial, C)`` integer activations (channels last).
    geo: the convolution (padding, lhs/rhs dilation, strides, groups as in ``lax``).

  Returns:
    ``(G, N * prod(out_spatial), taps * C/G)`` of ``x.dtype``: row ``(n, p)`` of group ``g``
    holds, tap by tap (kernel positions in row-major order), the group's input channels seen
    by output position ``p`` of image ``n``; zero where the window covers padding or a dilation
    hole. ``patches @ W`` with ``W`` from :func:`im2col_weights` is the convolution.
  """
  n, c = x.shape[0], x.shape[-1]
  pads = [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(geo.padding, geo.lhs_dilation)]
  xp = lax.pad(x, jnp.zeros((), x.dtype), pads + [(0, 0, 0)])
  cols = []
  for tap in itertools.product(*(range(k) for k in geo.kernel)):
    start = tuple(t * r for t, r in zip(tap, geo.rhs_dilation))
    limit = tuple(s + (o - 1) * st + 1 for s, o, st in zip(start, geo.out_spatial, geo.strides))
    cols.append(lax.slice(xp, (0,) + start + (0,), (n,) + limit + (c,),
                          (1,) + tuple(geo.strides) + (1,)))
  out_sp = math.prod(geo.out_spatial)
  t = jnp.stack(cols, axis=-2).reshape(n, out_sp, geo.taps, geo.groups, geo.group_in)
  return jnp.transpose(t, (3, 0, 1, 2, 4)).reshape(geo.groups, n * out_sp,
                                                   geo.taps * geo.group_in)


def im2col_weights(rhs: jax.Array, geo: ConvGeometry) -> jax.Array:
  """``(G, taps * C/G, O/G)``: the kernel in the row order of :func:`im2col_patches`."""
  w = geo.rhs_logical(rhs)                                                # (O, I, *K)
  w = w.reshape((geo.groups, geo.group_out, geo.group_in) + tuple(geo.kernel))
  nk = len(geo.kernel)
  w = jnp.transpose(w, (0,) + tuple(range(3, 3 + nk)) + (2, 1))          # (G, *K, I, O/G)
  return w.reshape(geo.groups, geo.taps * geo.group_in, geo.group_out)


def _int8_gemm(p: Plan, a: jax.Array, b: jax.Array) -> jax.Array:
  """``(G, M, K) x (G, K, N) -> (G, M, N)`` int32: oneDNN's GEMM or XLA's int8 dot."""
  if p.accumulation == "onednn":
    return onednn.gemm(a, b)
  return lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))), preferred_element_type=jnp.int32)


def _im2col_sum(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, cfg: Config,
                need_exact: bool):
  """The sums of :func:`im2col_conv`, logical layout ``(N, O, *out)`` (Wide or int32)."""
  p = plan(cfg, geo.k)
  use_wide = need_exact and not p.exact_int32
  x = jnp.moveaxis(geo.lhs_logical(lhs), 1, -1)                          # (N, *S, C)
  w = im2col_weights(rhs, geo)                                           # (G, K, O/G)
  out_sp = math.prod(geo.out_spatial)
  per_image = out_sp * geo.k * geo.groups
  step = max(1, IM2COL_CHUNK_BYTES // max(per_image, 1))
  shape4 = (geo.groups, geo.batch, out_sp, geo.group_out)

  def native(alpha, omega, u0, u1):
    parts = []
    for n0 in range(0, geo.batch, step):
      cols = im2col_patches(alpha[n0:n0 + step], geo)[:, :, u0:u1]
      parts.append(_int8_gemm(p, cols, omega[:, u0:u1, :]))
    out = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
    return out.reshape(shape4)

  def native_ones(omega, u0, u1):
    # 1 . omega: the patches of one all-ones image (zeros at padding/holes), batch 1.
    ones = jnp.ones((1,) + x.shape[1:], jnp.int8)
    cols = im2col_patches(ones, geo)[:, :, u0:u1]
    return _int8_gemm(p, cols, omega[:, u0:u1, :]).reshape(
        (geo.groups, 1, out_sp, geo.group_out))

  value = combine(p, x, w, cfg, native, native_ones, use_wide)

  # (G, N, P, O/G) -> (N, G, O/G, P) -> (N, O, *out).
  def logical(t):
    t = jnp.broadcast_to(t, shape4)
    return jnp.transpose(t, (1, 0, 3, 2)).reshape((geo.batch, geo.out_features)
                                                  + tuple(geo.out_spatial))
  return wide.Wide(*(logical(t) for t in value)) if isinstance(value, wide.Wide) else \
      logical(value)


def im2col_conv(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, cfg: Config):
  """A convolution as int8 GEMMs of its im2col patches.

  Used for ``accumulation="onednn"`` (CPU: oneDNN's GEMM) and for ``"int32"`` on GPUs (XLA's
  int8 -> int32 dot, cuBLASLt: XLA:GPU has no int8 -> int32 convolution). The same products
  and sums as the convolution (each output is the sum over its receptive field of ``a * q``;
  padding contributes nothing), evaluated by :func:`combine` over the ``taps * C/G``
  contraction. Patches are built per chunk of images (at most ``IM2COL_CHUNK_BYTES`` each).
  Returns ``(out, overflowed or None, clamps or None)`` as :func:`conv`.
  """
  return _conv_finish(_im2col_sum(lhs, rhs, geo, cfg, cfg.needs_exact), lhs, rhs, geo, cfg,
                      _im2col_sum)


def _xla_conv_sum(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, cfg: Config,
                  need_exact: bool):
  """The sums of a convolution by XLA convolutions of the planes, logical layout."""
  cg = geo.group_in
  p = plan(cfg, cg, geo.taps)
  use_wide = need_exact and not p.exact_int32
  dt = _native_dtype(p.accumulation)
  dn = geo.dnums
  lhs_feat, rhs_in = dn.lhs_spec[1], dn.rhs_spec[1]
  kwargs = dict(window_strides=geo.strides, padding=geo.padding, lhs_dilation=geo.lhs_dilation,
                rhs_dilation=geo.rhs_dilation, dimension_numbers=dn,
                feature_group_count=geo.groups, preferred_element_type=dt,
                precision=_precision(dt))

  def select(alpha, omega, u0, u1):
    if (u0, u1) == (0, cg):
      return alpha, omega
    idx = [g * cg + c for g in range(geo.groups) for c in range(u0, u1)]
    alpha = jnp.take(alpha, jnp.asarray(idx, jnp.int32), axis=lhs_feat)
    omega = lax.slice_in_dim(omega, u0, u1, axis=rhs_in)
    return alpha, omega

  def native(alpha, omega, u0, u1):
    alpha, omega = select(alpha, omega, u0, u1)
    return _to_int32(lax.conv_general_dilated(alpha, omega, **kwargs))

  def native_ones(omega, u0, u1):
    # conv(1, omega) over channels [u0, u1) of each group equals a convolution of a one-channel
    # (per group) image of ones, batch 1, with the kernel summed over those channels: C/G times
    # cheaper than convolving a full image of ones. The summed kernel leaves int8, so the
    # operands are float32 at HIGHEST precision (exact while taps * channels * max|omega| <=
    # 2**24: every partial sum is then an integer <= 2**24) or, beyond that bound, int32.
    shape = list(lhs.shape)
    shape[dn.lhs_spec[0]] = 1
    shape[lhs_feat] = geo.groups
    summed = jnp.sum(lax.slice_in_dim(omega, u0, u1, axis=rhs_in).astype(jnp.int32),
                     axis=rhs_in, keepdims=True)
    exact_f32 = geo.taps * (u1 - u0) * max(p.weight.max_abs) <= FLOAT32_BOUND
    dtype = jnp.float32 if exact_f32 else jnp.int32
    out = lax.conv_general_dilated(jnp.ones(shape, dtype), summed.astype(dtype),
                                   **dict(kwargs, preferred_element_type=dtype,
                                          precision=_precision(dtype)))
    return _to_int32(out)

  # XLA:GPU has no bf16 x bf16 -> f32 convolution (cuDNN): it would convert the operands to
  # float32 itself; float32 operands holding the same 9-bit digits, at FLOAT_PRECISION.
  float_operands = cfg.backend == "gpu"
  value = combine(p, lhs, rhs, cfg, native, native_ones, use_wide, float_operands)
  return _logical_out(wide.Wide(*(jnp.broadcast_to(t, geo.out_shape) for t in value))
                      if isinstance(value, wide.Wide) else jnp.broadcast_to(value, geo.out_shape),
                      geo)


def _conv_finish(value, lhs, rhs, geo: ConvGeometry, cfg: Config, conv_sum):
  """Overflow policy on logical sums ``value``; ``(out, overflowed, clamps)`` in ``out_spec``.

  ``conv_sum(lhs, rhs, geo, cfg, need_exact)``: the path that made ``value`` (for the
  ``|a| x |q|`` sums of ``overflow="saturate"``).
  """
  logical_shape = (geo.batch, geo.out_features) + tuple(geo.out_spatial)

  def register(value):
    def abs_sum():
      return conv_sum(_abs_acts(lhs, cfg), jnp.abs(rhs.astype(jnp.int32)), geo,
                      _abs_config(cfg), True)

    return saturating_register(value, abs_sum, lambda idx: conv_rows(lhs, rhs, geo, idx),
                               logical_shape, geo.k, cfg)

  res = finalize(value, logical_shape, cfg, register)
  return tuple(None if t is None else geo.out_physical(t) for t in res)


def conv(lhs: jax.Array, rhs: jax.Array, geo: ConvGeometry, cfg: Config):
  """Fast convolution in ``lax`` semantics; returns ``(out, overflowed or None, clamps or
  None)`` in the ``out_spec`` layout.

  Pointwise (1x1) convolutions run as one matmul (:func:`pointwise_conv`): XLA:GPU has int8
  matmuls with int32 results but no such convolutions. With ``accumulation="onednn"`` (CPU)
  every other convolution runs as im2col + oneDNN GEMMs, with ``"int32"`` on GPUs as im2col +
  XLA int8 -> int32 matmuls (:func:`im2col_conv`; not yet timed on a GPU).
  """
  empty = geo.k == 0 or 0 in geo.out_shape
  if geo.pointwise and not empty:
    return pointwise_conv(lhs, rhs, geo, cfg)
  gpu = cfg.backend == "gpu"
  im2col = cfg.accumulation == "onednn" or (cfg.accumulation == "int32" and gpu)
  if im2col and not empty:
    return im2col_conv(lhs, rhs, geo, cfg)
  value = None if empty else _xla_conv_sum(lhs, rhs, geo, cfg, cfg.needs_exact)
  return _conv_finish(value, lhs, rhs, geo, cfg, _xla_conv_sum)
