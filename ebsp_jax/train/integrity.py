"""Checksums that let a checkpoint prove on restore that it holds what was saved.

A checkpoint records the SHA-256 of every array leaf (:func:`array_digest`: dtype, shape and
the C-order bytes of its host copy) and the SHA-256 of its own metadata (:func:`meta_digest`:
canonical JSON of every other field, checksums included). Restoring recomputes both: any change
of a value or of the metadata after the save (bit rot, a torn copy, an edited file) is detected,
whatever the storage format did with it, while changes that leave the values intact (e.g. in
unused bytes) are harmless and pass.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, List, Mapping, Optional, Sequence

import jax
import numpy as np

#: The metadata field that holds :func:`meta_digest` (left out of the digest itself).
DIGEST_KEY = "digest"


def _host(x: Any) -> np.ndarray:
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:  # a replicated array of several processes: any local copy
      x = x.addressable_data(0)
  return np.asarray(x)


def array_digest(x: Any) -> str:
  """SHA-256 (hex) of an array's dtype, shape and C-order bytes (a host copy is made)."""
  a = np.ascontiguousarray(_host(x))
  h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
  h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
  return h.hexdigest()


def digests(leaves: Sequence[Any]) -> List[str]:
  """:func:`array_digest` of every leaf, in order."""
  return [array_digest(x) for x in leaves]


def first_mismatch(leaves: Sequence[Any], expected: Sequence[str]) -> Optional[int]:
  """Index of the first leaf whose digest differs from ``expected`` (None: all agree)."""
  if len(leaves) != len(expected):
    return min(len(leaves), len(expected))
  for i, (x, d) in enumerate(zip(leaves, expected)):
    if array_digest(x) != d:
      return i
  return None


def meta_digest(meta: Mapping[str, Any]) -> str:
  """SHA-256 (hex) of the canonical JSON of ``meta`` without its :data:`DIGEST_KEY` field."""
  body = {k: v for k, v in meta.items() if k != DIGEST_KEY}
  text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
  return hashlib.sha256(text.encode()).hexdigest()


def seal(meta: Mapping[str, Any]) -> dict:
  """``meta`` as it reads back from JSON, with its :func:`meta_digest` under :data:`DIGEST_KEY`.

  Raises:
    ValueError: ``meta`` holds NaN or an infinity (not JSON).
  """
  out = json.loads(json.dumps(dict(meta), allow_nan=False))
  out[DIGEST_KEY] = meta_digest(out)
  return out


def is_sealed_intact(meta: Mapping[str, Any]) -> bool:
  """True when ``meta`` carries a digest that matches its content."""
  try:
    return isinstance(meta.get(DIGEST_KEY), str) and meta[DIGEST_KEY] == meta_digest(meta)
  except (ValueError, TypeError):  # NaN / non-JSON content: not what was sealed
    return False
