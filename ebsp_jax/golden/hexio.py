"""Plain hex text for Verilog ``$readmemh``: one word per line, two's complement.

Format written by :func:`write_memh`:

* optional ``// ...`` comment lines at the top (``$readmemh`` skips ``//`` comments);
* then one word per line, ``ceil(width / 4)`` lowercase hex digits, no prefix, no address
  (``@``) records: the words fill the memory from address 0 upward;
* a word is the value's ``width``-bit two's complement (``value mod 2**width``): signed values
  read back by sign-extending bit ``width - 1``; unsigned values (``signed=False``) must lie in
  ``[0, 2**width)``;
* multi-dimensional arrays are written flattened in row-major (C) order; the shape goes to the
  manifest (and the comment header).

Example: ``-3`` as an 8-bit word is ``fd``; ``200`` unsigned 8-bit is ``c8``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


def to_words(values: np.ndarray, width: int, signed: bool = True) -> np.ndarray:
  """Two's-complement words (uint64) of integer ``values``.

  Raises:
    ValueError: a value does not fit ``width`` bits (signed or unsigned).
  """
  v = np.asarray(values).astype(np.int64).reshape(-1)
  if not 1 <= width <= 63:
    raise ValueError(f"width must be in [1, 63], got {width}")
  lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
  if v.size and (v.min() < lo or v.max() > hi):
    raise ValueError(f"values in [{v.min()}, {v.max()}] do not fit {width}-bit "
                     f"{'signed' if signed else 'unsigned'} words [{lo}, {hi}]")
  return (v & ((1 << width) - 1)).astype(np.uint64)


def write_memh(path: str, values: np.ndarray, width: int, *, signed: bool = True,
               comments: Iterable[str] = ()) -> None:
  """Writes integer ``values`` (any shape, C order) as a ``$readmemh`` file.

  Args:
    path: output file.
    values: integer array.
    width: word width in bits.
    signed: two's-complement signed (else unsigned) range check.
    comments: lines written first as ``// line``.
  """
  digits = (width + 3) // 4
  words = to_words(values, width, signed)
  with open(path, "w", encoding="ascii") as f:
    for c in comments:
      f.write(f"// {c}\n")
    f.write("".join(f"{int(w):0{digits}x}\n" for w in words))


def read_memh(path: str, width: int, *, signed: bool = True) -> np.ndarray:
  """Reads a file written by :func:`write_memh` back to int64 (flat); sign-extends if signed."""
  out = []
  with open(path, encoding="ascii") as f:
    for line in f:
      line = line.split("//", 1)[0].strip()
      if not line:
        continue
      for tok in line.split():
        w = int(tok, 16)
        if signed and w >= 1 << (width - 1):
          w -= 1 << width
        out.append(w)
  return np.asarray(out, np.int64)
