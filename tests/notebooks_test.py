"""Executes every tutorial notebook top to bottom on small budgets (``EBSP_NOTEBOOK_FAST=1``).

The kernel is ``python3`` started with this interpreter: jupyter_client replaces the kernelspec's
``python`` by ``sys.executable``, so the notebooks run in the same virtual environment as pytest
(checked by :func:`test_kernel_is_this_interpreter`).

Run one notebook and see its timing::

    .venv/bin/python -m pytest tests/notebooks_test.py -q -k 01 --durations=0

or execute it by hand with full budgets::

    .venv/bin/python tests/notebooks_test.py notebooks/01_bit_sparsity_patterns.ipynb --full
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(f for f in os.listdir(NB_DIR) if f.endswith(".ipynb"))
CELL_TIMEOUT_S = 600


def execute(path: str, fast: bool = True, timeout: int = CELL_TIMEOUT_S, tmpdir: str | None = None):
  """Runs the notebook at ``path`` in a fresh kernel; returns (notebook, seconds, cell seconds).

  The kernel inherits the environment: ``EBSP_NOTEBOOK_FAST`` selects the budgets and
  ``TMPDIR`` (when ``tmpdir`` is given) receives the files the notebooks write.
  """
  nb = nbformat.read(path, as_version=4)
  env = {"EBSP_NOTEBOOK_FAST": "1" if fast else "0", "MPLBACKEND": "Agg"}
  if tmpdir:
    env["TMPDIR"] = tmpdir
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": ROOT}},
        record_timing=True)
    t = time.time()
    client.execute()
    elapsed = time.time() - t
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  return nb, elapsed, _cell_seconds(nb)


def _cell_seconds(nb):
  out = []
  for i, cell in enumerate(nb.cells):
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if cell.cell_type == "code" and start and end:
      parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
      out.append((i, (parse(end) - parse(start)).total_seconds()))
  return out


def _text_outputs(nb) -> str:
  chunks = []
  for cell in nb.cells:
    for o in cell.get("outputs", []):
      if o.get("output_type") == "stream":
        chunks.append(o.get("text", ""))
      elif "data" in o and "text/plain" in o["data"]:
        chunks.append(o["data"]["text/plain"])
  return "\n".join(chunks)


def test_notebooks_exist_and_are_stripped():
  assert {"01_bit_sparsity_patterns.ipynb", "02_admm_training.ipynb",
          "03_hardware.ipynb"} <= set(NOTEBOOKS)
  for name in NOTEBOOKS:
    nb = nbformat.read(os.path.join(NB_DIR, name), as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
      if cell.cell_type == "code":
        assert not cell.outputs and cell.execution_count is None, f"{name}: outputs not stripped"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[-1].cell_type == "markdown", name


def test_generator_is_in_sync():
  sys.path.insert(0, NB_DIR)
  try:
    import build_notebooks
  finally:
    sys.path.remove(NB_DIR)
  assert build_notebooks.main(["--check"]) == 0, "run notebooks/build_notebooks.py"


def test_kernel_is_this_interpreter():
  nb = nbformat.v4.new_notebook()
  nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
  nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
  printed = nb.cells[0].outputs[0]["text"].strip()
  assert os.path.realpath(printed) == os.path.realpath(sys.executable)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path):
  nb, elapsed, cells = execute(os.path.join(NB_DIR, name), tmpdir=str(tmp_path))
  slowest = sorted(cells, key=lambda c: -c[1])[:3]
  print(f"{name}: {elapsed:.1f} s; slowest cells " +
        ", ".join(f"#{i} {s:.1f} s" for i, s in slowest))
  assert "Traceback" not in _text_outputs(nb)


if __name__ == "__main__":
  import argparse
  parser = argparse.ArgumentParser(description="Execute a notebook, print outputs and timings.")
  parser.add_argument("path")
  parser.add_argument("--full", action="store_true", help="full budgets (EBSP_NOTEBOOK_FAST=0)")
  parser.add_argument("--save", help="write the executed notebook here")
  args = parser.parse_args()
  nb, elapsed, cells = execute(args.path, fast=not args.full)
  print(_text_outputs(nb))
  print(f"total {elapsed:.1f} s; cells: " + ", ".join(f"#{i} {s:.1f}s" for i, s in cells))
  if args.save:
    nbformat.write(nb, args.save)
