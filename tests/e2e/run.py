"""Runs every tests/e2e/test_*.py: each module's test_* functions in the order they are written,
each module in its own process with a time limit. Prints "e2e: N passed, N failed, N skipped".

    python3 tests/e2e/run.py                        # every module, on SQLite
    E2E_ONLY=audit python3 tests/e2e/run.py         # the modules whose name contains "audit"
    CANDOR_E2E_DB=postgres python3 tests/e2e/run.py # on PostgreSQL

On PostgreSQL the modules share one cluster: $CANDOR_TEST_PG_DIR when set (tests/run.sh starts
one for all of `make test`), else one started here and stopped at the end."""
import glob
import importlib.util
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def run_module(path):
    sys.path.insert(0, HERE)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from harness import Skip
    passed = failed = skipped = 0
    ctx = mod.setup_module() if hasattr(mod, "setup_module") else None
    try:
        # Tests run in the order they are written: later ones may build on earlier state.
        names = [n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n))]
        names.sort(key=lambda n: getattr(mod, n).__code__.co_firstlineno)
        for name in names:
            fn = getattr(mod, name)
            t0 = time.time()
            try:
                fn(ctx) if ctx is not None else fn()
                passed += 1
                print(f"  ok   {name} ({time.time() - t0:.2f}s)", flush=True)
            except Skip as why:
                skipped += 1
                print(f"  skip {name}: {why}", flush=True)
            except Exception:
                failed += 1
                print(f"  FAIL {name}\n" + traceback.format_exc(), flush=True)
    finally:
        if hasattr(mod, "teardown_module"):
            try:
                mod.teardown_module(ctx)
            except Exception:
                failed += 1
                print("  FAIL teardown\n" + traceback.format_exc(), flush=True)
    print(f"RESULT {passed} {failed} {skipped}", flush=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--module":
        run_module(sys.argv[2])
        return 0
    only = os.environ.get("E2E_ONLY")
    failures = []
    cluster = None
    backend = os.environ.get("CANDOR_E2E_DB", "sqlite")
    if backend == "postgres" and not os.environ.get("CANDOR_TEST_PG_DIR"):
        sys.path.insert(0, HERE)
        import pgcluster
        cluster = pgcluster.Cluster().start()
        os.environ["CANDOR_TEST_PG_DIR"] = cluster.dir
    print(f"e2e on {backend}", flush=True)
    try:
        return run_all(only, failures)
    finally:
        if cluster:
            cluster.stop()


def run_all(only, failures):
    total_p = total_f = total_s = 0
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        if only and only not in os.path.basename(path):
            continue
        print(f"{os.path.basename(path)}", flush=True)
        try:
            p = subprocess.run([sys.executable, __file__, "--module", path], capture_output=True,
                               text=True, timeout=int(os.environ.get("E2E_TIMEOUT", "900")))
            out = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            out += "\n  FAIL timeout\n"
        res = [l for l in out.splitlines() if l.startswith("RESULT ")]
        body = "\n".join(l for l in out.splitlines() if not l.startswith("RESULT "))
        print(body, flush=True)
        if res:
            p_, f_, s_ = map(int, res[-1].split()[1:])
        else:
            p_, f_, s_ = 0, 1, 0
            print("  FAIL module crashed", flush=True)
        total_p += p_
        total_f += f_
        total_s += s_
        mod = os.path.basename(path)
        failures += [f"{mod}: {l.split()[1]}" for l in body.splitlines()
                     if l.startswith("  FAIL ")]
    # Named again at the end, where a CI log that keeps only the tail still shows them.
    for f in failures:
        print(f"e2e failed: {f}")
    print(f"e2e: {total_p} passed, {total_f} failed, {total_s} skipped")
    return 0 if total_f == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
