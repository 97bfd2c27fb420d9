"""Metric sinks: TensorBoard events + a JSON-lines log, and the progress line.

``workdir/tensorboard/events.out.tfevents.*`` is readable by TensorBoard
(``tensorboard --logdir workdir/tensorboard``); ``workdir/metrics.jsonl`` holds the same scalars,
one ``{"step": ..., "phase": ..., tag: value}`` object a line, for scripts. A resumed run drops
the JSON lines past its checkpoint before appending, so the log reads like one uninterrupted run,
and starts its event file with a ``SessionLog.START`` at the first step it redoes, which makes
TensorBoard discard the killed run's events from that step on.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Dict, Mapping, Optional, TextIO

import numpy as np

from ebsp_jax.train import files
from ebsp_jax.train.tfevents import EventWriter


def _to_float(v) -> float:
  return float(np.asarray(v))


class MetricWriter:
  """Writes scalars to TensorBoard and ``metrics.jsonl`` (no-op writer when ``enabled=False``).

  Args:
    workdir: run directory.
    resume_step: drop JSON lines with ``step > resume_step`` (the run restarts there).
    enabled: False on non-primary hosts.
  """

  def __init__(self, workdir: str, resume_step: Optional[int] = None, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None and os.path.exists(self.jsonl_path):
      kept = []
      with open(self.jsonl_path) as f:
        for line in f:
          try:
            if json.loads(line).get("step", 0) <= resume_step:
              kept.append(line)
          except json.JSONDecodeError:
            pass  # a line torn by a kill
      files.write_text_atomic(self.jsonl_path, "".join(kept))
    elif resume_step is None and os.path.exists(self.jsonl_path):
      os.remove(self.jsonl_path)
    tb_dir = os.path.join(workdir, "tensorboard")
    if resume_step is None and os.path.isdir(tb_dir):  # a fresh start: drop a killed run's events
      for name in os.listdir(tb_dir):
        if name.startswith("events.out.tfevents."):
          os.remove(os.path.join(tb_dir, name))
    self._jsonl = open(self.jsonl_path, "a")
    self._events = EventWriter(tb_dir)
    if resume_step is not None:
      self._events.session_start(resume_step + 1)

  def write(self, step: int, scalars: Mapping[str, float], phase: str = "") -> None:
    if not self.enabled or not scalars:
      return
    values = {k: _to_float(v) for k, v in scalars.items()}
    self._events.scalars(step, values)
    rec = {"step": int(step), "phase": phase}
    # NaN / infinities as the strings "nan" / "inf" / "-inf": JSON has no such numbers.
    rec.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
    self._jsonl.write(json.dumps(rec, allow_nan=False) + "\n")

  def flush(self) -> None:
    if self.enabled:
      self._jsonl.flush()
      self._events.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._events.close()


def format_duration(seconds: float) -> str:
  """``1h02m03s`` / ``2m03s`` / ``3s``."""
  if not math.isfinite(seconds):
    return "?"
  s = int(round(seconds))
  h, rem = divmod(s, 3600)
  m, s = divmod(rem, 60)
  if h:
    return f"{h}h{m:02d}m{s:02d}s"
  if m:
    return f"{m}m{s:02d}s"
  return f"{s}s"


class Progress:
  """Prints ``[phase] step i/N (x%) | r steps/s | e ex/s | loss .. | ETA ..`` lines.

  The rate is measured over the steps since the previous line (compilation excluded once the
  first line is out); the ETA extrapolates it over the remaining steps of the whole run. Until a
  rate has been measured (no step timed yet, e.g. the line right after the first, compiling
  step) the rate and ETA fields are left out rather than shown as ``nan``.
  """

  def __init__(self, total_steps: int, batch_size: int, stream: TextIO = sys.stdout,
               enabled: bool = True):
    self.total = total_steps
    self.batch_size = batch_size
    self.stream = stream
    self.enabled = enabled
    self._t = None
    self._step = None
    self.rate = float("nan")

  def start(self, step: int) -> None:
    self._t, self._step = time.perf_counter(), step

  def line(self, step: int, phase: str, scalars: Mapping[str, float]) -> str:
    now = time.perf_counter()
    if self._t is not None and step > self._step:
      self.rate = (step - self._step) / max(now - self._t, 1e-9)
    self._t, self._step = now, step
    measured = math.isfinite(self.rate) and self.rate > 0
    parts = [f"[{phase}] step {step}/{self.total} ({100.0 * step / max(self.total, 1):.0f}%)"]
    if measured:
      parts += [f"{self.rate:.2f} steps/s", f"{self.rate * self.batch_size:.0f} ex/s"]
    for k in ("loss", "accuracy"):
      if k in scalars:
        parts.append(f"{k} {_to_float(scalars[k]):.4f}")
    if measured:
      parts.append(f"ETA {format_duration((self.total - step) / self.rate)}")
    text = " | ".join(parts)
    if self.enabled:
      print(text, file=self.stream, flush=True)
    return text

  def message(self, text: str) -> None:
    if self.enabled:
      print(text, file=self.stream, flush=True)


def summarize(scalars: Dict[str, float]) -> str:
  """``'k=v, ...'`` of a scalars dict, floats to 4 decimals (for log lines)."""
  return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in scalars.items())
