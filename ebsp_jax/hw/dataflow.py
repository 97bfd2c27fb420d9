"""Per-layer dataflow model: tiling and reuse -> memory accesses, cycles and energy.

The model is a loop-nest analysis in the style of ZigZag (Mei et al., IEEE TC 2021) and
Timeloop, written so that its counting rules are those of ZigZag 3.9 (the cross-check in
``zigzag_export_test.py`` feeds ZigZag the same architecture, per-access energies and mapping
and compares):

1. **Loops.** A layer is the 8-D nest B, G, K, C, OY, OX, FY, FX
   (:meth:`ebsp_jax.hw.workload.Layer.loop_dims`). A *mapping* unrolls some loops spatially
   on the array's two dims (``D1``, ``D2``; a non-divisor unrolling pads the loop: the
   *ceiling effect* that under-uses PEs) and orders the remaining temporal loops, innermost
   first.
2. **Allocation.** Going up the levels (innermost first), each memory takes, for each operand
   it stores, the longest run of the innermost not-yet-allocated loops whose tile fits; a
   memory shared by several operands picks the combination of runs that minimises accesses to
   the level above (ZigZag's ``MemoryAllocator`` rule). Tiles: ``W = G K C FY FX``,
   ``O = B G K OY OX``, ``I = B G C IY IX`` with ``IY`` the input rows the tile's ``OY``
   outputs and ``FY`` taps use (:func:`input_extent`; ``stride (OY-1) + FY`` when
   ``FY >= stride``), clipped to the unpadded input. A tile fits when its data fits: the
   padded extents of an uneven unrolling are clipped to the layer's loop sizes.
3. **Reuse.** Loops irrelevant to an operand (W: B, OY, OX; I: K; O: C, FY, FX) reuse its tile:
   irrelevant loops at the bottom of a level keep the data of the level below stationary
   (merged down), and irrelevant *spatial* loops broadcast (one read feeds several PEs,
   several PEs reduce into one partial sum). Reads from level ``l`` =
   ``MACs / prod(irrelevant loops at and below l)``; partial sums travel back up
   (``|O| (prod(irrelevant loops above) - 1)`` re-reads). At the innermost level, data that an
   operand register holds across consecutive MACs is read once.
   Input traffic is counted per tile: a tile spanning OY outputs and FY kernel rows holds the
   distinct input rows they use (``sliding_window=True``, the default; ZigZag gets the same
   effect from its partially-relevant IX/IY loops). ``sliding_window=False`` counts every
   (output, kernel) pair as its own input element, an upper bound up to R*S times higher.
   Sliding-window reuse *between* consecutive tiles is modelled only at levels marked
   ``sliding`` (Eyeriss's row-stationary ifmap spad, WAX's A shift register): the transfer into
   them is counted over the union of the windows the loop above slides through.
4. **Energy** = MACs x PE energy per MAC (data-aware: zero-weight products gated, zero shifts
   bypass the shifter) + sum over levels of words moved x energy per word + leakage power x
   latency. A LUT fill of EBSP is a *write* into its ``lut`` level.
5. **Cycles** = max(compute cycles = product of temporal loop bounds (x the design's cycle
   factor), for every level: bits moved / (bandwidth x active instances)): perfect overlap of
   transfers and compute (double buffering), bounded by DRAM bandwidth or any other level.

``boundary_io`` additionally charges writing every input tensor into the top level (DRAM)
and reading every output back out of it. Off by default, as in ZigZag (which disables this
"external" traffic): the previous layer already paid for writing its output to DRAM.

The mapper (:func:`best_mapping`) tries every spatial candidate of the design and every
ordering of the temporal loops' prime factors (merged down to ``lpf_limit`` loops, like
ZigZag's LOMA) and keeps the one with the lowest objective (energy, latency or EDP).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import math
from typing import Iterable, Sequence

from ebsp_jax.hw.spec import Accelerator
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.workload import Layer

DIMS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX")
#: Energy categories of a layer cost (``overhead``: per-cycle chip energy such as the clock
#: tree, 0 unless a design calibrates it).
ENERGY_CATEGORIES = ("compute", "rf", "lut", "local_buffer", "buffer", "dram", "leakage",
                     "overhead")
OPERANDS = ("W", "I", "O")
IRRELEVANT = {"W": frozenset({"B", "OY", "OX"}), "I": frozenset({"K"}),
              "O": frozenset({"C", "FY", "FX"})}
OBJECTIVES = ("energy", "latency", "edp")


@dataclasses.dataclass(frozen=True)
class Mapping:
  """Spatial unrolling and temporal loop order of one layer on one array.

  Attributes:
    d1: ``((dim, factor), ...)`` unrolled on array dim D1.
    d2: ``((dim, factor), ...)`` unrolled on array dim D2.
    temporal: ``((dim, bound), ...)`` temporal loops, innermost first.
  """

  d1: tuple[tuple[str, int], ...]
  d2: tuple[tuple[str, int], ...]
  temporal: tuple[tuple[str, int], ...]

  def spatial_factor(self, dim: str) -> int:
    """Product of the spatial factors of ``dim``."""
    return math.prod(f for d, f in self.d1 + self.d2 if d == dim)

  @property
  def used_array(self) -> tuple[int, int]:
    """MAC units used along (D1, D2)."""
    return (math.prod(f for _, f in self.d1), math.prod(f for _, f in self.d2))


@dataclasses.dataclass(frozen=True)
class LevelAccess:
  """Traffic of one operand at one memory level (elements and bits, whole layer).

  Attributes:
    level: memory name.
    operand: ``'W'``, ``'I'`` or ``'O'``.
    rd_low, wr_low, rd_high, wr_high: elements read out to / written in from the level below
      and read out to / written in from the level above.
    bits_read, bits_written: bits read from / written to this memory.
    energy_pj: access energy (45 nm energies x node scaling), pJ.
    tile_elems: tile the level holds per instance, elements.
  """

  level: str
  operand: str
  rd_low: float
  wr_low: float
  rd_high: float
  wr_high: float
  bits_read: float
  bits_written: float
  energy_pj: float
  tile_elems: float


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """Cost of one layer on one accelerator.

  Attributes:
    layer: layer name.
    accelerator: design name.
    macs: multiply-accumulates (one execution).
    mapping: the mapping used.
    compute_cycles: cycles of the PE array alone.
    cycles: cycles with every bandwidth bound.
    bound: ``'compute'`` or the name of the level that limits the cycles.
    utilization: MACs / (cycles x MAC units).
    spatial_utilization: fraction of the array the spatial unrolling uses, padding included.
    energy: pJ by category: ``compute``, ``rf``, ``lut``, ``local_buffer``, ``buffer``,
      ``dram``, ``leakage`` (and ``total``).
    level_energy: pJ by memory level.
    accesses: per level and operand traffic.
  """

  layer: str
  accelerator: str
  macs: int
  mapping: Mapping
  compute_cycles: float
  cycles: float
  bound: str
  utilization: float
  spatial_utilization: float
  energy: dict[str, float]
  level_energy: dict[str, float]
  accesses: tuple[LevelAccess, ...]

  @property
  def energy_pj(self) -> float:
    """Total energy, pJ."""
    return self.energy["total"]


class MappingError(ValueError):
  """No valid mapping (e.g. a tile does not fit even the minimal allocation)."""


# ----------------------------------------------------------------------------------------------
# Tensor sizes.


def input_extent(outputs: int, kernel: int, stride: int, dilation: int) -> int:
  """Distinct input indices ``stride * o + dilation * f`` for ``o < outputs``, ``f < kernel``.

  With ``g = gcd(stride, dilation)``, ``s = stride / g``, ``d = dilation / g``: the pairs
  ``(o, f)`` and ``(o + d, f - s)`` read the same input, so ``max(0, outputs - d) *
  max(0, kernel - s)`` of the ``outputs * kernel`` pairs repeat an earlier index. A 1x1
  stride-2 window of ``n`` outputs reads ``n`` inputs (not the ``2n - 1`` it spans); a 3-tap
  stride-1 one ``n + 2``. ZigZag's ``LayerNode.calc_pr_dimension_size`` is the same formula
  without the ``max`` on ``outputs - d`` (it differs only for a dilated tile of fewer than
  ``d`` outputs).
  """
  g = math.gcd(int(stride), int(dilation))
  s, dl = stride // g, dilation // g
  return outputs * kernel - max(0, outputs - dl) * max(0, kernel - s)


def tensor_elems(op: str, d: dict[str, float], layer: Layer) -> float:
  """Elements of operand ``op``'s tile spanning loop extents ``d`` (missing dims = 1).

  An input tile holds the input rows and columns its outputs and kernel taps actually use
  (:func:`input_extent`: no stride gaps), at most the unpadded input (zero padding is neither
  stored nor moved), as ZigZag counts them.
  """
  g = d.get("G", 1)
  if op == "W":
    return g * d.get("K", 1) * d.get("C", 1) * d.get("FY", 1) * d.get("FX", 1)
  if op == "O":
    return d.get("B", 1) * g * d.get("K", 1) * d.get("OY", 1) * d.get("OX", 1)
  iy = input_extent(d.get("OY", 1), d.get("FY", 1), layer.stride[0], layer.dilation[0])
  ix = input_extent(d.get("OX", 1), d.get("FX", 1), layer.stride[1], layer.dilation[1])
  ih, iw = layer.input_hw
  return d.get("B", 1) * g * d.get("C", 1) * min(iy, ih) * min(ix, iw)


def _ir(loops: Iterable[tuple[str, int]], op: str) -> float:
  irr = IRRELEVANT[op]
  return math.prod(s for d, s in loops if d in irr)


# ----------------------------------------------------------------------------------------------
# Evaluation of one mapping.


def _spatial_levels(acc: Accelerator, mapping: Mapping, op: str) -> list[list[tuple[str, int]]]:
  """Spatial loops between level l-1 and l of ``op`` (index l), plus an empty top entry."""
  hier = acc.hierarchy(op)
  out: list[list[tuple[str, int]]] = [[] for _ in range(len(hier) + 1)]
  for arr, loops in (("D1", mapping.d1), ("D2", mapping.d2)):
    loops = [(d, f) for d, f in loops if f > 1]
    if not loops:
      continue
    for i, lvl in enumerate(hier):
      if arr in lvl.served:
        out[i].extend(loops)
        break
  return out


def _allocate(layer: Layer, acc: Accelerator, mapping: Mapping, prec: dict[str, float]):
  """ZigZag-style bottom-up allocation. Returns per-operand lists of temporal loops per level."""
  hiers = {op: acc.hierarchy(op) for op in OPERANDS}
  su = {op: _spatial_levels(acc, mapping, op) for op in OPERANDS}
  temporal = list(mapping.temporal)
  actual = layer.loop_dims()
  unalloc = {op: list(temporal) for op in OPERANDS}
  sizes = {op: {} for op in OPERANDS}
  for op in OPERANDS:
    for d, f in su[op][0]:
      sizes[op][d] = sizes[op].get(d, 1) * f
  idx = {op: 0 for op in OPERANDS}
  tmap: dict[str, list[list[tuple[str, int]]]] = {op: [] for op in OPERANDS}
  for node in acc.levels:
    ops = [op for op in OPERANDS if op in node.operands]
    options = {}
    for op in ops:
      top = hiers[op][-1] is node
      if op == "O":
        later_spatial = [l for lvls in su[op][idx[op] + 1:] for l in lvls]
        partial = any(d in IRRELEVANT["O"] and s > 1 for d, s in unalloc[op] + later_spatial)
        p = prec["O"] if partial else prec["O_final"]
      else:
        p = prec[op]
      opts = []
      dims = dict(sizes[op])
      rem = math.prod(s for _, s in unalloc[op])
      for i in range(len(unalloc[op]) + 1):
        if i > 0:
          d, s = unalloc[op][i - 1]
          dims[d] = dims.get(d, 1) * s
          rem //= s
        # Padded extents of an uneven unrolling hold no data: the tile is at most the layer.
        bits = tensor_elems(op, {k: min(v, actual[k]) for k, v in dims.items()}, layer) * p
        limit = node.capacity_for(op)
        if bits > (node.capacity_bits if limit is None else limit):
          if i == 0:
            raise MappingError(f"{node.name} cannot hold the minimal {op} tile")
          break
        opts.append((i, bits, 0.0 if top else rem * bits))
      if top:
        if opts[-1][0] != len(unalloc[op]):
          raise MappingError(f"top level {node.name} cannot hold all of {op}")
        opts = [opts[-1]]
      options[op] = opts
    best, best_acc = None, math.inf
    cap = node.capacity_bits
    if len(ops) == 1 or all(node.capacity_for(op) is not None for op in ops):
      # One operand, or separate buffers per operand: each takes its longest fitting run.
      best = tuple(options[op][-1] for op in ops)
    else:
      # Minimise the summed accesses under the shared capacity. For the last operand the best
      # choice is the longest run that still fits (its accesses fall as its run grows), so only
      # the other operands are enumerated; ties go to the later combination, as in ZigZag.
      last = options[ops[-1]]
      last_sizes = [c[1] for c in last]
      for head in itertools.product(*(options[op] for op in ops[:-1])):
        size = 0.0
        a = 0.0
        for c in head:
          size += c[1]
          a += c[2]
        k = bisect.bisect_right(last_sizes, cap - size) - 1
        if k < 0:
          continue
        a += last[k][2]
        if a <= best_acc:
          best, best_acc = head + (last[k],), a
    if best is None:
      raise MappingError(f"{node.name} cannot hold the operands' minimal tiles together")
    for op, (i, _, _) in zip(ops, best):
      chosen = unalloc[op][:i]
      unalloc[op] = unalloc[op][i:]
      tmap[op].append(chosen)
      for d, s in chosen:
        sizes[op][d] = sizes[op].get(d, 1) * s
      idx[op] += 1
      for d, f in su[op][idx[op]] if idx[op] < len(su[op]) else []:
        sizes[op][d] = sizes[op].get(d, 1) * f
  return tmap, su


def _merge_down(levels: list[list[tuple[str, int]]], op: str):
  """ZigZag's ``innermost_stationary_loop_merge_down``: returns (levels, mac-level stationarity)."""
  irr = IRRELEVANT[op]
  prev = [list(l) for l in levels]
  while True:
    cur = [list(l) for l in prev]
    st: list[list[tuple[str, int]]] = [[] for _ in prev]
    mac_st = 1
    for lv, loops in enumerate(prev):
      if not loops:
        continue
      for loop in loops:
        if loop[0] in irr:
          if lv == 0:
            mac_st *= loop[1]
            st[0].append(loop)
            cur[0].remove(loop)
          else:
            st[lv - 1].append(loop)
            cur[lv].remove(loop)
        else:
          st[lv].extend(cur[lv])
          break
    if st == prev:
      return st, mac_st
    prev = st


def _halo_factor(levels, layer: Layer, spread: dict[str, float]) -> float:
  """Input tile (with overlapping windows) / product of the relevant loops below, <= 1.

  ``spread``: per padded dim, the factor that makes its spatial unrolling fractional
  (``actual / padded``, ZigZag's convention) once the tile includes that unrolling, so that a
  tile spanning the whole padded loop is the whole (unpadded) input, not more.
  """
  d = _extent(levels, [])
  for k, f in spread.items():
    if k in d:
      d[k] *= f
  r = math.prod(v for k, v in d.items() if k not in IRRELEVANT["I"])
  return tensor_elems("I", d, layer) / r if r else 1.0


def evaluate_mapping(layer: Layer, acc: Accelerator, mapping: Mapping,
                     activity: Activity = Activity(), boundary_io: bool = False,
                     sliding_window: bool = True) -> LayerCost:
  """Cost of ``layer`` on ``acc`` with ``mapping``.

  ``sliding_window``: count input traffic per tile (a tile of OY x FY rows holds the
  :func:`input_extent` input rows they use); ``False`` counts every (output, kernel) position
  as a separate input element (an upper bound, up to R*S times the data).

  Raises:
    MappingError: the mapping does not fit the memories.
  """
  prec = acc.precision
  macs = layer.macs
  tmap, su = _allocate(layer, acc, mapping, prec)
  # Padded loops (non-divisor spatial unrolling) run idle iterations: count transfers over
  # the padded nest, but scale away the padding of each operand's relevant dims (padded
  # slots hold no data).
  actual = layer.loop_dims()
  padded = {d: mapping.spatial_factor(d) for d in DIMS}
  for d, s_ in mapping.temporal:
    padded[d] *= s_
  padded_total = math.prod(padded.values())
  pad_corr = {op: math.prod(actual[d] / padded[d] for d in DIMS
                            if d not in IRRELEVANT[op] and padded[d] > actual[d])
              for op in OPERANDS}
  escale = acc.tech.energy_scale
  out_elems = tensor_elems("O", layer.loop_dims(), layer)
  accesses: list[LevelAccess] = []
  level_bits: dict[str, float] = {}
  op_bits: dict[tuple[str, str], float] = {}
  level_energy: dict[str, float] = {}
  for op in OPERANDS:
    hier = acc.hierarchy(op)
    n = len(hier)
    t_st, mac_st = _merge_down(tmap[op], op)
    c11 = [list(su[op][0])] + [t_st[a - 1] + su[op][a] for a in range(1, n + 1)]
    c12 = [[]] + [t_st[a - 1] + su[op][a - 1] for a in range(1, n + 1)]
    ir11 = list(itertools.accumulate((_ir(c, op) for c in c11), lambda x, y: x * y))
    ir12 = list(itertools.accumulate((_ir(c, op) for c in c12), lambda x, y: x * y))
    total = padded_total * pad_corr[op]
    raw = [total / v for v in ir11]
    raw2 = [total / v for v in ir12]
    if op == "I" and sliding_window:
      # A sliding level (shift register / sliding-window spad) keeps the overlap of
      # consecutive windows when the loop just above its tile slides along OX or OY: the
      # transfer into it is counted over the union of those windows.
      slide = [[] for _ in range(n + 1)]
      for a in range(1, n + 1):
        if hier[a - 1].sliding and a < len(t_st) and t_st[a] and t_st[a][0][0] in ("OX", "OY"):
          dim = t_st[a][0][0]
          slide[a] = list(itertools.takewhile(lambda l, d=dim: l[0] == d, t_st[a]))
      # A padded dim (uneven unrolling) counts its idle iterations through ``total`` (scaled
      # by ``pad_corr``); once a tile includes its spatial unrolling, the tile's input rows are
      # those of the fractional, unpadded extent (ZigZag's convention), so that the tile of
      # the whole loop is the whole unpadded input.
      frac = {d: actual[d] / padded[d] for d in ("OY", "OX", "FY", "FX")
              if padded[d] > actual[d] and mapping.spatial_factor(d) > 1}

      def spread(spatial_levels):
        inside = {d for lv in spatial_levels for d, _ in lv}
        return {d: f for d, f in frac.items() if d in inside}

      raw = [r * _halo_factor(c11[: a + 1] + [slide[a]], layer, spread(su[op][: a + 1]))
             for a, r in enumerate(raw)]
      raw2 = [r * _halo_factor(c12[: a + 1] + [slide[a]], layer, spread(su[op][:a]))
              for a, r in enumerate(raw2)]
    caal = [math.prod(_ir(c, op) for c in c11[a:]) for a in range(n + 1)] + [1.0, 1.0]
    for m, lvl in enumerate(hier):
      top = m == n - 1
      if op != "O":
        rd_low = raw[m]
        if m == 0 and lvl.bandwidth_bits >= prec[op]:
          rd_low = raw[0] / mac_st
        wr_high = raw2[m + 1] if (not top or boundary_io) else 0.0
        wr_low = rd_high = 0.0
        p_rd_low = p_wr_high = prec[op]
        p_wr_low = p_rd_high = 0.0
      else:
        wr_low = raw[m]
        rd_low = out_elems * (caal[m + 1] - 1)
        rd_high = raw2[m + 1] if (not top or boundary_io) else 0.0
        wr_high = out_elems * (caal[m + 2] - 1)
        p_rd_low = prec["O"]
        p_wr_low = prec["O"] if rd_low > 0 else prec["O_final"]
        p_wr_high = prec["O"]
        p_rd_high = prec["O"] if wr_high > 0 else prec["O_final"]
      if m == 0 and op == "W" and acc.act_sparsity in ("gate", "skip"):
        rd_low *= activity.act_density     # a zero activation does not read its weight
      if lvl.kind == "dram" and acc.dram_codec == "rlc":
        if op == "I" and activity.compress_input:
          rd_low *= rlc_ratio(1.0 - activity.act_density, prec["I"])
        if op == "O" and rd_low == 0:     # final outputs only
          wr_low *= rlc_ratio(1.0 - activity.out_density, prec["O_final"])
      bits_r = rd_low * p_rd_low + rd_high * p_rd_high
      bits_w = wr_low * p_wr_low + wr_high * p_wr_high
      rpj, wpj = lvl.energy_for(op)
      # DRAM energy per bit is not scaled with the logic node.
      e = (bits_r * rpj + bits_w * wpj) / lvl.word_bits * (1.0 if lvl.kind == "dram" else escale)
      tile = tensor_elems(op, {k: min(v, actual[k]) for k, v in
                               _extent(t_st[: m + 1], su[op][: m + 1]).items()}, layer)
      accesses.append(LevelAccess(lvl.name, op, rd_low, wr_low, rd_high, wr_high, bits_r, bits_w,
                                  e, tile))
      level_bits[lvl.name] = level_bits.get(lvl.name, 0.0) + bits_r + bits_w
      op_bits[(lvl.name, op)] = bits_r + bits_w
      level_energy[lvl.name] = level_energy.get(lvl.name, 0.0) + e

  # Cycles.
  density = activity.act_density if acc.act_sparsity == "skip" else 1.0
  compute = math.prod(s for _, s in mapping.temporal) * acc.cycle_factor * density
  used = mapping.used_array
  cycles, bound = compute, "compute"
  serial = 0.0
  for lvl in acc.levels:
    act = (1 if "D1" in lvl.served else used[0]) * (1 if "D2" in lvl.served else used[1])
    per_op_bw = dict(lvl.operand_bandwidth_bits)
    shared = 0.0
    for op in lvl.operands:
      bits = op_bits.get((lvl.name, op), 0.0)
      frac = lvl.serial_fraction(op)
      if op in per_op_bw:     # its own port: its own bound
        t = bits / (per_op_bw[op] * act)
        serial += frac * t
        if (1 - frac) * t > cycles:
          cycles, bound = (1 - frac) * t, f"{lvl.name}:{op}"
      else:
        t = bits / (lvl.bandwidth_bits * act)
        serial += frac * t
        shared += (1 - frac) * t
    if shared > cycles:
      cycles, bound = shared, lvl.name
  cycles += serial
  seconds = cycles / (acc.tech.clock_mhz * 1e6)

  # Energy by category.
  energy = {k: 0.0 for k in ENERGY_CATEGORIES}
  gated = activity.act_density if acc.act_sparsity in ("gate", "skip") else 1.0
  energy["compute"] = macs * acc.pe.energy_per_mac_pj(activity) * escale * gated
  for lvl in acc.levels:
    energy[lvl.category] += level_energy.get(lvl.name, 0.0)
  leak_mw = leakage_mw(acc)
  energy["leakage"] = leak_mw * 1e-3 * seconds * 1e12
  energy["overhead"] = acc.overhead_pj_per_cycle * cycles
  energy["total"] = sum(energy.values())
  units = acc.mac_units
  return LayerCost(
      layer=layer.name, accelerator=acc.name, macs=macs, mapping=mapping,
      compute_cycles=compute, cycles=cycles, bound=bound,
      utilization=macs / (cycles * units) if cycles > 0 else 0.0,
      spatial_utilization=(used[0] * used[1] / units) * (
          macs / (math.prod(s for _, s in mapping.temporal) * used[0] * used[1])),
      energy=energy, level_energy=level_energy, accesses=tuple(accesses))


def rlc_ratio(zero_fraction: float, value_bits: float = 16.0) -> float:
  """Compressed / raw size of activations under Eyeriss's run-length code (derived).

  Each non-zero value is one (run, level) pair of ``5 + value_bits`` bits, packed
  ``floor(63 / (5 + value_bits))`` pairs per 64-bit word (three for 16-bit values, the last bit
  marks the last word) [eyeriss_jssc2017, Fig. 8]; runs longer than 31 zeros need an extra pair
  (i.i.d. zeros: ``z^32`` per element, included). Never above 1: data that would expand is
  stored raw (the network's input image is, in Eyeriss).
  """
  z = float(zero_fraction)
  pairs_per_word = max(1, math.floor(63 / (5 + value_bits)))
  pairs = (1.0 - z) + z ** 32
  return min(1.0, pairs * (64.0 / pairs_per_word) / value_bits)


def _extent(t_levels, su_levels) -> dict[str, float]:
  d: dict[str, float] = {}
  for loops in list(t_levels) + list(su_levels):
    for dim, s in loops:
      d[dim] = d.get(dim, 1) * s
  return d


@functools.lru_cache(maxsize=256)
def leakage_mw(acc: Accelerator) -> float:
  """Leakage power of the design, mW: memories (CACTI / logic density) + PE logic."""
  from ebsp_jax.hw import tech as tech_mod  # pylint: disable=import-outside-toplevel
  mem = sum(l.leakage_mw * l.instances(acc.array) for l in acc.levels)
  logic_um2 = acc.pe.area_um2() * acc.pe_count * acc.tech.area_scale
  return mem + logic_um2 * tech_mod.logic_leakage_mw_per_um2(acc.tech)


# ----------------------------------------------------------------------------------------------
# Mapping search.


def _balanced(n: int, a: int) -> int:
  """Largest useful spatial factor of a loop of ``n`` on ``a`` units (fewest folds, least pad)."""
  if n <= 1 or a <= 1:
    return 1
  folds = math.ceil(n / a)
  return math.ceil(n / folds)


def spatial_options(layer: Layer, acc: Accelerator) -> list[tuple[tuple, tuple]]:
  """The distinct spatial unrollings of ``layer`` from the design's candidates."""
  dims = layer.loop_dims()
  out = []
  seen = set()
  for cand1, cand2 in acc.spatial:
    sp = []
    left = dict(dims)     # a dim on both axes unrolls what the first axis left of it
    for arr_size, cand in ((acc.array[0], cand1), (acc.array[1], cand2)):
      rem = arr_size
      loops = []
      for d in cand:
        f = _balanced(left[d], rem)
        if f > 1:
          loops.append((d, f))
          rem //= f
          left[d] = math.ceil(left[d] / f)
      sp.append(tuple(loops))
    key = (sp[0], sp[1])
    if key not in seen:
      seen.add(key)
      out.append(key)
  return out


def _prime_factors(n: int) -> list[int]:
  out, p = [], 2
  while n > 1 and p * p <= n:
    while n % p == 0:
      out.append(p)
      n //= p
    p += 1
  if n > 1:
    out.append(n)
  return out


def temporal_loops(layer: Layer, d1: tuple, d2: tuple, lpf_limit: int = 6) -> list[tuple[str, int]]:
  """Prime-factor temporal loops left after the spatial unrolling, merged to ``lpf_limit``.

  Merging repeatedly combines the two smallest factors of the dim with the most factors.
  """
  dims = layer.loop_dims()
  sp = {}
  for d, f in d1 + d2:
    sp[d] = sp.get(d, 1) * f
  per_dim = {}
  for d in DIMS:
    t = math.ceil(dims[d] / sp.get(d, 1))
    if t > 1:
      per_dim[d] = sorted(_prime_factors(t))
  while sum(len(v) for v in per_dim.values()) > lpf_limit:
    d = max(per_dim, key=lambda k: (len(per_dim[k]), -per_dim[k][0]))
    if len(per_dim[d]) < 2:
      break
    f = per_dim[d]
    per_dim[d] = sorted([f[0] * f[1]] + f[2:])
  return [(d, f) for d in DIMS if d in per_dim for f in per_dim[d]]


def _unique_permutations(items: Sequence) -> Iterable[tuple]:
  counts: dict = {}
  for it in items:
    counts[it] = counts.get(it, 0) + 1
  keys = list(counts)
  n = len(items)
  perm: list = []

  def rec():
    if len(perm) == n:
      yield tuple(perm)
      return
    for k in keys:
      if counts[k]:
        counts[k] -= 1
        perm.append(k)
        yield from rec()
        perm.pop()
        counts[k] += 1
  yield from rec()


def _score(cost: LayerCost, objective: str) -> tuple[float, float]:
  # The calibrated per-cycle chip overhead (clock tree, control) is not a cost the baselines'
  # schedule optimisers trade against (Eyeriss's has no such term [eyeriss_isca2016]): it is
  # left out of the mapping choice, not out of the reported energy.
  e, c = cost.energy["total"] - cost.energy.get("overhead", 0.0), cost.cycles
  if objective == "energy":
    return (e, c)
  if objective == "latency":
    return (c, e)
  return (e * c, e)


def best_mapping(layer: Layer, acc: Accelerator, objective: str = "edp", lpf_limit: int = 4,
                 activity: Activity = Activity(), boundary_io: bool = False,
                 sliding_window: bool = True, refine: bool = True,
                 refine_starts: int = 3) -> LayerCost:
  """The best mapping found for ``layer`` on ``acc`` (see module docstring), cached.

  Args:
    layer: the layer.
    acc: the design.
    objective: ``'energy'``, ``'latency'`` or ``'edp'`` (energy-delay product).
    lpf_limit: temporal loops kept after merging prime factors (5: up to 120 orders per
      spatial candidate).
    activity: data-aware activity (EBSP's zero weights / shifts).
    boundary_io: also charge the top-level input fill / output drain.
    sliding_window: per-tile input counting (False: no overlap, an upper bound).
    refine: after the exhaustive search, improve the ``refine_starts`` best distinct mappings
      by local moves of single prime-factor loops (first-improvement hill climbing).
    refine_starts: number of starting points of the local search.

  Raises:
    MappingError: no candidate mapping fits.
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
  if acc.layer_cost:      # a design-specific cost model (e.g. a paper's own simulator rules)
    from ebsp_jax.hw.spec import LAYER_COSTS  # pylint: disable=import-outside-toplevel
    cost = LAYER_COSTS[acc.layer_cost](layer, acc, activity)
    return dataclasses.replace(cost, layer=layer.name)
  cost = _best_cached(_LayerKey(layer), acc, objective, lpf_limit, activity, boundary_io,
                      sliding_window, refine, refine_starts)
  return dataclasses.replace(cost, layer=layer.name)


@dataclasses.dataclass(frozen=True)
class _LayerKey:
  layer: Layer

  def __hash__(self):
    return hash(self.layer.signature())

  def __eq__(self, other):
    return isinstance(other, _LayerKey) and self.layer.signature() == other.layer.signature()


@functools.lru_cache(maxsize=4096)
def _best_cached(key: _LayerKey, acc: Accelerator, objective: str, lpf_limit: int,
                 activity: Activity, boundary_io: bool, sliding_window: bool,
                 refine: bool, refine_starts: int) -> LayerCost:
  layer = key.layer
  results: list[tuple[tuple[float, float], int, LayerCost]] = []
  errors = []
  # A design's own schedule generator (e.g. Eyeriss's row-stationary passes) replaces the
  # generic search: its dataflow admits only those schedules.
  for d1, d2 in ([] if acc.mapping_generator else spatial_options(layer, acc)):
    loops = temporal_loops(layer, d1, d2, lpf_limit)
    # Groups are independent convolutions (every operand is relevant to G): outermost.
    groups = [l for l in loops if l[0] == "G"]
    loops = [l for l in loops if l[0] != "G"]
    for order in _unique_permutations(loops):
      order = tuple(order) + tuple(groups)
      try:
        cost = evaluate_mapping(layer, acc, Mapping(d1, d2, order), activity, boundary_io,
                                sliding_window)
      except MappingError as e:
        errors.append(str(e))
        continue
      results.append((_score(cost, objective), len(results), cost))
  if acc.mapping_generator:
    from ebsp_jax.hw.spec import MAPPING_GENERATORS  # pylint: disable=import-outside-toplevel

    def score(m):
      """``(score, cost)`` of mapping ``m``, ``None`` if it does not fit."""
      try:
        c = evaluate_mapping(layer, acc, m, activity, boundary_io, sliding_window)
      except MappingError:
        return None
      return _score(c, objective), c

    for m in MAPPING_GENERATORS[acc.mapping_generator](layer, acc, score):
      r = score(m)
      if r is not None:
        results.append((r[0], len(results), r[1]))
  if not results:
    raise MappingError(f"no valid mapping of {layer.name} on {acc.name}: "
                       f"{errors[0] if errors else 'no candidates'}")
  results.sort(key=lambda t: (t[0], t[1]))
  best = results[0][2]
  if refine and not acc.mapping_generator:
    # Multi-start: refine the best few distinct energy/latency points.
    starts, seen = [], set()
    for sc, _, cost in results:
      if sc in seen:
        continue
      seen.add(sc)
      starts.append(cost)
      if len(starts) == refine_starts:
        break
    for st in starts:
      cand = _refine(layer, acc, st, objective, activity, boundary_io, sliding_window)
      if _score(cand, objective) < _score(best, objective):
        best = cand
  return best


def _split_primes(order: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
  out = []
  for d, s in order:
    out.extend((d, f) for f in sorted(_prime_factors(s)))
  return out


def _refine(layer: Layer, acc: Accelerator, start: LayerCost, objective: str,
            activity: Activity, boundary_io: bool, sliding_window: bool,
            max_sweeps: int = 30) -> LayerCost:
  """Local search from ``start``: un-merge its loops into prime factors, then repeatedly move
  one loop to another position while the objective improves (first improvement)."""
  m = start.mapping
  order = _split_primes(m.temporal)
  best = start
  try:
    cur = evaluate_mapping(layer, acc, Mapping(m.d1, m.d2, tuple(order)), activity, boundary_io,
                           sliding_window)
    if _score(cur, objective) < _score(best, objective):
      best = cur
  except MappingError:
    pass
  order = list(best.mapping.temporal) if best is not start else order
  best_s = _score(best, objective)
  seen = {tuple(order)}
  for _ in range(max_sweeps):
    improved = False
    n = len(order)
    for i in range(n):
      for j in range(n):
        if i == j:
          continue
        cand = order[:i] + order[i + 1:]
        cand.insert(j, order[i])
        key = tuple(cand)
        if key in seen:
          continue
        seen.add(key)
        try:
          cost = evaluate_mapping(layer, acc, Mapping(m.d1, m.d2, key), activity, boundary_io,
                                  sliding_window)
        except MappingError:
          continue
        sc = _score(cost, objective)
        if sc < best_s:
          best, best_s, order, improved = cost, sc, cand, True
          break
      if improved:
        break
    if not improved:
      break
  return best
