"""Eager argument checks shared by :mod:`.admm` and :mod:`.rho` (one-line errors).

Numbers are accepted as Python ``int``/``float``, NumPy scalars (``np.float32(0.1)``,
``np.int64(5)``) and concrete one-element NumPy/JAX arrays. Rejected, with a one-line error
naming the argument and what is allowed: ``bool`` (a flag is not a number), strings and other
objects, traced values (these arguments are read once, outside ``jit``), arrays with more than
one element, and values outside the allowed range (non-finite, non-positive, ...).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.numerics.pattern import short_repr  # one-line repr for messages (re-used by .rho)

_NUMBER = "a number (Python int/float, NumPy scalar or one-element array)"
_INT = "an int (Python int, NumPy integer or one-element integer array)"


def _describe(value: object) -> str:
  if isinstance(value, (np.ndarray, jax.Array)):
    return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
  return f"{type(value).__name__} {short_repr(value)}"


def _scalar(name: str, value: object, integer: bool, allowed: str):
  """The Python number held by ``value``, or a one-line ``TypeError``/``ValueError``."""
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be {allowed}, got bool {value!r}")
  if isinstance(value, jax.core.Tracer):
    raise TypeError(f"{name} must be {allowed}, got a traced value (it is read once, eagerly: "
                    f"pass a concrete number, not one computed under jit)")
  kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
  if isinstance(value, kinds):
    return int(value) if integer else float(value)
  if isinstance(value, (np.ndarray, jax.Array)):
    dtype = value.dtype  # jnp.issubdtype also knows bfloat16 & co.
    ok = jnp.issubdtype(dtype, jnp.integer) or (not integer and jnp.issubdtype(dtype, jnp.floating))
    if not ok:
      raise TypeError(f"{name} must be {allowed}, got {_describe(value)}")
    if value.size != 1:
      raise ValueError(f"{name} must be a single number, got an array of shape "
                       f"{tuple(value.shape)}")
    item = np.asarray(value).reshape(()).item()
    return int(item) if integer else float(item)
  raise TypeError(f"{name} must be {allowed}, got {_describe(value)}")


def real(name: str, value: object, allowed: str = _NUMBER) -> float:
  """``value`` as a Python float; any real value (NaN and ±inf included: check the range)."""
  return _scalar(name, value, False, allowed)


def positive(name: str, value: object, allowed: str = _NUMBER) -> float:
  """``value`` as a Python float, required finite and ``> 0``."""
  v = real(name, value, allowed)
  if not (math.isfinite(v) and v > 0):
    raise ValueError(f"{name} must be a positive finite number, got {v!r}")
  return v


def positive_int(name: str, value: object) -> int:
  """``value`` as a Python int, required ``>= 1`` (floats such as ``5.0`` are rejected)."""
  v = _scalar(name, value, True, _INT)
  if v < 1:
    raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  return v
