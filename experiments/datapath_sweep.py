"""Integer-mode accuracy of trained runs under other datapath settings (no retraining).

    python experiments/datapath_sweep.py --workdirs='runs/fmnist/seed*/6b_L3' \\
        --acc_bits=14,16,18,20,32 --overflows=wrap,saturate \\
        --modes=exact,dual_lod:truncate,dual_lod:round --output=sweep.json

For every workdir (glob patterns allowed) the run's latest checkpoint is reloaded read-only
(``ebsp_jax.train.load_run``) and its integer mode is evaluated on the run's evaluation split for
every combination of accumulator width, overflow policy and datapath mode (``dual_lod``: the
activation is also cut to the pattern's ``length`` significant bits, by truncation or
rounding, and the LUT holds constant mantissa products; see ``ebsp_jax.arith``). Prints one
table row per (model, weight format, setting): top-1 mean ± std over the runs (seeds), the
paired difference to the exact 32-bit datapath, and the accumulator outputs that overflowed per
image. ``--output`` gets every measurement as JSON. Errors print one line and exit with 2.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Training workdirs (glob patterns allowed).")
flags.DEFINE_list("acc_bits", ["32"], "Accumulator widths to evaluate (2..32).")
flags.DEFINE_list("overflows", ["wrap"], "Overflow policies: wrap, saturate.")
flags.DEFINE_list("modes", ["exact"], "Datapath modes: exact, dual_lod:truncate, dual_lod:round.")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: the dataset's own).")
flags.DEFINE_string("output", None, "Write every measurement here (JSON).")

EXACT = ("exact", "truncate", 32, "wrap")


def _settings(acc_bits: Sequence[str], overflows: Sequence[str], modes: Sequence[str]
              ) -> List[Tuple[str, str, int, str]]:
  """``(mode, rounding, acc_bits, overflow)`` combinations, the exact 32-bit one first."""
  bits = []
  for b in acc_bits:
    try:
      bits.append(int(b))
    except ValueError:
      raise ValueError(f"--acc_bits: {b!r} is not an integer") from None
  parsed = []
  for m in modes:
    mode, _, rounding = m.partition(":")
    if mode == "exact" and not rounding:
      parsed.append(("exact", "truncate"))
    elif mode == "dual_lod" and rounding in ("truncate", "round"):
      parsed.append((mode, rounding))
    else:
      raise ValueError(f"--modes: {m!r} is not one of exact, dual_lod:truncate, dual_lod:round")
  for o in overflows:
    if o not in ("wrap", "saturate"):
      raise ValueError(f"--overflows: {o!r} is not one of wrap, saturate")
  out = [EXACT]
  for mode, rounding in parsed:
    for b in bits:
      for o in overflows:
        if (mode, rounding, b, o) not in out:
          out.append((mode, rounding, b, o))
  return out


def _label(s: Tuple[str, str, int, str]) -> str:
  mode, rounding, bits, overflow = s
  m = "exact" if mode == "exact" else f"dual-LOD ({rounding})"
  return f"{m}, {bits}-bit acc, {overflow}"


def sweep(workdirs: Sequence[str], settings, data_dir=None, log=print) -> List[Dict[str, Any]]:
  """One row per (workdir, setting): top-1, overflow count, evaluated examples."""
  from ebsp_jax.train import load_run  # pylint: disable=import-outside-toplevel
  rows = []
  for wd in workdirs:
    exp, state = load_run(wd, data_dir=data_dir)
    if state.phase != "done":
      raise ValueError(f"{wd}: the run is not finished (phase '{state.phase}')")
    if not exp.cfg.activation_bits:
      raise ValueError(f"{wd}: float activations (activation_bits=0): no integer mode")
    n = sum(len(b["label"]) for b in exp.data.eval_batches())
    for s in settings:
      mode, rounding, bits, overflow = s
      t = time.time()
      top1, _, over = exp.integer_eval(state, mode=mode, rounding=rounding, acc_bits=bits,
                                       overflow=overflow)
      rows.append(dict(workdir=wd, model=exp.cfg.model, pattern=str(exp.cfg.pattern),
                       seed=exp.cfg.seed, activation_bits=exp.cfg.activation_bits, mode=mode,
                       rounding=rounding, acc_bits=bits, overflow=overflow, top1=top1,
                       overflows=over, examples=n))
      log(f"{wd}: {_label(s)}: top1 {100 * top1:.2f}, {over} overflows "
          f"({time.time() - t:.1f} s)")
  return rows


def table(rows: Sequence[Dict[str, Any]]) -> str:
  """Markdown: per (model, format, setting) top-1 over seeds and the paired change vs exact."""
  from ebsp_jax.train.summarize import _pm, stat  # pylint: disable=import-outside-toplevel
  exact = {(r["workdir"]): r["top1"] for r in rows
           if (r["mode"], r["rounding"], r["acc_bits"], r["overflow"]) == EXACT}
  groups: Dict[Tuple, List[Dict[str, Any]]] = {}
  for r in rows:
    key = (r["model"], r["pattern"], r["mode"], r["rounding"], r["acc_bits"], r["overflow"])
    groups.setdefault(key, []).append(r)
  lines = ["| model | weights | datapath | top-1 (%) | change vs exact 32-bit (pp) | "
           "overflows / image | runs |", "|---|---|---|---|---|---|---|"]
  for key, rs in groups.items():
    model, pattern = key[:2]
    d = stat([r["top1"] - exact[r["workdir"]] for r in rs])
    per_image = sum(r["overflows"] for r in rs) / sum(r["examples"] for r in rs)
    lines.append(f"| {model} | {pattern} | {_label(key[2:])} | {_pm(stat([r['top1'] for r in rs]))}"
                 f" | {_pm(d, signed=True)} | {per_image:.3g} | {len(rs)} |")
  return "\n".join(lines)


def main(argv):
  logging.set_verbosity(logging.WARNING)   # orbax logs every restore at INFO
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  try:
    if not FLAGS.workdirs:
      raise ValueError("--workdirs is required (training workdirs, glob patterns allowed)")
    workdirs = []
    for pat in FLAGS.workdirs:
      found = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
      if not found:
        raise ValueError(f"--workdirs: {pat!r} matches nothing")
      workdirs += [w for w in found if w not in workdirs]
    settings = _settings(FLAGS.acc_bits, FLAGS.overflows, FLAGS.modes)
    rows = sweep(workdirs, settings, FLAGS.data_dir)
  except Exception as e:  # noqa: BLE001 - one line for the user, exit 2
    if not isinstance(e, (ValueError, OSError)) and type(e).__name__ != "CheckpointError":
      raise
    print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
    return 2
  print(table(rows))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"settings": [list(s) for s in settings], "rows": rows}, f, indent=1)
  return 0


if __name__ == "__main__":
  app.run(main)
