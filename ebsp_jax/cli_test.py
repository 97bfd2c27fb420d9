"""Tests of the shared command-line error handling (one line, exit status 2)."""

import pytest
from absl import flags

from ebsp_jax import cli


def test_fail_prints_one_line_and_exits_2(capsys):
  with pytest.raises(SystemExit) as e:
    cli.fail("--x=3: must be even")
  assert e.value.code == 2
  assert capsys.readouterr().err == "error: --x=3: must be even\n"


def test_one_line():
  assert cli.one_line(ValueError("first\nsecond")) == "first"
  assert cli.one_line(KeyError()) == "KeyError"


def test_parse_flags_turns_absl_errors_into_one_line(capsys):
  fv = flags.FlagValues()
  flags.DEFINE_enum("search", "fast", ["fast", "thorough"], "", flag_values=fv)
  saved = flags.FLAGS
  flags.FLAGS = fv            # parse_flags reads the module attribute, as absl's app does
  try:
    assert cli.parse_flags(["prog", "--search=thorough"]) == ["prog"]
    with pytest.raises(SystemExit) as e:
      cli.parse_flags(["prog", "--search=slow"])
  finally:
    flags.FLAGS = saved
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: flag --search=slow: value should be one of") and err.count("\n") == 1
