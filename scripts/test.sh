#!/usr/bin/env bash
# Sets up the test environment and runs the default (fast) test suite on all cores.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
set +e
.venv/bin/python -m pytest -n auto -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): treated as failure"; exit 1
fi
exit "$rc"
