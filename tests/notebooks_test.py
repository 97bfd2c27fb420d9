"""The tutorial notebooks: jupytext sources in sync with their executed ``.ipynb``, and executed.

Every ``notebooks/NN_name.py`` (jupytext percent format) is the source of a notebook; its pair
``notebooks/NN_name.ipynb`` holds the same cells plus the outputs of a full run, so a reader sees
every figure without running anything (``notebooks/README.md``). The fast checks here compare
the pairs (inputs only: outputs, execution counts and cell ids are ignored) and check that every
stored notebook was executed without errors; the execution test runs each source top to bottom
on small budgets (``EBSP_NOTEBOOK_FAST=1``).

The kernel is ``python3`` started with this interpreter: jupyter_client replaces the kernelspec's
``python`` by ``sys.executable``, so the notebooks run in the same virtual environment as pytest
(checked by :func:`test_kernel_is_this_interpreter`).

Regenerate the stored outputs (full budgets; minutes per notebook on 2 CPU cores)::

    .venv/bin/python tests/notebooks_test.py --write              # every notebook
    .venv/bin/python tests/notebooks_test.py --write notebooks/03_hardware.py

Run one notebook on the small budgets and see its outputs and timings::

    .venv/bin/python tests/notebooks_test.py --fast notebooks/01_bit_sparsity_patterns.py
"""

from __future__ import annotations

import ast
import glob
import importlib
import os
import sys
import time
from datetime import datetime

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "notebooks")
# Every notebooks/*.py is a notebook source (a new one joins every check below by existing).
SOURCES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(NB_DIR, "*.py")))
FORMATS = "ipynb,py:percent"
CELL_TIMEOUT_S = 900
# Sources whose small-budget run takes more than ~15 s run only with `-m slow`; the default suite
# still checks their names (test_source_uses_only_existing_names) and stored outputs. Measured on
# the 2 shared cores under load, 2026-12-06: 01 74 s, 02 123 s, 03 22 s then 60 s (hardware model
# rework), 04 68 s. A new notebook runs in the default suite unless listed here.
SLOW = {"01_bit_sparsity_patterns.py", "02_admm_training.py", "03_hardware.py", "04_ptq.py",
        "05_search.py"}
REGENERATE = ".venv/bin/python tests/notebooks_test.py --write"


def ipynb_of(source: str) -> str:
  return os.path.splitext(source)[0] + ".ipynb"


def _inputs(nb) -> list[tuple[str, str, tuple]]:
  """What a pair must agree on: each cell's type, source and tags."""
  return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def execute(nb, fast: bool = True, timeout: int = CELL_TIMEOUT_S, tmpdir: str | None = None):
  """Runs notebook ``nb`` in place in a fresh kernel; returns (seconds, cell seconds).

  The kernel starts in the repository root and inherits the environment:
  ``EBSP_NOTEBOOK_FAST`` selects the budgets and ``TMPDIR`` (when ``tmpdir`` is given) receives
  the files the notebooks write.
  """
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
  return elapsed, _cell_seconds(nb)


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


def test_notebook_sources_exist():
  assert {"01_bit_sparsity_patterns.py", "02_admm_training.py", "03_hardware.py"} <= set(SOURCES)


def test_every_ipynb_has_a_source():
  orphans = [os.path.basename(p) for p in glob.glob(os.path.join(NB_DIR, "*.ipynb"))
             if not os.path.exists(os.path.splitext(p)[0] + ".py")]
  assert not orphans, f"notebooks without a jupytext source: {orphans}"


@pytest.mark.parametrize("source", SOURCES)
def test_pair_in_sync(source):
  """The .py and its .ipynb have the same cells (outputs ignored) and are paired."""
  ipynb = ipynb_of(source)
  assert os.path.exists(os.path.join(NB_DIR, ipynb)), (
      f"notebooks/{ipynb} is missing: run `.venv/bin/jupytext --sync notebooks/{source}`")
  py_nb = jupytext.read(os.path.join(NB_DIR, source), fmt="py:percent")
  ipynb_nb = nbformat.read(os.path.join(NB_DIR, ipynb), as_version=4)
  nbformat.validate(ipynb_nb)
  for name, nb in ((source, py_nb), (ipynb, ipynb_nb)):
    assert nb.metadata.get("jupytext", {}).get("formats") == FORMATS, (
        f"{name} is not paired: its jupytext metadata must say formats: {FORMATS}")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[-1].cell_type == "markdown", name
  assert _inputs(py_nb) == _inputs(ipynb_nb), (
      f"notebooks/{source} and notebooks/{ipynb} differ: after editing the .py run "
      f"`.venv/bin/jupytext --sync notebooks/{source}`, then `{REGENERATE} notebooks/{source}`")


@pytest.mark.parametrize("source", SOURCES)
def test_stored_notebook_is_executed(source):
  """Every code cell of the stored .ipynb ran, in order, without an error; figures are kept."""
  nb = nbformat.read(os.path.join(NB_DIR, ipynb_of(source)), as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  counts = [c.execution_count for c in code]
  hint = f"run `{REGENERATE} notebooks/{source}`"
  assert counts == list(range(1, len(code) + 1)), f"{source}: not executed top to bottom ({hint})"
  errors = [o for c in code for o in c.outputs if o.output_type == "error"]
  assert not errors, f"{source}: stored outputs contain errors ({hint})"
  assert "Traceback" not in _text_outputs(nb)
  images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
  draws = sum("plt." in c.source or "plot_" in c.source for c in code)
  assert images >= 1 or draws == 0, f"{source}: draws figures but stores none ({hint})"


def _missing_names(tree: ast.AST) -> list[str]:
  """``ebsp_jax`` names the code imports or reads (``alias.attr``) that do not exist."""
  modules, missing = {}, []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split(".")[0] == "ebsp_jax":
          mod = importlib.import_module(a.name)
          modules[a.asname or a.name.split(".")[0]] = mod if a.asname else sys.modules["ebsp_jax"]
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ebsp_jax":
      mod = importlib.import_module(node.module)
      for a in node.names:
        if not hasattr(mod, a.name):
          try:
            value = importlib.import_module(f"{node.module}.{a.name}")
          except ModuleNotFoundError:
            missing.append(f"from {node.module} import {a.name}")
            continue
        else:
          value = getattr(mod, a.name)
        if isinstance(value, type(sys)):
          modules[a.asname or a.name] = value
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in modules and not hasattr(modules[node.value.id], node.attr)):
      missing.append(f"{node.value.id}.{node.attr} ({modules[node.value.id].__name__})")
  return sorted(set(missing))


@pytest.mark.parametrize("source", SOURCES)
def test_source_uses_only_existing_names(source):
  """A renamed or removed library name fails here, in the default suite, without running the
  notebook: every ``ebsp_jax`` import and every ``module.attribute`` read on an imported
  ``ebsp_jax`` module must exist."""
  with open(os.path.join(NB_DIR, source), encoding="utf-8") as f:
    tree = ast.parse(f.read(), source)   # jupytext comments out magics: the source is Python
  assert not _missing_names(tree), f"{source} uses names that do not exist: {_missing_names(tree)}"


def test_name_check_finds_a_missing_name():
  tree = ast.parse("from ebsp_jax import numerics, BitPattern\n"
                   "from ebsp_jax.numerics import no_such_function\n"
                   "numerics.BitPattern, numerics.renamed_away\n")
  assert _missing_names(tree) == ["from ebsp_jax.numerics import no_such_function",
                                  "numerics.renamed_away (ebsp_jax.numerics)"]


def test_kernel_is_this_interpreter():
  nb = nbformat.v4.new_notebook()
  nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
  nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
  printed = nb.cells[0].outputs[0]["text"].strip()
  assert os.path.realpath(printed) == os.path.realpath(sys.executable)


@pytest.mark.parametrize("source", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s
                                    for s in SOURCES])
def test_notebook_runs(source, tmp_path):
  """The .py source runs top to bottom on the small budgets."""
  nb = jupytext.read(os.path.join(NB_DIR, source), fmt="py:percent")
  elapsed, cells = execute(nb, tmpdir=str(tmp_path))
  slowest = sorted(cells, key=lambda c: -c[1])[:3]
  print(f"{source}: {elapsed:.1f} s; slowest cells " +
        ", ".join(f"#{i} {s:.1f} s" for i, s in slowest))
  assert "Traceback" not in _text_outputs(nb)


def write_executed(source: str, fast: bool = False) -> float:
  """Executes ``source`` (a notebooks/*.py) and stores the outputs in its paired .ipynb."""
  nb = jupytext.read(source, fmt="py:percent")
  elapsed, _ = execute(nb, fast=fast)
  for i, cell in enumerate(nb.cells):
    cell.metadata.pop("execution", None)  # timestamps: a diff on every run
    cell.id = f"cell-{i:02d}"             # stable ids: no diff where nothing changed
  jupytext.write(nb, ipynb_of(source), fmt="ipynb")
  return elapsed


if __name__ == "__main__":
  import argparse
  parser = argparse.ArgumentParser(
      description="Execute notebook sources: print their outputs and timings, or (--write) store "
      "the outputs of a full run in the paired .ipynb.")
  parser.add_argument("sources", nargs="*", metavar="notebooks/NN_name.py",
                      help="notebook sources (default: every notebooks/*.py)")
  parser.add_argument("--write", action="store_true",
                      help="store the outputs in each source's paired .ipynb")
  parser.add_argument("--fast", action="store_true", help="small budgets (EBSP_NOTEBOOK_FAST=1)")
  args = parser.parse_args()
  sources = args.sources or [os.path.join(NB_DIR, s) for s in SOURCES]
  for path in sources:
    if not path.endswith(".py") or not os.path.exists(path):
      parser.error(f"{path}: not a notebook source (expected an existing notebooks/*.py)")
  for path in sources:
    if args.write:
      seconds = write_executed(path, fast=args.fast)
      print(f"wrote {ipynb_of(path)} ({seconds:.0f} s)", flush=True)
    else:
      nb = jupytext.read(path, fmt="py:percent")
      seconds, cells = execute(nb, fast=args.fast)
      print(_text_outputs(nb))
      print(f"{path}: total {seconds:.1f} s; cells: " +
            ", ".join(f"#{i} {s:.1f}s" for i, s in cells))
