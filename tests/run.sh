#!/usr/bin/env bash
# `make test`: lint, the OpenAPI document's validation, unit tests (cmocka, ASan+UBSan),
# end-to-end tests against the real binary, fuzz-corpus replay and the guard quality floors; the
# benchmarks are compiled (not run). Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
JOBS=${JOBS:-$(nproc)}
# Compiled guard rule sets are cached here (see src/guard/load.c), not in the user's home.
export CANDOR_CACHE_DIR="${CANDOR_CACHE_DIR:-$PWD/build/cache}"
passed=0
failed=0
failures=()

ok()   { passed=$((passed + ${2:-1})); }
bad()  { failed=$((failed + ${2:-1})); failures+=("$1"); echo "FAIL: $1" >&2; }

section() { printf '\n== %s ==\n' "$1"; }

section lint
if bash scripts/lint.sh; then ok lint; else bad lint; fi

# docs/openapi.yaml against the OpenAPI 3.1 schema and the rules the schema cannot state; each
# problem is printed as file:line: where in the document: what is wrong. The e2e tests check
# that GET /v1/openapi.json serves this same document.
section openapi
if bash tests/openapi/setup.sh && node tests/openapi/validate.mjs docs/openapi.yaml; then
  ok openapi
else
  bad "openapi (docs/openapi.yaml, see above)"
fi

section build
if ! make -s -j"$JOBS" build/asan/candor build/candor unit bench-build >/tmp/candor-build.$$ 2>&1; then
  cat /tmp/candor-build.$$ >&2
  bad build
  echo "$passed passed, $failed failed"
  exit 1
fi
rm -f /tmp/candor-build.$$
ok build
# Test-only entry points (src/*/testing.c) never reach a candor binary.
for bin in build/candor build/asan/candor; do
  if nm "$bin" | grep -E ' T (cd_consent_debug_apply|cd_clock_override)$'; then
    bad "$bin links test-only entry points"
  fi
done

# One PostgreSQL cluster for the whole run (tests/e2e/pgcluster.py: initdb into a temporary
# directory, a Unix socket there, fsync on), for the store's unit tests and the second e2e run;
# each test makes its own database in it. Stopped and removed at the end, whatever happens.
section postgresql
if pg_env=$(python3 tests/e2e/pgcluster.py start 2>/tmp/candor-pg.$$); then
  eval "$pg_env"
  trap 'python3 tests/e2e/pgcluster.py stop "$CANDOR_TEST_PG_DIR"' EXIT
  echo "cluster in $CANDOR_TEST_PG_DIR"
  ok postgresql
else
  cat /tmp/candor-pg.$$ >&2
  bad "postgresql (cannot start a test cluster)"
fi
rm -f /tmp/candor-pg.$$

section unit
for t in build/asan/test_*; do
  [ -x "$t" ] || continue
  out=$(timeout 300 "$t" 2>&1); rc=$?
  # A binary may run several groups (test_store: one per backend): their counts add up.
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {if (NR) print s}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END {if (NR) print s}')
  ok "$t" "${p:-0}"
  if [ "$rc" -ne 0 ] || [ -n "$f" ]; then
    printf '%s\n' "$out" | tail -40 >&2
    bad "$t" "${f:-1}"
  else
    echo "$(basename "$t"): ${p:-0} passed"
  fi
done

# The end-to-end suite runs once per backend; the time of each run is printed.
for backend in sqlite postgres; do
  section "e2e ($backend)"
  [ "$backend" = postgres ] && [ -z "${CANDOR_TEST_PG_DIR:-}" ] && { bad "e2e ($backend): no cluster"; continue; }
  t0=$(date +%s)
  out=$(CANDOR_E2E_DB=$backend python3 tests/e2e/run.py 2>&1); rc=$?
  printf '%s\n' "$out"
  echo "e2e on $backend took $(( $(date +%s) - t0 ))s"
  line=$(printf '%s\n' "$out" | grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' | tail -1)
  p=$(echo "$line" | sed -n 's/^e2e: \([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  ok "e2e ($backend)" "${p:-0}"
  if [ "$rc" -ne 0 ] || [ "${f:-1}" != 0 ]; then
    names=$(printf '%s\n' "$out" | sed -n 's/^e2e failed: //p' | paste -sd, -)
    bad "e2e on $backend (${names:-see above})" "${f:-1}"
  fi
done

# The web console in Debian's chromium (tests/web): every page checked with axe, the keyboard
# alone through the composer, any JavaScript error or CSP violation a failure; screenshots of
# each page at desktop and phone widths in build/screenshots/. One browser for all of it.
section browser
t0=$(date +%s)
if bash tests/web/setup.sh; then
  out=$(timeout 900 node tests/web/console.test.mjs build/asan/candor 2>&1); rc=$?
  printf '%s\n' "$out"
  echo "browser tests took $(( $(date +%s) - t0 ))s"
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  ok browser "${p:-0}"
  if [ "$rc" -ne 0 ] || [ "${f:-1}" != 0 ]; then
    bad "browser (tests/web, see above)" "${f:-1}"
  fi
else
  bad "browser (tests/web/setup.sh)"
fi

section fuzz-replay
if ls tests/fuzz/fuzz_*.c >/dev/null 2>&1; then
  if make -s -j"$JOBS" fuzz >/tmp/candor-fuzz.$$ 2>&1; then
    for f in build/fuzz/fuzz_*; do
      name=$(basename "$f"); name=${name#fuzz_}
      corpus=tests/fuzz/corpus/$name
      if [ -d "$corpus" ] && timeout 300 "$f" -runs=0 "$corpus" >/dev/null 2>&1; then
        echo "fuzz_$name: corpus replayed ($(ls "$corpus" | wc -l) inputs)"; ok "fuzz_$name"
      else
        bad "fuzz_$name (corpus $corpus)"
      fi
    done
  else
    cat /tmp/candor-fuzz.$$ >&2; bad "fuzz build"
  fi
  rm -f /tmp/candor-fuzz.$$
fi

if [ -x tests/quality/run.sh ]; then
  section quality
  if bash tests/quality/run.sh --check; then ok quality; else bad quality; fi
fi

echo
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
