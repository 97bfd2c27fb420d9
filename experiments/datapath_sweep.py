"""Integer-mode accuracy of trained runs under other datapath settings (no retraining).

    python experiments/datapath_sweep.py --workdirs='runs/fmnist/seed*/6b_L3' \\
        --acc_bits=14,16,18,20,32 --overflows=wrap,saturate,clip \\
        --modes=exact,dual_lod:truncate,dual_lod:round --output=sweep.json

For every workdir (glob patterns allowed) the run's quantized model
(``quantized_model.safetensors``, ``docs/artifact.md``: the integer codes, scales, formats and
activation scales the run's integer mode uses) is read and its integer mode is evaluated on the
run's evaluation split (the run's data, checked as on resume by ``ebsp_jax.train.load_run``) for
every combination of accumulator width, overflow policy and datapath mode (``dual_lod``: the
activation is also cut to the pattern's ``length`` significant bits, by truncation or
rounding, and the LUT holds constant mantissa products; see ``ebsp_jax.arith``). Prints one
table row per (model, weight format, setting): top-1 mean ± std over the runs (seeds), the
paired difference to the exact 32-bit datapath, and the accumulator outputs that overflowed per
image (``--columns``: one row per format, one column per setting instead). ``--output`` gets
every measurement as JSON; ``--from_json`` prints the table of such files again. Errors print
one line and exit with 2; every option, the output path and every workdir (a finished run with
quantized activations) are checked before the first evaluation.

Overflow policies (``ebsp_jax.arith.dot_general``): ``wrap`` keeps the low ``acc_bits`` bits
of the exact sum; ``saturate`` is a register that clamps after every add, in the datapath's K
order (convolutions: kernel tap by tap, within a tap the input channels ascending), and its
"overflows" are the outputs whose register clamped at least once; ``clip`` clips the exact sum
once. Files written before ``saturate`` became the per-add register (no ``"format"`` key) had
``clip`` semantics under the name ``saturate``: ``--from_json`` reads their rows as ``clip``.
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

from ebsp_jax import cli, progress  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Training workdirs (glob patterns allowed).")
flags.DEFINE_list("acc_bits", ["32"], "Accumulator widths to evaluate (2..32, "
                  "ebsp_jax.arith.ACC_BITS_RANGE).")
flags.DEFINE_list("overflows", ["wrap"], "Overflow policies: wrap, saturate (register "
                  "clamping after every add, in K order), clip (the exact sum clipped once).")
flags.DEFINE_list("modes", ["exact"], "Datapath modes: exact, dual_lod:truncate, dual_lod:round.")
flags.DEFINE_string("data_dir", None, "Dataset directory (default: the dataset's own).")
flags.DEFINE_string("output", None, "Write every measurement here (JSON).")
flags.DEFINE_list("from_json", None, "Print the table of earlier --output files instead of "
                  "evaluating (no --workdirs then).")
flags.DEFINE_list("columns", None, "Compact table: one row per weight format, one column per "
                  "setting MODE:BITS:OVERFLOW[:ROUNDING] (e.g. exact:16:saturate, "
                  "dual_lod:32:wrap:round): paired change vs exact 32-bit, overflows per image.")

EXACT = ("exact", "truncate", 32, "wrap")
OVERFLOWS = ("wrap", "saturate", "clip")
# Version of the --output JSON; files without it are from before "saturate" was the per-add
# register (their "saturate" rows are "clip").
FORMAT = 2
ROW_KEYS = {"workdir": str, "model": str, "pattern": str, "mode": str, "rounding": str,
            "acc_bits": int, "overflow": str, "top1": float, "overflows": int,
            "examples": int}


def _acc_bits(flag: str, value: str) -> int:
  """``value`` as an accumulator width in ``ebsp_jax.arith``'s ``ACC_BITS_RANGE``."""
  from ebsp_jax.arith.config import ACC_BITS_RANGE  # pylint: disable=import-outside-toplevel
  try:
    bits = int(value)
  except ValueError:
    raise ValueError(f"{flag}: {value!r} is not an integer") from None
  lo, hi = ACC_BITS_RANGE
  if not lo <= bits <= hi:
    raise ValueError(f"{flag}: {bits} is out of range: accumulator widths are {lo}..{hi}")
  return bits


def _settings(acc_bits: Sequence[str], overflows: Sequence[str], modes: Sequence[str]
              ) -> List[Tuple[str, str, int, str]]:
  """``(mode, rounding, acc_bits, overflow)`` combinations, the exact 32-bit one first."""
  bits = [_acc_bits("--acc_bits", b) for b in acc_bits]
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
    if o not in OVERFLOWS:
      raise ValueError(f"--overflows: {o!r} is not one of {', '.join(OVERFLOWS)}")
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


def check_run(workdir: str) -> None:
  """Checks, from the checkpoint metadata and the quantized model only (no state, no data),
  that ``workdir`` holds a finished run with quantized activations whose
  ``quantized_model.safetensors`` is of its final step (``ValueError`` / ``CheckpointError``,
  one line; a missing file names the command that writes it)."""
  # pylint: disable=import-outside-toplevel
  from ebsp_jax.train import checkpoint as ckpt_lib
  from ebsp_jax.train.config import TrainConfig
  ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ValueError(f"{workdir}: holds no checkpoints/ (expected the --workdir of a training "
                     "run)")
  with ckpt_lib.Checkpointer(ckpt_dir, read_only=True) as ckpt:
    latest = ckpt.latest_id()
    if latest is None:
      raise ValueError(f"{workdir}: {ckpt_dir} holds no checkpoint")
    meta = ckpt.read_meta(latest)
  if meta.get("phase") != "done":
    raise ValueError(f"{workdir}: the run is not finished (phase '{meta.get('phase')}')")
  config = dict(meta.get("config", {}))
  try:
    cfg = TrainConfig(**config, workdir=workdir)
  except TypeError as e:
    raise ValueError(f"{workdir}: the recorded configuration does not fit this version's "
                     f"TrainConfig: {e}") from None
  if not cfg.activation_bits:
    raise ValueError(f"{workdir}: float activations (activation_bits=0): no integer mode")
  from ebsp_jax.train import export_model
  qm = export_model.read_run(workdir)
  if qm.source.get("step") != meta.get("step"):
    raise ValueError(f"{workdir}: its {export_model.FILE_NAME} is of step "
                     f"{qm.source.get('step')}, its final checkpoint of step {meta.get('step')}: "
                     f"rewrite it with {export_model.COMMAND.format(workdir=workdir)}")


def sweep(workdirs: Sequence[str], settings, data_dir=None, log=print) -> List[Dict[str, Any]]:
  """One row per (workdir, setting): top-1, overflow count, evaluated examples."""
  # pylint: disable=import-outside-toplevel
  from ebsp_jax.train import export_model, load_run
  rows = []
  with progress.bar(len(workdirs) * len(settings), desc="sweep", unit="point") as points:
    for wd in workdirs:
      exp, state = load_run(wd, data_dir=data_dir)     # the run's configuration and data
      qm = export_model.read_run(wd)                   # its integer model
      if state.phase != "done":
        raise ValueError(f"{wd}: the run is not finished (phase '{state.phase}')")
      if not exp.cfg.activation_bits:
        raise ValueError(f"{wd}: float activations (activation_bits=0): no integer mode")
      n = exp.data.info.num_eval
      for s in settings:
        mode, rounding, bits, overflow = s
        t = time.time()
        top1, _, over, _ = export_model.integer_eval(qm, exp.data.eval_batches(), mode=mode,
                                                     rounding=rounding, acc_bits=bits,
                                                     overflow=overflow)
        rows.append(dict(workdir=wd, model=exp.cfg.model, pattern=str(exp.cfg.pattern),
                         seed=exp.cfg.seed, activation_bits=exp.cfg.activation_bits, mode=mode,
                         rounding=rounding, acc_bits=bits, overflow=overflow, top1=top1,
                         overflows=over, examples=n))
        log(f"{wd}: {_label(s)}: top1 {100 * top1:.2f}, {over} overflows "
            f"({time.time() - t:.1f} s)")
        points.update(1)
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


def _column(spec: str) -> Tuple[str, str, int, str]:
  parts = spec.split(":")
  try:
    mode, bits, overflow = parts[0], int(parts[1]), parts[2]
    rounding = parts[3] if mode == "dual_lod" else "truncate"
  except (IndexError, ValueError):
    raise ValueError(f"--columns: {spec!r} is not MODE:BITS:OVERFLOW[:ROUNDING], e.g. "
                     "exact:16:saturate or dual_lod:32:wrap:round") from None
  if mode not in ("exact", "dual_lod"):
    raise ValueError(f"--columns: {spec!r}: the mode {mode!r} is not exact or dual_lod")
  if len(parts) != (4 if mode == "dual_lod" else 3):
    raise ValueError(f"--columns: {spec!r}: exact takes MODE:BITS:OVERFLOW, dual_lod also "
                     ":ROUNDING")
  _acc_bits(f"--columns: {spec!r}", parts[1])
  if overflow not in OVERFLOWS:
    raise ValueError(f"--columns: {spec!r}: the overflow {overflow!r} is not one of "
                     f"{', '.join(OVERFLOWS)}")
  if rounding not in ("truncate", "round"):
    raise ValueError(f"--columns: {spec!r}: the rounding {rounding!r} is not truncate or round")
  return (mode, rounding, bits, overflow)


def pivot_table(rows: Sequence[Dict[str, Any]], columns: Sequence[Tuple[str, str, int, str]]
                ) -> str:
  """Markdown: one row per (model, format): exact 32-bit top-1, then per setting the paired
  change (pp, mean ± std over runs) and the overflows per image where there were any."""
  from ebsp_jax.train.summarize import _pm, stat  # pylint: disable=import-outside-toplevel
  runs: Dict[Tuple[str, str], Dict[str, Dict[Tuple, Dict[str, Any]]]] = {}
  for r in rows:
    key = (r["mode"], r["rounding"], r["acc_bits"], r["overflow"])
    runs.setdefault((r["model"], r["pattern"]), {}).setdefault(r["workdir"], {})[key] = r
  lines = ["| model | weights | exact 32-bit top-1 (%) | "
           + " | ".join(_label(c) for c in columns) + " |", "|---" * (3 + len(columns)) + "|"]
  for (model, pattern), by_run in runs.items():
    cells = []
    for c in columns:
      got = [r for r in by_run.values() if c in r and EXACT in r]
      if not got:
        cells.append("—")
        continue
      d = stat([r[c]["top1"] - r[EXACT]["top1"] for r in got])
      over = sum(r[c]["overflows"] for r in got) / sum(r[c]["examples"] for r in got)
      cells.append(_pm(d, signed=True) + (f" ({over:.2g}/image)" if over else ""))
    base = stat([r[EXACT]["top1"] for r in by_run.values() if EXACT in r])
    lines.append(f"| {model} | {pattern} | {_pm(base)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def read_rows(path: str) -> List[Dict[str, Any]]:
  """The rows of an earlier ``--output`` file; a malformed one is a one-line ``ValueError``."""
  what = f"--from_json={path}"
  data = cli.load_json(path, what)
  rows = data.get("rows") if isinstance(data, dict) else None
  if not isinstance(rows, list):
    raise ValueError(f"{what}: not a datapath_sweep output (expected an object with a "
                     f"'rows' list)")
  legacy = "format" not in data
  out = []
  for i, r in enumerate(rows):
    if not isinstance(r, dict):
      raise ValueError(f"{what}: rows[{i}] is not an object")
    for key, typ in ROW_KEYS.items():
      v = r.get(key)
      ok = (isinstance(v, (int, float)) and not isinstance(v, bool) if typ is float else
            isinstance(v, typ) and not isinstance(v, bool))
      if not ok:
        raise ValueError(f"{what}: rows[{i}].{key} is missing or not a {typ.__name__} "
                         f"(got {v!r:.40})")
    if r["overflow"] not in OVERFLOWS:
      raise ValueError(f"{what}: rows[{i}].overflow {r['overflow']!r} is not one of "
                       f"{', '.join(OVERFLOWS)}")
    if legacy and r["overflow"] == "saturate":
      r = dict(r, overflow="clip")
    out.append(r)
  if legacy and any(r["overflow"] == "clip" for r in out):
    print(f"note: {path} predates the per-add saturating register: its 'saturate' rows are "
          f"read as 'clip' (the exact sum clipped once)", file=sys.stderr)
  return out


def check_output(path: str) -> None:
  """``--output``: a writable file path (not a directory) in an existing directory."""
  if os.path.isdir(path):
    raise ValueError(f"--output={path}: is a directory; give the path of a JSON file")
  out_dir = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(out_dir):
    raise ValueError(f"--output={path}: no such directory {out_dir}")
  if not os.access(out_dir, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
    raise ValueError(f"--output={path}: not writable")


def main(argv):
  logging.set_verbosity(logging.WARNING)   # orbax logs every restore at INFO
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    columns = [_column(c) for c in FLAGS.columns or []]
    if FLAGS.from_json:
      if FLAGS.workdirs:
        raise ValueError("--from_json prints earlier results: pass it without --workdirs")
      rows = []
      for path in FLAGS.from_json:
        rows += read_rows(path)
      print(pivot_table(rows, columns) if columns else table(rows))
      return 0
    if not FLAGS.workdirs:
      raise ValueError("--workdirs is required (training workdirs, glob patterns allowed)")
    workdirs = []
    for pat in FLAGS.workdirs:
      found = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else [pat]
      if not found:
        raise ValueError(f"--workdirs: {pat!r} matches nothing")
      workdirs += [w for w in found if w not in workdirs]
    settings = _settings(FLAGS.acc_bits, FLAGS.overflows, FLAGS.modes)
    if FLAGS.data_dir and not os.path.isdir(FLAGS.data_dir):
      raise ValueError(f"--data_dir={FLAGS.data_dir}: no such directory")
    if FLAGS.output:
      check_output(FLAGS.output)
    for wd in workdirs:     # every run, before the first (minutes-long) evaluation
      check_run(wd)
    rows = sweep(workdirs, settings, FLAGS.data_dir)
  except Exception as e:  # noqa: BLE001 - one line for the user, exit 2
    if not isinstance(e, (ValueError, OSError)) and type(e).__name__ != "CheckpointError":
      raise
    cli.fail(cli.one_line(e))
  print(pivot_table(rows, columns) if columns else table(rows))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump({"format": FORMAT, "settings": [list(s) for s in settings], "rows": rows}, f,
                indent=1)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
