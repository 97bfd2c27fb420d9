"""oneDNN's int8 GEMM as an XLA custom call: the CPU native op of ``accumulation="onednn"``.

XLA:CPU has no fast int8 matmul (its int8 -> int32 dot runs at 0.3-1.5x its float32 matmul on
the AMD EPYC here, it has no VNNI path), while oneDNN's ``dnnl_gemm_u8s8s32`` /
``dnnl_gemm_s8s8s32`` use the CPU's int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX):
3.3x XLA's float32 matmul in wall time and 3.8x per CPU-second at 1024³ on the 2 shared cores
here (``benchmarks/RESULTS.md``). This module compiles
``gemm.cc`` — two XLA FFI handlers that call those functions — once per machine into a cache
directory, registers them with ``jax.ffi`` and exposes :func:`gemm`.

Exactness. The handlers call oneDNN with ``alpha = 1``, ``beta = 0`` and zero offsets: an integer
product accumulated in int32 (two's complement, so the result is the exact sum modulo 2**32).
On CPUs with VNNI/AMX each instruction adds four int8 products into an int32 lane without
saturation. Without them oneDNN uses ``vpmaddubsw``, which adds *pairs* of u8 x s8 products
with int16 saturation (s8 activations are shifted to u8 first), so it is exact only when
``2 * 255 * max|b| <= 32767`` (``max|b| <= 64``): :func:`max_exact_weight` gives the weight
bound the planner (:func:`ebsp_jax.arith.fast.plan`) must respect on this CPU. The property
tests compare with an int64 NumPy model, including wrapped sums.

Requirements: the ``onednn-cpu-gomp`` wheel (``libdnnl.so.3`` in ``<prefix>/lib``, or a path in
``EBSP_JAX_DNNL``), a C++17 compiler (``CXX``, default ``g++``) and jaxlib's FFI headers. The
build goes to ``EBSP_JAX_CACHE`` (default ``~/.cache/ebsp_jax``), keyed by the source, the
jaxlib version and the library path. :func:`status` says why the kernel is unavailable;
``accumulation="auto"`` then uses XLA's own ops (logged once), an explicit
``accumulation="onednn"`` raises.

Trust. Loading a shared library runs its code, so only a library this user built is loaded:
the cache directory must be a real directory (no symbolic link) owned by this user and not
writable by group or others (created ``0700``); the library and its ``.sha256`` record (the
SHA-256 of the library, written by :func:`build` when it compiled it) must be regular files
owned by this user, not group/world-writable, and the library's content must match the
record. A cached library that fails these checks is never loaded: it is rebuilt in place (the
directory is this user's), or, when the directory itself is not private, the kernel is
unavailable. Any failure to build, verify, load or register the library (a missing symbol
included) makes :func:`status` return its one-line reason, logged once as a warning, and the
datapath falls back to XLA's ops; it never raises from ``accumulation="auto"``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
from typing import Optional

import jax
import jax.numpy as jnp
import jaxlib

from ebsp_jax.arith.platform import cpu_has_int8_dot

_SOURCE = os.path.join(os.path.dirname(__file__), "gemm.cc")
_TARGETS = {"u8": ("ebsp_onednn_gemm_u8s8s32", "EbspGemmU8S8"),
            "s8": ("ebsp_onednn_gemm_s8s8s32", "EbspGemmS8S8")}
# Without int8 dot instructions: u8 x s8 pairs add with int16 saturation (module docstring).
_NO_VNNI_MAX_WEIGHT = 32767 // (2 * 255)

_log = logging.getLogger(__name__)


def library_path() -> Optional[str]:
  """Path of oneDNN's ``libdnnl.so.3`` (``EBSP_JAX_DNNL`` or the wheel's), None if absent."""
  env = os.environ.get("EBSP_JAX_DNNL")
  if env:
    return env if os.path.isfile(env) else None
  for prefix in (sys.prefix, sys.base_prefix):
    path = os.path.join(prefix, "lib", "libdnnl.so.3")
    if os.path.isfile(path):
      return path
  return None


def max_exact_weight() -> int:
  """Largest ``|b|`` for which oneDNN's int8 GEMM is exact on this CPU (127 with VNNI/AMX)."""
  return 127 if cpu_has_int8_dot() else _NO_VNNI_MAX_WEIGHT


def _cache_dir() -> str:
  return os.environ.get("EBSP_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "ebsp_jax")


def cache_path(lib: Optional[str] = None) -> str:
  """Where :func:`build` puts the library for ``lib`` (default :func:`library_path`).

  Raises:
    RuntimeError: oneDNN not found.
  """
  lib = lib or library_path()
  if lib is None:
    raise RuntimeError("oneDNN (libdnnl.so.3) not found: pip install onednn-cpu-gomp "
                       "(requirements.txt) or set EBSP_JAX_DNNL to the library's path")
  with open(_SOURCE, "rb") as f:
    key = hashlib.sha256(f.read() + jaxlib.__version__.encode() + lib.encode()).hexdigest()[:16]
  return os.path.join(_cache_dir(), f"onednn_gemm_{key}.so")


def _private(path: str, directory: bool) -> None:
  """Raises ``RuntimeError`` unless ``path`` is a real directory / regular file (not a symbolic
  link) owned by this user and not writable by group or others."""
  kind = "cache directory" if directory else "file"
  st = os.lstat(path)
  if stat.S_ISLNK(st.st_mode):
    raise RuntimeError(f"{kind} {path} is a symbolic link: not trusted")
  if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
    raise RuntimeError(f"{path} is not a {'directory' if directory else 'regular file'}")
  if st.st_uid != os.geteuid():
    raise RuntimeError(f"{kind} {path} belongs to uid {st.st_uid}, not to this user (uid "
                       f"{os.geteuid()}): not trusted")
  if st.st_mode & 0o022:
    raise RuntimeError(f"{kind} {path} is writable by group or others (mode "
                       f"{stat.S_IMODE(st.st_mode):04o}): not trusted; set EBSP_JAX_CACHE to "
                       f"a directory only you can write")


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def verify(so: str) -> Optional[str]:
  """None when ``so`` may be loaded (see the module docstring), else the one-line reason."""
  record = so + ".sha256"
  try:
    _private(os.path.dirname(so), directory=True)
    _private(so, directory=False)
    _private(record, directory=False)
    with open(record, encoding="ascii") as f:
      want = f.read().strip()
    if _sha256(so) != want:
      return f"{so} does not match its recorded SHA-256 ({record}): not trusted"
  except FileNotFoundError as e:
    return f"{e.filename} does not exist (no build record)"
  except (OSError, RuntimeError, UnicodeDecodeError) as e:
    return str(e).splitlines()[0]
  return None


def _write_private(path: str, text: str, directory: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=directory)
  with os.fdopen(fd, "w", encoding="ascii") as f:
    f.write(text)
  os.replace(tmp, path)


def build(lib: Optional[str] = None) -> str:
  """Compiles ``gemm.cc`` against ``lib`` (default :func:`library_path`); returns the ``.so``.

  Reuses an earlier build with the same source, jaxlib version and library when it passes
  :func:`verify`; otherwise (none, or a file that fails the checks) compiles it again and
  records its SHA-256. Atomic (temporary files renamed into place), so concurrent processes
  (pytest-xdist) can build at once.

  Raises:
    RuntimeError: oneDNN not found, the cache directory is not private to this user, or the
      compiler failed (its message attached).
  """
  lib = lib or library_path()
  out = cache_path(lib)
  out_dir = os.path.dirname(out)
  os.makedirs(out_dir, mode=0o700, exist_ok=True)
  _private(out_dir, directory=True)
  if os.path.lexists(out):
    reason = verify(out)
    if reason is None:
      return out
    _log.warning("ebsp_jax.arith.onednn: cached kernel not used (%s); rebuilding it", reason)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
  os.close(fd)
  cmd = [os.environ.get("CXX", "g++"), "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
         f"-I{jax.ffi.include_dir()}", _SOURCE, "-o", tmp, lib,
         f"-Wl,-rpath,{os.path.dirname(os.path.abspath(lib))}"]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True)
  except OSError as e:
    os.unlink(tmp)
    raise RuntimeError(f"cannot run the C++ compiler {cmd[0]!r} ({e}); set CXX") from e
  if proc.returncode != 0:
    os.unlink(tmp)
    raise RuntimeError(f"building {_SOURCE} failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
  os.chmod(tmp, stat.S_IMODE(os.stat(tmp).st_mode) & ~0o022)
  _write_private(out + ".sha256", _sha256(tmp) + "\n", out_dir)
  os.replace(tmp, out)
  return out


def _load_library() -> Optional[str]:
  """Builds, verifies, loads and registers the handlers; None or the one-line reason why not."""
  if not sys.platform.startswith("linux"):
    return f"oneDNN kernel is built for Linux only (this is {sys.platform})"
  try:
    so_path = build()
    reason = verify(so_path)       # again, right before loading (a concurrent build)
    if reason is not None:
      raise RuntimeError(reason)
    so = ctypes.cdll.LoadLibrary(so_path)
    capsules = {target: jax.ffi.pycapsule(getattr(so, symbol))
                for target, symbol in _TARGETS.values()}
    for target, capsule in capsules.items():
      jax.ffi.register_ffi_target(target, capsule, platform="cpu")
  except Exception as e:  # noqa: BLE001 - any failure is a fallback to XLA's ops, never a crash
    reason = (str(e).splitlines() or [""])[0] or type(e).__name__
    _log.warning("ebsp_jax.arith: oneDNN int8 GEMM unavailable (%s: %s); the datapath uses "
                 "XLA's ops on CPU (bit-identical, slower)", type(e).__name__, reason)
    return f"{type(e).__name__}: {reason}" if isinstance(e, AttributeError) else reason
  return None


_load = functools.lru_cache(maxsize=None)(_load_library)


def status() -> Optional[str]:
  """None when :func:`gemm` can run here, else a one-line reason."""
  return _load()


def available() -> bool:
  return status() is None


@functools.lru_cache(maxsize=None)
def warn_unavailable_once() -> None:
  """Logs (once) that ``accumulation="auto"`` falls back to XLA's ops, and why."""
  _log.warning("ebsp_jax.arith: oneDNN int8 GEMM unavailable (%s); accumulation='auto' uses "
               "XLA's ops on CPU (bit-identical, slower)", status())


def gemm(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a @ b`` over the last two dims in int32 modulo 2**32, by oneDNN (CPU backend only).

  Args:
    a: uint8 or int8 ``(*batch, M, K)``.
    b: int8 ``(*batch, K, N)`` with the same batch rank; batch dims equal or 1 (broadcast).
      Exact when ``max|b| <= max_exact_weight()`` (the caller's duty).

  Returns:
    int32 ``(*broadcast batch, M, N)``. Works under ``jit`` and ``vmap``.

  Raises:
    RuntimeError: the kernel is unavailable (:func:`status`).
  """
  reason = status()
  if reason is not None:
    raise RuntimeError(f"oneDNN int8 GEMM unavailable: {reason}")
  if a.dtype not in (jnp.uint8, jnp.int8) or b.dtype != jnp.int8:
    raise TypeError(f"gemm takes uint8/int8 x int8, got {a.dtype} x {b.dtype}")
  if a.ndim < 2 or a.ndim != b.ndim or a.shape[-1] != b.shape[-2]:
    raise ValueError(f"gemm shapes {a.shape} x {b.shape}: need (*batch, M, K) x (*batch, K, N)")
  batch = jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
  target = _TARGETS["u8" if a.dtype == jnp.uint8 else "s8"][0]
  out = jax.ShapeDtypeStruct(batch + (a.shape[-2], b.shape[-1]), jnp.int32)
  return jax.ffi.ffi_call(target, out, vmap_method="expand_dims")(a, b)
