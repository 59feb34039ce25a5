#!/usr/bin/env bash
# Installs the browser tests' npm packages (playwright-core, @axe-core/playwright) exactly as
# package-lock.json pins them (`npm ci`), unless node_modules already holds this lockfile's
# install; so only a changed lockfile needs the registry. The browser is Debian's chromium
# (scripts/install-deps.sh); playwright-core downloads none.
set -euo pipefail
cd "$(dirname "$0")"
for tool in node npm chromium; do
  if ! command -v "$tool" >/dev/null; then
    echo "web: '$tool' is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  fi
done
cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null && exit 0
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
cp package-lock.json node_modules/.installed-lock
