"""Pattern telemetry: how integer weights populate a ``BitPattern``."""

from __future__ import annotations

from typing import Dict

import chex
import jax
import jax.numpy as jnp

from ebsp_jax.numerics.codes import int_array, leading_one, on_grid
from ebsp_jax.numerics.pattern import BitPattern, check_pattern


def pattern_stats(q: chex.Array, pattern: BitPattern) -> Dict[str, jax.Array]:
  """Histograms and fractions describing integer values ``q`` against ``pattern``.

  Works under ``jax.jit`` (all outputs have static shapes), so it can be logged every step.
  Off-grid values are included in the histograms with their truncated code (the LOD and mux
  applied to them), and counted in ``on_grid_fraction``.

  Args:
    q: integer array of any shape (e.g. ``quantize(w, pattern, scale)``).
    pattern: the ``BitPattern``.

  Returns:
    dict of
      ``count``: int32 scalar, number of elements;
      ``leading_one``: int32 ``(magnitude_bits + 1,)`` counts of non-zero elements by leading-one
        position; the last bin collects magnitudes ``>= 2**magnitude_bits``;
      ``shift``: int32 ``(max_shift + 2,)`` counts of non-zero elements by canonical shift; the
        last bin collects shifts beyond ``max_shift``;
      ``mantissa``: int32 ``(2**length,)`` counts of all elements by mantissa (0 for zeros);
      ``zero_fraction``, ``on_grid_fraction``, ``negative_fraction``: float32 scalars.

  Raises:
    TypeError: ``q`` does not have an integer dtype, or ``pattern`` is not a ``BitPattern``.
  """
  check_pattern("pattern_stats", pattern)
  raw = q
  q = int_array("pattern_stats", "q", q).reshape(-1)
  grid = on_grid(raw, pattern).reshape(-1)   # in q's own dtype: int32-wrapping values are off
  n, length = pattern.magnitude_bits, pattern.length
  mag = jnp.abs(q)
  nonzero = mag != 0
  pos = leading_one(mag)
  shift = jnp.maximum(pos - (length - 1), 0)
  mantissa = mag >> shift
  weight = nonzero.astype(jnp.int32)
  count = jnp.asarray(q.size, jnp.int32)
  denom = jnp.maximum(q.size, 1)
  return {
      "count": count,
      "leading_one": jnp.bincount(jnp.clip(pos, 0, n), weights=weight, length=n + 1).astype(jnp.int32),
      "shift": jnp.bincount(jnp.minimum(shift, pattern.max_shift + 1), weights=weight,
                            length=pattern.max_shift + 2).astype(jnp.int32),
      "mantissa": jnp.bincount(jnp.minimum(mantissa, (1 << length) - 1),
                               length=1 << length).astype(jnp.int32),
      "zero_fraction": jnp.sum(~nonzero) / denom,
      "on_grid_fraction": jnp.sum(grid) / denom,
      "negative_fraction": jnp.sum(q < 0) / denom,
  }
