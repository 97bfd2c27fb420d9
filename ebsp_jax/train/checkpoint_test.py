"""Checkpoint round trips, and corruption refused on restore (hypothesis over bit positions).

A checkpoint is saved once; every example copies it, flips one bit at a position hypothesis
chooses among all bytes of the checkpoint's files (arrays, orbax metadata, our metadata), and
restores: the restore must refuse with a one-line ``CheckpointError`` or return exactly what was
saved (a flip in bytes nobody reads is harmless). Orbax alone returns altered weights for many
flips in its compressed array data.
"""

import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ebsp_jax.train import checkpoint as ckpt_lib


def _state(seed):
  rng = np.random.default_rng(seed)
  return {"params": {"w": jnp.asarray(rng.normal(size=(48, 40)), jnp.float32),
                     "b": jnp.asarray(rng.normal(size=(40,)), jnp.bfloat16)},
          "step": jnp.int32(seed), "key": jax.random.PRNGKey(seed),
          "count": jnp.asarray(rng.integers(-9, 9, 33), jnp.int8), "none": None}


def _files(directory):
  out = []
  for root, _, names in os.walk(directory):
    for n in sorted(names):
      p = os.path.join(root, n)
      if os.path.getsize(p):
        out.append((os.path.relpath(p, directory), os.path.getsize(p)))
  return sorted(out)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("ck") / "ck")
  with ckpt_lib.Checkpointer(d, 5) as ck:
    assert ck.save(4, _state(1), {"step": 1, "results": {"top1": 0.5}})
    assert ck.save(9, _state(2), {"step": 2, "results": {"top1": 0.75}})
    meta = ck.read_meta(9)
  files = _files(os.path.join(d, "9"))
  return {"dir": d, "files": files, "bits": 8 * sum(s for _, s in files), "meta": meta}


def _restore(directory, ckpt_id=9):
  with ckpt_lib.Checkpointer(directory, read_only=True) as ck:
    return ck.restore(ckpt_id, _state(0))


def _flip(path, bit):
  with open(path, "r+b") as f:
    f.seek(bit // 8)
    byte = f.read(1)[0]
    f.seek(bit // 8)
    f.write(bytes([byte ^ (1 << (bit % 8))]))


def _assert_saved(state, meta, saved):
  for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(_state(2))):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert meta == saved["meta"]


def test_round_trip(saved):
  state, meta = _restore(saved["dir"])
  _assert_saved(state, meta, saved)
  assert meta["results"] == {"top1": 0.75} and ckpt_lib.is_verified(meta)
  assert len(meta["checksums"]) == len(meta["leaves"]) == 5   # None is no leaf


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
@example(None)
def test_single_bit_flip_is_refused_or_harmless(saved, data):
  largest = max(saved["files"], key=lambda f: f[1])
  if data is None:   # the middle of the largest file: the compressed array data
    rel, bit = largest[0], 4 * largest[1]
  else:
    pos = data.draw(st.integers(0, saved["bits"] - 1), label="bit")
    for rel, size in saved["files"]:
      if pos < 8 * size:
        bit = pos
        break
      pos -= 8 * size
  work = tempfile.mkdtemp()
  try:
    copy = os.path.join(work, "ck")
    shutil.copytree(saved["dir"], copy)
    _flip(os.path.join(copy, "9", rel), bit)
    try:
      state, meta = _restore(copy)
    except ckpt_lib.CheckpointError as e:
      msg = str(e)
      assert "\n" not in msg and os.path.join(copy, "9") in msg, msg
      return
    _assert_saved(state, meta, saved)      # not refused: then exactly what was saved
  finally:
    shutil.rmtree(work)


def test_swapped_arrays_are_refused_naming_the_array(saved, tmp_path):
  """The state of checkpoint 4 under checkpoint 9 (same shapes; what bit rot can amount to)."""
  copy = str(tmp_path / "ck")
  shutil.copytree(saved["dir"], copy)
  shutil.rmtree(os.path.join(copy, "9", "state"))
  shutil.copytree(os.path.join(saved["dir"], "4", "state"), os.path.join(copy, "9", "state"))
  with pytest.raises(ckpt_lib.CorruptCheckpointError,
                     match=r"array '\S+' does not match its checksum") as e:
    _restore(copy)
  assert e.value.ckpt_id == 9 and "\n" not in str(e.value)


def _copy_with_meta(saved, tmp_path, edit):
  """A copy of the saved checkpoints whose checkpoint 9 has ``edit(meta)`` applied."""
  copy = str(tmp_path / "ck")
  shutil.copytree(saved["dir"], copy)
  path = os.path.join(copy, "9", "meta", "metadata")
  with open(path) as f:
    meta = json.load(f)
  edit(meta)
  with open(path, "w") as f:
    json.dump(meta, f)
  return copy


def test_edited_metadata_is_refused(saved, tmp_path):
  copy = _copy_with_meta(saved, tmp_path, lambda m: m["results"].update(top1=0.99))
  with pytest.raises(ckpt_lib.CorruptCheckpointError, match="metadata does not match its checksum"):
    _restore(copy)


def test_format_1_checkpoints_are_read_unverified(saved, tmp_path):
  """Checkpoints written before checksums still restore; is_verified says they were not."""
  def old(meta):
    for k in ("checksums", "digest"):
      del meta[k]
    meta["format"] = 1

  copy = _copy_with_meta(saved, tmp_path, old)
  state, got = _restore(copy)
  assert not ckpt_lib.is_verified(got)
  np.testing.assert_array_equal(state["params"]["w"], _state(2)["params"]["w"])


def test_save_replace(tmp_path):
  d = str(tmp_path / "fm")
  with ckpt_lib.Checkpointer(d, 1) as ck:
    assert ck.save(0, _state(1), {"v": 1})
    assert not ck.save(0, _state(2), {"v": 2})                  # kept without replace
    assert not ck.save(0, _state(1), {"v": 3}, replace=True)    # the same arrays: kept
    assert ck.read_meta(0)["v"] == 1
    assert ck.save(0, _state(2), {"v": 4}, replace=True)        # other arrays: replaced
    state, meta = ck.restore(0, _state(0))
  assert meta["v"] == 4
  np.testing.assert_array_equal(state["params"]["w"], _state(2)["params"]["w"])
  with pytest.raises(ValueError):
    with ckpt_lib.Checkpointer(d, 1) as ck:
      ck.save(1, _state(1), {"loss": float("nan")})            # NaN is not JSON
