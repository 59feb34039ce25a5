#!/usr/bin/env bash
# Installs the Debian 12 packages Candor needs to build, run, test and benchmark. git names the
# commit in `candor --version`; groff-base and man-db check the manual pages; systemd's
# systemd-analyze checks contrib/candor.service (tests/e2e/test_install.py, test_production.py);
# nodejs and npm run the OpenAPI validator (tests/openapi, whose own packages `npm ci` installs)
# and the guard benchmark's baseline (bench/redactpii, likewise); chromium runs the web console's
# browser tests (tests/web, playwright-core drives it).
# Idempotent: only missing packages are installed; apt-get only.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang llvm libclang-rt-14-dev
  libsqlite3-dev sqlite3 libpq-dev postgresql
  libsodium-dev libssl-dev openssl libhyperscan-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
  libutf8proc-dev libyaml-dev libcmocka-dev libicu-dev zlib1g-dev
  python3 curl wrk nginx-light util-linux procps
  git groff-base man-db systemd nodejs npm chromium
)
[ "${1:-}" = "--print" ] && { printf '%s\n' "${PKGS[@]}"; exit 0; }

missing=()
for p in "${PKGS[@]}"; do
  # A Node.js installed from its own packages brings npm and conflicts with Debian's npm; a node
  # and npm already on PATH serve as well (the validator runs on Debian 12's node 18 and later).
  case $p in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
