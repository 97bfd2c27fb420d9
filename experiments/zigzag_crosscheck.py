"""Cross-check of the hardware model against ZigZag 3.9.1, per layer and per network.

    nice -n 10 python experiments/zigzag_crosscheck.py --output=docs/results/zigzag/crosscheck.json

Two checks (what each one validates and what it does not: ``docs/hardware.md`` section 7):

1. **Same design, same mapping.** Every conv/dense layer shape of ``--networks`` (identical
   shapes are evaluated once) on every design of ``--designs`` (the equal-area designs of
   ``experiments/hardware.py``, built by ``ebsp_jax.hw.build_accelerator``), mapped by this
   model's mapper (``--objective``/``--search``, the report's defaults), is exported to ZigZag
   with the same memories, per-access energies and mapping (``ebsp_jax.hw.zigzag_export``)
   and evaluated by ZigZag. Both sides count on the design reduced to what ZigZag can be given
   (``zigzag_export.exportable``: no sliding windows, serial transfers, cycle factor, ...), so
   the ratios check the access counting; the effect of what was left out is recorded
   separately (``ours_full``: the same mapping on the whole design). On-chip memory energy,
   DRAM energy, MAC energy and cycles are compared *separately* (ratio ZigZag / ours), per
   layer and in total (layers x repeats). ZigZag's cycles are given twice: with one port per
   operand on the shared buffers (a banked buffer, the local model's assumption) and with one
   shared port (a single-ported SRAM).
2. **ZigZag's own hardware** (``--own_hardware``, e.g. its ``eyeriss_like`` example, costs
   unmodified): ZigZag searches its own mapping; this model evaluates that mapping on the same
   architecture (``zigzag_export.accelerator_from_zigzag``: ZigZag's per-access energies) and
   the elements moved per memory level, operand and direction are compared, with energies.

Prints one line per evaluation (progress) and summary tables; writes ``--output`` (JSON:
``settings``, ``designs``, ``records`` (per shape x design), ``totals`` (per network x
design), ``own_hardware``, ``elapsed_s``). Bad flags print one line and exit with 2 before any
work.
"""

from __future__ import annotations

import dataclasses
import datetime
from importlib import metadata
import json
import math
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from ebsp_jax import cli  # noqa: E402
from ebsp_jax import models  # noqa: E402
from ebsp_jax.hw import (ACCELERATORS, ConfigError, Workload, build_accelerator,  # noqa: E402
                         dataflow, evaluate_network, workload)
from ebsp_jax.hw import zigzag_export as ze  # noqa: E402
from ebsp_jax.hw.report import SEARCH_PRESETS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Write the cross-check JSON here (required).")
flags.DEFINE_list("networks", ["resnet18", "resnet50"], "Registered model names (ImageNet shape).")
flags.DEFINE_list("designs", ["eyeriss", "bitfusion", "wax", "olaccel", "ebsp"],
                  "Designs (ebsp_jax.hw.ACCELERATORS).")
flags.DEFINE_integer("max_layers", 0, "Distinct layer shapes per network (0: all).")
flags.DEFINE_enum("objective", "edp", ["energy", "latency", "edp"], "Mapper objective.")
flags.DEFINE_enum("search", "default", ["fast", "default", "thorough"], "Mapper effort.")
flags.DEFINE_list("own_hardware", ["eyeriss_like"],
                  "ZigZag example architectures to run as shipped (empty: skip).")
flags.DEFINE_integer("own_lpf_limit", 6, "LOMA loop-prime-factor limit of ZigZag's own search.")

#: Relative difference below which two element counts are reported as equal.
COUNT_TOLERANCE = 0.01


def check_flags() -> None:
  """Every flag checked before any work (ValueError: one line)."""
  if not FLAGS.output:
    raise ValueError("--output is required (the JSON file to write)")
  cli.check_output_path(FLAGS.output)
  if not FLAGS.networks:
    raise ValueError("--networks is empty; give registered model names, e.g. resnet18,resnet50")
  known = sorted(models.MODELS)
  for n in FLAGS.networks:
    if n not in known:
      raise ValueError(f"--networks: unknown model {n!r}; known: {', '.join(known)}")
  if not FLAGS.designs:
    raise ValueError(f"--designs is empty; allowed: {', '.join(ACCELERATORS)}")
  for d in FLAGS.designs:
    if d not in ACCELERATORS:
      raise ValueError(f"--designs: unknown design {d!r}; allowed: {', '.join(ACCELERATORS)}")
  if len(set(FLAGS.designs)) != len(FLAGS.designs) or len(set(FLAGS.networks)) != len(
      FLAGS.networks):
    raise ValueError("--designs and --networks must not repeat a name")
  if FLAGS.max_layers < 0:
    raise ValueError(f"--max_layers must be >= 0 (0: all); got {FLAGS.max_layers}")
  if FLAGS.own_lpf_limit < 1:
    raise ValueError(f"--own_lpf_limit must be >= 1; got {FLAGS.own_lpf_limit}")
  if not ze.zigzag_available():
    raise ValueError("zigzag-dse is not installed (pip install zigzag-dse==3.9.1 six)")
  for h in FLAGS.own_hardware:
    ze.shipped_hardware(h)   # raises with the known names


# ----------------------------------------------------------------------------------------------
# Layers.


def unique_layers(networks, max_layers: int):
  """``(shapes, uses)``: distinct layer shapes in first-seen order, and per network the list
  ``(layer name, shape index, repeat)`` of its layers whose shape is kept (with
  ``max_layers``, the layers of its first ``max_layers`` distinct shapes; totals then cover
  those layers only)."""
  shapes, index, uses = [], {}, {}
  for net in networks:
    wl = workload.model_workload(net, "imagenet")
    mine = set()
    uses[net] = []
    for layer in wl.layers:
      sig = layer.signature()
      if sig not in mine:
        if max_layers and len(mine) >= max_layers:
          continue
        mine.add(sig)
      if sig not in index:
        index[sig] = len(shapes)
        shapes.append(layer)
      uses[net].append((layer.name, index[sig], layer.repeat))
  return shapes, uses


def _shape_text(l) -> str:
  t = f"{l.m}x{l.c}x{l.r}x{l.s}@{l.p}x{l.q}"
  if l.stride != (1, 1):
    t += f"/s{l.stride[0]}"
  return t


# ----------------------------------------------------------------------------------------------
# Check 1: our designs.


def _quantities(acc, cost) -> dict:
  """On-chip memory, DRAM and MAC energy (pJ) and cycles of ``cost`` (as ``ze.compare``)."""
  return dict(ze.split_energy(acc, cost.level_energy), mac_pj=cost.energy["compute"],
              cycles=cost.cycles)


def same_mapping_records(shapes, accs, log):
  """Per (shape, design): ours vs ZigZag with the same mapping, on the design reduced to what
  ZigZag is given; and ours on the whole design (``ours_full``)."""
  records = []
  for name, full in accs.items():
    t0 = time.time()
    acc = ze.exportable(full)
    wl = Workload("crosscheck", (1, 224, 224, 3), tuple(shapes))
    fulls = evaluate_network(wl, {name: full}, dataset="imagenet", objective=FLAGS.objective,
                             search=FLAGS.search).results[name].layers
    log(f"[{name}] mapped {len(shapes)} shapes in {time.time() - t0:.1f}s")
    for i, (layer, full_cost) in enumerate(zip(shapes, fulls)):
      t1 = time.time()
      rec = {"shape": i, "layer": layer.name, "dims": _shape_text(layer), "design": name,
             "macs": layer.macs, "mapping": repr(full_cost.mapping), "bound": full_cost.bound,
             "mapping_source": "report"}
      try:
        try:
          cost = dataflow.evaluate_mapping(layer, acc, full_cost.mapping)
          z = ze.run_zigzag(layer, acc, cost.mapping, ports="per_operand")
        except Exception as e:  # pylint: disable=broad-except  # recorded, then a fallback
          if not acc.mapping_generator:
            raise
          # A design's own schedules (Eyeriss's row-stationary chunks) may pad a loop in time
          # (C = 12 x 43 for 512), which ZigZag 3.9.1's temporal mapping cannot express: the
          # shape is compared on the generic mapper's best mapping instead (recorded).
          rec["zigzag_rejected"] = f"{type(e).__name__}: {cli.one_line(e)}"
          lpf, refine, starts = SEARCH_PRESETS[FLAGS.search]
          generic = dataclasses.replace(full, mapping_generator="")
          full_cost = dataflow.best_mapping(layer, generic, objective=FLAGS.objective,
                                            lpf_limit=lpf, refine=refine, refine_starts=starts)
          rec.update(mapping=repr(full_cost.mapping), bound=full_cost.bound,
                     mapping_source="generic mapper (the report's mapping is not expressible "
                                    "in ZigZag)")
          cost = dataflow.evaluate_mapping(layer, acc, full_cost.mapping)
          z = ze.run_zigzag(layer, acc, cost.mapping, ports="per_operand")
        zs = ze.run_zigzag(layer, acc, cost.mapping, ports="shared")
      except Exception as e:  # pylint: disable=broad-except  # recorded and reported, not hidden
        rec["error"] = f"{type(e).__name__}: {cli.one_line(e)}"
        records.append(rec)
        log(f"  {name:9s} {layer.name:28s} ZigZag failed: {rec['error']}")
        continue
      c = ze.compare(cost, z, acc)
      rec.update(ours=c["ours"], zigzag=c["zigzag"], ratio=c["ratio"],
                 ours_full=_quantities(full, full_cost),
                 zigzag_cycle_parts={k: z[k] for k in ("ideal_temporal_cycles", "stall_cycles",
                                                       "onloading_cycles", "offloading_cycles")},
                 zigzag_shared_port_cycles=zs["latency_cycles"],
                 zigzag_shared_port_stall_cycles=zs["stall_cycles"],
                 ours_compute_cycles=cost.compute_cycles, cycle_factor=full.cycle_factor,
                 ours_level_pj=dict(cost.level_energy),
                 zigzag_level_pj=dict(z["mem_energy_by_level"]),
                 accesses=ze.access_table(cost, z))
      rec["counts_differing"] = sum(1 for row in rec["accesses"] for d in ze.DIRECTIONS
                                    if _differs(row["ours"][d], row["zigzag"][d]))
      rec["zigzag_stall_by_port"] = z["stall_by_port"]
      records.append(rec)
      r = c["ratio"]
      log(f"  {name:9s} {i + 1:3d}/{len(shapes)} {layer.name:28s} {rec['dims']:22s} "
          f"on-chip {r['onchip_pj']:.3f} DRAM {r['dram_pj']:.3f} MAC {r['mac_pj']:.3f} "
          f"cycles {r['cycles']:.3f} (shared port "
          f"{zs['latency_cycles'] / cost.cycles:.3f}) [{time.time() - t1:.1f}s]"
          + (" (generic mapping)" if "zigzag_rejected" in rec else ""))
  return records


def count_summary(records, designs):
  """Per design: (level, operand, direction) element counts, ours vs ZigZag's, over all
  shapes: how many differ by more than :data:`COUNT_TOLERANCE`, and the largest deviation."""
  out = {}
  for d in designs:
    n = bad = 0
    worst = None
    for rec in records:
      if rec["design"] != d or "error" in rec:
        continue
      for row in rec["accesses"]:
        for k in ze.DIRECTIONS:
          a, b = row["ours"][k], row["zigzag"][k]
          if not (a or b):
            continue
          n += 1
          if _differs(a, b):
            bad += 1
            dev = abs(math.log(b / a)) if a and b else math.inf
            if worst is None or dev > worst[0]:
              worst = (dev, {"layer": rec["layer"], "dims": rec["dims"], "level": row["level"],
                             "operand": row["operand"], "direction": k, "ours": a, "zigzag": b})
    out[d] = {"counts": n, "differing": bad, "worst": worst[1] if worst else None}
  return out


def totals(records, uses, designs):
  """Per network x design: sums over the network's layers (x repeat) and ratios."""
  by = {(r["shape"], r["design"]): r for r in records}
  out = {}
  for net, layers in uses.items():
    out[net] = {}
    for d in designs:
      ours = {q: 0.0 for q in ze.QUANTITIES}
      theirs = {q: 0.0 for q in ze.QUANTITIES}
      whole = {q: 0.0 for q in ze.QUANTITIES}
      shared = 0.0
      missing = []
      per_layer = {q: [] for q in ze.QUANTITIES}
      for lname, shape, rep in layers:
        r = by.get((shape, d))
        if r is None or "error" in r:
          missing.append(lname)
          continue
        for q in ze.QUANTITIES:
          ours[q] += r["ours"][q] * rep
          theirs[q] += r["zigzag"][q] * rep
          whole[q] += r["ours_full"][q] * rep
          per_layer[q].append(r["ratio"][q])
        shared += r["zigzag_shared_port_cycles"] * rep
      out[net][d] = {
          "layers": len(layers) - len(missing), "missing": missing, "ours": ours,
          "zigzag": theirs,
          "ratio": {q: theirs[q] / ours[q] if ours[q] else math.nan for q in ze.QUANTITIES},
          "ratio_range": {q: [min(v), max(v)] if v else None for q, v in per_layer.items()},
          "zigzag_shared_port_cycles": shared,
          "ratio_shared_port_cycles": shared / ours["cycles"] if ours["cycles"] else math.nan,
          # What ZigZag is not given (zigzag_export.unexported), its effect on our totals.
          "ours_full": whole,
          "full_over_exported": {q: whole[q] / ours[q] if ours[q] else math.nan
                                 for q in ze.QUANTITIES}}
  return out


# ----------------------------------------------------------------------------------------------
# Check 2: ZigZag's own hardware.


def own_hardware_records(shapes, hw_name, log):
  """ZigZag's own search on its shipped architecture vs this model on the same mapping."""
  hw, mp = ze.shipped_hardware(hw_name)
  acc = ze.accelerator_from_zigzag(hw)
  recs = []
  for i, layer in enumerate(shapes):
    t1 = time.time()
    rec = {"shape": i, "layer": layer.name, "dims": _shape_text(layer)}
    try:
      z = ze.run_zigzag(layer, acc, hardware=hw, zigzag_mapping=mp, lpf_limit=FLAGS.own_lpf_limit)
      cost = dataflow.evaluate_mapping(layer, acc, z["mapping"])
    except Exception as e:  # pylint: disable=broad-except  # recorded and reported
      rec["error"] = f"{type(e).__name__}: {cli.one_line(e)}"
      recs.append(rec)
      log(f"  {hw_name} {layer.name:28s} failed: {rec['error']}")
      continue
    rows = ze.access_table(cost, z)
    c = ze.compare(cost, z, acc)
    rec.update(mapping=repr(z["mapping"]), accesses=rows, ours=c["ours"], zigzag=c["zigzag"],
               ratio=c["ratio"], ours_level_pj=dict(cost.level_energy),
               zigzag_level_pj=dict(z["mem_energy_by_level"]))
    n_diff = sum(1 for r in rows for d in ze.DIRECTIONS
                 if _differs(r["ours"][d], r["zigzag"][d]))
    rec["counts_differing"] = n_diff
    recs.append(rec)
    log(f"  {hw_name} {i + 1:3d}/{len(shapes)} {layer.name:28s} {rec['dims']:22s} "
        f"counts differing >{COUNT_TOLERANCE:.0%}: {n_diff:2d}/{len(rows) * 4} "
        f"on-chip {c['ratio']['onchip_pj']:.3f} DRAM {c['ratio']['dram_pj']:.3f} "
        f"[{time.time() - t1:.1f}s]")
  return {"hardware": hw_name, "precision": dict(ze.ZIGZAG_DEFAULT_PRECISION),
          "levels": [dataclasses.asdict(m) for m in acc.levels], "records": recs}


def _clean(x):
  """JSON-safe and compact: floats to 7 significant digits, non-finite ones to None (strict
  JSON has no Infinity/NaN)."""
  if isinstance(x, float):
    return float(f"{x:.7g}") if math.isfinite(x) else None
  if isinstance(x, dict):
    return {str(k): _clean(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  return x


def _differs(a: float, b: float) -> bool:
  if a == b:
    return False
  return abs(a - b) > COUNT_TOLERANCE * max(abs(a), abs(b))


def own_summary(own):
  """Per (level, operand, direction): elements summed over layers, ours vs ZigZag."""
  agg = {}
  for rec in own["records"]:
    for r in rec.get("accesses", []):
      for d in ze.DIRECTIONS:
        key = (r["level"], r["operand"], d)
        a = agg.setdefault(key, [0.0, 0.0, 0])
        a[0] += r["ours"][d]
        a[1] += r["zigzag"][d]
        a[2] += _differs(r["ours"][d], r["zigzag"][d])
  return [{"level": k[0], "operand": k[1], "direction": k[2], "ours": v[0], "zigzag": v[1],
           "layers_differing": v[2]} for k, v in agg.items() if v[0] or v[1]]


# ----------------------------------------------------------------------------------------------
# Tables.


def totals_table(tot) -> str:
  lines = ["ZigZag / ours, network totals (layers x repeats); per-layer min-max in brackets;",
           "last two columns: ours on the whole design / on what ZigZag is given (energy of "
           "memories + MACs, cycles)",
           f"{'network':9s} {'design':9s} {'on-chip mem':>22s} {'DRAM':>22s} {'MAC':>7s} "
           f"{'cycles':>22s} {'cycles, 1 shared port':>21s} {'full E':>7s} {'full cyc':>8s}"]
  for net, ds in tot.items():
    for d, t in ds.items():
      if not t["layers"]:
        lines.append(f"{net:9s} {d:9s} (no layer evaluated)")
        continue
      cells = []
      for q in ("onchip_pj", "dram_pj"):
        lo, hi = t["ratio_range"][q]
        cells.append(f"{t['ratio'][q]:6.3f} [{lo:5.2f}-{hi:5.2f}]")
      lo, hi = t["ratio_range"]["cycles"]
      energy = [sum(t[k][q] for q in ("onchip_pj", "dram_pj", "mac_pj"))
                for k in ("ours_full", "ours")]
      lines.append(f"{net:9s} {d:9s} {cells[0]:>22s} {cells[1]:>22s} {t['ratio']['mac_pj']:7.3f} "
                   f"{t['ratio']['cycles']:6.3f} [{lo:5.2f}-{hi:5.2f}]"
                   f"{t['ratio_shared_port_cycles']:>21.3f}"
                   f"{energy[0] / energy[1]:>8.3f}{t['full_over_exported']['cycles']:>9.3f}"
                   + (f"  missing {len(t['missing'])}" if t["missing"] else ""))
  return "\n".join(lines)


def own_table(own, summary) -> str:
  lines = [f"ZigZag's own {own['hardware']} (its costs and its mapping search): elements moved,"
           f" summed over {len(own['records'])} shapes",
           f"{'level':10s} {'op':2s} {'direction':9s} {'ours':>12s} {'ZigZag':>12s} "
           f"{'ratio':>7s} {'shapes differing':>16s}"]
  for r in summary:
    ratio = r["zigzag"] / r["ours"] if r["ours"] else math.inf
    lines.append(f"{r['level']:10s} {r['operand']:2s} {r['direction']:9s} {r['ours']:12.4g} "
                 f"{r['zigzag']:12.4g} {ratio:7.3f} {r['layers_differing']:16d}")
  return "\n".join(lines)


def source_state() -> dict:
  """The commit this ran from and the modified files of the model (None outside git)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "ebsp_jax/hw",
                            "experiments/zigzag_crosscheck.py"], capture_output=True, text=True,
                           check=True).stdout.split("\n")
  except (OSError, subprocess.CalledProcessError):
    return {"commit": None, "modified": None}
  return {"commit": commit, "modified": [l[3:] for l in dirty if l.strip()]}


def run() -> None:
  check_flags()
  start = time.time()

  def log(msg):
    print(msg, flush=True)

  shapes, uses = unique_layers(FLAGS.networks, FLAGS.max_layers)
  log(f"{len(shapes)} distinct layer shapes in {', '.join(FLAGS.networks)} "
      f"({', '.join(f'{n}: {len(u)} layers' for n, u in uses.items())})")
  accs = {d: build_accelerator(d) for d in FLAGS.designs}
  records = same_mapping_records(shapes, accs, log)
  tot = totals(records, uses, FLAGS.designs)
  counts = count_summary(records, FLAGS.designs)
  own = []
  for h in FLAGS.own_hardware:
    log(f"ZigZag's own {h}: its mapping search (lpf_limit={FLAGS.own_lpf_limit}) on each shape")
    o = own_hardware_records(shapes, h, log)
    o["summary"] = own_summary(o)
    own.append(o)
  elapsed = time.time() - start
  print()
  print(totals_table(tot))
  print(f"\nElement counts (level x operand x direction, non-zero), ours vs ZigZag, all shapes:")
  for d, c in counts.items():
    w = c["worst"]
    print(f"  {d:9s} {c['differing']:4d}/{c['counts']} differ by >{COUNT_TOLERANCE:.0%}"
          + (f"; largest: {w['level']} {w['operand']} {w['direction']} ours {w['ours']:.4g} "
             f"ZigZag {w['zigzag']:.4g} ({w['layer']} {w['dims']})" if w else ""))
  for d, a in accs.items():
    if ze.unexported(a):
      print(f"  not given to ZigZag for {d}: {'; '.join(ze.unexported(a))}")
  for o in own:
    print()
    print(own_table(o, o["summary"]))
  fallback = [r for r in records if "zigzag_rejected" in r]
  if fallback:
    print(f"\n{len(fallback)} shapes compared on the generic mapper's mapping (the report's is "
          "not expressible in ZigZag): " + ", ".join(f"{r['design']} {r['layer']}"
                                                     for r in fallback))
  errors = [r for r in records if "error" in r] + [r for o in own for r in o["records"]
                                                   if "error" in r]
  print(f"\n{len(records)} evaluations, {len(errors)} failed; {elapsed:.0f} s")
  result = {
      "command": " ".join(["python", "experiments/zigzag_crosscheck.py"] + sys.argv[1:]),
      "date": datetime.date.today().isoformat(),
      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
      "source": source_state(),
      "zigzag_version": metadata.version("zigzag-dse"),
      "settings": {"networks": FLAGS.networks, "designs": FLAGS.designs,
                   "max_layers": FLAGS.max_layers, "objective": FLAGS.objective,
                   "search": FLAGS.search, "own_hardware": FLAGS.own_hardware,
                   "own_lpf_limit": FLAGS.own_lpf_limit},
      "designs": {d: {"array": list(a.array), "label": a.label, "cycle_factor": a.cycle_factor,
                      "levels": [m.name for m in a.levels],
                      "not_given_to_zigzag": ze.unexported(a)} for d, a in accs.items()},
      "shapes": [{"shape": i, "layer": l.name, "dims": _shape_text(l), "macs": l.macs}
                 for i, l in enumerate(shapes)],
      "uses": {n: [list(u) for u in us] for n, us in uses.items()},
      "records": records, "totals": tot, "counts": counts, "own_hardware": own,
      "elapsed_s": elapsed,
  }
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  with open(FLAGS.output, "w", encoding="utf-8") as f:
    json.dump(_clean(result), f, separators=(",", ":"), allow_nan=False)
  print(f"wrote {FLAGS.output}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    run()
  except (ConfigError, ValueError, FileNotFoundError) as e:
    cli.fail(cli.one_line(e))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
