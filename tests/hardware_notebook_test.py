"""Static checks of notebook 03's hardware cells (its source: notebooks/03_hardware.py)."""

import os
import re

import jupytext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _nb03_code() -> list[str]:
  nb = jupytext.read(os.path.join(ROOT, "notebooks", "03_hardware.py"), fmt="py:percent")
  return [c.source for c in nb.cells if c.cell_type == "code"]


def test_comparison_wording_says_less_or_more():
  cell = next(c for c in _nb03_code() if "hw.comparison(result)" in c)
  # The sign convention of energy_reduction_pct must not leak into the text ("+60%" for less).
  assert "energy_reduction_pct']:+" not in cell
  src = re.search(r"def less_or_more\(.*?\n(?:    .*\n)+", cell + "\n").group(0)
  ns: dict = {}
  exec(src, ns)  # pylint: disable=exec-used
  assert ns["less_or_more"](60.4) == "60.4% less"
  assert ns["less_or_more"](-51.3) == "51.3% more"


def test_static_accumulator_bound_is_not_called_a_high_water_mark():
  cell = next(c for c in _nb03_code() if "summarize_events" in c)
  assert "acc_bound_bits" in cell and "high-water mark {" not in cell
