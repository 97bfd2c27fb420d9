"""Atomic output files: a reader sees the old file or the new one, never a torn or invalid one.

Every file the training pipeline publishes (``results.json``, ``run.json``, ``params.npz``,
the metrics log when it is cut back on resume) is written to a temporary file in the same
directory, flushed and ``fsync``-ed, renamed over the target (atomic on POSIX) and the directory
``fsync``-ed, so a kill or a crash at any moment leaves either the complete old content or the
complete new one. JSON is strict: NaN and Infinity are refused (``ValueError`` naming the key)
before anything is written, since they are not JSON and most readers reject them.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any, Mapping, Optional

import numpy as np


def _fsync_dir(directory: str) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:  # e.g. platforms without directory file descriptors
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file, fsync and an atomic rename."""
  directory = os.path.dirname(os.path.abspath(path))
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  _fsync_dir(directory)


def write_text_atomic(path: str, text: str) -> None:
  """:func:`write_bytes_atomic` of UTF-8 ``text``."""
  write_bytes_atomic(path, text.encode("utf-8"))


def first_nonfinite(obj: Any, where: str = "") -> Optional[str]:
  """The path (``a/b/3``) of the first NaN or infinite float in a JSON-like ``obj``, or None."""
  if isinstance(obj, float):
    return None if math.isfinite(obj) else (where or "<top level>")
  if isinstance(obj, Mapping):
    items = obj.items()
  elif isinstance(obj, (list, tuple)):
    items = enumerate(obj)
  else:
    return None
  for k, v in items:
    found = first_nonfinite(v, f"{where}/{k}" if where else str(k))
    if found is not None:
      return found
  return None


def dumps_json(obj: Any) -> str:
  """Strict, stable JSON text (sorted keys, 2-space indent, final newline).

  Raises:
    ValueError: ``obj`` holds NaN or an infinity (one line naming where).
  """
  bad = first_nonfinite(obj)
  if bad is not None:
    raise ValueError(f"'{bad}' is not a finite number: NaN and Infinity are not valid JSON")
  return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes ``obj`` as strict JSON (:func:`dumps_json`), atomically.

  Raises:
    ValueError: ``obj`` holds NaN or an infinity (nothing is written; one line naming the key).
  """
  try:
    text = dumps_json(obj)
  except ValueError as e:
    raise ValueError(f"refusing to write {path}: {e}") from None
  write_text_atomic(path, text)


def write_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Writes ``arrays`` as an ``.npz`` (``np.load`` reads it), atomically."""
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  write_bytes_atomic(path, buf.getvalue())
