#!/usr/bin/env bash
# `make bench`: Candor's benchmarks (docs/benchmarks.md), unattended, loopback only, in about
# 7.5 minutes.
#
#   1. bench_store: raw SQLite batched inserts vs cd_core_interaction_ingest and bare
#      cd_store_write from 64 threads (group commit), and both through the asynchronous forms
#      the HTTP server uses, medians of 5 runs.
#   2. HTTP ingestion: `candor serve` pinned to CPU 0, wrk pinned to CPU 1, 256 connections
#      POSTing distinct interactions; a sweep of --workers/--threads, then 3 runs of the best;
#      then the floor under it, bench_http_floor (the same libraries doing the least an
#      ingestion must do), 3 runs with the same pinning, load and connections.
#   3. Timeline: a customer with 10,000 interactions, p50/p99 of 50-item pages under load,
#      the server's RSS afterwards.
#   4. Other in-process benches: bench_merkle, bench_guard (on CPU 1, with @redactpii/node on
#      the same corpus as its baseline, installed by npm ci from bench/redactpii), bench_consent
#      (on CPU 1), bench_export (an access request's package for a customer with 100,000
#      interactions).
#   5. Consent: POST /v1/consents/check vs nginx `return 200`, same pinning and load.
#   6. Audit and encryption: ingestion with them on vs off, `candor audit verify` vs a raw
#      SHA-256 chain, inclusion-proof latency at 10 million entries (their ratios in the
#      summary).
#   (7 in docs/benchmarks.md is a count of instructions made by hand, and 10 is run by its own
#   script, bench/batch.py; neither is part of this run.)
#   8. Webhooks: bench_webhooks (on CPU 1), deliveries per second through the outbox's worker
#      against a local receiver, and a plain libcurl client against the same receiver.
#   9. Two servers on one PostgreSQL database against one (bench/nodes.sh, which starts its own
#      PostgreSQL 15 cluster; skipped without PostgreSQL's binaries).
#  11. Bulk import: bench_import (on CPU 1), `candor import` of an NDJSON file against raw
#      batched SQLite inserts and PostgreSQL COPY of the same rows, with their ratios.
#  12. Cases: the queue with 100,000 open cases and 50 agents, the SLA report over 1M cases,
#      each against plain SQL on the same data (bench_cases).
# Every server gets a fresh data directory under one temporary directory, removed at exit.
# Knobs (environment): BENCH_QUICK=1 shortens everything; BENCH_SECS (wrk duration, 10).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=build/candor
SECS=${BENCH_SECS:-10}
STORE_ROWS=30000
STORE_RUNS=5
RUNS=3
SWEEP=("8 2" "16 2" "64 2" "8 1" "4 2")
CONNS_ALT=(64 512)
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    SECS=${BENCH_SECS:-3}; STORE_ROWS=10000; STORE_RUNS=3; SWEEP=("8 2" "64 2"); CONNS_ALT=()
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/candor-bench.XXXXXX")
SERVER_PID=""
declare -a SUMMARY=()

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
cmd() { printf '$ %s\n' "$*"; }
row() { SUMMARY+=("$(printf '%-44s %s' "$1" "$2")"); }

for tool in wrk taskset python3 curl; do
    if ! command -v "$tool" >/dev/null; then
        say "bench: '$tool' is missing (scripts/install-deps.sh installs it)"
        exit 1
    fi
done
[ -x "$BIN" ] || { say "bench: $BIN is not built (make build/candor)"; exit 1; }
NCPU=$(nproc)
PIN_SRV="taskset -c 0"
PIN_GEN="taskset -c 1"
if [ "$NCPU" -lt 2 ]; then PIN_SRV=""; PIN_GEN=""; fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

# new_data NAME: a fresh initialised data directory; prints its path.
new_data() {
    local d="$TMP/$1"
    rm -rf "$d"
    if ! "$BIN" init --data "$d" >"$TMP/init.log" 2>&1; then
        say "bench: candor init failed:" >&2; cat "$TMP/init.log" >&2; return 1
    fi
    printf '%s\n' "$d"
}

# wait_ready URL PID LOG: waits up to 10 s for URL to answer; if it does not (or PID exits),
# prints the end of LOG and fails.
wait_ready() {
    for _ in $(seq 1 200); do
        if curl -fs "$1" >/dev/null 2>&1; then return 0; fi
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    say "bench: the server did not start:"; tail -5 "$3"
    return 1
}

# start_server DATA WORKERS THREADS: sets SERVER_PID and PORT; stderr logs to DATA/server.log.
start_server() {
    PORT=$(free_port)
    cmd "$PIN_SRV $BIN serve --data $1 --listen 127.0.0.1:$PORT --workers $2 --threads $3"
    $PIN_SRV "$BIN" serve --data "$1" --listen "127.0.0.1:$PORT" --workers "$2" --threads "$3" \
        --rules rules >"$1/server.out" 2>"$1/server.log" &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/healthz" "$SERVER_PID" "$1/server.log" && return 0
    SERVER_PID=""
    return 1
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=""
    fi
}

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" | tail -1; }

# Each section that times durable writes starts with the dirty pages of the one before written
# out, so that their writeback does not land among its fsyncs.
settle() { sync; sleep 1; }

say "== Candor benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -srm), $NCPU CPUs"
say "   $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
say "   temporary data under $TMP (filesystem: $(df -T "$TMP" | awk 'NR==2 {print $2}'))"

# ---- 1. store ------------------------------------------------------------------------------
say ""
say "== 1. raw SQLite batched vs in-process store (bench_store)"
settle
RAW=""
if [ -x build/bench/bench_store ]; then
    cmd "build/bench/bench_store $STORE_ROWS $STORE_RUNS 64 $TMP"
    build/bench/bench_store "$STORE_ROWS" "$STORE_RUNS" 64 "$TMP" | tee "$TMP/store.out"
    LINE=$(grep '^bench_store: median' "$TMP/store.out")
    RAW=$(printf '%s' "$LINE" | sed -n 's/.*raw_sqlite_batched=\([0-9]*\).*/\1/p')
    CORE=$(printf '%s' "$LINE" | sed -n 's/.*core_ingest=\([0-9]*\).*/\1/p')
    STW=$(printf '%s' "$LINE" | sed -n 's/.*store_write=\([0-9]*\).*/\1/p')
    COREA=$(printf '%s' "$LINE" | sed -n 's/.*core_async=\([0-9]*\).*/\1/p')
    STWA=$(printf '%s' "$LINE" | sed -n 's/.*store_async=\([0-9]*\).*/\1/p')
    pct() { awk -v a="$1" -v b="$RAW" 'BEGIN{printf "%.1f", 100*a/b}'; }
    if [ -n "$RAW" ]; then
        row "(1a) raw SQLite, 1000 rows/COMMIT" "$RAW rows/s"
        row "(1b) cd_core_interaction_ingest, 64 thr" "$CORE rows/s = $(pct "$CORE")% of raw"
        # The target is the store's insert rate with the batching freedom raw SQLite has (1e:
        # as many writes in flight as the caller gives it). The blocking form (1c) is bounded by
        # its 64 threads: at most 64 rows per COMMIT, against raw's 1000.
        row "(1c) cd_store_write bare insert, 64 thr" "$STW rows/s = $(pct "$STW")% of raw (<= 64 rows per COMMIT)"
        row "(1d) core ingest async (HTTP's path), 4 thr" "$COREA rows/s = $(pct "$COREA")% of raw"
        row "(1e) cd_store_write_async bare insert" "$STWA rows/s = $(pct "$STWA")% of raw (target >= 25%)"
    else
        row "(1) bench_store" "FAILED (see above)"
    fi
else
    row "(1) bench_store" "not built"
fi

# ---- 2. HTTP ingestion ---------------------------------------------------------------------
say ""
say "== 2. HTTP ingestion (server on CPU 0, wrk on CPU 1, ${SECS}s per run)"
settle
# cpu_ticks PID: the process's user + system CPU so far, in clock ticks (proc(5), fields 14-15).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ingest_run WORKERS THREADS CONNS: one run on a fresh data directory; prints the 2xx rate.
# The server's CPU time per acknowledged interaction goes to $TMP/cpu_us: unlike the rate, it
# hardly moves when other work shares the machine, so two builds compare on it under noise.
ingest_run() {
    local d tok out t0 t1
    settle
    d=$(new_data "ingest") || return 1
    tok=$(cat "$d/admin.token")
    start_server "$d" "$1" "$2" >&2 || return 1
    cmd "$PIN_GEN wrk -t1 -c$3 -d${SECS}s -s bench/ingest.lua http://127.0.0.1:$PORT -- \$(cat $d/admin.token)" >&2
    t0=$(cpu_ticks "$SERVER_PID")
    out=$($PIN_GEN wrk -t1 -c"$3" -d"${SECS}s" --timeout 10s -s bench/ingest.lua \
        "http://127.0.0.1:$PORT" -- "$tok" 2>&1)
    t1=$(cpu_ticks "$SERVER_PID")
    printf '%s\n' "$out" | grep -E '^INGEST|Requests/sec|Non-2xx|Socket errors' >&2
    printf '%s\n' "$out" | grep '^INGEST' | field 2xx |
        awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
            '$1 > 0 {printf "%.1f\n", 1e6 * t / hz / $1}' >"$TMP/cpu_us"
    say "   server CPU per acknowledged interaction: $(cat "$TMP/cpu_us") us" >&2
    # The group-commit figures of this run, from /metrics.
    curl -fs -H "Authorization: Bearer $tok" "http://127.0.0.1:$PORT/metrics" 2>/dev/null |
        awk '/^candor_store_batch_size_sum/ {s=$2} /^candor_store_batch_size_count/ {c=$2}
             /^candor_store_commit_duration_seconds_sum/ {t=$2}
             END {if (c>0) printf "   group commit: %d commits, mean batch %.1f, mean COMMIT %.2f ms\n", c, s/c, 1000*t/c}' >&2
    stop_server
    printf '%s\n' "$out" | grep '^INGEST' | field rate_2xx
}

BEST_RATE=0; BEST_CFG="64 2"
for cfg in "${SWEEP[@]}"; do
    set -- $cfg
    say "-- --workers $1 --threads $2, 256 connections"
    r=$(ingest_run "$1" "$2" 256); r=${r:-0}
    say "   => $r interactions/s acknowledged (2xx)"
    if awk -v a="$r" -v b="$BEST_RATE" 'BEGIN{exit !(a>b)}'; then BEST_RATE=$r; BEST_CFG="$1 $2"; fi
done
set -- $BEST_CFG
BEST_CONNS=256
for c in "${CONNS_ALT[@]}"; do
    say "-- --workers $1 --threads $2, $c connections"
    r=$(ingest_run "$1" "$2" "$c"); r=${r:-0}
    say "   => $r interactions/s acknowledged (2xx)"
    if awk -v a="$r" -v b="$BEST_RATE" 'BEGIN{exit !(a>b)}'; then BEST_RATE=$r; BEST_CONNS=$c; fi
done
say "-- best: --workers $1 --threads $2, $BEST_CONNS connections; $RUNS runs for the median"
RATES=(); CPUS=()
for i in $(seq 1 "$RUNS"); do
    r=$(ingest_run "$1" "$2" "$BEST_CONNS"); RATES+=("${r:-0}"); CPUS+=("$(cat "$TMP/cpu_us")")
    say "   run $i: ${r:-0} interactions/s"
done
HTTP_MED=$(printf '%s\n' "${RATES[@]}" | median)
row "(2) HTTP ingest, --workers $1 --threads $2, -c$BEST_CONNS" \
    "$HTTP_MED interactions/s (median of $RUNS; target >= 20000)"
row "(2) server CPU per interaction" "$(printf '%s\n' "${CPUS[@]}" | median) us (median of $RUNS)"
if [ -n "$RAW" ]; then
    row "(2) HTTP / raw SQLite batched" \
        "$(awk -v a="$HTTP_MED" -v b="$RAW" 'BEGIN{printf "%.1f", 100*a/b}')%"
fi

# floor_run CONNS: one run of bench_http_floor on a fresh directory; prints the 2xx rate.
floor_run() {
    local d="$TMP/floor" out
    settle
    rm -rf "$d" && mkdir -p "$d"
    PORT=$(free_port)
    cmd "$PIN_SRV build/bench/bench_http_floor $PORT $d" >&2
    $PIN_SRV build/bench/bench_http_floor "$PORT" "$d" 2>"$d/server.log" &
    SERVER_PID=$!
    if ! wait_ready "http://127.0.0.1:$PORT/healthz" "$SERVER_PID" "$d/server.log" >&2; then
        stop_server
        return 1
    fi
    cmd "$PIN_GEN wrk -t1 -c$1 -d${SECS}s -s bench/ingest.lua http://127.0.0.1:$PORT -- none" >&2
    out=$($PIN_GEN wrk -t1 -c"$1" -d"${SECS}s" --timeout 10s -s bench/ingest.lua \
        "http://127.0.0.1:$PORT" -- none 2>&1)
    printf '%s\n' "$out" | grep -E '^INGEST' >&2
    stop_server
    printf '%s\n' "$out" | grep '^INGEST' | field rate_2xx
}

if [ -x build/bench/bench_http_floor ]; then
    say "-- the floor: bench_http_floor (libmicrohttpd + jansson + SQLite group commit, nothing"
    say "   else), $BEST_CONNS connections; $RUNS runs for the median"
    FLOORS=()
    for i in $(seq 1 "$RUNS"); do
        r=$(floor_run "$BEST_CONNS"); FLOORS+=("${r:-0}")
        say "   run $i: ${r:-0} interactions/s"
    done
    FLOOR_MED=$(printf '%s\n' "${FLOORS[@]}" | median)
    row "(2) floor: bench_http_floor, -c$BEST_CONNS" "$FLOOR_MED interactions/s (median of $RUNS)"
    row "(2) HTTP ingest / floor" \
        "$(awk -v a="$HTTP_MED" -v b="$FLOOR_MED" 'BEGIN{if (b>0) printf "%.1f", 100*a/b; else print "n/a"}')%"
else
    row "(2) floor: bench_http_floor" "not built"
fi

# ---- 3. timeline ---------------------------------------------------------------------------
say ""
say "== 3. timeline latency, customer with 10,000 interactions"
settle
D=$(new_data "timeline")
TOK=$(cat "$D/admin.token")
cmd "build/bench/bench_store --preload $D 10000"
CUS=$(build/bench/bench_store --preload "$D" 10000 | tail -1)
# The default worker pool: every timeline read waits on a worker for its durable audit event.
if [ -n "$CUS" ] && start_server "$D" 64 2; then
    # Cursors of pages 2..20, so the load walks different parts of the index.
    CURSORS=$(python3 - "$PORT" "$TOK" "$CUS" <<'EOF'
import json, sys, urllib.request
port, tok, cus = sys.argv[1:4]
cur, out = "", []
for _ in range(19):
    url = f"http://127.0.0.1:{port}/v1/customers/{cus}/timeline?limit=50" + (f"&cursor={cur}" if cur else "")
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + tok, "Candor-Purpose": "service"})
    page = json.load(urllib.request.urlopen(req))
    assert len(page["items"]) == 50, len(page["items"])
    cur = page["next_cursor"]
    out.append(cur)
print(" ".join(out))
EOF
)
    P50=(); P99=(); TRATE=()
    for i in $(seq 1 "$RUNS"); do
        cmd "$PIN_GEN wrk -t1 -c32 -d${SECS}s --latency -s bench/timeline.lua http://127.0.0.1:$PORT -- \$(cat $D/admin.token) $CUS <19 cursors>"
        out=$($PIN_GEN wrk -t1 -c32 -d"${SECS}s" --latency -s bench/timeline.lua \
            "http://127.0.0.1:$PORT" -- "$TOK" "$CUS" $CURSORS 2>&1)
        printf '%s\n' "$out" | grep -E '^TIMELINE|Requests/sec'
        line=$(printf '%s\n' "$out" | grep '^TIMELINE')
        P50+=("$(printf '%s' "$line" | field p50_ms)")
        P99+=("$(printf '%s' "$line" | field p99_ms)")
        TRATE+=("$(printf '%s' "$line" | field rate_2xx)")
    done
    RSS=$(awk '/^VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status")
    HWM=$(awk '/^VmHWM/ {print $2, $3}' "/proc/$SERVER_PID/status")
    say "   server RSS after the runs: VmRSS $RSS, VmHWM $HWM"
    stop_server
    row "(3) timeline 50/page, 10k items, -c32" \
        "p50 $(printf '%s\n' "${P50[@]}" | median) ms, p99 $(printf '%s\n' "${P99[@]}" | median) ms, $(printf '%s\n' "${TRATE[@]}" | median) pages/s (medians of $RUNS)"
    row "(3) server RSS after timeline load" "VmRSS $RSS, VmHWM $HWM"
else
    row "(3) timeline" "FAILED (preload or server start)"
fi

# ---- 4. other in-process benches -----------------------------------------------------------
say ""
say "== 4. other benches"
other() {
    local name=$1; shift
    if [ ! -x "build/bench/$name" ]; then
        row "(${SEC:-4}) $name" "not built"
        return
    fi
    cmd "${PIN_RUN:+$PIN_RUN }timeout 300 build/bench/$name $*"
    if ${PIN_RUN:-} timeout 300 "build/bench/$name" "$@" >"$TMP/$name.out" 2>&1; then
        cat "$TMP/$name.out"
        # Their summary lines: medians and ratios, else the last lines.
        { grep -E '^(median|ratio|inclusion|consistency|1 KB messages|export)|^  (decide|raw hash|bulk|projection)' \
            "$TMP/$name.out" ||
            tail -n 3 "$TMP/$name.out"; } | while IFS= read -r l; do printf '%s\n' "$l"; done \
            >"$TMP/$name.sum"
        while IFS= read -r l; do row "(${SEC:-4}) $name" "$l"; done <"$TMP/$name.sum"
    else
        rc=$?
        tail -n 20 "$TMP/$name.out"
        row "(${SEC:-4}) $name" "FAILED (exit $rc)"
    fi
}
other bench_merkle
# The guard with every pack on, and in the same run its baseline: @redactpii/node (PII only,
# JavaScript regular expressions; installed from npm by its lockfile in bench/redactpii) over
# the same corpus, both pinned to CPU 1.
PIN_RUN="$PIN_GEN" other bench_guard rules 110 5 "$TMP/guard-corpus.bin"
guard_baseline() {
    local g gc r rc
    g=$(awk '/^median guard:/ {print $3}' "$TMP/bench_guard.out" 2>/dev/null)
    gc=$(awk '/^median guard:/ {print $7}' "$TMP/bench_guard.out" 2>/dev/null)
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        row "(4) guard vs @redactpii/node" "baseline not run (node and npm are missing)"
        return
    fi
    if ! npm ci --prefix bench/redactpii --no-audit --no-fund --loglevel=error \
        >"$TMP/npm.log" 2>&1; then
        tail -n 5 "$TMP/npm.log"
        row "(4) guard vs @redactpii/node" "baseline not run (npm ci failed)"
        return
    fi
    cmd "${PIN_GEN:+$PIN_GEN }node bench/redactpii/bench.mjs CORPUS 5"
    $PIN_GEN node bench/redactpii/bench.mjs "$TMP/guard-corpus.bin" 5 | tee "$TMP/redactpii.out"
    r=$(awk '/^median @redactpii/ {print $3}' "$TMP/redactpii.out")
    rc=$(awk '/^median @redactpii/ {print $5}' "$TMP/redactpii.out")
    rm -f "$TMP/guard-corpus.bin"
    if [ -n "$g" ] && [ -n "$r" ]; then
        row "(4) guard vs @redactpii/node" \
            "guard $g MB/s (every pack), @redactpii/node $r MB/s (PII only): $(awk -v a="$g" -v b="$r" 'BEGIN {printf "%.2f", a / b}')x (target >= 2x)"
        row "(4) the same in CPU time" \
            "guard $gc MB/s, @redactpii/node $rc MB/s: $(awk -v a="$gc" -v b="$rc" 'BEGIN {printf "%.2f", a / b}')x"
    else
        row "(4) guard vs @redactpii/node" "FAILED (no figure)"
    fi
}
guard_baseline
# In-process consent decisions on one core: 1 million customers x 5 purposes.
PIN_RUN="$PIN_GEN" other bench_consent
# The export of an access request for a customer with 100,000 interactions: seconds, peak RSS.
other bench_export "$([ "${BENCH_QUICK:-0}" = 1 ] && echo 20000 || echo 100000)" rules

# ---- 5. consent: HTTP single decision vs nginx `return 200` -------------------------------
# Owned by the consent engine; self-contained. nginx (Debian nginx-light) and candor are each
# pinned to CPU 0, wrk to CPU 1, same settings: -t1 -c64, medians of $RUNS runs.
say ""
say "== 5. consent check over HTTP vs nginx return 200 (server on CPU 0, wrk on CPU 1)"
consent_wrk() { # URL LUA ARGS...: prints Requests/sec
    local url=$1 lua=$2; shift 2
    $PIN_GEN wrk -t1 -c64 -d"${SECS}s" --timeout 10s ${lua:+-s "$lua"} "$url" ${1:+--} "$@" 2>&1 |
        awk '/^Requests\/sec/ {print $2} /^CONSENT|Non-2xx|Socket errors/ {print > "/dev/stderr"}'
}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
NG_RATE=""; CS_RATE=""
if [ -x "$NGINX" ]; then
    NGD="$TMP/nginx"; mkdir -p "$NGD/logs" "$NGD/tmp"
    NGPORT=$(free_port)
    cat >"$NGD/nginx.conf" <<NGEOF
daemon off;
worker_processes 1;
pid $NGD/nginx.pid;
error_log $NGD/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $NGD/tmp/body; proxy_temp_path $NGD/tmp/proxy;
    fastcgi_temp_path $NGD/tmp/fcgi; uwsgi_temp_path $NGD/tmp/uwsgi; scgi_temp_path $NGD/tmp/scgi;
    server { listen 127.0.0.1:$NGPORT; location / { return 200 "ok"; } }
}
NGEOF
    cmd "$PIN_SRV $NGINX -p $NGD -c $NGD/nginx.conf -e $NGD/logs/error.log"
    $PIN_SRV "$NGINX" -p "$NGD" -c "$NGD/nginx.conf" -e "$NGD/logs/error.log" &
    NG_PID=$!
    wait_ready "http://127.0.0.1:$NGPORT/" "$NG_PID" "$NGD/logs/error.log"
    cmd "$PIN_GEN wrk -t1 -c64 -d${SECS}s http://127.0.0.1:$NGPORT/"
    R=()
    for i in $(seq 1 "$RUNS"); do r=$(consent_wrk "http://127.0.0.1:$NGPORT/" ""); R+=("${r:-0}"); say "   nginx run $i: ${r:-0} req/s"; done
    NG_RATE=$(printf '%s\n' "${R[@]}" | median)
    kill "$NG_PID" 2>/dev/null; wait "$NG_PID" 2>/dev/null
else
    say "   nginx not installed (apt-get install nginx-light)"
fi
D=$(new_data "consent")
if [ -n "$D" ] && start_server "$D" 64 1; then
    TOK=$(cat "$D/admin.token")
    IDS=()
    for i in $(seq 1 32); do
        jur=EU; [ $((i % 2)) = 0 ] && jur=US-CA
        id=$(curl -fs -X POST -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
            -d "{\"jurisdiction\":\"$jur\",\"time_zone\":\"Europe/Berlin\"}" \
            "http://127.0.0.1:$PORT/v1/customers" | sed -n 's/.*"id":"\(cus_[0-9A-Z]*\)".*/\1/p')
        [ -n "$id" ] || continue
        IDS+=("$id")
        curl -fs -o /dev/null -X POST -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
            -d "{\"customer_id\":\"$id\",\"purpose\":\"marketing\",\"state\":\"given\",\"method\":\"api\"}" \
            "http://127.0.0.1:$PORT/v1/consents"
    done
    say "   ${#IDS[@]} customers, each with a marketing consent"
    cmd "$PIN_GEN wrk -t1 -c64 -d${SECS}s -s bench/consent_check.lua http://127.0.0.1:$PORT -- \$TOKEN ${#IDS[@]} ids"
    R=()
    for i in $(seq 1 "$RUNS"); do
        r=$(consent_wrk "http://127.0.0.1:$PORT" bench/consent_check.lua "$TOK" "${IDS[@]}"); R+=("${r:-0}")
        say "   candor run $i: ${r:-0} req/s"
    done
    CS_RATE=$(printf '%s\n' "${R[@]}" | median)
    stop_server
fi
row "(5) nginx return 200, -c64" "${NG_RATE:-n/a} req/s (median of $RUNS)"
row "(5) POST /v1/consents/check, -c64" "${CS_RATE:-n/a} req/s (median of $RUNS)"
if [ -n "$NG_RATE" ] && [ -n "$CS_RATE" ]; then
    row "(5) consent check / nginx" \
        "$(awk -v a="$CS_RATE" -v b="$NG_RATE" 'BEGIN{printf "%.1f", 100*a/b}')% (target >= 50%)"
fi
# ---- end of 5 ------------------------------------------------------------------------------

# ---- 6. audit and encryption overhead, offline verification --------------------------------
# Both figures are ratios measured inside one run of each bench: ingestion with audit and
# encryption on vs the same statements in plaintext without audit (target >= 0.70), and
# `candor audit verify` vs a raw SHA-256 chain over the same entry bytes (target >= 0.50),
# with the verifier's CPU per entry (its two threads do not always get two cores) and the
# inclusion-proof latency at 10 million entries. Their lines go into the summary below.
say ""
say "== 6. audit and encryption: ingestion overhead and offline verification"
# Five on/off pairs: the ratio of a single pair swings by about 0.1 with the disk's fsync times.
AUDIT_ROWS=40000; AUDIT_RUNS=5; AUDIT_VERIFY="200000 10000000"
if [ "${BENCH_QUICK:-0}" = 1 ]; then AUDIT_ROWS=15000; AUDIT_RUNS=3; AUDIT_VERIFY="100000 1000000"; fi
for b in "bench_ingest_overhead $AUDIT_ROWS $AUDIT_RUNS 64 $TMP" "bench_audit_verify $AUDIT_VERIFY $TMP"; do
    set -- $b
    if [ ! -x "build/bench/$1" ]; then row "(6) $1" "not built"; continue; fi
    settle
    cmd "timeout 900 build/bench/$*"
    timeout 900 "build/bench/$1" "${@:2}" 2>&1 | grep -v '^{' | tee "$TMP/$1.out"
    if [ "${PIPESTATUS[0]}" = 0 ]; then
        grep -E '^(bench_ingest_overhead: median|ratio|\(b\) CPU|inclusion|access log)' "$TMP/$1.out" |
            sed 's/^bench_ingest_overhead: //' >"$TMP/$1.sum"
        while IFS= read -r l; do row "(6) $1" "$l"; done <"$TMP/$1.sum"
    else
        row "(6) $1" "FAILED (see above)"
    fi
done
# ---- end of 6 ------------------------------------------------------------------------------

# ---- 8. webhooks ----------------------------------------------------------------------------
# Owned by the outbox; self-contained. One process on CPU 1: a libmicrohttpd receiver answering
# 204, the outbox's delivery worker draining events queued beforehand (each claim and outcome a
# durable write), and as the baseline a plain libcurl client posting bodies of the same size to
# the same receiver with as many in flight. Medians of 3 runs, each on a fresh database.
say ""
say "== 8. webhook deliveries vs a plain HTTP client, against a local receiver (CPU 1)"
HOOK_EVENTS=20000
if [ "${BENCH_QUICK:-0}" = 1 ]; then HOOK_EVENTS=5000; fi
settle
SEC=8 PIN_RUN="$PIN_GEN" other bench_webhooks "$HOOK_EVENTS" 8 3 "$TMP"
# ---- end of 8 ------------------------------------------------------------------------------

# ---- 9. one server against two on one PostgreSQL database ----------------------------------
# bench/nodes.sh starts its own PostgreSQL 15 cluster from Debian's binaries; without them the
# section says so. Its NODES lines (2xx rates summed over the servers) go into the summary,
# with the two-server rate as a ratio of the one-server rate.
say ""
say "== 9. one server against two on one PostgreSQL database"
if python3 -c "import sys; sys.path.insert(0, 'tests/e2e'); import pgcluster; pgcluster.bindir()" \
    >/dev/null 2>&1; then
    settle
    cmd "BENCH_SECS=$SECS bench/nodes.sh"
    if BENCH_SECS="$SECS" timeout 900 bash bench/nodes.sh 2>&1 | tee "$TMP/nodes.out" | grep -v '^{'; then
        for kind in ingest consent_check; do
            one=$(grep "^NODES $kind servers=1 " "$TMP/nodes.out" | field rate_2xx)
            two=$(grep "^NODES $kind servers=2 " "$TMP/nodes.out" | field rate_2xx)
            row "(9) $kind, one / two servers" "${one:-n/a} / ${two:-n/a} req/s ($(awk -v a="${two:-0}" \
                -v b="${one:-0}" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}'))"
        done
    else
        row "(9) bench/nodes.sh" "FAILED (see above)"
    fi
else
    row "(9) bench/nodes.sh" "skipped: no PostgreSQL 15 binaries (apt install postgresql-15)"
fi
# ---- end of 9 ------------------------------------------------------------------------------

# ---- 11. bulk import vs raw bulk loads ------------------------------------------------------
# `candor import` of an NDJSON file (check pass, then every record through core: sealing per
# customer, a ledger entry and an Idempotency-Key each) against raw batched SQLite inserts and
# against PostgreSQL COPY of the same rows, in the same run; medians of 3 runs, pinned to CPU 1,
# with a PostgreSQL cluster of its own (tests/e2e/pgcluster.py).
say ""
say "== 11. bulk import vs raw SQLite batched inserts and PostgreSQL COPY (CPU 1)"
IMPORT_ROWS=20000
if [ "${BENCH_QUICK:-0}" = 1 ]; then IMPORT_ROWS=5000; fi
settle
IMPORT_PG=""
if PGENV=$(python3 tests/e2e/pgcluster.py start 2>"$TMP/pg.err"); then
    IMPORT_PG=$(sed -n 's/^export CANDOR_TEST_PG_DIR=//p' <<<"$PGENV")
    IMPORT_URL=$(python3 -c "import sys; sys.path.insert(0, 'tests/e2e'); import pgcluster; \
print(pgcluster.Cluster(path='$IMPORT_PG').create_database())")
else
    cat "$TMP/pg.err"; IMPORT_URL=""
fi
SEC=11 PIN_RUN="$PIN_GEN" other bench_import "$IMPORT_ROWS" 3 "$TMP" ${IMPORT_URL:+"$IMPORT_URL"}
[ -n "$IMPORT_PG" ] && python3 tests/e2e/pgcluster.py stop "$IMPORT_PG" >/dev/null 2>&1
# ---- end of 11 -----------------------------------------------------------------------------

# ---- 12. cases: the queue and the SLA report against plain SQL -----------------------------
# In process, one invocation: 100,000 open cases and 50 agents asking at once (p50/p99 of the
# queue's choice and claim against a plain indexed query on the same file), then the SLA
# report over a year of 1M cases against the same aggregation in raw SQL (medians of 3).
say ""
say "== 12. cases: the queue (100,000 open cases, 50 agents) and the SLA report (1M cases)"
CASES_ARGS="100000 50 1000000 $TMP"
if [ "${BENCH_QUICK:-0}" = 1 ]; then CASES_ARGS="20000 50 100000 $TMP"; fi
if [ -x build/bench/bench_cases ]; then
    settle
    cmd "timeout 1800 build/bench/bench_cases $CASES_ARGS"
    timeout 1800 build/bench/bench_cases $CASES_ARGS 2>&1 | grep -v '^{' | tee "$TMP/bench_cases.out"
    if [ "${PIPESTATUS[0]}" = 0 ]; then
        grep -E '^  (preview|take|report)|^ratio' "$TMP/bench_cases.out" | sed 's/^  //' |
            while IFS= read -r l; do row "(12) bench_cases" "$l"; done
    else
        row "(12) bench_cases" "FAILED (see above)"
    fi
else
    row "(12) bench_cases" "not built"
fi
# ---- end of 12 -----------------------------------------------------------------------------

# ---- summary -------------------------------------------------------------------------------
say ""
say "== summary ($(date -u +%Y-%m-%d), $NCPU CPUs; server pinned: '${PIN_SRV:-none}', load: '${PIN_GEN:-none}')"
for l in "${SUMMARY[@]}"; do say "$l"; done
