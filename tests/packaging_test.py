"""The package as users install it: wheel contents, declared dependencies against the pins.

Builds the wheel from a copy of the package files with the environment's setuptools (no build
isolation, nothing downloaded), as ``pip wheel --no-deps .`` does, and checks that it carries the
files the library reads at run time and none of the tests.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files the library opens at run time (the oneDNN kernel source is compiled on first use).
PACKAGE_DATA = ("ebsp_jax/arith/onednn/gemm.cc", "ebsp_jax/golden/FORMAT.md",
                "ebsp_jax/quant/README.md")
TEST_HELPERS = ("ebsp_jax/arith/_test_strategies.py", "ebsp_jax/numerics/reference_testing.py",
                "ebsp_jax/ptq/testing.py", "ebsp_jax/quant/testing.py",
                "ebsp_jax/train/testing.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """Names in the wheel built from a copy of the package files."""
  import setuptools  # pylint: disable=import-outside-toplevel
  major = int(setuptools.__version__.split(".")[0])
  assert major >= 77, (f"setuptools {setuptools.__version__} cannot build this project "
                       "(pyproject.toml needs >= 77: SPDX license); pin it in requirements-dev.txt")
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"
  src.mkdir()
  for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
    shutil.copy(os.path.join(ROOT, name), src / name)
  shutil.copytree(os.path.join(ROOT, "ebsp_jax"), src / "ebsp_jax",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
  out = tmp / "out"
  r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                      "--no-index", "-q", "-w", str(out), str(src)],
                     capture_output=True, text=True, timeout=300, check=False)
  assert r.returncode == 0, r.stdout + r.stderr
  (path,) = out.glob("ebsp_jax-*.whl")
  with zipfile.ZipFile(path) as z:
    return {"names": set(z.namelist()),
            "metadata": z.read(next(n for n in z.namelist()
                                    if n.endswith(".dist-info/METADATA"))).decode()}


def _source_files(python: bool) -> set[str]:
  """Paths (from the repository root) of the package's .py files, or of its other files."""
  out = set()
  for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, "ebsp_jax")):
    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    for f in filenames:
      if f.endswith((".pyc", ".so")) or f.endswith(".py") != python:
        continue
      out.add(os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/"))
  return out


def _source_modules() -> set[str]:
  return _source_files(python=True)


def test_wheel_has_package_data_and_license(wheel):
  names = wheel["names"]
  for f in PACKAGE_DATA:
    assert f in names, f"{f} missing from the wheel"
  data = _source_files(python=False)
  assert data - names == set(), (f"{sorted(data - names)} missing from the wheel: list them in "
                                 "pyproject.toml's [tool.setuptools.package-data]")
  assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
  assert "License-Expression: Apache-2.0" in wheel["metadata"]


def test_wheel_has_no_tests_but_every_library_module(wheel):
  names = wheel["names"]
  tests = sorted(n for n in names if n.endswith("_test.py") or n in TEST_HELPERS)
  assert not tests, f"tests in the wheel: {tests}"
  source = _source_modules()
  assert all(h in source for h in TEST_HELPERS), "TEST_HELPERS names a file that is gone"
  library = {m for m in source if not m.endswith("_test.py") and m not in TEST_HELPERS}
  assert library - names == set(), f"library modules missing from the wheel: {library - names}"
  assert {"ebsp_jax/__init__.py", "ebsp_jax/arith/onednn/__init__.py"} <= names


def test_wheel_modules_import_nothing_left_out(wheel):
  """A module of the wheel that imports a test helper would break every installed copy."""
  names = wheel["names"]
  left_out = {m[:-3].replace("/", ".") for m in _source_modules() - names}
  left_out |= {m.removesuffix(".__init__") for m in left_out}
  bad = []
  for m in sorted(n for n in names if n.endswith(".py")):
    with open(os.path.join(ROOT, m), encoding="utf-8") as f:
      tree = ast.parse(f.read(), m)
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      bad += [f"{m} imports {t}" for t in targets if t in left_out]
  assert not bad, bad


def test_metadata_declares_dependencies(wheel):
  requires = {canonicalize_name(Requirement(line.split(":", 1)[1].strip()).name)
              for line in wheel["metadata"].splitlines() if line.startswith("Requires-Dist:")}
  assert {"jax", "jaxlib", "flax", "optax", "chex", "numpy", "onednn-cpu-gomp"} <= requires


def _pins(path: str) -> dict[str, Requirement]:
  pins = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.split("#", 1)[0].strip()
      if line and not line.startswith("-r"):
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = req
  return pins


def _declared() -> tuple[dict[str, Requirement], dict[str, Requirement]]:
  """(dependencies, optional dependencies + build requirements) of pyproject.toml."""
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    toml = tomllib.load(f)
  project = toml["project"]
  core = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
  extras = {canonicalize_name(r.name): r
            for deps in [*project["optional-dependencies"].values(),
                         toml["build-system"]["requires"]]
            for r in map(Requirement, deps) if canonicalize_name(r.name) != "ebsp-jax"}
  return core, extras


@pytest.mark.parametrize("requirements, section", [("requirements.txt", "core"),
                                                   ("requirements-dev.txt", "extras")])
def test_every_pin_satisfies_the_declared_range(requirements, section):
  """requirements*.txt pin the tested set; pyproject.toml's ranges must contain it, both ways."""
  core, extras = _declared()
  declared = core if section == "core" else extras
  pins = _pins(os.path.join(ROOT, requirements))
  missing = sorted(set(pins) - set(core) - set(extras))
  assert not missing, f"pinned in {requirements} but not declared in pyproject.toml: {missing}"
  unpinned = sorted(set(declared) - set(pins) - {"setuptools"})
  assert not unpinned, f"declared in pyproject.toml but not pinned in {requirements}: {unpinned}"
  for name, pin in pins.items():
    (version,) = [s.version for s in pin.specifier if s.operator == "=="]
    spec = (core.get(name) or extras[name]).specifier
    assert spec.contains(version), f"{name}=={version} ({requirements}) is outside {spec}"
    assert (core.get(name) or extras[name]).marker == pin.marker, name
