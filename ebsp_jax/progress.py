"""Progress bars with rate and ETA for long loops (evaluation, sweeps, searches), on stderr.

One helper for every package: it imports nothing from ``ebsp_jax``, so any module may use it.
Bars are ``tqdm`` bars written to **stderr** (stdout stays clean for results and the training
log). When they are shown:

* ``enabled=False`` in the call: never (e.g. on every process but process 0 of a multi-host run);
* ``enabled=True``: always (e.g. a main's ``--progress`` flag);
* ``enabled=None`` (default): if ``$EBSP_JAX_PROGRESS`` is ``1``/``0``, as it says; otherwise
  only when the stream is a terminal, so the logs of batch jobs and CI stay quiet.

On a stream that is not a terminal a shown bar redraws at most every
:data:`NON_TTY_INTERVAL_S` seconds (tqdm separates redraws with ``\\r``) and its final state
stays, so a log file records the count, the rate and the time taken.

Usage::

    from ebsp_jax import progress
    for batch in progress.track(batches, desc="eval", unit="batch",
                                count=lambda b: len(b["label"]), count_unit="img"):
        ...
    # eval:  40%|####      | 4/10 [00:02<00:03, 1.9batch/s, 480 img/s]
    with progress.bar(total=len(points), desc="sweep", unit="point") as pbar:
        for p in points:
            ...
            pbar.update(1)
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, Iterator, Optional, TextIO, TypeVar

import tqdm

#: Environment variable that shows (``1``) or hides (``0``) bars whose call leaves it open.
ENV_VAR = "EBSP_JAX_PROGRESS"
#: Shortest time between redraws on a stream that is not a terminal (log files).
NON_TTY_INTERVAL_S = 10.0

T = TypeVar("T")


def _isatty(stream: TextIO) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):  # no isatty, or a closed stream
    return False


def is_enabled(enabled: Optional[bool] = None, stream: Optional[TextIO] = None) -> bool:
  """Whether a bar on ``stream`` (default stderr) is shown; the rules are in the module doc.

  Raises:
    ValueError: ``$EBSP_JAX_PROGRESS`` is set to something other than ``0`` or ``1``.
  """
  if enabled is not None:
    return bool(enabled)
  env = os.environ.get(ENV_VAR, "").strip()
  if env:
    if env not in ("0", "1"):
      raise ValueError(f"${ENV_VAR}={env!r}: must be 1 (show progress bars) or 0 (hide them)")
    return env == "1"
  return _isatty(sys.stderr if stream is None else stream)


def bar(total: Optional[int] = None, *, desc: str = "", unit: str = "it",
        enabled: Optional[bool] = None, stream: Optional[TextIO] = None,
        leave: bool = False) -> tqdm.tqdm:
  """A ``tqdm`` bar (a context manager; ``.update(n)``, ``.set_postfix_str(s)``).

  Args:
    total: number of steps (None: unknown, then no ETA).
    desc: label in front of the bar.
    unit: what one step is ("batch", "point", "mapping", ...).
    enabled: True / False / None (see the module doc).
    stream: where to draw (default: ``sys.stderr`` at call time).
    leave: keep the finished bar on a terminal (default: erase it); on other streams it
      always stays.
  """
  stream = sys.stderr if stream is None else stream
  show = is_enabled(enabled, stream)
  tty = _isatty(stream)
  return tqdm.tqdm(total=total, desc=desc or None, unit=unit, file=stream, disable=not show,
                   leave=leave or not tty, dynamic_ncols=True,
                   mininterval=0.1 if tty else NON_TTY_INTERVAL_S)


def track(iterable: Iterable[T], *, total: Optional[int] = None, desc: str = "",
          unit: str = "it", count: Optional[Callable[[T], int]] = None,
          count_unit: str = "item", enabled: Optional[bool] = None,
          stream: Optional[TextIO] = None, leave: bool = False) -> Iterator[T]:
  """Yields the items of ``iterable``, advancing a :func:`bar` by one step per finished item.

  An item counts as done when the loop asks for the next one, so the rate and ETA include the
  caller's work on it.

  Args:
    iterable: the items (``len(iterable)`` is the total when it has one and ``total`` is None).
    total, desc, unit, enabled, stream, leave: as :func:`bar`.
    count: how many ``count_unit`` one item holds (e.g. the images of a batch): the bar then
      also shows ``<rate> <count_unit>/s``, the step rate scaled by the mean count per step.
    count_unit: the unit of ``count``.
  """
  if total is None:
    try:
      total = len(iterable)  # type: ignore[arg-type]
    except TypeError:
      total = None
  with bar(total, desc=desc, unit=unit, enabled=enabled, stream=stream, leave=leave) as pbar:
    counted = 0
    for item in iterable:
      yield item
      if count is not None and not pbar.disable:
        counted += int(count(item))
        rate: Any = pbar.format_dict.get("rate")
        if rate is None and pbar.format_dict.get("elapsed", 0) > 0:
          rate = (pbar.n + 1) / pbar.format_dict["elapsed"]
        if rate:
          pbar.set_postfix_str(f"{rate * counted / (pbar.n + 1):.0f} {count_unit}/s",
                               refresh=False)
      pbar.update(1)
