"""Assembles ``gpu_resnet50.json`` (issue 14) from the outputs of ``benchmarks/gpu_resnet50.sh``.

Not a benchmark itself: it reads what the stages of the device run wrote and writes one JSON
with the keys issue 14 asks for,

    device, date, jax, batch, integer_img_s, bf16_img_s, float32_img_s,
    integer_logits_equal_cpu, admm_step_ms, float_step_ms

plus where each came from: ``integer_case`` (the fastest integer variant, e.g.
``integer (fast, auto)``, whose images/s is ``integer_img_s``), every integer variant's
images/s, ``exactness`` (the device run of ``ebsp_jax/arith/fast_test.py``: passed/failed
counts from its JUnit XML), ``pallas`` (``summary`` of ``pallas_epilogue.json``), ``stages``
(each stage's exit status, from ``stages.txt``) and ``target_met`` (``integer_img_s >=
25000`` and identical logits). A value whose stage did not run or failed is ``null``, never a
guess.

Usage::

    python3 -m benchmarks.gpu_resnet50 --dir $OUT --network resnet50 --json $OUT/gpu_resnet50.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from typing import Any, Dict, Optional

TARGET_IMG_S = 25000.0


def _load(path: str) -> Optional[Any]:
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    print(f"[gpu_resnet50] unreadable {path}: {e}", file=sys.stderr)
    return None


def _junit(path: str) -> Optional[Dict[str, int]]:
  if not os.path.isfile(path):
    return None
  try:
    root = ET.parse(path).getroot()
  except (OSError, ET.ParseError) as e:
    print(f"[gpu_resnet50] unreadable {path}: {e}", file=sys.stderr)
    return None
  suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
  keys = ("tests", "failures", "errors", "skipped")
  total = {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
  total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
  return total


def _stages(path: str) -> Dict[str, Any]:
  """``stages.txt``: lines ``<stage> <exit status or 'skipped'> <seconds>``."""
  out: Dict[str, Any] = {}
  if not os.path.isfile(path):
    return out
  with open(path) as f:
    for line in f:
      parts = line.split()
      if len(parts) >= 2:
        rc = parts[1]
        out[parts[0]] = dict(rc=int(rc) if rc.lstrip("-").isdigit() else rc,
                             seconds=float(parts[2]) if len(parts) > 2 else None)
  return out


def assemble(directory: str, network: str = "resnet50") -> Dict[str, Any]:
  """The issue-14 record from the stage outputs in ``directory`` (missing parts: ``None``)."""
  arith = _load(os.path.join(directory, "arith_gpu.json")) or {}
  train = _load(os.path.join(directory, "train_step.json")) or {}
  pallas = _load(os.path.join(directory, "pallas_epilogue.json")) or {}
  rows = [r for r in arith.get("networks", []) if r.get("network") == network]
  by_case = {r["case"]: r for r in rows}
  integer = {c: r["images_per_s"] for c, r in by_case.items() if c.startswith("integer")}
  best = max(integer, key=integer.get) if integer else None
  equal = {r.get("integer_logits_equal_cpu") for r in rows}
  equal_cpu = None if not rows or equal == {None} else all(e is True for e in equal)

  def img_s(case):
    return by_case[case]["images_per_s"] if case in by_case else None

  rec = dict(
      device=arith.get("device") or train.get("device"),
      date=arith.get("date") or train.get("date"),
      jax=arith.get("jax_version") or train.get("jax"),
      batch=rows[0]["batch"] if rows else None,
      integer_img_s=integer.get(best) if best else None,
      bf16_img_s=img_s("bfloat16"),
      float32_img_s=img_s("float32"),
      integer_logits_equal_cpu=equal_cpu,
      admm_step_ms=train.get("admm_step_ms"),
      float_step_ms=train.get("float_step_ms"),
  )
  rec.update(
      network=network,
      integer_case=best,
      integer_variants_img_s=integer,
      train_step=dict((k, train.get(k)) for k in ("model", "batch", "admm_over_float",
                                                   "admm_step_mean_ms", "float_step_mean_ms",
                                                   "admm_img_s", "float_img_s"))
      if train else None,
      exactness=_junit(os.path.join(directory, "exactness.xml")),
      pallas=pallas.get("summary"),
      stages=_stages(os.path.join(directory, "stages.txt")),
  )
  rec["target_met"] = (None if rec["integer_img_s"] is None or equal_cpu is None else
                       bool(rec["integer_img_s"] >= TARGET_IMG_S and equal_cpu))
  return rec


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--dir", required=True, help="the output folder of gpu_resnet50.sh")
  ap.add_argument("--network", default="resnet50")
  ap.add_argument("--json", required=True, help="write the record here")
  args = ap.parse_args(argv)
  if not os.path.isdir(args.dir):
    ap.error(f"--dir={args.dir}: no such directory")
  rec = assemble(args.dir, args.network)
  with open(args.json, "w") as f:
    json.dump(rec, f, indent=2)
  print(json.dumps({k: rec[k] for k in list(rec)[:10] + ["integer_case", "exactness",
                                                          "target_met"]}, indent=1))
  print(f"wrote {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
