#!/usr/bin/env bash
# System packages askbase's local stack and tests need: Java 17 + the Google Cloud CLI emulators,
# Chromium for the browser test, and the PostgreSQL 15 HTML docs (the PostgreSQL eval set's corpus:
# tests/test_evaluation_postgresql.py, bench/eval_postgresql.py); then axe-core from npm. Installs what
# is missing when it can (root + apt); otherwise says how.
set -euo pipefail
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
[ -f /usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar ] \
  || missing+=(google-cloud-cli-firestore-emulator)
ls /usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar >/dev/null 2>&1 \
  || missing+=(google-cloud-cli-pubsub-emulator)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/doc/postgresql-doc-15/html/index.html ] || missing+=(postgresql-doc-15)
# axe-core (the accessibility checks tests/test_browser_ux.py runs inside each page), pinned by
# tests/axe/package-lock.json and installed into tests/axe/node_modules/ (gitignored).
install_axe() {
  local dir pkg want
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/axe"
  pkg="$dir/node_modules/axe-core/package.json"
  want="$(sed -n 's/.*"axe-core": "\(.*\)".*/\1/p' "$dir/package.json")"
  grep -q "\"version\": \"$want\"" "$pkg" 2>/dev/null && return 0
  echo "==> installing axe-core $want from npm into tests/axe/node_modules"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null \
    || echo "npm could not install axe-core; tests/test_browser_ux.py will fail and say so" >&2
}
if command -v npm >/dev/null 2>&1; then install_axe; else missing+=(npm); fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing system packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
    echo "could not install ${missing[*]} with apt-get; the tests that need them will fail and say so" >&2
  fi
  if command -v npm >/dev/null 2>&1; then install_axe; fi
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  echo "(the emulator packages come from the Google Cloud CLI apt repository)" >&2
fi
