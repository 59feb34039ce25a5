#!/usr/bin/env bash
# `make run`: create the data directory on first use, then serve with demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-data}
listen=${2:-127.0.0.1:8080}
if [ ! -f "$data/candor.db" ]; then
  ./build/candor init --data "$data"
fi
echo "Candor on http://$listen — admin token in $data/admin.token"
echo "try: curl -H \"Authorization: Bearer \$(cat $data/admin.token)\" -H 'Candor-Purpose: service' http://$listen/v1/customers?limit=3"
exec ./build/candor serve --data "$data" --listen "$listen" --demo
