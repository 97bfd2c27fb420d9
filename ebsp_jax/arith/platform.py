"""Facts about the platform the datapath compiles for and runs on: backend and CPU features.

Nothing here chooses a path; :mod:`ebsp_jax.arith.dispatch` does, from these facts.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Optional

import jax

TARGET_BACKENDS = ("cpu", "gpu", "tpu")
_TARGET_BACKEND: Optional[str] = None

# Feature flags (``/proc/cpuinfo``) of the int8 and bf16 dot-product instructions.
_CPU_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_CPU_BF16_DOT_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
  """This CPU's feature flags (``/proc/cpuinfo``; empty where unavailable)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def cpu_has_int8_dot() -> bool:
  """Whether this CPU has int8 dot-product instructions (VNNI or AMX-INT8)."""
  return bool(_CPU_INT8_DOT_FLAGS & cpu_flags())


def cpu_has_bf16_dot() -> bool:
  """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
  return bool(_CPU_BF16_DOT_FLAGS & cpu_flags())


def backend() -> str:
  """The backend the datapath compiles for: ``"cpu"``, ``"gpu"`` (CUDA or ROCm), or another.

  jax's default backend, unless :func:`target_backend` says otherwise.
  """
  if _TARGET_BACKEND is not None:
    return _TARGET_BACKEND
  b = jax.default_backend()
  return "gpu" if b in ("gpu", "cuda", "rocm") else b


@contextlib.contextmanager
def target_backend(name: str) -> Iterator[None]:
  """Plans the datapath for backend ``name`` instead of jax's default one (inside the block).

  For lowering on a host without that backend, e.g. ``jax.jit(f).trace(...).lower(
  lowering_platforms=("cuda",))`` inside ``target_backend("gpu")``: ``accumulation="auto"``
  and the GPU-only choices of :mod:`ebsp_jax.arith.fast` (im2col for ``"int32"``
  convolutions, float32 operands for the bfloat16 path) then follow the GPU rules. The backend
  is part of every call's static configuration, so the datapath's own jit caches never mix the
  two (a caller's ``jax.jit`` around it caches its first trace: create it inside the block).
  Running such a program on the host's own backend computes the same (exact) values.
  """
  global _TARGET_BACKEND
  if name not in TARGET_BACKENDS:
    raise ValueError(f"target_backend: {name!r} is not one of {', '.join(TARGET_BACKENDS)}")
  prev, _TARGET_BACKEND = _TARGET_BACKEND, name
  try:
    yield
  finally:
    _TARGET_BACKEND = prev


def on_gpu() -> bool:
  """Whether the datapath compiles for a GPU (:func:`backend`)."""
  return backend() == "gpu"
