"""The package's import structure: its layers, no import cycle, no library import of a test.

* The layers contract in ``pyproject.toml`` (``[tool.importlinter]``), checked by ``lint-imports``
  (import-linter): a package imports only from the layers below it.
* No import cycle among the library modules, and no library module imports a test module
  (``*_test``, ``testing``, ``_test_strategies``, ``reference_testing``: ``setup.py`` leaves them
  out of the wheel). Both are checked on grimp's import graph (function-local imports count),
  with the test modules taken out of it: tests may import across layers (their one upward
  import is listed in the contract).

Each check is also run on a copy of the package with a planted violation, so that it is seen
to fail.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List

import grimp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _test_only_patterns() -> List[str]:
  """``setup.py``'s ``TEST_ONLY`` file patterns (the modules left out of the wheel)."""
  with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["TEST_ONLY"]:
      return [p.removesuffix(".py") for p in ast.literal_eval(node.value)]
  raise AssertionError("setup.py defines no TEST_ONLY")


def is_test_module(module: str) -> bool:
  return any(fnmatch.fnmatch(module.rsplit(".", 1)[-1], p) for p in _test_only_patterns())


def library_violations() -> Dict[str, List[str]]:
  """``{'cycles': [...], 'test_imports': [...]}`` of the ``ebsp_jax`` found on ``sys.path``.

  ``cycles``: library imports ``a -> b`` where ``b`` leads back to ``a``; ``test_imports``:
  library modules' imports of test modules.
  """
  graph = grimp.build_graph("ebsp_jax", cache_dir=None)
  tests = {m for m in graph.modules if is_test_module(m)}
  test_imports = sorted(f"{m} -> {t}" for m in graph.modules - tests
                        for t in graph.find_modules_directly_imported_by(m) & tests)
  for m in tests:
    graph.remove_module(m)
  cycles = sorted(f"{a} -> {b}" for a in graph.modules
                  for b in graph.find_modules_directly_imported_by(a)
                  if graph.find_shortest_chain(importer=b, imported=a) is not None)
  return {"cycles": cycles, "test_imports": test_imports}


def _lint_imports(cwd: str) -> subprocess.CompletedProcess:
  assert os.path.exists(LINT_IMPORTS), (f"{LINT_IMPORTS} not found: pip install -r "
                                        "requirements-dev.txt (import-linter)")
  return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                        timeout=300, check=False)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """A copy of the package and its ``pyproject.toml`` with three planted violations."""
  root = tmp_path_factory.mktemp("planted")
  shutil.copy(os.path.join(ROOT, "pyproject.toml"), root / "pyproject.toml")
  shutil.copy(os.path.join(ROOT, "setup.py"), root / "setup.py")
  shutil.copytree(os.path.join(ROOT, "ebsp_jax"), root / "ebsp_jax",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
  plants = {
      # numerics is below arith: an upward import.
      "ebsp_jax/numerics/stats.py": "from ebsp_jax.arith import wide as _planted_upward\n",
      # a cycle inside one package: config -> dispatch already.
      "ebsp_jax/arith/dispatch.py": "from ebsp_jax.arith import config as _planted_cycle\n",
      # a library module importing a test helper.
      "ebsp_jax/quant/calibration.py": "from ebsp_jax.quant import testing as _planted_test\n",
  }
  for path, line in plants.items():
    with open(root / path, "a", encoding="utf-8") as f:
      f.write(line)
  return root


def test_layers_contract_is_kept():
  r = _lint_imports(ROOT)
  assert r.returncode == 0, r.stdout + r.stderr
  assert "ebsp_jax layers (a package imports only from the layers below it) KEPT" in r.stdout
  assert " kept, 0 broken." in r.stdout, r.stdout


def test_library_has_no_cycle_and_imports_no_test():
  assert library_violations() == {"cycles": [], "test_imports": []}


def test_planted_upward_import_breaks_the_contract(planted):
  r = _lint_imports(str(planted))
  assert r.returncode == 1, r.stdout + r.stderr
  assert "ebsp_jax.numerics is not allowed to import ebsp_jax.arith" in r.stdout, r.stdout
  assert "ebsp_jax.numerics.stats -> ebsp_jax.arith.wide" in r.stdout, r.stdout


def test_planted_cycle_and_test_import_are_found(planted):
  env = dict(os.environ, PYTHONPATH=str(planted))
  r = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=str(planted), env=env,
                     capture_output=True, text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stdout + r.stderr
  found = json.loads(r.stdout)
  assert {"ebsp_jax.arith.dispatch -> ebsp_jax.arith.config",
          "ebsp_jax.arith.config -> ebsp_jax.arith.dispatch"} <= set(found["cycles"])
  assert found["test_imports"] == ["ebsp_jax.quant.calibration -> ebsp_jax.quant.testing"]


if __name__ == "__main__":
  # The checks on the ebsp_jax that PYTHONPATH finds (the planted copy), as JSON.
  print(json.dumps(library_violations()))
