#!/usr/bin/env bash
# The whole test suite: set up .venv, lint, then every test (emulators are started by the fixtures).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup.sh
scripts/system-deps.sh

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> mypy"
.venv/bin/python -m mypy

echo "==> pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
