"""Writes the quantized model of a run finished before ``quantized_model.safetensors`` existed.

    python -m ebsp_jax.train.export_run --workdir=runs/main [--data_dir=DIR]

The run's final checkpoint is restored and verified as on resume (``ebsp_jax.train.load_run``:
checksums, the run's data), and :func:`ebsp_jax.train.export_model.write` writes the file as
the trainer does at the end of a run. An unfinished run, a missing or corrupt checkpoint or
other data are refused with one line (exit status 2).
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Optional, Sequence

from ebsp_jax import cli
from ebsp_jax.train import export_model
from ebsp_jax.train.checkpoint import CheckpointError
from ebsp_jax.train.reload import load_run


def export_run(workdir: str, data_dir: Optional[str] = None) -> str:
  """Writes the quantized model of a finished run from its final checkpoint; returns the path.

  Raises:
    ValueError: the run is not finished, or is float-only (one line).
    CheckpointError: no checkpoint, a corrupt one, or other data than the run's (one line).
  """
  exp, state = load_run(workdir, data_dir=data_dir, stream=io.StringIO())
  if state.phase != "done":
    raise ValueError(f"{workdir}: the run is not finished (its latest checkpoint is at step "
                     f"{int(state.step)}, phase '{state.phase}'): finish it first")
  if not export_model.has_quantized_model(exp.cfg):
    raise ValueError(f"{workdir}: the run trained no ADMM or fine-tuning phase, so its "
                     "activations were never calibrated and it has no quantized model "
                     "(post-training quantization: --ptq)")
  return export_model.write(exp, state)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line (see the module docstring); exit status 0, or 2 after one error line."""
  parser = argparse.ArgumentParser(
      prog="python -m ebsp_jax.train.export_run",
      description=f"Writes {export_model.FILE_NAME} of a finished training run from its final "
                  "checkpoint.")
  parser.add_argument("--workdir", required=True, help="the run's --workdir")
  parser.add_argument("--data_dir", default=None,
                      help="its dataset directory, if not the dataset's default")
  args = parser.parse_args(argv)
  try:
    path = export_run(args.workdir, args.data_dir)
  except (ValueError, OSError, CheckpointError) as e:
    cli.fail(cli.one_line(e))
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
