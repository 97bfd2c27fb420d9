"""What the command-line mains share: user errors as one line on stderr and exit status 2.

Every main (``experiments/*.py``) reports a bad flag value, a bad combination or a missing file
as ``error: <one line>`` and exits with 2, never with a traceback; absl's own flag errors
(e.g. a value outside an enum) included, through :func:`parse_flags`::

    app.run(main, flags_parser=cli.parse_flags)

which also makes ``--help`` / ``-h`` / ``--helpfull`` exit with 0 after printing the help
(absl exits with 1).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, List, NoReturn

from absl import flags


def one_line(e: BaseException) -> str:
  """The first line of ``e``'s message, or its type name when it has none."""
  text = str(e)
  return text.splitlines()[0] if text.strip() else type(e).__name__


def fail(msg: str) -> NoReturn:
  """Prints ``error: msg`` to stderr and exits with status 2."""
  sys.stdout.flush()
  print(f"error: {msg}", file=sys.stderr, flush=True)
  sys.exit(2)


#: absl's help flags (``--help``, ``-?``, ``--helpshort``, ``--helpfull``, ``--helpxml``).
_HELP_FLAGS = ("help", "?", "helpshort", "helpfull", "helpxml")


def _asks_for_help(argv: List[str]) -> bool:
  for arg in argv[1:]:
    if arg == "--":
      return False
    name = arg.lstrip("-").split("=", 1)[0]
    if arg.startswith("-") and name in _HELP_FLAGS and arg.split("=", 1)[-1].lower() not in (
        "false", "0"):
      return True
  return False


def parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parser (``app.run(..., flags_parser=parse_flags)``) with one-line errors;
  a help request (``-h`` too) prints the help and exits with 0."""
  argv = [argv[0]] + [a if a != "-h" else "--help" for a in argv[1:]]
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(one_line(e))
  except SystemExit as e:  # absl prints the help, then exits with 1
    if e.code == 1 and _asks_for_help(argv):
      sys.exit(0)
    raise


def load_json(path: str, what: str) -> Any:
  """The JSON content of ``path``; a missing or unreadable file is a one-line ``ValueError``
  that starts with ``what`` (e.g. ``"events file 'x.json'"``)."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise ValueError(f"{what} does not exist") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{what} is not readable JSON: {one_line(e)}") from None


def check_output_path(path: str, flag: str = "--output", directory: bool = False) -> None:
  """Refuses, before any work, an output path that cannot be written (``ValueError``, one line).

  A file path (``directory=False``) must not be a directory and, if it exists, must be
  writable; a directory path must not be a file. Missing parent directories are fine (the
  writer creates them, e.g. ``os.makedirs(dirname, exist_ok=True)``) when the nearest existing
  ancestor is a writable directory.

  Args:
    path: the path given on the command line.
    flag: the flag's name as the user typed it, for the message (``--output``).
    directory: ``path`` names a directory to write files into (e.g. ``--figures_dir``).
  """
  if not path:
    raise ValueError(f"{flag} is empty; give a {'directory' if directory else 'file'} path")
  if directory:
    if os.path.exists(path) and not os.path.isdir(path):
      raise ValueError(f"{flag}={path} is a file; give a directory")
  else:
    if os.path.isdir(path):
      raise ValueError(f"{flag}={path} is a directory; give a file path")
    if os.path.exists(path) and not os.access(path, os.W_OK):
      raise ValueError(f"{flag}={path}: the file is not writable")
  probe = os.path.abspath(path) if directory else os.path.dirname(os.path.abspath(path))
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
    raise ValueError(f"{flag}={path}: {probe} is not a writable directory")
