#!/usr/bin/env bash
# Regenerate deploy/requirements/*.txt: each deployable's pinned dependency set, derived from the
# declaration in pyproject.toml and the versions in requirements.lock, for the target (Linux x86_64,
# CPython 3.11). Run after changing either; commit the result. `--check` only reports stale files.
# See infra/deps.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup.sh
if [ "${1:-}" = "--check" ]; then
  exec .venv/bin/python -m infra.deps check
fi
exec .venv/bin/python -m infra.deps lock
