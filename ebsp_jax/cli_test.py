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


def test_check_output_path(tmp_path):
  cli.check_output_path(str(tmp_path / "out.json"))                 # a new file
  cli.check_output_path(str(tmp_path / "a" / "b" / "out.json"))     # parents can be created
  (tmp_path / "old.json").write_text("{}")
  cli.check_output_path(str(tmp_path / "old.json"))                 # overwritten
  with pytest.raises(ValueError, match=r"^--output=.* is a directory; give a file path$"):
    cli.check_output_path(str(tmp_path))
  with pytest.raises(ValueError, match=r"^--output=.*/old.json/x.json: .*/old.json is not a "
                                       r"writable directory$"):
    cli.check_output_path(str(tmp_path / "old.json" / "x.json"))
  with pytest.raises(ValueError, match=r"^--records is empty; give a file path$"):
    cli.check_output_path("", "--records")
  # Directories to write into (e.g. --figures_dir).
  cli.check_output_path(str(tmp_path), "--figures_dir", directory=True)
  cli.check_output_path(str(tmp_path / "new" / "figs"), "--figures_dir", directory=True)
  with pytest.raises(ValueError, match=r"^--figures_dir=.*old.json is a file; give a directory$"):
    cli.check_output_path(str(tmp_path / "old.json"), "--figures_dir", directory=True)
  with pytest.raises(ValueError, match="is not a writable directory"):
    cli.check_output_path(str(tmp_path / "old.json" / "figs"), "--figures_dir", directory=True)
