"""Metric sinks: TensorBoard events + a JSON-lines log, and the progress line.

``workdir/tensorboard/events.out.tfevents.*`` is readable by TensorBoard
(``tensorboard --logdir workdir/tensorboard``): scalars, and histograms such as the per-layer
weight levels, shifts and mantissas (:func:`ebsp_jax.train.evaluation.weight_histograms`). The
events are encoded by ``tensorboardX`` and written synchronously (its ``EventsWriter``), so
:meth:`MetricWriter.flush` puts every event so far on disk. ``workdir/metrics.jsonl`` holds the
same scalars, one ``{"step": ..., "phase": ..., tag: value}`` object a line, for scripts. A
resumed run drops the JSON lines past its checkpoint before appending, so the log reads like one
uninterrupted run, and starts its event file with a ``SessionLog.START`` at the first step it
redoes, which makes TensorBoard discard the killed run's events from that step on.
:func:`read_events` / :func:`read_scalars` / :func:`read_histograms` read event files back
(tests, notebooks) without TensorBoard.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
import sys
import time
from typing import Dict, Iterator, List, Mapping, Optional, TextIO, Tuple

import numpy as np
from tensorboardX.crc32c import crc32c
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import HistogramProto, Summary

from ebsp_jax.train import files

#: A histogram of discrete values: ``(values, counts)``, 1-D, ``values`` strictly increasing
#: (e.g. a pattern's levels and how many weights sit at each).
Discrete = Tuple[np.ndarray, np.ndarray]
#: Discrete histograms with more values than this are written with this many equal-width
#: buckets (their count, min, max, sum and sum of squares stay exact).
MAX_BUCKETS = 512
_EVENT_FILE_NUMBER = itertools.count()


def _to_float(v) -> float:
  return float(np.asarray(v))


def discrete_histogram(values, counts, max_buckets: int = MAX_BUCKETS) -> HistogramProto:
  """TensorBoard ``HistogramProto`` of ``counts[i]`` occurrences of ``values[i]``.

  One bucket per value from the smallest to the largest value that occurs (zero counts in
  between are kept), each reaching halfway to the next value, so TensorBoard draws one bar per
  value; with more than ``max_buckets`` values, ``max_buckets`` equal-width buckets.

  Raises:
    ValueError: shapes differ, values not strictly increasing, a negative count, or no count.
  """
  v = np.asarray(values, np.float64).reshape(-1)
  c = np.asarray(counts, np.int64).reshape(-1)
  if v.shape != c.shape:
    raise ValueError(f"histogram: {v.size} values but {c.size} counts")
  if np.any(np.diff(v) <= 0) or np.any(c < 0):
    raise ValueError("histogram: values must increase strictly and counts be >= 0")
  nz = np.flatnonzero(c)
  if nz.size == 0:
    raise ValueError("histogram: every count is 0")
  v, c = v[nz[0]:nz[-1] + 1], c[nz[0]:nz[-1] + 1]
  stats = dict(min=float(v[0]), max=float(v[-1]), num=float(c.sum()),
               sum=float(np.dot(c, v)), sum_squares=float(np.dot(c, v * v)))
  if v.size <= max_buckets:
    limits = np.append((v[:-1] + v[1:]) / 2, v[-1] + 0.5)
    bucket = c
  else:
    edges = np.linspace(v[0], v[-1], max_buckets + 1)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max_buckets - 1)
    bucket = np.bincount(idx, weights=c, minlength=max_buckets)
    limits = edges[1:]
  return HistogramProto(bucket_limit=limits.tolist(), bucket=np.asarray(bucket, float).tolist(),
                        **stats)


class MetricWriter:
  """Writes scalars to TensorBoard and ``metrics.jsonl``, histograms to TensorBoard (a no-op
  writer when ``enabled=False``).

  Args:
    workdir: run directory.
    resume_step: drop JSON lines with ``step > resume_step`` (the run restarts there).
    enabled: False on non-primary hosts (only process 0 writes).
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
    os.makedirs(tb_dir, exist_ok=True)
    # tensorboardX names the file events.out.tfevents.<seconds>.<host><suffix>: the suffix keeps
    # two writers of one second (a quick restart) from overwriting each other's file.
    self._events = EventsWriter(os.path.join(tb_dir, "events"),
                                f".{os.getpid()}.{next(_EVENT_FILE_NUMBER)}")
    if resume_step is not None:
      self._add(Summary(), resume_step + 1, session_log=SessionLog(status=SessionLog.START))

  def _add(self, summary: Summary, step: int, **fields) -> None:
    self._events.write_event(Event(wall_time=time.time(), step=int(step), summary=summary,
                                   **fields))

  def write(self, step: int, scalars: Mapping[str, float], phase: str = "") -> None:
    """One event with every scalar (non-finite values as they are), one JSON line."""
    if not self.enabled or not scalars:
      return
    values = {k: _to_float(v) for k, v in scalars.items()}
    self._add(Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()]),
              step)
    rec = {"step": int(step), "phase": phase}
    # NaN / infinities as the strings "nan" / "inf" / "-inf": JSON has no such numbers.
    rec.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
    self._jsonl.write(json.dumps(rec, allow_nan=False) + "\n")

  def histograms(self, step: int, hists: Mapping[str, Discrete]) -> None:
    """One event with a TensorBoard histogram per ``tag: (values, counts)``
    (:func:`discrete_histogram`); not in ``metrics.jsonl``. Empty histograms are skipped."""
    if not self.enabled or not hists:
      return
    summary = Summary()
    for tag, (values, counts) in hists.items():
      if np.any(np.asarray(counts)):
        summary.value.add(tag=tag, histo=discrete_histogram(values, counts))
    if summary.value:
      self._add(summary, step)

  def flush(self) -> None:
    if self.enabled:
      self._jsonl.flush()
      self._events.flush()

  def close(self) -> None:
    if self.enabled and not self._jsonl.closed:
      self._jsonl.close()
      self._events.close()


# ------------------------------------------------------------------------------------------
# Reading (tests, notebooks): no TensorBoard needed.
def _masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: str) -> Iterator[Event]:
  """The ``Event`` protos of one event file (TFRecord framing; ``ValueError`` on a bad CRC or a
  truncated record)."""
  with open(path, "rb") as f:
    data = f.read()
  i = 0
  while i < len(data):
    if i + 12 > len(data):
      raise ValueError(f"{path}: truncated record header at offset {i}")
    header = data[i:i + 8]
    (n,) = struct.unpack("<Q", header)
    (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
    if i + 16 + n > len(data):
      raise ValueError(f"{path}: truncated record at offset {i}")
    rec = data[i + 12:i + 12 + n]
    (rcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
    if hcrc != _masked_crc(header) or rcrc != _masked_crc(rec):
      raise ValueError(f"{path}: CRC mismatch at offset {i}")
    yield Event.FromString(rec)
    i += 16 + n


def _event_files(path: str) -> List[str]:
  """``path`` itself, or the event files of the directory ``path`` in name (= time) order."""
  if os.path.isdir(path):
    return [os.path.join(path, n) for n in sorted(os.listdir(path))
            if n.startswith("events.out.tfevents.")]
  return [path]


def read_scalars(path: str) -> Dict[str, List[Tuple[int, float]]]:
  """``{tag: [(step, value), ...]}`` of every scalar in an event file (or a directory of them)."""
  out: Dict[str, List[Tuple[int, float]]] = {}
  for name in _event_files(path):
    for ev in read_events(name):
      for v in ev.summary.value:
        if v.WhichOneof("value") == "simple_value":
          out.setdefault(v.tag, []).append((int(ev.step), float(v.simple_value)))
  return out


def read_histograms(path: str) -> Dict[str, List[Tuple[int, HistogramProto]]]:
  """``{tag: [(step, HistogramProto), ...]}`` of an event file (or a directory of them)."""
  out: Dict[str, List[Tuple[int, HistogramProto]]] = {}
  for name in _event_files(path):
    for ev in read_events(name):
      for v in ev.summary.value:
        if v.WhichOneof("value") == "histo":
          out.setdefault(v.tag, []).append((int(ev.step), v.histo))
  return out


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
