#!/usr/bin/env bash
# The whole stack on this machine until Ctrl+C: emulators, a sample docs site crawled into an index,
# the Q&A chat, botrunner and the two webhook functions. See `askbase dev --help` for options.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup.sh
scripts/system-deps.sh --dev  # what askbase dev needs (Java, the emulators); scripts/test.sh adds the test tools
exec .venv/bin/askbase dev "$@"
