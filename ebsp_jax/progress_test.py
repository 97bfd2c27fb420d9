"""Tests of the progress helper: when bars show, and what they show."""

from __future__ import annotations

import io
import re
import time

import pytest

from ebsp_jax import progress


class _Tty(io.StringIO):
  def isatty(self):
    return True


def _batches(n, size):
  for i in range(n):
    time.sleep(0.01)
    yield {"label": [0] * size, "i": i}


def test_track_shows_steps_rate_count_rate_and_eta():
  out = _Tty()
  items = []
  for b in progress.track(list(_batches(4, 8)), desc="eval", unit="batch",
                          count=lambda b: len(b["label"]), count_unit="img", stream=out,
                          leave=True):
    time.sleep(0.15)  # > tqdm's 0.1 s redraw interval: every step is drawn
    items.append(b)
  assert [b["i"] for b in items] == [0, 1, 2, 3]   # every item, in order
  text = out.getvalue()
  last = text.replace("\r", "\n").strip().splitlines()[-1]
  assert last.startswith("eval: 100%") and "4/4" in last, last
  assert re.search(r"batch/s", last), last
  assert re.search(r"\d+ img/s", last), last
  # While running: steps done/total, elapsed<remaining (the ETA), the image rate.
  assert re.search(r" [123]/4 \[\d\d:\d\d<\d\d:\d\d,\s+[\d.]+batch/s, \d+ img/s\]",
                   text.replace("\r", "\n")), text


def test_count_rate_is_the_step_rate_times_the_mean_count():
  out = _Tty()
  for _ in progress.track(_batches(6, 10), total=6, unit="batch", count=lambda b: 10,
                          count_unit="img", stream=out, leave=True):
    time.sleep(0.02)
  last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
  steps = float(re.search(r"([\d.]+)batch/s", last).group(1))
  imgs = float(re.search(r"(\d+) img/s", last).group(1))
  assert imgs == pytest.approx(10 * steps, rel=0.35), last


def test_quiet_when_not_a_tty_unless_asked(monkeypatch):
  monkeypatch.delenv(progress.ENV_VAR, raising=False)
  out = io.StringIO()                     # not a terminal: nothing drawn
  assert list(progress.track(range(3), stream=out)) == [0, 1, 2]
  assert out.getvalue() == ""
  out = io.StringIO()                     # asked in the call
  list(progress.track(range(3), desc="x", stream=out, enabled=True, leave=True))
  assert "3/3" in out.getvalue()
  monkeypatch.setenv(progress.ENV_VAR, "1")  # asked by the environment
  out = io.StringIO()
  with progress.bar(total=2, desc="sweep", unit="point", stream=out) as b:
    b.update(2)
  # Not a terminal: the final state stays (leave=False erases only on a terminal).
  assert out.getvalue().rstrip("\n").split("\r")[-1].startswith("sweep: 100%")
  assert "2/2" in out.getvalue()
  out = _Tty()                             # enabled=False beats the environment
  list(progress.track(range(3), stream=out, enabled=False))
  assert out.getvalue() == ""
  monkeypatch.setenv(progress.ENV_VAR, "0")  # hidden even on a terminal
  list(progress.track(range(3), stream=out))
  assert out.getvalue() == ""
  monkeypatch.setenv(progress.ENV_VAR, "yes")
  with pytest.raises(ValueError, match=r"^\$EBSP_JAX_PROGRESS='yes': must be 1 .* or 0"):
    progress.is_enabled()


def test_tty_shows_by_default_and_unknown_total_has_no_eta(monkeypatch):
  monkeypatch.delenv(progress.ENV_VAR, raising=False)
  out = _Tty()
  list(progress.track(iter(range(5)), unit="point", stream=out, leave=True))
  text = out.getvalue()
  assert "5point" in text.replace(" ", "") and "%" not in text   # no total: count, no ETA


def test_early_break_closes_the_bar():
  out = _Tty()
  gen = progress.track(range(10), stream=out, leave=False)
  for i in gen:
    if i == 2:
      break
  gen.close()
  assert out.getvalue()  # drawn, then cleared by close() without raising
