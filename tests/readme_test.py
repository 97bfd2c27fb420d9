"""The README's tour runs as written (the first python block under 'A ten-line tour')."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _block(heading: str) -> str:
  text = open(os.path.join(ROOT, "README.md")).read()
  section = text[text.index(heading):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_tour_runs(capsys):
  ns = {}
  exec(compile(_block("## A ten-line tour"), "README-tour", "exec"), ns)  # pylint: disable=exec-used
  assert ns["logits"].shape == (8, 10)
  out = capsys.readouterr().out
  for name in ("eyeriss", "bitfusion", "wax", "olaccel", "ebsp"):
    assert name in out.lower()


def test_number_format_block_runs():
  ns = {}
  exec(compile("import jax\n" + _block("### The number format"), "README-format", "exec"), ns)
  assert ns["q"].shape == (3, 3, 64, 128) and ns["s"].shape == (1, 1, 1, 128)


def test_two_commands_are_the_scripts():
  text = open(os.path.join(ROOT, "README.md")).read()
  assert "bash scripts/main.sh" in text and "bash scripts/test.sh" in text
  ci = open(os.path.join(ROOT, ".ci", "run")).read().strip().splitlines()[-1]
  assert ci in text
