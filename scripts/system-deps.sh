#!/usr/bin/env bash
# System packages askbase's local stack and tests need: Java 17 + the Google Cloud CLI emulators (all
# `askbase dev` needs: `system-deps.sh --dev`, what scripts/dev.sh runs), and for the tests also Chromium
# for the browser test, the PostgreSQL 15 HTML docs (the PostgreSQL eval set's corpus:
# tests/test_evaluation_postgresql.py, bench/eval_postgresql.py) and axe-core from npm. Installs what is
# missing when it can (root + apt); otherwise says how.
#
# The emulator packages (google-cloud-cli-*-emulator) are not in Debian's or Ubuntu's repositories, only
# in Google's apt repository: they are installed by an apt-get call of their own, after the distribution's
# packages, and when apt cannot locate them the script says how to add that repository.
set -euo pipefail
dev_only=false
[ "${1:-}" = "--dev" ] && dev_only=true
PLATFORM="${ASKBASE_GCLOUD_PLATFORM:-/usr/lib/google-cloud-sdk/platform}"  # as shared/emulators.py reads it
debian=()
google=()
command -v java >/dev/null 2>&1 || debian+=(openjdk-17-jre-headless)
[ -f "$PLATFORM/cloud-firestore-emulator/cloud-firestore-emulator.jar" ] \
  || google+=(google-cloud-cli-firestore-emulator)
ls "$PLATFORM"/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar >/dev/null 2>&1 \
  || google+=(google-cloud-cli-pubsub-emulator)
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
if ! $dev_only; then
  command -v chromium >/dev/null 2>&1 || debian+=(chromium)
  [ -f /usr/share/doc/postgresql-doc-15/html/index.html ] || debian+=(postgresql-doc-15)
  if command -v npm >/dev/null 2>&1; then install_axe; else debian+=(npm); fi
fi
[ ${#debian[@]} -eq 0 ] && [ ${#google[@]} -eq 0 ] && exit 0

root=false
[ "$(id -u)" -eq 0 ] && root=true
sudo="sudo "
$root && sudo=""
# Whether apt knows the Google packages (Google's apt repository is configured).
google_located() {
  command -v apt-cache >/dev/null 2>&1 && apt-cache show "${google[@]}" >/dev/null 2>&1
}
google_repository_hint() {
  cat >&2 <<HINT
The ${google[*]} packages come from Google's apt repository, not the distribution's.
Add it (https://cloud.google.com/sdk/docs/install#deb), then run this script again:
  ${sudo}apt-get install -y apt-transport-https ca-certificates gnupg curl
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | ${sudo}gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" | ${sudo}tee /etc/apt/sources.list.d/google-cloud-sdk.list
  ${sudo}apt-get update
HINT
}

if $root && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  if [ ${#debian[@]} -gt 0 ]; then
    echo "==> installing system packages: ${debian[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debian[@]}" >/dev/null; then
      echo "could not install ${debian[*]} with apt-get; what needs them will fail and say so" >&2
    fi
  fi
  if [ ${#google[@]} -gt 0 ]; then
    if ! google_located; then
      echo "apt cannot locate ${google[*]}: Google's apt repository is not configured" >&2
      google_repository_hint
    else
      echo "==> installing the Google Cloud CLI emulators: ${google[*]}"
      if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${google[@]}" >/dev/null; then
        echo "could not install ${google[*]} with apt-get; the emulators will fail to start and say so" >&2
      fi
    fi
  fi
  if ! $dev_only && command -v npm >/dev/null 2>&1; then install_axe; fi
else
  echo "missing system packages: ${debian[*]} ${google[*]}" >&2
  [ ${#debian[@]} -gt 0 ] && echo "install them with: sudo apt-get install ${debian[*]}" >&2
  if [ ${#google[@]} -gt 0 ]; then
    echo "and the emulators with: sudo apt-get install ${google[*]}" >&2
    google_located || google_repository_hint
  fi
fi
exit 0
