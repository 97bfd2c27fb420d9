"""Shared helpers for benchmarks: interleaved timing (machines are shared and noisy), device info."""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import time
from typing import Callable, Dict

import jax


def device_description() -> str:
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    model = platform.processor() or "cpu"
    try:
      with open("/proc/cpuinfo") as f:
        for line in f:
          if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    except OSError:
      pass
    import os
    return f"CPU: {model} ({os.cpu_count()} cores visible)"
  return f"{dev.platform.upper()}: {getattr(dev, 'device_kind', dev)}"


def time_interleaved(fns: Dict[str, Callable[[], object]], repeats: int = 7,
                     inner: int = 3, clock: str = "wall") -> Dict[str, float]:
  """Median seconds per call of each fn, timing the candidates in turn (round robin) so that
  load changes hit all of them alike. Each fn must block until its result is ready.

  ``clock="wall"`` uses ``time.perf_counter``; ``clock="cpu"`` uses this process's CPU time
  (all threads), which other processes on a shared machine disturb much less.
  """
  timer = {"wall": time.perf_counter, "cpu": time.process_time}[clock]
  for fn in fns.values():  # compile + warm up
    fn()
  samples = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      t0 = timer()
      for _ in range(inner):
        fn()
      samples[k].append((timer() - t0) / inner)
  return {k: statistics.median(v) for k, v in samples.items()}


def write_json(path: str, payload: dict) -> None:
  payload = dict(payload, device=device_description(), jax_version=jax.__version__,
                 date=datetime.date.today().isoformat())
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
