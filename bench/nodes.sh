#!/usr/bin/env bash
# One server against two on one PostgreSQL database (docs/scaling.md): HTTP ingestion and single
# consent checks, each with the same total number of connections, on a throwaway PostgreSQL 15
# cluster (tests/e2e/pgcluster.py). The second server is a copy of the first's data directory
# (the same keys and database URL), as an operator adds one.
#
#   bench/nodes.sh            # 10 s per run; BENCH_SECS=N to change, BENCH_CONNS (128) in all
#
# Prints one line per run: INGEST/CONSENT totals of wrk (bench/ingest.lua,
# bench/consent_check.lua) summed over the servers, and the group-commit figures of each.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-128}
BIN=${CANDOR_BIN:-build/candor}
TMP=$(mktemp -d /tmp/candor-nodes-XXXXXX)
PIDS=()
CLUSTER=""

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "$CLUSTER" ] && python3 tests/e2e/pgcluster.py stop "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

eval "$(python3 tests/e2e/pgcluster.py start)"
CLUSTER=$CANDOR_TEST_PG_DIR

# new_pair NAME: a fresh database and two data directories on it; prints the first directory.
new_pair() {
    local url d="$TMP/$1"
    url=$(python3 -c "import sys; sys.path.insert(0, 'tests/e2e'); import pgcluster; \
print(pgcluster.Cluster(path='$CLUSTER').create_database())")
    mkdir -p "$d"
    "$BIN" init --data "$d/a" --db "$url" >/dev/null
    cp -a "$d/a" "$d/b"
    echo "$d"
}

# serve DIR: starts a server on DIR and adds its port to PORTS.
serve() {
    local port
    port=$(free_port)
    "$BIN" serve --data "$1" --listen "127.0.0.1:$port" --rules rules >"$1/server.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { PORTS+=("$port"); return; }
        sleep 0.05
    done
    echo "server on $1 did not start" >&2
    cat "$1/server.log" >&2
    exit 1
}

stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

commits() {
    curl -fs -H "Authorization: Bearer $2" "http://127.0.0.1:$1/metrics" |
        awk '/^candor_store_batch_size_sum/ {s=$2} /^candor_store_batch_size_count/ {c=$2}
             END {if (c>0) printf "commits=%d mean_batch=%.1f", c, s/c}'
}

# load SCRIPT KIND TOKEN CONNS PORT...: one wrk per port, CONNS shared out; sums the 2xx rates.
load() {
    local script=$1 kind=$2 tok=$3 conns=$4 n out total=0 wp=()
    shift 4
    n=$#
    for port in "$@"; do
        echo "+ wrk -t1 -c$((conns / n)) -d${SECS}s -s $script http://127.0.0.1:$port -- TOKEN ${ARGS:-}" >&2
        wrk -t1 -c$((conns / n)) -d"${SECS}s" --timeout 10s -s "$script" \
            "http://127.0.0.1:$port" -- "$tok" ${ARGS:-} >"$TMP/wrk-$port.out" 2>&1 &
        wp+=($!)
    done
    wait "${wp[@]}"
    for port in "$@"; do
        out=$(grep "^$kind" "$TMP/wrk-$port.out")
        echo "   $out" >&2
        total=$(awk -v t="$total" -v r="$(sed 's/.*rate_2xx=\([0-9.]*\).*/\1/' <<<"$out")" \
            'BEGIN{printf "%.0f", t + r}')
    done
    echo "$total"
}

# servers NAME NODES: a fresh database with NODES servers on it; sets tok and ports.
servers() {
    local d
    d=$(new_pair "$1")
    tok=$(cat "$d/a/admin.token")
    PORTS=()
    serve "$d/a"
    [ "$2" = 2 ] && serve "$d/b"
    ports=("${PORTS[@]}")
}

for nodes in 1 2; do
    servers "ingest$nodes" "$nodes"
    echo "== ingestion, $nodes server(s), $CONNS connections, ${SECS}s" >&2
    rate=$(ARGS="" load bench/ingest.lua INGEST "$tok" "$CONNS" "${ports[@]}")
    for p in "${ports[@]}"; do echo "   $p: $(commits "$p" "$tok")" >&2; done
    echo "NODES ingest servers=$nodes rate_2xx=$rate"
    stop_all
done

for nodes in 1 2; do
    servers "consent$nodes" "$nodes"
    # 200 customers, consent given by every second one.
    ids=($(python3 - "${ports[0]}" "$tok" <<'PY'
import json, sys, urllib.request
port, tok = sys.argv[1:3]
def post(path, body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                               {"Authorization": "Bearer " + tok,
                                "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))
for i in range(200):
    cid = post("/v1/customers", {"jurisdiction": "EU"})["id"]
    if i % 2:
        post("/v1/consents", {"customer_id": cid, "purpose": "marketing", "state": "given",
                              "method": "web_form"})
    print(cid)
PY
))
    echo "== consent checks, $nodes server(s), $CONNS connections, ${SECS}s" >&2
    rate=$(ARGS="${ids[*]}" load bench/consent_check.lua CONSENT "$tok" "$CONNS" "${ports[@]}")
    echo "NODES consent_check servers=$nodes rate_2xx=$rate"
    stop_all
done
