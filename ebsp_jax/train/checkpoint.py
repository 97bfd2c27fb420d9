"""Orbax checkpoints of the whole training state, verified on restore.

A checkpoint holds every array leaf of the :class:`~ebsp_jax.train.state.TrainState` (params,
batch-norm / activation statistics, the optimizer state including ADMM's Z, U, scales and ρ, the
RNG key, the step, which is also the data position) as an orbax ``StandardSave`` list, and a JSON
``meta`` item: the phase, the leaf signature (paths, shapes, dtypes), the SHA-256 of every leaf,
the run's configuration and data fingerprint, the results measured so far and the wall time
spent, sealed with a SHA-256 of the metadata itself (:mod:`ebsp_jax.train.integrity`).

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run
killed at any moment leaves only complete checkpoints (plus temporaries that are ignored and
cleaned up). On restore, every array and the metadata are checked against their checksums: a
checkpoint changed after it was written (bit rot, a torn copy, an edited file) raises
:class:`CorruptCheckpointError`; one whose signature or configuration differs from the run asking
for it raises :class:`CheckpointError` with what differs and what to do: a run never silently
starts over or continues from altered values. Checkpoints of format 1 (written before checksums)
are still read; :func:`is_verified` tells the caller that they could not be checked.

Checkpoint ids are ``4 * step + phase_index`` so the same step can be saved in two phases
(e.g. at a phase change) and ids grow with training progress.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from ebsp_jax.numerics.tree import path_str
from ebsp_jax.train import integrity

PyTree = Any
#: 2: with per-leaf checksums and a sealed metadata digest; 1: without (still read, unverified).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


class CheckpointError(RuntimeError):
  """A checkpoint cannot be used by this run (corrupt, or from a different configuration)."""


class CorruptCheckpointError(CheckpointError):
  """A checkpoint's files are unreadable or do not hold what was saved (checksum mismatch).

  Attributes:
    ckpt_id: the checkpoint.
    path: its directory.
    reason: what is wrong (one line, without advice).
  """

  def __init__(self, ckpt_id: int, path: str, reason: str):
    self.ckpt_id, self.path, self.reason = ckpt_id, path, reason
    super().__init__(f"checkpoint {path} is corrupt: {reason}; delete that directory to resume "
                     "from an earlier checkpoint, or the workdir to start over")

  def with_offer(self, ids: Sequence[int], describe: Callable[[int], str], workdir: str) -> str:
    """One line: the checkpoint (``describe(id)``, e.g. its step), why it is corrupt, and how
    to resume from the previous one of ``ids`` (or to start over in ``workdir``)."""
    earlier = [i for i in ids if i < self.ckpt_id]
    if earlier:
      offer = (f"the previous checkpoint is {max(earlier)} ({describe(max(earlier))}): delete "
               f"{self.path} to resume from it")
    else:
      offer = f"there is no earlier checkpoint: delete {workdir} to start over"
    return f"checkpoint {self.path} ({describe(self.ckpt_id)}) is corrupt: {self.reason}; {offer}"


def is_verified(meta: Mapping[str, Any]) -> bool:
  """True when the checkpoint of ``meta`` carries checksums (restore verified its arrays)."""
  return meta.get("format", 0) >= 2


def _first_line(e: BaseException) -> str:
  text = str(e)
  return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text.strip() else type(e).__name__


def signature(tree: PyTree) -> List[List[Any]]:
  """``[[path, shape, dtype], ...]`` of every array leaf (``jax.ShapeDtypeStruct`` allowed)."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    out.append([path_str(path), list(np.shape(leaf)), str(np.dtype(leaf.dtype))])
  return out


def _first_difference(saved: Sequence, expected: Sequence) -> str:
  saved_map = {p: (s, d) for p, s, d in saved}
  exp_map = {p: (s, d) for p, s, d in expected}
  for p, (s, d) in exp_map.items():
    if p not in saved_map:
      return f"'{p}' {tuple(s)} {d} is missing from the checkpoint"
    if saved_map[p] != (s, d):
      ss, sd = saved_map[p]
      return f"'{p}': checkpoint has {tuple(ss)} {sd}, this run expects {tuple(s)} {d}"
  for p in saved_map:
    if p not in exp_map:
      return f"the checkpoint has '{p}', which this run does not"
  return "leaf order differs"


def config_difference(saved: Mapping[str, Any], now: Mapping[str, Any],
                      source: str = "checkpoint") -> List[str]:
  """``['key: <source> X, now Y', ...]`` for every differing configuration field."""
  keys = sorted(set(saved) | set(now))
  return [f"{k}: {source} {saved.get(k, '<absent>')!r}, now {now.get(k, '<absent>')!r}"
          for k in keys if saved.get(k, "<absent>") != now.get(k, "<absent>")]


class Checkpointer:
  """Saves and restores training states under ``directory``.

  Args:
    directory: the checkpoint directory (created unless ``read_only``).
    max_to_keep: checkpoints kept (older ones are deleted).
    read_only: only read ``directory`` (which must exist): nothing is created, saved or
      cleaned up there (e.g. another run's float model for ``--pretrained``).

  Call :meth:`close` when done (also on errors): orbax's background work must finish before
  the interpreter exits. Usable as a context manager.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f"checkpoint directory {self.directory} does not exist")
    if read_only:  # (orbax's own read_only option logs warnings on every open)
      options = ocp.CheckpointManagerOptions(
          max_to_keep=None, create=False, enable_async_checkpointing=False,
          cleanup_tmp_directories=False)
    else:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
          cleanup_tmp_directories=True)
    try:
      self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "meta"))
    except Exception as e:  # noqa: BLE001 - orbax raises various types on broken dirs
      raise CheckpointError(f"cannot open checkpoint directory {self.directory}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            ) from e
    try:
      self._await_tmp_cleanup()
    except Exception as e:  # noqa: BLE001
      self._mngr.close()
      raise CheckpointError(f"cannot clean up unfinished checkpoints in {self.directory}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                            ) from e

  def _await_tmp_cleanup(self) -> None:
    """Waits for the removal of unfinished temporaries that orbax starts in the background.

    ``CheckpointManager.close()`` does not wait for it, so a process exiting soon after
    opening a manager would print a traceback from that thread at interpreter shutdown.
    """
    wait = getattr(self._mngr, "_maybe_await_cleanup_tmp_directory", None)
    if wait is not None:
      wait()
    elif getattr(self._mngr, "_cleanup_tmp_directory_future", None) is not None:
      raise RuntimeError("this orbax version keeps its temporary-directory cleanup private; "
                         "update ebsp_jax.train.checkpoint.Checkpointer._await_tmp_cleanup")

  def all_ids(self) -> List[int]:
    return list(self._mngr.all_steps())

  def latest_id(self) -> Optional[int]:
    ids = self.all_ids()
    return max(ids) if ids else None

  def save(self, ckpt_id: int, state: PyTree, meta: Mapping[str, Any],
           replace: bool = False) -> bool:
    """Saves ``state``'s array leaves, their checksums and ``meta`` (JSON, sealed).

    Args:
      ckpt_id: the checkpoint id.
      state: a pytree of arrays.
      meta: JSON-compatible metadata (NaN and infinities are refused with ``ValueError``).
      replace: if ``ckpt_id`` exists and holds other arrays (or cannot be read), delete it and
        save ``state`` instead; otherwise an existing ``ckpt_id`` is kept.

    Returns:
      True if written; False if ``ckpt_id`` exists (with ``replace``: and holds these arrays).
    """
    if self.read_only:
      raise CheckpointError(f"checkpoint directory {self.directory} was opened read-only")
    exists = ckpt_id in self.all_ids()
    if exists and not replace:
      return False
    leaves = jax.tree_util.tree_leaves(state)
    sums = integrity.digests(leaves)
    if exists:
      try:
        old = self.read_meta(ckpt_id)
      except CheckpointError:
        old = None
      if old is not None and old.get("checksums") == sums and old["leaves"] == signature(state):
        return False
      self._mngr.delete(ckpt_id)
    meta = integrity.seal(dict(meta, format=FORMAT_VERSION, leaves=signature(state),
                               checksums=sums))
    self._mngr.save(ckpt_id, args=ocp.args.Composite(
        state=ocp.args.StandardSave(leaves), meta=ocp.args.JsonSave(meta)), force=True)
    self._mngr.wait_until_finished()
    return True

  def read_meta(self, ckpt_id: int) -> Dict[str, Any]:
    """The metadata of ``ckpt_id``, its seal verified (format 2).

    Raises:
      CorruptCheckpointError: unreadable, not valid metadata, or altered since it was saved.
    """
    path = os.path.join(self.directory, str(ckpt_id))
    try:
      r = self._mngr.restore(ckpt_id, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = r.meta
    except Exception as e:  # noqa: BLE001
      raise CorruptCheckpointError(ckpt_id, path, f"its metadata is unreadable ({_first_line(e)})"
                                   ) from e
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in READABLE_FORMATS or not isinstance(meta.get("leaves"), list):
      raise CorruptCheckpointError(ckpt_id, path, f"it has no valid metadata (format {fmt!r}, "
                                   f"expected one of {READABLE_FORMATS})")
    if fmt >= 2 and not integrity.is_sealed_intact(meta):
      raise CorruptCheckpointError(ckpt_id, path, "its metadata does not match its checksum "
                                   "(changed after it was written)")
    if fmt >= 2 and (not isinstance(meta.get("checksums"), list)
                     or len(meta["checksums"]) != len(meta["leaves"])):
      raise CorruptCheckpointError(ckpt_id, path, "its metadata has no checksum per array")
    return meta

  def restore(self, ckpt_id: int, template: PyTree, shardings: Optional[PyTree] = None
              ) -> Tuple[PyTree, Dict[str, Any]]:
    """Restores into the structure of ``template`` (arrays or ``ShapeDtypeStruct``s).

    Args:
      ckpt_id: which checkpoint.
      template: a state of the expected structure, shapes and dtypes.
      shardings: the sharding of every leaf (a tree like ``template``; default: first device).

    Returns:
      ``(state, meta)``.

    Raises:
      CorruptCheckpointError: unreadable, or an array or the metadata differs from what was
        saved (checksums; checkpoints of format 1 have none, see :func:`is_verified`).
      CheckpointError: a different leaf signature (another run's checkpoint).
    """
    path = os.path.join(self.directory, str(ckpt_id))
    meta = self.read_meta(ckpt_id)
    expected = signature(template)
    if meta["leaves"] != expected:
      raise CheckpointError(f"checkpoint {path} does not match this run: "
                            f"{_first_difference(meta['leaves'], expected)}; use another "
                            "--workdir, or delete it to start over")
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if shardings is None:
      dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      shard_leaves = [dev] * len(leaves)
    else:
      shard_leaves = treedef.flatten_up_to(shardings)
    abstract = [jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)
                for x, s in zip(leaves, shard_leaves)]
    try:
      r = self._mngr.restore(ckpt_id, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
      restored = list(r.state)
    except Exception as e:  # noqa: BLE001
      raise CorruptCheckpointError(ckpt_id, path, f"its arrays are unreadable ({_first_line(e)})"
                                   ) from e
    if len(restored) != len(leaves):
      raise CorruptCheckpointError(ckpt_id, path, f"it holds {len(restored)} arrays, expected "
                                   f"{len(leaves)}")
    for x, a in zip(restored, abstract):
      if tuple(x.shape) != tuple(a.shape) or x.dtype != a.dtype:
        raise CorruptCheckpointError(ckpt_id, path, f"array {x.shape} {x.dtype} where "
                                     f"{a.shape} {a.dtype} was saved")
    if is_verified(meta):
      bad = integrity.first_mismatch(restored, meta["checksums"])
      if bad is not None:
        raise CorruptCheckpointError(ckpt_id, path, f"array '{meta['leaves'][bad][0]}' does not "
                                     "match its checksum (changed after it was written)")
    return jax.tree_util.tree_unflatten(treedef, restored), meta

  def close(self) -> None:
    """Finishes orbax's outstanding work and releases the manager (idempotent)."""
    if self._mngr is None:
      return
    mngr, self._mngr = self._mngr, None
    mngr.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def has_checkpoint_files(directory: str) -> bool:
  """True when ``directory`` exists and holds anything (checkpoints, even broken ones)."""
  return os.path.isdir(directory) and any(os.scandir(directory))
