"""Hypothesis strategies and array generators shared by the arith tests (not a test module)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st

from ebsp_jax.numerics import BitPattern


@st.composite
def patterns(draw, max_bits: int = 8, signed=None):
  """Any ``BitPattern`` with ``bits <= max_bits``: uniform (L = n) and power-of-two (L = 1) too."""
  signed = draw(st.booleans()) if signed is None else signed
  bits = draw(st.integers(2 if signed else 1, max_bits))
  n = bits - 1 if signed else bits
  length = draw(st.integers(1, n))
  return BitPattern(bits, length, signed)


@st.composite
def act_formats(draw, max_bits: int = 8):
  """``(act_bits, act_signed)``."""
  signed = draw(st.booleans())
  bits = draw(st.integers(2 if signed else 1, max_bits))
  return bits, signed


def act_dtype(bits: int, signed: bool):
  if signed:
    return np.int8 if bits <= 8 else np.int16
  return np.uint8 if bits <= 8 else np.uint16


def act_array(rng: np.random.Generator, shape, bits: int, signed: bool, extreme: float = 0.25,
              dtype=None) -> np.ndarray:
  """Random activations of the format, with a fraction ``extreme`` at the range ends or 0."""
  lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
  a = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
  pick = rng.random(shape)
  a = np.where(pick < extreme / 2, np.where(rng.random(shape) < 0.5, lo, hi), a)
  a = np.where((pick >= extreme / 2) & (pick < extreme * 0.6), 0, a)
  return a.astype(dtype or act_dtype(bits, signed))


def weight_array(rng: np.random.Generator, shape, pattern: BitPattern, extreme: float = 0.25,
                 zero: float = 0.1, dtype=np.int32) -> np.ndarray:
  """Random pattern levels, a fraction ``extreme`` at ``±max_level`` and ``zero`` at 0."""
  levels = pattern.levels.astype(np.int64)
  w = rng.choice(levels, size=shape)
  pick = rng.random(shape)
  ends = levels[[0, -1]]
  w = np.where(pick < extreme, rng.choice(ends, size=shape), w)
  w = np.where((pick >= extreme) & (pick < extreme + zero), 0, w)
  return w.astype(dtype)


def fast_settings(max_examples: int):
  """Per-test hypothesis settings: no deadline (the first call of a shape compiles)."""
  return settings(max_examples=max_examples, deadline=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
