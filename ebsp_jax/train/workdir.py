"""Workdir safety: a run writes only where it can, and only into a directory that is its own.

* :func:`check_writable` — before any expensive work: the workdir (or the nearest existing
  directory above it, where it will be created) must accept files; a one-line
  :class:`WorkdirError` otherwise.
* The identity marker ``run.json`` (:data:`MARKER`) — written atomically when a run starts
  fresh, before anything else: the configuration fingerprint and the data fingerprint
  (:func:`identity`). A fresh start (:func:`check_fresh_start`) accepts an empty or missing
  directory, or one whose marker records this run (an earlier try killed before its first
  checkpoint); it refuses any other non-empty directory with one line and changes nothing in it.
  A resumed run is identified by its checkpoints instead (:mod:`ebsp_jax.train.checkpoint`).
* :func:`data_difference` — what differs between two data fingerprints (one line).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional

from ebsp_jax import cli
from ebsp_jax.train import files
from ebsp_jax.train.checkpoint import config_difference

MARKER = "run.json"
MARKER_FORMAT = 1


class WorkdirError(ValueError):
  """The workdir cannot be used by this run (one line; nothing in it was changed)."""


def check_writable(path: str, flag: str = "--workdir") -> None:
  """Raises :class:`WorkdirError` unless ``path`` is (or can be created as) a writable directory.

  Creates nothing except, for a missing ``path``, a probe directory that is removed at once.
  """
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(full):
    if not os.path.isdir(full):
      raise WorkdirError(f"{flag}={path}: exists and is not a directory")
    if not os.access(full, os.W_OK | os.X_OK):
      raise WorkdirError(f"{flag}={path}: the directory is not writable")
    return
  parent = os.path.dirname(full)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise WorkdirError(f"{flag}={path}: cannot be created: {parent} is a file, not a directory")
  try:
    os.rmdir(tempfile.mkdtemp(prefix=".ebsp_probe_", dir=parent))
  except OSError as e:
    raise WorkdirError(f"{flag}={path}: cannot be created in {parent} "
                       f"({e.strerror or type(e).__name__})") from None


def identity(config: Mapping[str, Any], data: Mapping[str, str]) -> Dict[str, Any]:
  """The marker content: ``{'format', 'config': <fingerprint>, 'data_fingerprint': ...}``."""
  return {"format": MARKER_FORMAT, "config": json.loads(json.dumps(dict(config), default=str)),
          "data_fingerprint": dict(data)}


def read_marker(workdir: str) -> Optional[Dict[str, Any]]:
  """The marker of ``workdir`` (None if there is none); :class:`WorkdirError` if unreadable."""
  path = os.path.join(workdir, MARKER)
  if not os.path.exists(path):
    return None
  try:
    marker = cli.load_json(path, f"the run marker {path}")
  except ValueError as e:
    raise WorkdirError(f"{e}; use another --workdir (nothing was changed)") from None
  if not (isinstance(marker, dict) and isinstance(marker.get("config"), dict)
          and isinstance(marker.get("data_fingerprint"), dict)):
    raise WorkdirError(f"{path} is not a run marker of this program; use another --workdir "
                       "(nothing was changed)")
  return marker


def write_marker(workdir: str, ident: Mapping[str, Any]) -> None:
  """Writes ``ident`` as ``workdir``'s marker (atomically), creating ``workdir``."""
  os.makedirs(workdir, exist_ok=True)
  files.write_json_atomic(os.path.join(workdir, MARKER), dict(ident))


def data_difference(saved: Mapping[str, str], now: Mapping[str, str]) -> Optional[str]:
  """One line naming the first split whose fingerprint differs (None: the same data)."""
  for split in sorted(set(saved) | set(now)):
    a, b = saved.get(split), now.get(split)
    if a != b:
      return (f"the {split} split differs from the one the run used (fingerprint "
              f"{str(b)[:12]}, the run's {str(a)[:12]})")
  return None


def identity_difference(saved: Mapping[str, Any], ident: Mapping[str, Any]) -> List[str]:
  """What differs between two identities (configuration fields, then the data)."""
  diff = config_difference(saved.get("config", {}), ident["config"], source="the run's")
  data = data_difference(saved.get("data_fingerprint", {}), ident["data_fingerprint"])
  return diff + ([data] if data else [])


def check_fresh_start(workdir: str, ident: Mapping[str, Any]) -> bool:
  """Whether a fresh start (no checkpoints) may use ``workdir``; read-only.

  Returns:
    False for a missing or empty directory; True for one whose marker records this run (the
    leftovers of an earlier try killed before its first checkpoint, which the run replaces).

  Raises:
    WorkdirError: a non-empty directory without a marker, or whose marker records another
      run (one line; nothing is changed).
  """
  if not os.path.isdir(workdir):
    return False
  # (a marker torn by a kill while it was written is the run's own leftover, too)
  entries = sorted(n for n in os.listdir(workdir) if not n.startswith(f"{MARKER}.tmp."))
  if not entries:
    return False
  marker = read_marker(workdir)
  if marker is None:
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise WorkdirError(
        f"--workdir={workdir} is not empty ({len(entries)} entries: {shown}) and holds no run of "
        f"this program (no checkpoints, no {MARKER}); use a new or empty directory (nothing was "
        "changed or deleted)")
  diff = identity_difference(marker, ident)
  if diff:
    raise WorkdirError(
        f"--workdir={workdir} holds another run ({'; '.join(diff[:3])}"
        f"{'; ...' if len(diff) > 3 else ''}); use another --workdir (nothing was changed or "
        "deleted)")
  return True
