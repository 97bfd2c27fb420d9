"""Prepared TFDS datasets (array_record format) as random-access sources, without TensorFlow.

``tfds.data_source(..., download=False)`` on a missing dataset raises a misleading
``NotImplementedError`` about TFRECORD, and ``download=True`` hangs for minutes offline, so this
module checks the directory layout itself first (milliseconds, no TFDS import) and raises a
one-line ``FileNotFoundError`` that names the path and how to prepare the data. Data are never
downloaded here.

Layout expected: ``<data_dir>/<tfds_name>/<version>/dataset_info.json`` with
``"fileFormat": "array_record"`` and shard files ``<tfds_name>-<split>.array_record-NNNNN-of-NNNNN``.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

DEFAULT_TFDS_DIR_ENV = "TFDS_DATA_DIR"


def default_tfds_dir() -> str:
  """``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets`` (TFDS's own default)."""
  return os.environ.get(DEFAULT_TFDS_DIR_ENV) or os.path.expanduser("~/tensorflow_datasets")


def prepare_hint(tfds_name: str, data_dir: str) -> str:
  """One-line instructions to prepare ``tfds_name`` once on a machine with internet."""
  manual = " --manual_dir=<dir with ILSVRC2012_img_{train,val}.tar>" if tfds_name.startswith("imagenet") else ""
  prepared = os.path.join(data_dir, tfds_name)
  return (
      f"prepare it once on a machine with internet: `tfds build {tfds_name}{manual} "
      f"--data_dir={data_dir} --file_format=array_record` (or in Python "
      f"tfds.builder('{tfds_name}', data_dir='{data_dir}', file_format='array_record')"
      f".download_and_prepare()) and copy {prepared} to the same path on this machine, or "
      f"point --data_dir (data_dir= in Python) at a directory that holds "
      f"{tfds_name}/<version>/ prepared that way"
  )


def _version_key(v: str) -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in v.split("."))
  except ValueError:
    return (-1,)


def _read_info(path: str) -> dict:
  """The parts of a TFDS ``dataset_info.json`` used here, checked (one-line ValueError)."""
  def bad(why: str):
    raise ValueError(f"malformed TFDS dataset info {path}: {why}; rebuild the dataset or point "
                     "--data_dir elsewhere")

  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    bad(f"not valid JSON ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
  except OSError as e:
    bad(f"unreadable ({e.strerror or type(e).__name__})")
  if not isinstance(info, dict):
    bad(f"expected a JSON object, found {type(info).__name__}")
  for key in ("fileFormat", "name"):
    if key in info and not isinstance(info[key], str):
      bad(f"'{key}' must be a string, found {type(info[key]).__name__}")
  splits = info.get("splits", [])
  if not (isinstance(splits, list)
          and all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in splits)):
    bad("'splits' must be a list of objects with a string 'name'")
  return info


def find_prepared(tfds_name: str, data_dir: str, split: str) -> str:
  """Directory of the newest prepared array_record version of ``tfds_name`` with ``split``.

  Fast (filesystem checks only). Raises a one-line FileNotFoundError naming the path looked at
  and how to prepare the data, or ValueError if it exists in another file format, lacks
  ``split`` or has a malformed ``dataset_info.json``.
  """
  root = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), tfds_name)
  versions = sorted(
      (v for v in (os.listdir(root) if os.path.isdir(root) else [])
       if os.path.isfile(os.path.join(root, v, "dataset_info.json"))),
      key=_version_key,
  )
  if not versions:
    raise FileNotFoundError(
        f"{tfds_name}: no prepared TFDS dataset at {root} (looked for "
        f"{root}/<version>/dataset_info.json); {prepare_hint(tfds_name, data_dir)}"
    )
  vdir = os.path.join(root, versions[-1])
  info = _read_info(os.path.join(vdir, "dataset_info.json"))
  fmt = info.get("fileFormat", "tfrecord")
  if fmt != "array_record":
    raise ValueError(
        f"{tfds_name}: {vdir} was prepared as {fmt}, which needs TensorFlow to read; rebuild with "
        f"--file_format=array_record ({prepare_hint(tfds_name, data_dir)})"
    )
  splits = [s["name"] for s in info.get("splits", [])]
  if split not in splits:
    raise ValueError(f"{tfds_name}: split {split!r} not in {vdir}; available: {', '.join(splits)}")
  shards = glob.glob(os.path.join(vdir, f"{info.get('name', tfds_name.split('/')[0])}-{split}.array_record-*"))
  if not shards:
    raise FileNotFoundError(
        f"{tfds_name}: no {split} array_record shards in {vdir}; {prepare_hint(tfds_name, data_dir)}"
    )
  return vdir


def open_source(tfds_name: str, data_dir: str, split: str,
                skip_decoding: tuple[str, ...] = ()) -> tuple[Any, Any]:
  """Random-access source over a prepared split, and its ``tfds.core.DatasetInfo``.

  The source supports ``len``, ``src[i]`` and ``src.__getitems__(indices)``, returning dicts of
  decoded numpy features (images uint8 HWC); the features named in ``skip_decoding`` come as
  they are stored (e.g. an image's JPEG bytes).
  """
  vdir = find_prepared(tfds_name, data_dir, split)
  import tensorflow_datasets as tfds  # deferred heavy import (tensorflow_datasets)

  try:
    builder = tfds.builder_from_directory(vdir)
    decoders = {k: tfds.decode.SkipDecoding() for k in skip_decoding} or None
    return builder.as_data_source(split=split, decoders=decoders), builder.info
  except Exception as e:  # noqa: BLE001 - TFDS raises many types on a damaged directory
    first = str(e).splitlines()[0][:200] if str(e).strip() else ""
    raise ValueError(f"{tfds_name}: cannot open the prepared dataset in {vdir} "
                     f"({type(e).__name__}{': ' + first if first else ''}); rebuild it ("
                     f"{prepare_hint(tfds_name, data_dir)})") from None
