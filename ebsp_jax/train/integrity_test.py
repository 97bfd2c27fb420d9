"""Checksums of arrays and metadata: any single-bit change is seen, equal content agrees."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ebsp_jax.train import integrity

DTYPES = [np.float32, np.int32, np.uint32, np.int8, np.bool_, np.float16]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))


@settings(max_examples=200, deadline=None)
@given(arrays, st.data())
def test_any_single_bit_flip_changes_the_digest(x, data):
  raw = bytearray(np.ascontiguousarray(x).tobytes())
  if not raw:
    return
  bit = data.draw(st.integers(0, 8 * len(raw) - 1))
  raw[bit // 8] ^= 1 << (bit % 8)
  y = np.frombuffer(bytes(raw), x.dtype).reshape(x.shape)
  assert integrity.array_digest(y) != integrity.array_digest(x)
  assert integrity.first_mismatch([x, y], integrity.digests([x, x])) == 1


@settings(max_examples=50, deadline=None)
@given(arrays)
def test_digest_is_of_the_content(x):
  assert integrity.array_digest(x) == integrity.array_digest(np.array(x, copy=True))
  if x.dtype == np.float32:
    assert integrity.array_digest(jnp.asarray(x)) == integrity.array_digest(x)  # device copy
  assert integrity.first_mismatch([x], integrity.digests([x])) is None


def test_dtype_and_shape_are_part_of_the_digest():
  a = np.zeros(4, np.float32)
  assert integrity.array_digest(a) != integrity.array_digest(a.view(np.int32))
  assert integrity.array_digest(a) != integrity.array_digest(a.reshape(2, 2))
  key = jax.random.key(3)
  assert integrity.array_digest(key) == integrity.array_digest(jax.random.key_data(key))
  assert integrity.first_mismatch([a], []) == 0           # a leaf without checksum


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.lists(st.integers(), max_size=3)), max_size=5), st.data())
def test_sealed_metadata_detects_any_change(meta, data):
  sealed = integrity.seal(meta)
  assert integrity.is_sealed_intact(sealed)
  if not meta:
    return
  key = data.draw(st.sampled_from(sorted(meta)))
  changed = dict(sealed, **{key: [sealed[key], "x"]})
  assert not integrity.is_sealed_intact(changed)
  assert not integrity.is_sealed_intact({k: v for k, v in sealed.items() if k != "digest"})
  assert not integrity.is_sealed_intact(dict(sealed, extra=float("nan")))
