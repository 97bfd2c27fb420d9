"""Candidate formats by name, and per-layer format maps (``{layer: format}``) as files and rules.

Names are what ``str(BitPattern)`` prints: ``'6b(L3)'`` (signed, 6 bits, pattern length 3),
``'u4b(L2)'`` (unsigned). Uniform ``B``-bit is ``'Bb(L{B-1})'``, power-of-two ``'Bb(L1)'``.
:func:`parse_formats` also takes the named sets of :data:`CANDIDATE_SETS` (``default``,
``ebsp``, ``uniform``, ``power_of_two``), so a search can be restricted to one family.

A layer is named by its module path in the parameter tree, the part before ``/kernel``
(``'conv_init'``, ``'stage1_block0/conv1'``, ``'head'``): exactly what
:func:`ebsp_jax.numerics.layer_patterns` returns and what :func:`layer_formats_rule` turns
into a :func:`~ebsp_jax.numerics.make_rule` rule.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ebsp_jax.numerics.pattern import BitPattern, NumberFormat
from ebsp_jax.numerics.tree import Rule, make_rule

_NAME = re.compile(r"^(u?)(\d+)b\(L(\d+)\)$")

#: Named candidate sets. ``ebsp``: the bit-sparse patterns strictly between uniform and
#: power-of-two at 4, 5, 6 and 8 bits (3 bits has none); ``uniform``: L = bits - 1, 3 to 8
#: bits; ``power_of_two``: L = 1, 3 to 6 bits.
CANDIDATE_SETS: Mapping[str, tuple[str, ...]] = {
    "ebsp": ("4b(L2)", "5b(L2)", "5b(L3)", "6b(L2)", "6b(L3)", "6b(L4)", "8b(L3)", "8b(L4)",
             "8b(L5)"),
    "uniform": ("3b(L2)", "4b(L3)", "5b(L4)", "6b(L5)", "8b(L7)"),
    "power_of_two": ("3b(L1)", "4b(L1)", "5b(L1)", "6b(L1)"),
}
#: The default candidates: every set above.
DEFAULT_CANDIDATES: tuple[str, ...] = (CANDIDATE_SETS["ebsp"] + CANDIDATE_SETS["uniform"]
                                       + CANDIDATE_SETS["power_of_two"])


def parse_format(name: str) -> BitPattern:
  """``'6b(L3)'`` -> ``BitPattern(6, 3)``; ``'u4b(L2)'`` -> unsigned ``BitPattern(4, 2, False)``.

  Raises:
    ValueError: not of the form ``[u]<bits>b(L<length>)``, or an invalid pattern (one line).
  """
  if not isinstance(name, str):
    raise ValueError(f"a format name must be a string like '6b(L3)'; got {name!r}")
  m = _NAME.match(name.strip())
  if not m:
    raise ValueError(f"format {name!r} is not of the form <bits>b(L<length>) (e.g. '6b(L3)', "
                     "'u4b(L2)' unsigned)")
  try:
    return BitPattern(int(m.group(2)), int(m.group(3)), signed=not m.group(1))
  except ValueError as e:
    raise ValueError(f"format {name!r}: {e}") from None


def parse_formats(names: Union[str, Iterable[str]]) -> tuple[BitPattern, ...]:
  """Formats from names and named sets, in order, without repeats.

  Args:
    names: a comma-separated string (``'4b(L2),6b(L3)'``, ``'uniform,5b(L3)'``) or a sequence
      of names; a set name of :data:`CANDIDATE_SETS` or ``'default'`` expands to its formats.

  Raises:
    ValueError: an unknown name or set, a format listed twice, or nothing given (one line).
  """
  if isinstance(names, str):
    names = _split(names)
  out: list[BitPattern] = []
  for n in names:
    n = n.strip()
    expanded = (DEFAULT_CANDIDATES if n == "default" else CANDIDATE_SETS.get(n, (n,)))
    for item in expanded:
      try:
        f = parse_format(item)
      except ValueError as e:
        if item == n and "(" not in n:
          raise ValueError(f"{e}; or a set: default, {', '.join(CANDIDATE_SETS)}") from None
        raise
      if f in out:
        raise ValueError(f"format {f} is listed twice")
      out.append(f)
  if not out:
    raise ValueError("no formats given")
  return tuple(out)


def _split(text: str) -> list[str]:
  """Splits on commas outside parentheses (none occur inside names today)."""
  return [p for p in (s.strip() for s in text.split(",")) if p]


def layer_formats_rule(layer_formats: Mapping[str, Optional[NumberFormat]], **kwargs: Any
                       ) -> Rule:
  """A :func:`~ebsp_jax.numerics.make_rule` rule giving each layer's kernel its own format.

  Kernels of layers not in ``layer_formats`` stay float (check coverage first with
  :func:`check_layer_names`); ``kwargs`` go to ``make_rule`` (e.g. ``include``).
  """
  overrides = [(f"^{re.escape(name)}/kernel$", fmt) for name, fmt in layer_formats.items()]
  return make_rule(None, overrides=overrides, **kwargs)


def check_layer_names(names: Iterable[str], layers: Sequence[str], source: str) -> None:
  """Checks that ``names`` are exactly ``layers`` (the model's kernel layers).

  Raises:
    ValueError: one line naming ``source``, the unknown and the missing names, and the layers.
  """
  names = list(names)
  unknown = [n for n in names if n not in set(layers)]
  missing = [n for n in layers if n not in set(names)]
  if unknown or missing:
    parts = []
    if unknown:
      parts.append(f"unknown layer(s) {', '.join(unknown)}")
    if missing:
      parts.append(f"no format for layer(s) {', '.join(missing)}")
    raise ValueError(f"{source}: {'; '.join(parts)}; the model's layers are: {', '.join(layers)}")


def layer_formats_from_json(obj: Any, source: str = "layer formats") -> dict[str, BitPattern]:
  """``{layer: BitPattern}`` from a search output (its ``"layers"``) or a plain name map.

  Raises:
    ValueError: not a ``{layer: format name}`` object, or a bad format name (one line).
  """
  if isinstance(obj, dict) and isinstance(obj.get("layers"), dict):
    obj = obj["layers"]
  if not isinstance(obj, dict) or not obj:
    raise ValueError(f"{source}: expected a non-empty {{layer: format}} object or a search "
                     "output with \"layers\"")
  out = {}
  for layer, name in obj.items():
    try:
      out[str(layer)] = parse_format(name)
    except ValueError as e:
      raise ValueError(f"{source}: layer {layer!r}: {e}") from None
  return out
