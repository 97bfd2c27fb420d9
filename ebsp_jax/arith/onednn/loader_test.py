"""The kernel cache loads only a library this user built; anything else is a logged fallback.

Each case plants a shared library at the exact cache path in a fresh ``EBSP_JAX_CACHE`` and
runs a fresh Python process (the loader caches its verdict per process): the planted
library's constructor would write a marker file if it were ever loaded. The process must
finish without a traceback and compute the right integer product (through oneDNN or, on
fallback, XLA's ops).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ebsp_jax.arith import onednn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
  const char* p = getenv("EBSP_PLANTED_MARKER");
  if (p) { FILE* f = fopen(p, "w"); if (f) { fputs("constructor ran", f); fclose(f); } }
}
int not_a_gemm(void) { return 1; }
"""

SCRIPT = r"""
import logging
import numpy as np
logging.basicConfig(level=logging.WARNING)
from ebsp_jax import arith
from ebsp_jax.arith import onednn
from ebsp_jax.numerics import BitPattern
print("STATUS", onednn.status())
a = np.arange(12, dtype=np.uint8).reshape(3, 4)
w = np.array([[1, 2], [3, 4], [5, 6], [7, -8]], np.int32)
out = arith.dot_general(a, w, (((1,), (0,)), ((), ())), pattern=BitPattern(6, 3))
print("OUT", np.asarray(out).tolist())
"""
# The same product in NumPy int64.
WANT = "OUT " + str((np.arange(12).reshape(3, 4)
                     @ np.array([[1, 2], [3, 4], [5, 6], [7, -8]])).tolist())

needs_kernel = pytest.mark.skipif(onednn.library_path() is None or
                                  not sys.platform.startswith("linux"),
                                  reason="oneDNN wheel not installed")


def _compile_planted(tmp_path) -> str:
  src = tmp_path / "planted.c"
  src.write_text(PLANTED_C)
  so = str(tmp_path / "planted.so")
  subprocess.run([os.environ.get("CXX", "g++"), "-x", "c", "-shared", "-fPIC", str(src), "-o",
                  so], check=True, capture_output=True)
  return so


def _plant(tmp_path, cache, mode: int, record: str = None):
  """Copies the planted library to the cache path (``record``: also a ``.sha256``)."""
  os.makedirs(cache, exist_ok=True)
  os.chmod(cache, mode)
  env = dict(os.environ, EBSP_JAX_CACHE=str(cache))
  target = subprocess.run([sys.executable, "-c", "from ebsp_jax.arith import onednn; "
                           "print(onednn.cache_path())"], env=env, capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout.strip()
  assert os.path.dirname(target) == str(cache)
  with open(_compile_planted(tmp_path), "rb") as f:
    data = f.read()
  with open(target, "wb") as f:
    f.write(data)
  if record is not None:
    with open(target + ".sha256", "w") as f:
      f.write(record)
  return target


def _run(cache, marker, must_not_load: bool = True):
  env = dict(os.environ, EBSP_JAX_CACHE=str(cache), EBSP_PLANTED_MARKER=str(marker),
             JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                     cwd=ROOT, timeout=600)
  assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
  assert WANT in r.stdout, r.stdout
  if must_not_load:
    assert not os.path.exists(marker), "the planted library was loaded"
  status = [ln for ln in r.stdout.splitlines() if ln.startswith("STATUS ")][0][7:]
  return status, r.stderr


@needs_kernel
def test_shared_cache_directory_is_refused(tmp_path):
  """A group/world-writable cache directory (anyone could plant a library there): the kernel
  is unavailable, even with a forged matching record; XLA's ops compute the result."""
  cache, marker = tmp_path / "shared", tmp_path / "marker"
  so = _plant(tmp_path, cache, 0o777)
  with open(so + ".sha256", "w") as f:
    f.write(onednn._sha256(so))          # pylint: disable=protected-access
  status, err = _run(cache, marker)
  assert "writable by group or others (mode 0777)" in status
  assert "oneDNN int8 GEMM unavailable" in err          # the fallback is logged


@needs_kernel
def test_planted_library_without_a_valid_record_is_rebuilt(tmp_path):
  """A private cache: a library without a build record, or whose record does not match, is
  rebuilt in place before anything is loaded."""
  cache, marker = tmp_path / "private", tmp_path / "marker"
  for record in (None, "0" * 64):
    so = _plant(tmp_path, cache, 0o700, record=record)
    planted = onednn._sha256(so)           # pylint: disable=protected-access
    status, err = _run(cache, marker)
    assert status == "None" and "rebuilding it" in err
    assert onednn.verify(so) is None and onednn._sha256(so) != planted  # pylint: disable=protected-access


@pytest.mark.slow
@needs_kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_library_of_another_user_is_rebuilt(tmp_path):
  """Another user's library with a matching record is not trusted (owner check)."""
  cache, marker = tmp_path / "private", tmp_path / "marker"
  so = _plant(tmp_path, cache, 0o700)
  with open(so + ".sha256", "w") as f:
    f.write(onednn._sha256(so))          # pylint: disable=protected-access
  os.chown(so, 65534, 65534)
  os.chown(so + ".sha256", 65534, 65534)
  assert "belongs to uid 65534" in onednn.verify(so)
  status, err = _run(cache, marker)
  assert status == "None" and "belongs to uid 65534" in err
  assert os.stat(so).st_uid == os.geteuid()


@needs_kernel
def test_trusted_library_without_the_handlers_is_a_logged_fallback(tmp_path):
  """A library that passes every check but lacks the FFI symbols (the AttributeError that
  used to escape): a one-line reason, a logged fallback, the right result."""
  cache, marker = tmp_path / "private", tmp_path / "marker"
  so = _plant(tmp_path, cache, 0o700)
  with open(so + ".sha256", "w") as f:
    f.write(onednn._sha256(so))          # pylint: disable=protected-access
  assert onednn.verify(so) is None        # "ours" by every check: it is loaded
  status, err = _run(cache, marker, must_not_load=False)
  assert os.path.exists(marker)
  assert status.startswith("AttributeError: ") and "EbspGemm" in status
  assert "oneDNN int8 GEMM unavailable" in err


def test_verify_reasons(tmp_path):
  """verify() names what is wrong: missing record, symbolic link, wrong mode."""
  d = tmp_path / "c"
  d.mkdir(mode=0o700)
  so = d / "x.so"
  so.write_bytes(b"\x7fELF")
  assert "no build record" in onednn.verify(str(so))
  (d / "x.so.sha256").write_text(onednn._sha256(str(so)))    # pylint: disable=protected-access
  assert onednn.verify(str(so)) is None
  so.chmod(0o666)
  assert "writable by group or others" in onednn.verify(str(so))
  so.chmod(0o600)
  link = d / "y.so"
  link.symlink_to(so)
  (d / "y.so.sha256").write_text(onednn._sha256(str(so)))    # pylint: disable=protected-access
  assert "symbolic link" in onednn.verify(str(link))
  so.write_bytes(b"\x7fELF changed")
  assert "does not match its recorded SHA-256" in onednn.verify(str(so))
