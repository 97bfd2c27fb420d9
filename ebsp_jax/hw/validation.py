"""Each baseline against its own paper: settings, calibration and the published figures.

Every figure a baseline's paper (or artifact) reports that this model can compute is a
:class:`Figure`: the design, the network (a registry model name; the exact variant the paper
measured is in :data:`ebsp_jax.hw.workload.PAPER_NETWORKS`), the figure's name and unit, the
published value with its source, and its *role*: ``'calibration'`` (a free parameter of the
model may be set from it; :data:`CALIBRATION_PARAMETERS` says which) or ``'held_out'``
(predicted with the calibrated model, never used to set anything).

:func:`evaluate` computes the model's value of every selected figure;
:func:`calibrate` re-derives the free parameters from the calibration figures (the values
stored in the design modules are its output); ``experiments/validate_baselines.py`` prints the
table and writes the records.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

from ebsp_jax.hw import dataflow, report, workload
from ebsp_jax.hw.designs import bitfusion, eyeriss, olaccel, wax, zena
from ebsp_jax.hw.pe import Activity
from ebsp_jax.hw.spec import Accelerator

ROLES = ("calibration", "held_out")


@dataclasses.dataclass(frozen=True)
class Figure:
  """One published figure (see the module docstring)."""

  design: str
  network: str
  figure: str
  unit: str
  published: float
  role: str
  setting: str
  source: str


# Bit Fusion artifact notebook outputs (bitfusion-generate-graphs.ipynb, cell "Get Eyeriss
# numbers", printed per benchmark): Eyeriss / Bit Fusion time per image (ms) and power (mW).
_BF_NB = {"alexnet": (8.785792, 4.708311375, 373.972376054, 448.386241718),
          "resnet18": (11.935744, 6.13499775, 421.36057488, 442.486265848),
          "lenet5": (0.139712, 0.051294, 561.781457444, 356.024253811)}


def _bf_speedup(n):
  te, tb, _, _ = _BF_NB[n]
  return te / tb


def _bf_energy(n):
  te, tb, pe_, pb = _BF_NB[n]
  return (pe_ * te) / (pb * tb)


_JSSC = "Chen et al., Eyeriss, IEEE JSSC 52(1) 2017"
_BF = ("Bit Fusion artifact (github hsharma35/bitfusion) bitfusion-generate-graphs.ipynb saved "
       "output: Eyeriss / Bit Fusion time {} ms and power {} mW; ratio of times, ratio of "
       "power x time")
_OL = ("Park et al., OLAccel, ISCA 2018, abstract: \"OLAccel can reduce by 43.5% (27.0%), 56.7% "
       "(36.3%), and 62.2% (49.5%) energy consumption for AlexNet, VGG-16, and ResNet-18, "
       "respectively, compared with a 16-bit (8-bit) state-of-the-art zero-aware accelerator\"")
_WAX = ("Gudaparthi et al., WAX, MICRO 2019, abstract: WAXFlow-3 \"achieves a 2x improvement in "
        "performance and a 2.6-4.4x reduction in energy, relative to Eyeriss\" (per-network "
        "values not available here; {})")

#: Settings of the records (what each paper's figure was measured on).
SETTINGS = {
    "eyeriss": ("eyeriss_jssc2017: 65 nm, 1 V, 200 MHz core / 60 MHz 64-bit link, 12x14 PEs, "
                "108 KB GLB, RS dataflow, zero gating, RLC; CONV layers only"),
    "bitfusion": ("bitfusion_isca2018 (artifact bf_e_conf.ini): 16x32 Fusion Units, 45 nm, 500 "
                  "MHz, buffers 64/32/16 KB, 192 b DRAM, batch 16, the artifact's per-layer "
                  "widths and its networks (AlexNet/ResNet-18 as 2x-wide WRPN); vs the "
                  "artifact's Eyeriss (45 nm, 500 MHz, 12x16 PEs, its normalised energies) on "
                  "the standard networks"),
    "olaccel": ("olaccel_isca2018: 65 nm, 250 MHz, 4-bit MACs, 3% 16-bit outliers, vs ZeNA "
                "16/8-bit, all skipping zero activations; assumed common platform (256 MACs, "
                "108 KB buffer)"),
    "wax": ("wax_micro2019: WAX tiles (32 8-bit MACs, shift-register A row, 8 KB subarray) at the "
            "area of Eyeriss's 168-PE array, vs the calibrated Eyeriss chip, both at 65 nm / "
            "200 MHz with the same buffer and DRAM"),
}

#: Every figure of the validation. ``published`` of the held-out figures was filled in only
#: after the model's predictions were recorded (docs/hardware.md, section 6).
FIGURES: tuple[Figure, ...] = (
    Figure("eyeriss", "alexnet", "fps", "frames/s", 34.7, "calibration", SETTINGS["eyeriss"],
           _JSSC + ", Table V / Sec. VI-A (batch 4, CONV1-5, 1 V)"),
    Figure("eyeriss", "alexnet", "power_mw", "mW", 278.0, "calibration", SETTINGS["eyeriss"],
           _JSSC + ", Table V / Sec. VI-A: measured chip power (DRAM excluded)"),
    Figure("eyeriss", "alexnet", "dram_mb_per_batch", "MB per batch of 4", 15.4, "calibration",
           SETTINGS["eyeriss"], _JSSC + ", Sec. VI-A: \"the required DRAM access is 15.4 MB\""),
    Figure("eyeriss", "vgg16", "fps", "frames/s", 0.7, "held_out", SETTINGS["eyeriss"],
           _JSSC + ", Sec. VI-B / Table VI (batch 3, CONV1-13, 1 V)"),
    Figure("eyeriss", "vgg16", "power_mw", "mW", 236.0, "held_out", SETTINGS["eyeriss"],
           _JSSC + ", Sec. VI-B: measured chip power"),
    Figure("eyeriss", "vgg16", "dram_mb_per_batch", "MB per batch of 3", 321.1, "held_out",
           SETTINGS["eyeriss"], _JSSC + ", Sec. VI-B: \"the required DRAM access for a batch "
           "of three frames is 321.1 MB\""),
    Figure("bitfusion", "alexnet", "speedup_vs_eyeriss", "x", _bf_speedup("alexnet"),
           "calibration", SETTINGS["bitfusion"], _BF.format("8.785792 / 4.708311375",
                                                            "373.97 / 448.39")),
    Figure("bitfusion", "alexnet", "energy_reduction_vs_eyeriss", "x", _bf_energy("alexnet"),
           "calibration", SETTINGS["bitfusion"], _BF.format("8.785792 / 4.708311375",
                                                            "373.97 / 448.39")),
    Figure("bitfusion", "resnet18", "speedup_vs_eyeriss", "x", _bf_speedup("resnet18"),
           "held_out", SETTINGS["bitfusion"], _BF.format("11.935744 / 6.13499775",
                                                         "421.36 / 442.49")),
    Figure("bitfusion", "resnet18", "energy_reduction_vs_eyeriss", "x", _bf_energy("resnet18"),
           "held_out", SETTINGS["bitfusion"], _BF.format("11.935744 / 6.13499775",
                                                         "421.36 / 442.49")),
    Figure("bitfusion", "lenet5", "speedup_vs_eyeriss", "x", _bf_speedup("lenet5"), "held_out",
           SETTINGS["bitfusion"], _BF.format("0.139712 / 0.051294", "561.78 / 356.02")),
    Figure("bitfusion", "lenet5", "energy_reduction_vs_eyeriss", "x", _bf_energy("lenet5"),
           "held_out", SETTINGS["bitfusion"], _BF.format("0.139712 / 0.051294",
                                                         "561.78 / 356.02")),
    Figure("olaccel", "alexnet", "energy_saving_vs_zena16_pct", "%", 43.5, "calibration",
           SETTINGS["olaccel"], _OL),
    Figure("olaccel", "alexnet", "energy_saving_vs_zena8_pct", "%", 27.0, "calibration",
           SETTINGS["olaccel"], _OL),
    Figure("olaccel", "vgg16", "energy_saving_vs_zena16_pct", "%", 56.7, "held_out",
           SETTINGS["olaccel"], _OL),
    Figure("olaccel", "vgg16", "energy_saving_vs_zena8_pct", "%", 36.3, "held_out",
           SETTINGS["olaccel"], _OL),
    Figure("olaccel", "resnet18", "energy_saving_vs_zena16_pct", "%", 62.2, "held_out",
           SETTINGS["olaccel"], _OL),
    Figure("olaccel", "resnet18", "energy_saving_vs_zena8_pct", "%", 49.5, "held_out",
           SETTINGS["olaccel"], _OL),
    Figure("wax", "vgg16", "speedup_vs_eyeriss", "x", 2.0, "held_out", SETTINGS["wax"],
           _WAX.format("the 2x of the abstract")),
    Figure("wax", "vgg16", "energy_reduction_vs_eyeriss", "x", math.sqrt(2.6 * 4.4), "held_out",
           SETTINGS["wax"], _WAX.format("published = 3.38, the geometric middle of 2.6-4.4: "
                                        "a ratio in 0.77-1.30 lies inside the published range")),
    Figure("wax", "resnet18", "speedup_vs_eyeriss", "x", 2.0, "held_out", SETTINGS["wax"],
           _WAX.format("the 2x of the abstract")),
    Figure("wax", "resnet18", "energy_reduction_vs_eyeriss", "x", math.sqrt(2.6 * 4.4),
           "held_out", SETTINGS["wax"],
           _WAX.format("published = 3.38, the geometric middle of 2.6-4.4: a ratio in "
                       "0.77-1.30 lies inside the published range")),
)

#: Which free parameter each calibration figure sets (``None``: it sets none; the figure then
#: checks the model like a held-out one, but was looked at while the model was built).
CALIBRATION_PARAMETERS: Mapping[tuple[str, str, str], str | None] = {
    ("eyeriss", "alexnet", "fps"): "eyeriss.CHIP_RAMP_SERIAL_FRACTION",
    ("eyeriss", "alexnet", "power_mw"): "eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE",
    ("eyeriss", "alexnet", "dram_mb_per_batch"): None,
    ("bitfusion", "alexnet", "speedup_vs_eyeriss"): None,
    ("bitfusion", "alexnet", "energy_reduction_vs_eyeriss"): None,
    ("olaccel", "alexnet", "energy_saving_vs_zena16_pct"): "olaccel.SKIP_CONTROL_PJ_PER_MAC",
    ("olaccel", "alexnet", "energy_saving_vs_zena8_pct"): "olaccel.SKIP_CONTROL_PJ_PER_MAC",
}


# ----------------------------------------------------------------------------------------------
# Activation statistics.

#: Zero ifmaps of AlexNet's CONV layers [eyeriss_jssc2017, Sec. IV-B: "almost 40% of ifmap
#: values of CONV2 are zeros on average, and it goes up to around 75% at CONV5"]; CONV1's input
#: is the image (no zeros); CONV3/4 interpolated linearly (assumption).
ALEXNET_ZERO_IFMAPS = {"conv1": 0.0, "conv2": 0.40, "conv3": 0.40 + 0.35 / 3,
                       "conv4": 0.40 + 0.70 / 3, "conv5": 0.75}
#: Zero fraction assumed for any other post-ReLU input of an ImageNet network without a
#: published or captured statistic: the mean of AlexNet's CONV2-5 values above (57.5%).
ASSUMED_IMAGENET_ZERO_FRACTION = sum(list(ALEXNET_ZERO_IFMAPS.values())[1:]) / 4


def activation_stats(wl: workload.Workload, zeros: Mapping[str, float] | None = None,
                     default: float = ASSUMED_IMAGENET_ZERO_FRACTION,
                     first_layer_zero: float = 0.0) -> dict[str, Activity]:
  """Per-layer activation densities: ``zeros[layer]`` where given, else ``default``; the
  network's first layer reads the raw input (``first_layer_zero``, not compressible); each
  layer's output density is the next layer's input density (the last keeps its own)."""
  names = [l.name for l in wl.layers]
  z = [(zeros or {}).get(n, default) for n in names]
  z[0] = (zeros or {}).get(names[0], first_layer_zero)
  return {n: Activity(act_density=1 - z[i], out_density=1 - (z[i + 1] if i + 1 < len(z) else z[i]),
                      compress_input=i > 0) for i, n in enumerate(names)}


# ----------------------------------------------------------------------------------------------
# Evaluation.


#: Mapper objective of the validation: energy, as the baselines' own mapping optimisers
#: (Eyeriss's RS optimisation minimises energy [eyeriss_isca2016]; the figures are energies).
OBJECTIVE = "energy"


def _run(wl, acc: Accelerator, search: str, stats=None, objective: str = OBJECTIVE
         ) -> report.AcceleratorResult:
  return report.evaluate_network(wl, {acc.name: acc}, search=search, objective=objective,
                                 activation_stats=stats).results[acc.name]


def _dram_bits(r: report.AcceleratorResult) -> float:
  return sum(a.bits_read + a.bits_written for c in r.layers for a in c.accesses
             if a.level == "dram")


def _onchip_pj(r: report.AcceleratorResult) -> float:
  return r.energy_pj - r.energy["dram"]


def eyeriss_chip_figures(network: str, search: str = "default", acc: Accelerator | None = None
                         ) -> dict[str, float]:
  """``fps``, ``power_mw``, ``dram_mb_per_batch`` of the JSSC chip model on ``network``."""
  key, batch, zeros = {"alexnet": ("alexnet_krizhevsky2012", 4, ALEXNET_ZERO_IFMAPS),
                       "vgg16": ("vgg16_simonyan2015", 3, None)}[network]
  wl = workload.paper_workload(key, batch, conv_only=True)
  r = _run(wl, acc or eyeriss.jssc2017(), search, activation_stats(wl, zeros))
  return {"fps": batch / r.latency_s, "power_mw": _onchip_pj(r) / r.latency_s * 1e-9,
          "dram_mb_per_batch": _dram_bits(r) / 8 / 1e6}


def bitfusion_figures(network: str, search: str = "default") -> dict[str, float]:
  """Bit Fusion (artifact) vs the artifact's Eyeriss on ``network`` (per image, batch 16)."""
  bf_key, ey_key, bits = {"alexnet": ("alexnet_wrpn_bitfusion", "alexnet_krizhevsky2012", 4),
                          "resnet18": ("resnet18_wrpn_bitfusion", "resnet18_bitfusion", 4),
                          "lenet5": ("lenet5_bitfusion", "lenet5_bitfusion", 2)}[network]
  b = _run(workload.paper_workload(bf_key, 16),
           bitfusion.isca2018(bits=bits, layer_bits=bitfusion.ARTIFACT_LAYER_BITS[network]),
           search)
  # The artifact chooses each layer's schedule by cycles, then energy (optimizer.py).
  e = _run(workload.paper_workload(ey_key, 16), eyeriss.bitfusion2018(), search,
           objective="latency")
  return {"speedup_vs_eyeriss": e.latency_s / b.latency_s,
          "energy_reduction_vs_eyeriss": e.energy_pj / b.energy_pj}


_IMAGENET = {"alexnet": "alexnet_krizhevsky2012", "vgg16": "vgg16_simonyan2015"}


def _imagenet_workload(network: str, batch: int = 1) -> workload.Workload:
  if network in _IMAGENET:
    return workload.paper_workload(_IMAGENET[network], batch)
  return workload.model_workload(network, "imagenet", batch)


def olaccel_figures(network: str, search: str = "default", **ol_kw) -> dict[str, float]:
  """OLAccel's energy saving against ZeNA-16 and ZeNA-8 on ``network`` (%)."""
  wl = _imagenet_workload(network)
  zeros = ALEXNET_ZERO_IFMAPS if network == "alexnet" else None
  stats = activation_stats(wl, zeros)
  ctl = {k: ol_kw.pop(k) for k in ("control_pj_per_mac",) if k in ol_kw}
  o = _run(wl, olaccel.isca2018(**ol_kw, **ctl), search, stats)
  z16 = _run(wl, zena.olaccel2018(bits=16, **ctl), search, stats)
  z8 = _run(wl, zena.olaccel2018(bits=8, **ctl), search, stats)
  return {"energy_saving_vs_zena16_pct": 100 * (1 - o.energy_pj / z16.energy_pj),
          "energy_saving_vs_zena8_pct": 100 * (1 - o.energy_pj / z8.energy_pj)}


def wax_figures(network: str, search: str = "default") -> dict[str, float]:
  """WAX vs Eyeriss on ``network`` (x-factors)."""
  wl = _imagenet_workload(network)
  stats = activation_stats(wl)
  w = _run(wl, wax.micro2019(), search, stats)
  e = _run(wl, wax.eyeriss_micro2019(), search, stats)
  return {"speedup_vs_eyeriss": e.latency_s / w.latency_s,
          "energy_reduction_vs_eyeriss": e.energy_pj / w.energy_pj}


_EVALUATORS: Mapping[str, Callable[..., dict[str, float]]] = {
    "eyeriss": eyeriss_chip_figures, "bitfusion": bitfusion_figures,
    "olaccel": olaccel_figures, "wax": wax_figures}


def select(designs: Iterable[str] | None = None, networks: Iterable[str] | None = None
           ) -> list[Figure]:
  """The figures of ``designs`` x ``networks`` (all when ``None``)."""
  d = set(designs) if designs else None
  n = set(networks) if networks else None
  return [f for f in FIGURES if (d is None or f.design in d) and (n is None or f.network in n)]


def evaluate(figures: Sequence[Figure], search: str = "default",
             progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
  """The records ``{design, network, figure, unit, model, published, role, setting, source}``."""
  cache: dict[tuple[str, str], dict[str, float]] = {}
  out = []
  for f in figures:
    if (f.design, f.network) not in cache:
      if progress:
        progress(f"{f.design} / {f.network}")
      cache[(f.design, f.network)] = _EVALUATORS[f.design](f.network, search)
    out.append({"design": f.design, "network": f.network, "figure": f.figure, "unit": f.unit,
                "model": float(cache[(f.design, f.network)][f.figure]),
                "published": float(f.published), "role": f.role, "setting": f.setting,
                "source": f.source})
  return out


def format_records(records: Sequence[Mapping[str, Any]]) -> str:
  """A text table of the records with the ratio model / published."""
  lines = [f"{'design':<10} {'network':<9} {'figure':<30} {'model':>10} {'published':>10} "
           f"{'ratio':>6}  role"]
  lines.append("-" * len(lines[0]))
  for r in records:
    ratio = r["model"] / r["published"] if r["published"] else float("nan")
    lines.append(f"{r['design']:<10} {r['network']:<9} {r['figure']:<30} {r['model']:>10.4g} "
                 f"{r['published']:>10.4g} {ratio:>6.2f}  {r['role']}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Calibration.


def _published(design: str, network: str, figure: str) -> Figure:
  return next(f for f in FIGURES if (f.design, f.network, f.figure) == (design, network, figure))


def calibrate(search: str = "default", progress: Callable[[str], None] | None = None
              ) -> dict[str, float]:
  """Re-derives the free parameters from the calibration figures only.

  * ``eyeriss.CHIP_RAMP_SERIAL_FRACTION`` from AlexNet's 34.7 fps: the fraction of global-buffer
    transfer time added serially, found by bisection in [0, 1] (0 if the model is already
    slower than measured at 0);
  * ``eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE`` from AlexNet's 278 mW: the energy per core cycle
    that makes the model's chip power (DRAM excluded) equal to it, at that latency;
  * ``olaccel.SKIP_CONTROL_PJ_PER_MAC`` from OLAccel's AlexNet savings against ZeNA-16 and
    ZeNA-8 (43.5% and 27.0%): least squares over both (a per-executed-MAC energy common to the
    three zero-skipping designs leaves every mapping unchanged, so each design's energy is
    linear in it).

  Returns:
    ``{parameter name: value}``.
  """
  out: dict[str, float] = {}
  say = progress or (lambda s: None)
  say("eyeriss / alexnet (calibration)")
  wl = workload.paper_workload("alexnet_krizhevsky2012", 4, conv_only=True)
  stats = activation_stats(wl, ALEXNET_ZERO_IFMAPS)
  target_fps = _published("eyeriss", "alexnet", "fps").published

  target_w = _published("eyeriss", "alexnet", "power_mw").published * 1e-3
  overhead = 0.0
  # The overhead enters the mapper's energy objective, so ramp and overhead are iterated to a
  # fixed point (three rounds suffice: the mappings stop changing).
  for _ in range(3):

    def chip(ramp, ov=overhead):
      return _run(wl, eyeriss.jssc2017(overhead_pj_per_cycle=ov, ramp=ramp), search, stats)

    lo, hi = 0.0, 1.0
    r = chip(0.0)
    if 4 / r.latency_s > target_fps:
      for _ in range(12):
        mid = 0.5 * (lo + hi)
        if 4 / chip(mid).latency_s > target_fps:
          lo = mid
        else:
          hi = mid
      r = chip(lo)
    own = _onchip_pj(r) - overhead * r.cycles
    overhead = max(0.0, (target_w * r.latency_s * 1e12 - own) / r.cycles)
  out["eyeriss.CHIP_RAMP_SERIAL_FRACTION"] = lo
  out["eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE"] = overhead

  say("olaccel / alexnet (calibration)")
  wl = _imagenet_workload("alexnet")
  stats = activation_stats(wl, ALEXNET_ZERO_IFMAPS)
  e_ol = _run(wl, olaccel.isca2018(control_pj_per_mac=0.0), search, stats).energy_pj
  e16 = _run(wl, zena.olaccel2018(bits=16, control_pj_per_mac=0.0), search, stats).energy_pj
  e8 = _run(wl, zena.olaccel2018(bits=8, control_pj_per_mac=0.0), search, stats).energy_pj
  m_eff = sum(l.total_macs * stats[l.name].act_density for l in wl.layers)
  s16 = _published("olaccel", "alexnet", "energy_saving_vs_zena16_pct").published
  s8 = _published("olaccel", "alexnet", "energy_saving_vs_zena8_pct").published

  def err(ctl):
    a = 100 * (1 - (e_ol + ctl * m_eff) / (e16 + ctl * m_eff)) - s16
    b = 100 * (1 - (e_ol + ctl * m_eff) / (e8 + ctl * m_eff)) - s8
    return a * a + b * b

  lo, hi = 0.0, 100.0
  for _ in range(200):      # golden-section search on the unimodal error
    m1, m2 = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
    if err(m1) < err(m2):
      hi = m2
    else:
      lo = m1
  out["olaccel.SKIP_CONTROL_PJ_PER_MAC"] = 0.5 * (lo + hi)
  return out
