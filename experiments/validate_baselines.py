"""Each baseline of the EBSP comparison against the figures its own paper (or artifact) reports.

    python experiments/validate_baselines.py --output=validation.json

Prints a table (model, published, ratio model/published, role) and writes
``{"records": [{"design", "network", "figure", "unit", "model", "published", "role",
"setting", "source"}, ...]}``. ``role`` is ``"calibration"`` (a free parameter may be set from
the figure) or ``"held_out"`` (predicted). ``--calibrate`` re-derives the free parameters from
the calibration figures and compares them with the values stored in the design modules.
``--designs`` / ``--networks`` select a subset. The figures, settings, sources and the
calibration are in ``ebsp_jax/hw/validation.py``; results and discussion in
``docs/hardware.md``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from ebsp_jax import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Write {\"records\": [...]} here (JSON).")
flags.DEFINE_list("designs", [], "Only these designs (eyeriss, bitfusion, olaccel, wax).")
flags.DEFINE_list("networks", [], "Only these networks (alexnet, vgg16, resnet18, lenet5).")
flags.DEFINE_enum("search", "fast", ["fast", "default", "thorough"],
                  "Mapper effort of the generic search (Eyeriss and Bit Fusion use their own).")
flags.DEFINE_boolean("calibrate", False,
                     "Re-derive the free parameters from the calibration figures and compare "
                     "them with the stored values (no records are written).")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from ebsp_jax.hw import validation  # pylint: disable=import-outside-toplevel
  known_d = sorted({f.design for f in validation.FIGURES})
  known_n = sorted({f.network for f in validation.FIGURES})
  bad = [d for d in FLAGS.designs if d not in known_d]
  if bad:
    cli.fail(f"--designs: unknown {', '.join(bad)}; known: {', '.join(known_d)}")
  bad = [n for n in FLAGS.networks if n not in known_n]
  if bad:
    cli.fail(f"--networks: unknown {', '.join(bad)}; known: {', '.join(known_n)}")
  if FLAGS.calibrate and FLAGS.output:
    cli.fail("--calibrate writes no records: drop --output (or --calibrate)")
  if FLAGS.output:
    try:
      cli.check_output_path(FLAGS.output)
    except ValueError as e:
      cli.fail(cli.one_line(e))
  figures = validation.select(FLAGS.designs or None, FLAGS.networks or None)
  if not figures and not FLAGS.calibrate:
    cli.fail("no published figure for this selection of --designs and --networks")
  t0 = time.time()

  def progress(msg):
    print(f"[{time.time() - t0:6.1f} s] {msg}", flush=True)

  if FLAGS.calibrate:
    from ebsp_jax.hw.designs import eyeriss, olaccel  # pylint: disable=import-outside-toplevel
    stored = {"eyeriss.CHIP_RAMP_SERIAL_FRACTION": eyeriss.CHIP_RAMP_SERIAL_FRACTION,
              "eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE": eyeriss.CHIP_OVERHEAD_PJ_PER_CYCLE,
              "olaccel.SKIP_CONTROL_PJ_PER_MAC": olaccel.SKIP_CONTROL_PJ_PER_MAC}
    fitted = validation.calibrate(FLAGS.search, progress)
    for k, v in fitted.items():
      print(f"{k:<40} fitted {v:12.6g}   stored {stored[k]:12.6g}")
    return
  records = validation.evaluate(figures, FLAGS.search, progress)
  print(validation.format_records(records))
  print(f"{len(records)} figures in {time.time() - t0:.0f} s")
  for r in records:
    if not (math.isfinite(r["model"]) and math.isfinite(r["published"])):
      cli.fail(f"non-finite value in record {r['design']}/{r['network']}/{r['figure']}")
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w", encoding="utf-8") as f:
      json.dump({"records": records}, f, indent=1, allow_nan=False)
    print(f"records: {FLAGS.output}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
