"""A dependency-free TensorBoard event-file writer (and reader, for tests and tools).

TensorBoard reads ``events.out.tfevents.*`` files: TFRecord framing (length, masked CRC32C,
payload, masked CRC32C) around serialized ``tensorflow.Event`` protos. Scalars need only a few
proto fields, encoded here by hand (wire format: varint keys, 64-bit double, 32-bit float):

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
              SessionLog session_log = 6; }
    SessionLog { SessionStatus status = 1; }      // START = 1
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Dict, Iterator, List, Mapping, Tuple


def _crc32c_table() -> List[int]:
  table = []
  for i in range(256):
    crc = i
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), as TFRecord uses."""
  crc = 0xFFFFFFFF
  for b in data:
    crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _key(field: int, wire: int) -> bytes:
  return _varint((field << 3) | wire)


def _len_delim(field: int, payload: bytes) -> bytes:
  return _key(field, 2) + _varint(len(payload)) + payload


def encode_event(step: int, wall_time: float, scalars: Mapping[str, float] = (),
                 file_version: str = "") -> bytes:
  """Serialized ``Event`` with scalar summaries (or a ``file_version`` header)."""
  out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step))
  if file_version:
    out += _len_delim(3, file_version.encode())
  if scalars:
    summary = b"".join(
        _len_delim(1, _len_delim(1, tag.encode()) + _key(2, 5) + struct.pack("<f", float(v)))
        for tag, v in dict(scalars).items())
    out += _len_delim(5, summary)
  return out


def encode_session_start(step: int, wall_time: float) -> bytes:
  """``Event{step, session_log{status: START}}``: TensorBoard drops the events of earlier files
  with ``step >= this step`` (how a restarted run hides the steps it redoes)."""
  return (_key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step))
          + _len_delim(6, _key(1, 0) + _varint(1)))


def frame(record: bytes) -> bytes:
  """TFRecord framing of one record."""
  header = struct.pack("<Q", len(record))
  return (header + struct.pack("<I", _masked_crc(header)) + record
          + struct.pack("<I", _masked_crc(record)))


class EventWriter:
  """Appends scalar events to a new ``events.out.tfevents.<time>.<host>`` file in ``logdir``."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
    self.path = os.path.join(logdir, name)
    self._f = open(self.path, "ab")
    self._f.write(frame(encode_event(0, time.time(), file_version="brain.Event:2")))
    self._f.flush()

  def session_start(self, step: int) -> None:
    """Marks a restart at ``step`` (TensorBoard purges older events with larger steps)."""
    self._f.write(frame(encode_session_start(step, time.time())))

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """Writes one event holding every ``tag: value`` (non-finite values are written as is)."""
    if values:
      self._f.write(frame(encode_event(step, time.time(), values)))

  def flush(self) -> None:
    self._f.flush()

  def close(self) -> None:
    if not self._f.closed:
      self._f.flush()
      self._f.close()


# ------------------------------------------------------------------------------------------
# Reading (tests, notebooks): no TensorBoard needed.
def _read_varint(buf: bytes, i: int) -> Tuple[int, int]:
  shift = n = 0
  while True:
    b = buf[i]
    i += 1
    n |= (b & 0x7F) << shift
    shift += 7
    if not b & 0x80:
      return n, i


def _fields(buf: bytes) -> Iterator[Tuple[int, int, object]]:
  i = 0
  while i < len(buf):
    key, i = _read_varint(buf, i)
    field, wire = key >> 3, key & 7
    if wire == 0:
      v, i = _read_varint(buf, i)
    elif wire == 1:
      v, i = buf[i:i + 8], i + 8
    elif wire == 5:
      v, i = buf[i:i + 4], i + 4
    elif wire == 2:
      n, i = _read_varint(buf, i)
      v, i = buf[i:i + n], i + n
    else:
      raise ValueError(f"unsupported wire type {wire}")
    yield field, wire, v


def read_records(path: str) -> Iterator[bytes]:
  """Records of a TFRecord file, CRCs checked (``ValueError`` on corruption)."""
  with open(path, "rb") as f:
    data = f.read()
  i = 0
  while i < len(data):
    header = data[i:i + 8]
    (n,) = struct.unpack("<Q", header)
    (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
    rec = data[i + 12:i + 12 + n]
    (rcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
    if hcrc != _masked_crc(header) or rcrc != _masked_crc(rec):
      raise ValueError(f"{path}: CRC mismatch at offset {i}")
    yield rec
    i += 16 + n


def read_scalars(path: str) -> Dict[str, List[Tuple[int, float]]]:
  """``{tag: [(step, value), ...]}`` of every scalar in an event file."""
  out: Dict[str, List[Tuple[int, float]]] = {}
  for rec in read_records(path):
    step = 0
    values = []
    for field, _, v in _fields(rec):
      if field == 2:
        step = v
      elif field == 5:
        for f2, _, val in _fields(v):
          if f2 != 1:
            continue
          tag, x = None, None
          for f3, _, y in _fields(val):
            if f3 == 1:
              tag = y.decode()
            elif f3 == 2:
              (x,) = struct.unpack("<f", y)
          if tag is not None and x is not None:
            values.append((tag, x))
    for tag, x in values:
      out.setdefault(tag, []).append((step, x))
  return out
