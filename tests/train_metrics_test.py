"""TensorBoard event files, the metrics log, the progress line and checkpoint validation."""

from __future__ import annotations

import io
import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.train import checkpoint as ckpt_lib
from ebsp_jax.train import metrics, tfevents


def test_crc32c_known_vectors():
  assert tfevents.crc32c(b"123456789") == 0xE3069283
  assert tfevents.crc32c(b"") == 0


def test_event_file_roundtrip(tmp_path):
  w = tfevents.EventWriter(str(tmp_path))
  w.scalars(1, {"a": 1.5, "b/c": -2.0})
  w.scalars(2, {"a": float("nan")})
  w.close()
  (name,) = os.listdir(tmp_path)
  assert name.startswith("events.out.tfevents.")
  got = tfevents.read_scalars(str(tmp_path / name))
  assert got["a"][0] == (1, 1.5) and got["b/c"] == [(2 - 1, -2.0)]
  assert got["a"][1][0] == 2 and np.isnan(got["a"][1][1])
  # The first record is the file-version header TensorBoard expects.
  first = next(tfevents.read_records(str(tmp_path / name)))
  assert b"brain.Event:2" in first
  # A flipped byte is detected.
  data = bytearray((tmp_path / name).read_bytes())
  data[-6] ^= 0xFF
  (tmp_path / name).write_bytes(bytes(data))
  with pytest.raises(ValueError, match="CRC"):
    tfevents.read_scalars(str(tmp_path / name))


def test_event_encoding_matches_protobuf_wire_format():
  """Hand-checked bytes of Event{wall_time=1.0, step=3, summary{value{tag='x', simple_value=2}}}."""
  ev = tfevents.encode_event(3, 1.0, {"x": 2.0})
  expected = (b"\x09" + struct.pack("<d", 1.0) + b"\x10\x03" + b"\x2a\x0a"
              + b"\x0a\x08" + b"\x0a\x01x" + b"\x15" + struct.pack("<f", 2.0))
  assert ev == expected


def test_event_parses_with_protobuf():
  """The bytes parse as tensorflow.Event with the real protobuf runtime (schema built here)."""
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  fdp = descriptor_pb2.FileDescriptorProto(name="ev_test.proto", package="tftest")
  F = descriptor_pb2.FieldDescriptorProto
  def msg(name, fields):
    m = fdp.message_type.add(name=name)
    for fname, num, typ, label, type_name in fields:
      f = m.field.add(name=fname, number=num, type=typ, label=label)
      if type_name:
        f.type_name = type_name
  opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
  msg("Value", [("tag", 1, F.TYPE_STRING, opt, None), ("simple_value", 2, F.TYPE_FLOAT, opt, None)])
  msg("Summary", [("value", 1, F.TYPE_MESSAGE, rep, ".tftest.Value")])
  msg("Event", [("wall_time", 1, F.TYPE_DOUBLE, opt, None), ("step", 2, F.TYPE_INT64, opt, None),
                ("file_version", 3, F.TYPE_STRING, opt, None),
                ("summary", 5, F.TYPE_MESSAGE, opt, ".tftest.Summary")])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(fdp)
  Event = message_factory.GetMessageClass(pool.FindMessageTypeByName("tftest.Event"))
  ev = Event.FromString(tfevents.encode_event(123456789, 17.25, {"train/loss": 0.5, "b": -3.0}))
  assert ev.step == 123456789 and ev.wall_time == 17.25
  assert [(v.tag, v.simple_value) for v in ev.summary.value] == [("train/loss", 0.5), ("b", -3.0)]
  assert Event.FromString(tfevents.encode_event(0, 1.0, file_version="brain.Event:2")).file_version == "brain.Event:2"


def test_metric_writer_truncates_on_resume(tmp_path):
  w = metrics.MetricWriter(str(tmp_path))
  for s in (1, 2, 3, 4):
    w.write(s, {"loss": 1.0 / s}, "float")
  w.close()
  w = metrics.MetricWriter(str(tmp_path), resume_step=2)
  w.write(3, {"loss": 0.5}, "float")
  w.close()
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert rows[-1]["loss"] == 0.5
  files = sorted(os.listdir(tmp_path / "tensorboard"))
  assert len(files) == 2
  # The resumed file starts with SessionLog{START} at step 3 (field 6, status 1).
  recs = list(tfevents.read_records(str(tmp_path / "tensorboard" / files[1])))
  assert recs[1].endswith(b"\x32\x02\x08\x01") and b"\x10\x03" in recs[1]
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
