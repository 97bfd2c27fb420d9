"""Technology tables (45 nm) with a cited source for every number, and node scaling.

Everything the hardware model costs is built from the numbers in this file. Each table names
its source in :data:`SOURCES`; numbers that are not read from a source are marked *derived*
and the derivation is given next to them (and in :func:`tech_table`, which the report and
``docs/hardware.md`` print).

Units: energy in pJ (per operation or per access), area in um^2 unless a name says otherwise,
power in mW, sizes in bytes, widths in bits.

Sources
-------
* Horowitz, ISSCC 2014 (``horowitz2014``): the classic 45 nm / 0.9 V table of energy per
  operation and area per unit. Integer add 8/16/32 b: 0.03/0.05/0.1 pJ and 36/67/137 um^2;
  integer multiply 8/32 b: 0.2/3.1 pJ and 282/3495 um^2; FP16/FP32 add 0.4/0.9 pJ and
  1360/4184 um^2; FP16/FP32 multiply 1.1/3.7 pJ and 1640/7700 um^2; 64-bit cache read
  10/20/100 pJ at 8 KB/32 KB/1 MB; DRAM 1.3-2.6 nJ per 64 bits.
* NanGate FreePDK45 Open Cell Library (``nangate45``): standard-cell footprints (LEF ``SIZE``
  width x 1.4 um row height) for the gates that Horowitz's table does not list (flip-flop,
  2:1 mux, XOR, NAND, inverter, full adder). Transcribed from the library's LEF; the values were
  not re-read from a local copy in this environment, but they agree with Horowitz's adder
  areas to within 6% (32 x FA_X1 = 136 um^2 vs 137 um^2 for a 32-bit add; ``tech_test.py``).
* CACTI 7 at 45 nm (``cacti7``): SRAM energy per access, leakage and area by capacity,
  produced by :mod:`ebsp_jax.hw.cacti` with the binary vendored by zigzag-dse 3.9.1 and frozen
  in :data:`CACTI_45NM` (``cacti_test.py`` checks the table against a fresh run).
* Stillmaker & Baas 2017 (``stillmaker2017``) is cited for *why* simple scaling is only
  first-order; :func:`scale_energy` / :func:`scale_area` implement classical (Dennard)
  scaling with a user-supplied supply voltage, a *derived* estimate.

Derived quantities (each documented where defined):
* integer multipliers of other widths: power-law fit through Horowitz's 8x8 and 32x32 points;
* energy of gates without a Horowitz figure: switched energy per unit area
  (:data:`LOGIC_FJ_PER_UM2`), the geometric mean of Horowitz's five integer add/multiply
  energy/area ratios (they span 0.71-0.89 fJ/um^2: energy tracks area at one node);
* SRAM below 8 KB: Horowitz's 8 KB figure scaled by CACTI's size dependence;
* logic leakage: CACTI's leakage per unit area of a small SRAM macro of the same device type.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Mapping

#: Bibliography: key -> full citation. Every number below names one of these keys.
SOURCES: Mapping[str, str] = {
    "horowitz2014": (
        "M. Horowitz, \"Computing's energy problem (and what we can do about it)\", "
        "IEEE ISSCC 2014, pp. 10-14, doi:10.1109/ISSCC.2014.6757323 (45 nm, 0.9 V tables of "
        "energy per operation and area)"),
    "nangate45": (
        "NanGate FreePDK45 Open Cell Library v1.3 (2011), cell footprints from the LEF "
        "(SIZE w BY 1.4 um)"),
    "cacti7": (
        "R. Balasubramonian, A. B. Kahng, N. Muralimanohar, A. Shafiee, V. Srinivas, \"CACTI 7: "
        "New tools for interconnect exploration in innovative off-chip memories\", ACM TACO "
        "14(2), 2017; binary vendored by zigzag-dse 3.9.1, run by ebsp_jax.hw.cacti at 45 nm"),
    "eyeriss_jssc2017": (
        "Y.-H. Chen, T. Krishna, J. Emer, V. Sze, \"Eyeriss: An energy-efficient reconfigurable "
        "accelerator for deep convolutional neural networks\", IEEE JSSC 52(1), 2017 (168 PEs, "
        "16-bit fixed point, per-PE spads 224x16b filter / 12x16b ifmap / 24x16b psum, "
        "108 KB global buffer)"),
    "eyeriss_isca2016": (
        "Y.-H. Chen, J. Emer, V. Sze, \"Eyeriss: A spatial architecture for energy-efficient "
        "dataflow for convolutional neural networks\", ISCA 2016 (row-stationary dataflow; "
        "normalised access energy RF 1x, array 2x, buffer 6x, DRAM 200x of a MAC)"),
    "bitfusion_isca2018": (
        "H. Sharma, J. Park, N. Suda, L. Lai, B. Chau, V. Chandra, H. Esmaeilzadeh, \"Bit "
        "Fusion: Bit-level dynamically composable architecture for accelerating deep neural "
        "networks\", ISCA 2018 (BitBricks: 2-bit multipliers fused into Fusion Units of 16; "
        "45 nm, 500 MHz; weight-stationary systolic array)"),
    "bitfusion_artifact": (
        "Bit Fusion ISCA 2018 artifact, github.com/hsharma35/bitfusion (commit 04ec1c8): "
        "bf_e_conf.ini, results/systolic_array_synth.csv (per-array synthesis at 45 nm, 500 MHz), "
        "results/bitfusion-eyeriss-sim-sweep.csv, results/eyeriss_results.csv, "
        "src/optimizer/optimizer.py and src/simulator/stats.py (cycle and energy rules), "
        "bitfusion-generate-graphs.ipynb (saved outputs: Eyeriss comparison, CACTI energies)"),
    "wrpn_iclr2018": (
        "A. Mishra, E. Nurvitadhi, J. J. Cook, D. Marr, \"WRPN: Wide reduced-precision "
        "networks\", ICLR 2018 (2x-wide low-precision networks; Bit Fusion's artifact simulates "
        "its AlexNet and ResNet-18 variants)"),
    "zena_dt2018": (
        "D. Kim, J. Ahn, S. Yoo, \"ZeNA: Zero-aware neural network accelerator\", IEEE Design "
        "& Test 35(1), 2018 (the 16- and 8-bit zero-skipping baseline of OLAccel)"),
    "calibrated": "set from a calibration figure by experiments/validate_baselines.py",
    "wax_micro2019": (
        "S. Gudaparthi, S. Narayanan, R. Balasubramonian, E. Giacomin, H. Kambalasubramanyam, "
        "P.-E. Gaillardon, \"Wire-aware architecture and dataflow for CNN accelerators\", "
        "MICRO 2019 (8-bit fixed-point MACs placed beside small SRAM subarrays)"),
    "olaccel_isca2018": (
        "E. Park, D. Kim, S. Yoo, \"Energy-efficient neural network accelerator based on "
        "outlier-aware low-precision computation\", ISCA 2018, doi:10.1109/ISCA.2018.00063 "
        "(4-bit MACs for dense data, high-precision path for ~3% outliers)"),
    "ebsp_dac2022": (
        "F. Liu, W. Zhao, Z. Wang, Y. Chen, Z. He, N. Jing, X. Liang, L. Jiang, \"EBSP: Evolving "
        "bit sparsity patterns for hardware-friendly inference of quantized deep neural "
        "networks\", DAC 2022, doi:10.1145/3489517.3530660 (equal area 0.32 mm^2; PEs 224 / "
        "3168 / 102 / 2499 / 4818)"),
    "stillmaker2017": (
        "A. Stillmaker, B. Baas, \"Scaling equations for the accurate prediction of CMOS device "
        "performance from 180 nm to 7 nm\", Integration 58, 2017"),
    "jedec_ddr3": (
        "JEDEC JESD79-3 DDR3 SDRAM standard: DDR3-1066 moves 1066 MT/s x 64 bit = 8.5 GB/s "
        "per channel"),
    "derived": "derived in ebsp_jax/hw/tech.py from the cited numbers (formula given there)",
    "assumption": "modelling assumption of this project (stated where used)",
}

#: Technology node of every table in this file, nm.
BASE_NODE_NM = 45
#: Supply voltage of Horowitz's table, V.
BASE_VDD = 0.9

# ----------------------------------------------------------------------------------------------
# Horowitz ISSCC 2014, 45 nm, 0.9 V.
#: Energy per operation, pJ [horowitz2014].
HOROWITZ_ENERGY_PJ: Mapping[str, float] = {
    "int_add_8": 0.03, "int_add_16": 0.05, "int_add_32": 0.1,
    "int_mult_8": 0.2, "int_mult_32": 3.1,
    "fp_add_16": 0.4, "fp_add_32": 0.9, "fp_mult_16": 1.1, "fp_mult_32": 3.7,
}
#: Area per unit, um^2 [horowitz2014].
HOROWITZ_AREA_UM2: Mapping[str, float] = {
    "int_add_8": 36.0, "int_add_16": 67.0, "int_add_32": 137.0,
    "int_mult_8": 282.0, "int_mult_32": 3495.0,
    "fp_add_16": 1360.0, "fp_add_32": 4184.0, "fp_mult_16": 1640.0, "fp_mult_32": 7700.0,
}
#: 64-bit cache/SRAM read energy by capacity (bytes -> pJ per 64-bit access) [horowitz2014].
HOROWITZ_SRAM64_PJ: Mapping[int, float] = {8 * 1024: 10.0, 32 * 1024: 20.0, 1024 * 1024: 100.0}
#: DRAM access energy per 64 bits, pJ: the range in [horowitz2014].
HOROWITZ_DRAM64_PJ: tuple[float, float] = (1300.0, 2600.0)

# ----------------------------------------------------------------------------------------------
# NanGate 45 nm cell footprints, um^2 [nangate45].
NANGATE45_AREA_UM2: Mapping[str, float] = {
    "INV_X1": 0.532, "NAND2_X1": 0.798, "AND2_X1": 1.064, "XOR2_X1": 1.596,
    "MUX2_X1": 1.862, "HA_X1": 2.660, "FA_X1": 4.256, "DFF_X1": 4.522,
}

# ----------------------------------------------------------------------------------------------
# CACTI 7, 45 nm, 64-bit port, 1 bank, 1 RW port, "ram" [cacti7]; regenerate with
# ``python -m ebsp_jax.hw.cacti``. Columns: size B, width b, device, read pJ, write pJ,
# leakage mW, area mm^2.
CACTI_45NM: tuple[tuple[int, int, str, float, float, float, float], ...] = (
    (256, 64, 'itrs-hp', 1.271, 1.618, 0.179, 0.001622),
    (512, 64, 'itrs-hp', 1.362, 2.146, 0.3378, 0.002433),
    (1024, 64, 'itrs-hp', 1.61, 3.266, 0.6362, 0.004035),
    (2048, 64, 'itrs-hp', 2.671, 3.982, 1.409, 0.00844),
    (4096, 64, 'itrs-hp', 3.318, 6.042, 2.764, 0.01503),
    (8192, 64, 'itrs-hp', 6.048, 7.414, 5.116, 0.0294),
    (16384, 64, 'itrs-hp', 8.909, 11.77, 10.1, 0.05493),
    (32768, 64, 'itrs-hp', 17, 14.48, 18.95, 0.1062),
    (65536, 64, 'itrs-hp', 21.2, 18.69, 37.89, 0.234),
    (131072, 64, 'itrs-hp', 37.49, 24.22, 69.09, 0.4355),
    (262144, 64, 'itrs-hp', 45.96, 32.69, 138.2, 0.8948),
    (524288, 64, 'itrs-hp', 59.9, 46.63, 276.4, 1.775),
    (1048576, 64, 'itrs-hp', 77.19, 63.92, 552.7, 3.565),
    (2097152, 64, 'itrs-hp', 104.5, 91.21, 1105, 7.03),
    (256, 64, 'itrs-lop', 0.6677, 0.8118, 0.01069, 0.001621),
    (512, 64, 'itrs-lop', 0.7302, 1.071, 0.02116, 0.002432),
    (1024, 64, 'itrs-lop', 0.8866, 1.622, 0.03908, 0.004036),
    (2048, 64, 'itrs-lop', 1.498, 1.99, 0.0764, 0.008435),
    (4096, 64, 'itrs-lop', 2.695, 2.699, 0.1353, 0.01658),
    (8192, 64, 'itrs-lop', 3.619, 3.711, 0.2509, 0.0294),
    (16384, 64, 'itrs-lop', 6.923, 5.107, 0.4428, 0.05701),
    (32768, 64, 'itrs-lop', 8.272, 6.456, 0.8856, 0.1258),
    (65536, 64, 'itrs-lop', 14.98, 9.35, 1.543, 0.2358),
    (131072, 64, 'itrs-lop', 17.73, 12.1, 3.087, 0.4845),
    (262144, 64, 'itrs-lop', 23.01, 17.37, 6.173, 0.9831),
    (524288, 64, 'itrs-lop', 31.67, 24.59, 11.59, 2.109),
    (1048576, 64, 'itrs-lop', 41.93, 36.21, 24.64, 3.848),
    (2097152, 64, 'itrs-lop', 57.75, 52.04, 49.27, 7.574),
)

# ----------------------------------------------------------------------------------------------
# Derived constants.


def _logic_density() -> float:
  ratios = [HOROWITZ_ENERGY_PJ[k] * 1e3 / HOROWITZ_AREA_UM2[k]
            for k in ("int_add_8", "int_add_16", "int_add_32", "int_mult_8", "int_mult_32")]
  return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


#: Switched energy of 45 nm logic per um^2 per operation, fJ/um^2 (derived: geometric mean of
#: Horowitz's integer add/multiply energy/area ratios, 0.71-0.89 fJ/um^2). Used to cost gates
#: that Horowitz does not list (mux, flip-flop, XOR, LOD) from their NanGate area, at one
#: toggle per use.
LOGIC_FJ_PER_UM2: float = _logic_density()

#: Default clock, MHz (assumption: Bit Fusion's 45 nm synthesis frequency [bitfusion_isca2018]).
DEFAULT_CLOCK_MHZ = 500.0
#: Default DRAM bandwidth, bytes per cycle at the default clock (assumption: one 64-bit
#: DDR3-1066 channel, 8.5 GB/s [jedec_ddr3], is ~17 B per 500 MHz cycle; rounded down to 16).
DEFAULT_DRAM_BYTES_PER_CYCLE = 16.0
#: Default global-buffer capacity, bytes: Eyeriss's 108 KB [eyeriss_jssc2017], given to every
#: design so that only the PE arrays differ (assumption).
DEFAULT_GLB_BYTES = 108 * 1024
#: Default global-buffer bandwidth, bits per cycle (derived: Eyeriss's 108 KB are 27 banks of
#: 512 x 64 b [eyeriss_jssc2017, Sec. V-A], 27 x 64 b per cycle when every bank is accessed;
#: replaces an uncited 1024).
DEFAULT_GLB_BANDWIDTH_BITS = 27 * 64
#: Accumulator width of the 4/6/8-bit designs (derived: the smallest power-of-two width that
#: holds ResNet-50's longest contraction, 3x3x512 = 4608 products, of 8 x 8-bit products:
#: 16 + ceil(log2 4608) = 29 bits -> 32; Bit Fusion's artifact also keeps 32-bit psums).
DEFAULT_ACC_BITS = 32


@dataclasses.dataclass(frozen=True)
class TechParams:
  """Technology knobs of one evaluation (hashable; all defaults cited above).

  Attributes:
    node_nm: target node; tables are at 45 nm and scaled with :func:`scale_energy` /
      :func:`scale_area` when different.
    vdd: supply at ``node_nm`` (V) for energy scaling; 0.9 V at 45 nm.
    sram_energy: ``'horowitz'`` (Horowitz's 8 KB/32 KB/1 MB points, log-log interpolated,
      CACTI's size trend below 8 KB) or ``'cacti'`` (the CACTI table, itrs-hp).
    leakage_device: CACTI device type for SRAM/logic leakage (``'itrs-lop'`` default: the
      low-operating-power process an inference accelerator would use; ``'itrs-hp'`` leaks
      ~20x more; ``'none'`` disables leakage).
    dram_pj_per_64b: DRAM energy per 64 bits (Horowitz's low end, 1.3 nJ, by default).
    dram_bytes_per_cycle: DRAM bandwidth, bytes per clock cycle.
    clock_mhz: clock frequency.
  """

  node_nm: float = BASE_NODE_NM
  vdd: float = BASE_VDD
  sram_energy: str = "horowitz"
  leakage_device: str = "itrs-lop"
  dram_pj_per_64b: float = HOROWITZ_DRAM64_PJ[0]
  dram_bytes_per_cycle: float = DEFAULT_DRAM_BYTES_PER_CYCLE
  clock_mhz: float = DEFAULT_CLOCK_MHZ

  def __post_init__(self):
    for k in ("node_nm", "vdd", "dram_pj_per_64b", "dram_bytes_per_cycle", "clock_mhz"):
      v = getattr(self, k)
      if not (isinstance(v, (int, float)) and math.isfinite(v)):
        raise ValueError(f"{k} must be a finite number; got {v}")
    if self.sram_energy not in ("horowitz", "cacti"):
      raise ValueError(f"sram_energy must be 'horowitz' or 'cacti'; got {self.sram_energy!r}")
    if self.leakage_device not in ("itrs-hp", "itrs-lop", "none"):
      raise ValueError(f"leakage_device must be itrs-hp, itrs-lop or none; got "
                       f"{self.leakage_device!r}")
    if not self.dram_bytes_per_cycle > 0:
      raise ValueError(f"DRAM bandwidth (dram_bytes_per_cycle) must be > 0 bytes/cycle; got "
                       f"{self.dram_bytes_per_cycle}")
    if not self.clock_mhz > 0:
      raise ValueError(f"clock_mhz must be > 0; got {self.clock_mhz}")
    if not self.dram_pj_per_64b >= 0:
      raise ValueError(f"dram_pj_per_64b must be >= 0; got {self.dram_pj_per_64b}")
    if not (self.node_nm > 0 and self.vdd > 0):
      raise ValueError("node_nm and vdd must be > 0")

  @property
  def energy_scale(self) -> float:
    """Factor from 45 nm / 0.9 V energies to this node (1 at the base node)."""
    return scale_energy(1.0, BASE_NODE_NM, self.node_nm, BASE_VDD, self.vdd)

  @property
  def area_scale(self) -> float:
    """Factor from 45 nm areas to this node (1 at the base node)."""
    return scale_area(1.0, BASE_NODE_NM, self.node_nm)


# ----------------------------------------------------------------------------------------------
# Node scaling (derived, first order).


def scale_area(area: float, from_nm: float, to_nm: float) -> float:
  """Classical area scaling ``area * (to/from)^2`` (derived; first order).

  Real nodes below ~28 nm shrink logic less than this (fins, fixed wire pitches); see
  [stillmaker2017] for fitted factors. Used only when ``TechParams.node_nm != 45``.
  """
  return area * (to_nm / from_nm) ** 2


def scale_energy(energy: float, from_nm: float, to_nm: float, from_vdd: float,
                 to_vdd: float) -> float:
  """Classical dynamic-energy scaling ``E * (to/from) * (Vto/Vfrom)^2`` (C ~ L, E = C V^2).

  Derived, first order; the supply voltages are inputs because they are process choices.
  """
  return energy * (to_nm / from_nm) * (to_vdd / from_vdd) ** 2


# ----------------------------------------------------------------------------------------------
# Arithmetic units.


def _interp_linear(points: Mapping[int, float], x: float) -> float:
  xs = sorted(points)
  if x <= xs[0]:
    return points[xs[0]] * x / xs[0]
  for lo, hi in zip(xs, xs[1:]):
    if x <= hi:
      t = (x - lo) / (hi - lo)
      return points[lo] + t * (points[hi] - points[lo])
  lo, hi = xs[-2], xs[-1]
  return points[hi] + (x - hi) * (points[hi] - points[lo]) / (hi - lo)


def int_add_energy_pj(bits: int) -> float:
  """Energy of one ``bits``-wide integer addition, pJ.

  Horowitz's 8/16/32-bit points [horowitz2014], piecewise-linear in the width between them
  (derived), proportional to width below 8 bits and linearly extrapolated above 32.
  """
  return _interp_linear({8: HOROWITZ_ENERGY_PJ["int_add_8"], 16: HOROWITZ_ENERGY_PJ["int_add_16"],
                         32: HOROWITZ_ENERGY_PJ["int_add_32"]}, bits)


def int_add_area_um2(bits: int) -> float:
  """Area of a ``bits``-wide integer adder, um^2 (Horowitz points, interpolated as energy)."""
  return _interp_linear({8: HOROWITZ_AREA_UM2["int_add_8"], 16: HOROWITZ_AREA_UM2["int_add_16"],
                         32: HOROWITZ_AREA_UM2["int_add_32"]}, bits)


#: Exponents of the power-law fits through Horowitz's 8x8 and 32x32 multipliers, in the
#: partial-product count a*b (derived): energy ~ (ab)^0.988, area ~ (ab)^0.908.
MULT_ENERGY_EXP = math.log(HOROWITZ_ENERGY_PJ["int_mult_32"] / HOROWITZ_ENERGY_PJ["int_mult_8"]) / math.log(16)
MULT_AREA_EXP = math.log(HOROWITZ_AREA_UM2["int_mult_32"] / HOROWITZ_AREA_UM2["int_mult_8"]) / math.log(16)


def int_mult_energy_pj(bits_a: int, bits_b: int | None = None) -> float:
  """Energy of an ``bits_a x bits_b`` integer multiply, pJ.

  Derived: ``0.2 pJ * (a*b/64)^0.988``, the power law through Horowitz's 8x8 (0.2 pJ) and
  32x32 (3.1 pJ) multipliers [horowitz2014] (an array multiplier has a*b partial-product
  cells). 16x16 gives 0.79 pJ, 4x4 0.051 pJ.
  """
  b = bits_a if bits_b is None else bits_b
  return HOROWITZ_ENERGY_PJ["int_mult_8"] * (bits_a * b / 64.0) ** MULT_ENERGY_EXP


def int_mult_area_um2(bits_a: int, bits_b: int | None = None) -> float:
  """Area of an ``bits_a x bits_b`` integer multiplier, um^2.

  Derived: ``282 um^2 * (a*b/64)^0.908`` through Horowitz's 8x8 (282) and 32x32 (3495)
  [horowitz2014]. 16x16 gives 993 um^2, 4x4 80 um^2, 2x2 22 um^2.
  """
  b = bits_a if bits_b is None else bits_b
  return HOROWITZ_AREA_UM2["int_mult_8"] * (bits_a * b / 64.0) ** MULT_AREA_EXP


def cell_area_um2(cell: str) -> float:
  """NanGate45 footprint of ``cell`` (e.g. ``'DFF_X1'``), um^2 [nangate45]."""
  return NANGATE45_AREA_UM2[cell]


def cell_energy_pj(cell: str) -> float:
  """Energy of one toggle of ``cell``, pJ (derived: area x :data:`LOGIC_FJ_PER_UM2`)."""
  return NANGATE45_AREA_UM2[cell] * LOGIC_FJ_PER_UM2 * 1e-3


# ----------------------------------------------------------------------------------------------
# Memories.


def _cacti_rows(device: str) -> list[tuple[int, float, float, float, float]]:
  return [(s, r, w, l, a) for (s, _, d, r, w, l, a) in CACTI_45NM if d == device]


def _loglog(xs: list[float], ys: list[float], x: float) -> float:
  """Piecewise log-log interpolation, extrapolated with the end slopes."""
  lx = math.log(x)
  lxs = [math.log(v) for v in xs]
  lys = [math.log(v) for v in ys]
  i = bisect.bisect_left(lxs, lx)
  i = min(max(i, 1), len(xs) - 1)
  t = (lx - lxs[i - 1]) / (lxs[i] - lxs[i - 1])
  return math.exp(lys[i - 1] + t * (lys[i] - lys[i - 1]))


def cacti_sram(size_bytes: float, device: str = "itrs-hp") -> dict[str, float]:
  """CACTI 45 nm SRAM figures at ``size_bytes`` (log-log interpolated in the frozen table).

  Returns:
    ``{'read_pj', 'write_pj'}`` per 64-bit access, ``'leakage_mw'``, ``'area_um2'``.
  """
  rows = _cacti_rows(device)
  xs = [float(r[0]) for r in rows]
  return {
      "read_pj": _loglog(xs, [r[1] for r in rows], size_bytes),
      "write_pj": _loglog(xs, [r[2] for r in rows], size_bytes),
      "leakage_mw": _loglog(xs, [r[3] for r in rows], size_bytes),
      "area_um2": _loglog(xs, [r[4] for r in rows], size_bytes) * 1e6,
  }


def sram_energy_pj_per_bit(size_bytes: float, tech: TechParams = TechParams(),
                           write: bool = False) -> float:
  """Energy to read (or write) one bit of an SRAM of ``size_bytes``, pJ/bit (at 45 nm).

  ``'horowitz'``: Horowitz's 64-bit read energies [horowitz2014] log-log interpolated between
  8 KB, 32 KB and 1 MB (extrapolated above 1 MB with the 32 KB-1 MB slope); below 8 KB, the
  8 KB figure times CACTI's read-energy ratio E(size)/E(8 KB) [cacti7] (derived). Writes cost
  the same as reads (Horowitz gives one figure per access; assumption). Divided by 64 for a
  per-bit cost: accesses are assumed to move packed 64-bit words.

  ``'cacti'``: the CACTI table (itrs-hp) itself, read or write energy / 64.
  """
  if size_bytes <= 0:
    raise ValueError(f"size_bytes must be > 0; got {size_bytes}")
  if tech.sram_energy == "cacti":
    c = cacti_sram(size_bytes, "itrs-hp")
    return (c["write_pj"] if write else c["read_pj"]) / 64.0
  pts = sorted(HOROWITZ_SRAM64_PJ.items())
  if size_bytes >= pts[0][0]:
    e64 = _loglog([float(p[0]) for p in pts], [p[1] for p in pts], size_bytes)
  else:
    ref = cacti_sram(pts[0][0], "itrs-hp")["read_pj"]
    e64 = pts[0][1] * cacti_sram(size_bytes, "itrs-hp")["read_pj"] / ref
  return e64 / 64.0


def sram_area_um2(size_bytes: float) -> float:
  """SRAM macro area from CACTI (itrs-hp, 45 nm, 64-bit port) [cacti7], um^2."""
  return cacti_sram(size_bytes, "itrs-hp")["area_um2"]


def sram_leakage_mw(size_bytes: float, tech: TechParams = TechParams()) -> float:
  """SRAM leakage power from CACTI for ``tech.leakage_device`` [cacti7], mW (0 if 'none')."""
  if tech.leakage_device == "none":
    return 0.0
  return cacti_sram(size_bytes, tech.leakage_device)["leakage_mw"]


def logic_leakage_mw_per_um2(tech: TechParams = TechParams()) -> float:
  """Leakage of standard-cell logic per um^2, mW/um^2.

  Derived: CACTI's leakage per area of a 1 KB SRAM macro of the same device type [cacti7]
  (a small macro is dominated by its peripheral logic). An estimate: logic leakage depends on
  threshold-voltage mix and temperature far more than on anything this model knows.
  """
  if tech.leakage_device == "none":
    return 0.0
  c = cacti_sram(1024, tech.leakage_device)
  return c["leakage_mw"] / c["area_um2"]


def dram_energy_pj_per_bit(tech: TechParams = TechParams()) -> float:
  """DRAM access energy per bit, pJ/bit: ``tech.dram_pj_per_64b / 64`` [horowitz2014]."""
  return tech.dram_pj_per_64b / 64.0


# Register files built from flip-flops (too small for an SRAM macro).


def regfile_area_um2(entries: int, width: int) -> float:
  """Area of a flip-flop register file, um^2 (derived from NanGate cells).

  ``entries*width`` DFF_X1 plus an ``entries:1`` read mux tree (``(entries-1)*width`` MUX2_X1)
  and a write decoder of ``entries`` NAND2_X1.
  """
  if entries <= 0 or width <= 0:
    return 0.0
  return (entries * width * cell_area_um2("DFF_X1")
          + (entries - 1) * width * cell_area_um2("MUX2_X1")
          + entries * cell_area_um2("NAND2_X1"))


def regfile_read_pj(entries: int, width: int) -> float:
  """Read energy of a flip-flop register file, pJ per access (derived).

  The selected path toggles ``ceil(log2(entries))`` mux levels per bit; a single register
  (``entries == 1``) is read for free (a wire).
  """
  levels = max(0, math.ceil(math.log2(max(1, entries))))
  return width * levels * cell_energy_pj("MUX2_X1")


def regfile_write_pj(entries: int, width: int) -> float:
  """Write energy of a flip-flop register file, pJ per access: ``width`` DFF toggles (derived)."""
  del entries
  return width * cell_energy_pj("DFF_X1")


# ----------------------------------------------------------------------------------------------
# Documentation table.


def tech_table(tech: TechParams = TechParams()) -> list[dict[str, object]]:
  """Every technology number the model uses, with its unit, source key and derivation.

  Returns:
    Rows ``{'quantity', 'value', 'unit', 'source', 'note'}``; the report prints them and
    ``docs/hardware.md`` reproduces them.
  """
  rows: list[dict[str, object]] = []

  def add(q, v, u, s, n=""):
    rows.append({"quantity": q, "value": v, "unit": u, "source": s, "note": n})

  for k, v in HOROWITZ_ENERGY_PJ.items():
    add(f"energy {k}", v, "pJ", "horowitz2014")
  for k, v in HOROWITZ_AREA_UM2.items():
    add(f"area {k}", v, "um^2", "horowitz2014")
  for k, v in HOROWITZ_SRAM64_PJ.items():
    add(f"SRAM read 64 b @ {k // 1024} KB", v, "pJ", "horowitz2014")
  add("DRAM access 64 b (low, high)", HOROWITZ_DRAM64_PJ, "pJ", "horowitz2014")
  for k, v in NANGATE45_AREA_UM2.items():
    add(f"area {k}", v, "um^2", "nangate45")
  add("logic switched energy density", round(LOGIC_FJ_PER_UM2, 4), "fJ/um^2", "derived",
      "geometric mean of Horowitz int add/mult energy/area")
  add("int mult energy exponent in a*b", round(MULT_ENERGY_EXP, 4), "-", "derived",
      "power law through Horowitz 8x8 and 32x32")
  add("int mult area exponent in a*b", round(MULT_AREA_EXP, 4), "-", "derived",
      "power law through Horowitz 8x8 and 32x32")
  add("int mult 16x16 energy", round(int_mult_energy_pj(16), 4), "pJ", "derived")
  add("int mult 16x16 area", round(int_mult_area_um2(16), 1), "um^2", "derived")
  add("int mult 4x4 energy", round(int_mult_energy_pj(4), 4), "pJ", "derived")
  add("int mult 4x4 area", round(int_mult_area_um2(4), 1), "um^2", "derived")
  for s, w, d, r, wr, lk, a in CACTI_45NM:
    add(f"CACTI {d} {s} B x{w}: read/write/leak/area", (r, wr, lk, a),
        "pJ/pJ/mW/mm^2", "cacti7")
  add("logic leakage density", logic_leakage_mw_per_um2(tech), "mW/um^2", "derived",
      f"CACTI {tech.leakage_device} 1 KB macro leakage / area")
  add("clock", tech.clock_mhz, "MHz", "bitfusion_isca2018", "assumption: Bit Fusion's clock")
  add("DRAM bandwidth", tech.dram_bytes_per_cycle, "B/cycle", "jedec_ddr3",
      "assumption: one DDR3-1066 x64 channel")
  add("global buffer", DEFAULT_GLB_BYTES, "B", "eyeriss_jssc2017",
      "assumption: every design gets Eyeriss's 108 KB")
  add("global-buffer bandwidth", DEFAULT_GLB_BANDWIDTH_BITS, "b/cycle", "derived",
      "Eyeriss's 27 banks x 64 b")
  add("accumulator (4/6/8-bit designs)", DEFAULT_ACC_BITS, "b", "derived",
      "16 + ceil(log2 4608) = 29 -> 32")
  return rows
