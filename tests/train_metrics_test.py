"""TensorBoard event files (tensorboardX), histograms of the weights, the metrics log, the
progress line and checkpoint validation."""

from __future__ import annotations

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import SessionLog

from ebsp_jax.numerics import BitPattern, make_rule
from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import evaluation, metrics


def _event_file(workdir) -> str:
  (name,) = os.listdir(os.path.join(workdir, "tensorboard"))
  assert name.startswith("events.out.tfevents.")
  return os.path.join(workdir, "tensorboard", name)


def test_event_file_roundtrip(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  w.write(1, {"a": 1.5, "b/c": -2.0}, "float")
  w.write(2, {"a": float("nan")}, "float")
  w.flush()   # synchronous: the events are on disk after flush, before close
  got = metrics.read_scalars(_event_file(tmp_path))
  assert got["a"][0] == (1, 1.5) and got["b/c"] == [(1, -2.0)]
  assert got["a"][1][0] == 2 and np.isnan(got["a"][1][1])
  w.close()
  events = list(metrics.read_events(_event_file(tmp_path)))
  assert events[0].file_version == "brain.Event:2"   # the header TensorBoard expects
  assert [e.step for e in events[1:]] == [1, 2]
  assert [(v.tag, v.simple_value) for v in events[1].summary.value] == [("a", 1.5), ("b/c", -2.0)]
  # The same scalars in metrics.jsonl, NaN as a string.
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line) for line in f] == [
        {"step": 1, "phase": "float", "a": 1.5, "b/c": -2.0},
        {"step": 2, "phase": "float", "a": "nan"}]
  # A flipped byte is detected.
  path = _event_file(tmp_path)
  data = bytearray(open(path, "rb").read())
  data[-6] ^= 0xFF
  open(path, "wb").write(bytes(data))
  with pytest.raises(ValueError, match="CRC"):
    metrics.read_scalars(path)
  open(path, "wb").write(bytes(data[:-3]))
  with pytest.raises(ValueError, match="truncated"):
    metrics.read_scalars(path)


def test_disabled_writer_writes_nothing(tmp_path):
  """Non-primary processes: no file, no directory."""
  w = metrics.MetricWriter(str(tmp_path / "run"), enabled=False)
  w.write(1, {"a": 1.0})
  w.histograms(1, {"h": (np.arange(3), np.ones(3))})
  w.flush()
  w.close()
  assert not (tmp_path / "run").exists()


def test_discrete_histogram_buckets():
  h = metrics.discrete_histogram([-4, -2, 0, 1, 2, 8], [0, 3, 0, 2, 1, 0])
  # Leading/trailing empty values are dropped, inner ones kept; one bucket per value reaching
  # halfway to the next one; min/max/num/sum/sum_squares exact.
  assert list(h.bucket) == [3, 0, 2, 1]
  assert list(h.bucket_limit) == [-1.0, 0.5, 1.5, 2.5]
  assert (h.min, h.max, h.num, h.sum, h.sum_squares) == (-2, 2, 6, -6 + 2 + 2, 12 + 2 + 4)
  # More values than max_buckets: equal-width buckets, the same totals.
  v = np.arange(-100, 101)
  c = np.arange(201) % 3 + 1
  h = metrics.discrete_histogram(v, c, max_buckets=10)
  assert len(h.bucket) == 10 and sum(h.bucket) == c.sum() == h.num
  assert h.sum == float(np.dot(v, c)) and h.bucket_limit[-1] == 100
  assert list(h.bucket) == [np.sum(c[(v >= lo) & ((v < lo + 20) | (lo == 80))])
                            for lo in range(-100, 100, 20)]
  for bad in (([0, 1], [1]), ([1, 0], [1, 1]), ([0, 1], [1, -1]), ([0, 1], [0, 0])):
    with pytest.raises(ValueError, match="histogram"):
      metrics.discrete_histogram(*bad)


def _is_level(v: int, pattern: BitPattern) -> bool:
  """Independent definition: |v| <= max magnitude and its set bits lie within a window of L bits
  starting at the leading one (Python integers)."""
  mag = abs(v)
  if mag >= 1 << pattern.magnitude_bits:
    return False
  shift = max(0, mag.bit_length() - pattern.length)
  return (mag >> shift) << shift == mag


def test_weight_histograms_of_a_known_tensor(tmp_path):
  pattern = BitPattern(5, 2)
  levels = [v for v in range(-15, 16) if _is_level(v, pattern)]
  assert levels == [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12]
  rng = np.random.default_rng(0)
  scale = np.array([[0.5, 0.25, 0.125]], np.float32)       # per output channel
  target = rng.choice(levels, size=(40, 3))                  # the level each weight is near
  target[:3, 0] = [12, -12, 0]
  noise = rng.uniform(-0.2, 0.2, size=target.shape)         # < half the smallest gap (1)
  w = ((target + noise) * scale).astype(np.float32)
  w[0, 0] = 20 * scale[0, 0]                                 # beyond the largest level: 12
  params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.zeros(3)}}
  scales = {"Dense_0": {"kernel": jnp.asarray(scale), "bias": None}}
  hists = evaluation.weight_histograms(params, make_rule(pattern), scales)
  assert set(hists) == {"weights/levels/Dense_0/kernel", "weights/shift/Dense_0/kernel",
                        "weights/mantissa/Dense_0/kernel"}
  # Expected counts, computed here with Python integers.
  flat = [int(t) for t in target.reshape(-1)]
  want_levels = [flat.count(v) for v in levels]
  shifts, mantissas = [0] * (pattern.magnitude_bits - pattern.length + 1), [0] * 4
  for v in flat:
    mag = abs(v)
    shift = max(0, mag.bit_length() - pattern.length)
    mantissas[mag >> shift] += 1
    if mag:
      shifts[shift] += 1
  values, counts = hists["weights/levels/Dense_0/kernel"]
  assert list(values) == levels and list(counts) == want_levels
  assert list(hists["weights/shift/Dense_0/kernel"][1]) == shifts
  assert list(hists["weights/mantissa/Dense_0/kernel"][1]) == mantissas
  # Written and read back as TensorBoard histograms at step 7.
  w = metrics.MetricWriter(str(tmp_path))
  w.histograms(7, hists)
  w.close()
  got = metrics.read_histograms(_event_file(tmp_path))
  (step, h), = got["weights/levels/Dense_0/kernel"]
  nz = [i for i, c in enumerate(want_levels) if c]
  assert step == 7 and list(h.bucket) == want_levels[nz[0]:nz[-1] + 1]
  assert h.num == 120 and h.min == levels[nz[0]] and h.max == levels[nz[-1]]
  assert h.sum == sum(flat) and h.sum_squares == sum(v * v for v in flat)
  (_, h), = got["weights/shift/Dense_0/kernel"]
  assert list(h.bucket) == shifts and h.num == sum(1 for v in flat if v)
  (_, h), = got["weights/mantissa/Dense_0/kernel"]
  assert list(h.bucket) == mantissas and list(h.bucket_limit) == [0.5, 1.5, 2.5, 3.5]
  assert metrics.read_scalars(str(tmp_path / "tensorboard")) == {}   # histograms only


def test_metric_writer_truncates_on_resume(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  for s in (1, 2, 3, 4):
    w.write(s, {"loss": 1.0 / s}, "float")
  w.close()
  w = metrics.MetricWriter(str(tmp_path), resume_step=2)   # within the same second
  w.write(3, {"loss": 0.5}, "float")
  w.close()
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert rows[-1]["loss"] == 0.5
  files = sorted(os.listdir(tmp_path / "tensorboard"))
  assert len(files) == 2
  # The resumed file starts with SessionLog{START} at step 3: TensorBoard then drops the earlier
  # files' events from step 3 on.
  first, second = (list(metrics.read_events(str(tmp_path / "tensorboard" / f))) for f in files)
  assert [e.step for e in first if e.summary.value] == [1, 2, 3, 4]
  assert second[1].session_log.status == SessionLog.START and second[1].step == 3
  assert metrics.read_scalars(str(tmp_path / "tensorboard"))["loss"][-1] == (3, 0.5)
  # A fresh start removes stale event files.
  metrics.MetricWriter(str(tmp_path)).close()
  assert len(os.listdir(tmp_path / "tensorboard")) == 1


def test_progress_line_has_rate_and_eta():
  buf = io.StringIO()
  p = metrics.Progress(total_steps=100, batch_size=10, stream=buf)
  p.start(0)
  p.line(10, "admm", {"loss": 0.5, "accuracy": 0.25})
  text = buf.getvalue()
  assert "[admm] step 10/100 (10%)" in text and "steps/s" in text and "ex/s" in text
  assert "loss 0.5000" in text and "ETA " in text and "ETA ?" not in text
  assert metrics.format_duration(3725) == "1h02m05s"
  assert metrics.format_duration(65) == "1m05s"


def test_progress_line_omits_rates_until_measured():
  """The first line (e.g. right after the compiling first step) has no ``nan`` rate or ETA."""
  buf = io.StringIO()
  p = metrics.Progress(total_steps=12, batch_size=128, stream=buf)
  p.start(1)
  first = p.line(1, "float", {"loss": 2.3, "accuracy": 0.07})
  assert first == "[float] step 1/12 (8%) | loss 2.3000 | accuracy 0.0700"
  assert "nan" not in buf.getvalue() and "ETA" not in first and "steps/s" not in first
  second = p.line(5, "float", {"loss": 2.0})
  assert "steps/s" in second and "ex/s" in second and "ETA " in second and "nan" not in second
  # A new phase's first line reuses the last measured rate.
  p.start(5)
  assert "steps/s" in p.line(5, "admm", {})


def test_checkpointer_close_waits_and_read_only_creates_nothing(tmp_path):
  d = tmp_path / "ck"
  with pytest.raises(ckpt_lib.CheckpointError, match="does not exist"):
    ckpt_lib.Checkpointer(str(d), read_only=True)
  assert not d.exists()
  with ckpt_lib.Checkpointer(str(d)) as ck:  # creates the directory
    assert ck.save(3, {"w": jnp.ones(2)}, {"step": 3})
  ck.close()  # idempotent
  ro = ckpt_lib.Checkpointer(str(d), read_only=True)
  assert ro.latest_id() == 3 and ro.read_meta(3)["step"] == 3
  with pytest.raises(ckpt_lib.CheckpointError, match="read-only"):
    ro.save(4, {"w": jnp.ones(2)}, {"step": 4})
  ro.close()
  assert sorted(os.listdir(d)) == ["3"]


def test_checkpointer_roundtrip_and_validation(tmp_path):
  state = {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.int32(3), "none": None,
           "key": jax.random.PRNGKey(1)}
  ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"), max_to_keep=2)
  assert ck.latest_id() is None
  assert ck.save(5, state, {"step": 1})
  assert not ck.save(5, state, {"step": 1})  # an existing id is kept, not overwritten
  restored, meta = ck.restore(5, state)
  assert meta["step"] == 1 and restored["none"] is None
  np.testing.assert_array_equal(restored["w"], state["w"])
  np.testing.assert_array_equal(restored["key"], state["key"])
  other = dict(state, w=jnp.zeros((3, 2)))
  with pytest.raises(ckpt_lib.CheckpointError, match=r"'w': checkpoint has \(2, 3\) float32, this run expects \(3, 2\)"):
    ck.restore(5, other)
  with pytest.raises(ckpt_lib.CheckpointError, match="missing from the checkpoint"):
    ck.restore(5, dict(state, extra=jnp.zeros(1)))
  ck.close()
  assert ckpt_lib.config_difference({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ["b: checkpoint 2, now 3"]
