"""Build hook: keeps tests and test-only helpers out of the wheel (the metadata is pyproject.toml).

Tests live beside the modules they test (``foo.py`` + ``foo_test.py``); setuptools ships every
module of a package, so ``build_py`` drops these names here. They stay in the repository and the
sdist; no library module imports them (``tests/packaging_test.py`` checks both).
"""

import fnmatch

from setuptools import setup
from setuptools.command.build_py import build_py

TEST_ONLY = ("*_test.py", "_test_strategies.py", "testing.py", "reference_testing.py")


def is_test_only(path: str) -> bool:
  name = path.replace("\\", "/").rsplit("/", 1)[-1]
  return any(fnmatch.fnmatch(name, pattern) for pattern in TEST_ONLY)


class BuildPyWithoutTests(build_py):
  """``build_py`` that skips :data:`TEST_ONLY` modules."""

  def find_package_modules(self, package, package_dir):
    modules = super().find_package_modules(package, package_dir)
    return [(pkg, mod, path) for pkg, mod, path in modules if not is_test_only(path)]


setup(cmdclass={"build_py": BuildPyWithoutTests})
