"""PostgreSQL's own faults, with a real server: restarted (fast shutdown, and crashed with
immediate shutdown) while clients ingest; a statement held up longer than --statement-timeout;
a full data volume. Every request in flight is answered (503 problem+json with Retry-After,
never a 500 or a dropped connection), the server reconnects by itself, clients that retry with
their Idempotency-Key end with exactly one stored interaction each, and nothing acknowledged is
lost. The module runs its own cluster (restarted and filled here, so no other test shares it).
SQLite's faults are in test_faults.py and test_durability.py."""
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from e2e_util import integrity, sql
from harness import BACKEND, ROOT, Server, assert_problem, skip_unless_postgres

THREADS = 8


def setup_module():
    if BACKEND != "postgres":
        return {}
    import pgcluster
    tmp = tempfile.mkdtemp(prefix="candor-pgfault-")
    os.chmod(tmp, 0o755)  # the server's user reads the shim and looks for the flag here
    shim = os.path.join(tmp, "enospc_shim.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim,
                    os.path.join(ROOT, "tests", "e2e", "enospc_shim.c"), "-ldl"], check=True)
    os.chmod(shim, 0o755)
    flag = os.path.join(tmp, "volume-full")
    cluster = pgcluster.Cluster(server_env={"LD_PRELOAD": shim, "CANDOR_ENOSPC_FLAG": flag})
    cluster.start()
    return {"cluster": cluster, "tmp": tmp, "flag": flag}


def teardown_module(ctx):
    if ctx.get("cluster"):
        ctx["cluster"].stop()
    if ctx.get("tmp"):
        shutil.rmtree(ctx["tmp"], ignore_errors=True)


def server(ctx, args=()):
    """A candor server whose database is in this module's cluster."""
    data = os.path.join(tempfile.mkdtemp(prefix="candor-e2e-"), "data")
    url = ctx["cluster"].create_database()
    p = subprocess.run([os.environ.get("CANDOR_BIN", os.path.join(ROOT, "build", "asan", "candor")),
                        "init", "--data", data, "--db", url], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return Server(data=data, args=args)


class Client(threading.Thread):
    """Ingests interactions, each with its own Idempotency-Key, and retries a 503 with the same
    key after its Retry-After, as a well-behaved integration does. Records every answer."""

    def __init__(self, srv, n, stop, log):
        super().__init__(daemon=True)
        self.srv, self.n, self.stop, self.log = srv, n, stop, log
        self.acked = {}        # key -> interaction id (2xx)
        self.problems = []     # (status, headers, body) of every error answer

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            key = f"c{self.n}-{i}"
            body = {"identity": {"type": "external", "network": "pgfault",
                                 "value": f"c{self.n}-{i % 7}"},
                    "channel": "chat", "direction": "inbound", "body": f"client {self.n} #{i}"}
            # A 503 is retried with the same key even after stop: its outcome must be known.
            for _ in range(240):
                try:
                    st, hdr, b = self.srv.req("POST", "/v1/interactions", body, timeout=60,
                                              headers={"Idempotency-Key": key})
                except (OSError, http.client.HTTPException) as e:
                    self.problems.append(("connection", str(e), None))
                    return
                if st in (200, 201):
                    self.acked[key] = b["id"]
                    break
                self.problems.append((st, hdr, b))
                if st != 503:
                    break
                time.sleep(float(hdr.get("retry-after", "1")) / 4)


def run_clients(srv, fault, before=1.5, after=2.5):
    stop = threading.Event()
    clients = [Client(srv, n, stop, None) for n in range(THREADS)]
    [c.start() for c in clients]
    time.sleep(before)
    acked_before = sum(len(c.acked) for c in clients)
    fault()
    t_fault = time.time()
    time.sleep(after)
    stop.set()
    [c.join(timeout=120) for c in clients]
    acked = {k: v for c in clients for k, v in c.acked.items()}
    problems = [p for c in clients for p in c.problems]
    return acked, problems, acked_before, t_fault


def check_problems(problems):
    """Every error answer was a 503 problem+json with Retry-After, none a 500 or a cut."""
    for st, hdr, body in problems:
        assert st == 503, (st, hdr, body)
        assert hdr.get("content-type", "").startswith("application/problem+json"), hdr
        assert hdr.get("retry-after"), hdr
        assert body["type"] in ("/problems/store-unavailable", "/problems/busy"), body


def check_nothing_lost(srv, acked):
    """Every acknowledged interaction is there, once: a retried key never made a second one,
    and what is stored is exactly what was acknowledged. A sample is read through the API."""
    stored = set(sql(srv, "SELECT id FROM interactions").split())
    missing = set(acked.values()) - stored
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost"
    assert len(stored) == len(acked), (len(stored), len(acked))
    for key, iid in list(acked.items())[::max(1, len(acked) // 40)]:
        st, _, it = srv.req("GET", "/v1/interactions/" + iid, purpose="service")
        n, i = key[1:].split("-")
        assert st == 200 and it["body"] == f"client {n} #{i}", (key, st, it)
    assert integrity(srv) == "ok"
    st, _, v = srv.req("POST", "/v1/audit/verify")
    assert st == 200 and v["ok"] is True, v


def test_a_restart_under_load_loses_nothing_acknowledged(ctx):
    skip_unless_postgres("a PostgreSQL server restart; SQLite has no server")
    srv = server(ctx)
    try:
        acked, problems, before, _ = run_clients(srv, lambda: ctx["cluster"].restart("fast"))
        assert before > 20, before
        check_problems(problems)
        assert problems, "the restart was not noticed by any request"
        # The server reconnected by itself: requests after the restart succeeded.
        assert len(acked) > before + 20, (before, len(acked))
        check_nothing_lost(srv, acked)
        assert '"msg":"store.pg_reconnected"' in srv.logs()
        st, _, r = srv.req("GET", "/readyz", token=None)
        assert st == 200 and r["store"] == "postgres", r
        print(f"    {len(acked)} acknowledged, {len(problems)} answered 503 and retried")
    finally:
        srv.stop()
        srv.cleanup()


def test_a_crash_of_the_database_loses_nothing_acknowledged(ctx):
    """Immediate shutdown: the server's processes stop without a checkpoint and the next start
    replays the write-ahead log, as after a power cut. What COMMIT acknowledged is there."""
    skip_unless_postgres("a PostgreSQL server crash; SQLite's kill -9 is in test_durability.py")
    srv = server(ctx)
    try:
        acked, problems, before, _ = run_clients(srv, lambda: ctx["cluster"].restart("immediate"))
        check_problems(problems)
        assert len(acked) > before + 20, (before, len(acked))
        check_nothing_lost(srv, acked)
    finally:
        srv.stop()
        srv.cleanup()


def test_requests_while_the_database_is_down_are_503_and_it_comes_back(ctx):
    skip_unless_postgres("a PostgreSQL server that is down; SQLite has no server")
    srv = server(ctx)
    c = ctx["cluster"]
    try:
        c.stop(remove=False)
        body = {"identity": {"type": "email", "value": "down@example.com"}, "channel": "email",
                "direction": "inbound", "body": "while down"}
        b = assert_problem(srv.req("POST", "/v1/interactions", body), 503, "store-unavailable")
        assert "PostgreSQL" in b["detail"], b
        st, hdr, _ = srv.req("GET", "/readyz", token=None)
        assert st == 503 and hdr.get("retry-after"), (st, hdr)
        assert srv.req("GET", "/healthz", token=None)[0] == 200  # the process itself is fine
        c.start()
        st, _, it = srv.req("POST", "/v1/interactions", body)
        assert st == 201, it
        assert srv.req("GET", "/readyz", token=None)[0] == 200
    finally:
        if not os.path.exists(os.path.join(c.data, "postmaster.pid")):
            c.start()
        srv.stop()
        srv.cleanup()


class Locker:
    """A psql session holding a lock until released: what an administrator's forgotten
    transaction, a long migration or a stuck batch job does to the tables Candor uses."""

    def __init__(self, cluster, db, sql):
        self.p = subprocess.Popen([os.path.join(cluster.bin, "psql"), "-h", cluster.dir, "-U",
                                   "candor", "-d", db, "-X", "-q", "-A", "-t"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdin.write(f"BEGIN;\n{sql};\nSELECT 'locked';\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "locked"

    def release(self):
        self.p.stdin.write("ROLLBACK;\n")
        self.p.stdin.close()
        self.p.wait(timeout=30)


def test_a_statement_held_up_past_the_timeout_is_a_clear_503(ctx):
    skip_unless_postgres("PostgreSQL's statement_timeout; SQLite waits for its lock (busy_timeout)")
    import pgcluster
    srv = server(ctx, args=["--statement-timeout", "1"])
    try:
        st, _, it = srv.req("POST", "/v1/interactions", {
            "identity": {"type": "email", "value": "timeout@example.com"}, "channel": "email",
            "direction": "inbound", "body": "before the lock"})
        assert st == 201, it
        lock = Locker(ctx["cluster"], pgcluster.db_of(srv.db_url),
                      "LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
        try:
            t0 = time.time()
            r = srv.req("POST", "/v1/interactions", {
                "customer_id": it["customer_id"], "channel": "email", "direction": "inbound",
                "body": "held up"})
            b = assert_problem(r, 503, "busy")
            assert "statement timeout" in b["detail"], b
            assert r[1].get("retry-after"), r[1]
            assert time.time() - t0 < 30
            b = assert_problem(srv.req("GET", f"/v1/customers/{it['customer_id']}/timeline",
                                       purpose="service"), 503, "busy")
            assert "statement timeout" in b["detail"], b
            # What does not touch the locked table still works meanwhile.
            st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Other"})
            assert st == 201, c
        finally:
            lock.release()
        st, _, again = srv.req("POST", "/v1/interactions", {
            "customer_id": it["customer_id"], "channel": "email", "direction": "inbound",
            "body": "after the lock"})
        assert st == 201, again
        items = srv.req("GET", f"/v1/customers/{it['customer_id']}/timeline",
                        purpose="service")[2]["items"]
        assert [i["body"] for i in items] == ["after the lock", "before the lock"], items
        assert "held up" not in srv.logs()
    finally:
        srv.stop()
        srv.cleanup()


def test_a_full_data_volume_refuses_writes_and_keeps_what_was_acknowledged(ctx):
    skip_unless_postgres("a PostgreSQL data volume; SQLite's disk faults are injected in "
                         "test_faults.py")
    srv = server(ctx)
    flag = ctx["flag"]
    try:
        acked = {}
        cid = None

        def ingest(n):
            body = {"channel": "chat", "direction": "inbound", "body": f"full {n} " + "x" * 3000}
            if cid:
                body["customer_id"] = cid
            else:
                body["identity"] = {"type": "email", "value": "full@example.com"}
            return srv.req("POST", "/v1/interactions", body)

        for n in range(5):
            st, _, it = ingest(n)
            assert st == 201, it
            acked[n] = it["id"]
            cid = it["customer_id"]
        open(flag, "w").close()
        refused = None
        for n in range(5, 2000):
            r = ingest(n)
            if r[0] == 201:
                acked[n] = r[2]["id"]
                continue
            refused = r
            break
        assert refused, "2000 writes fitted on a full volume: the shim did not load"
        b = assert_problem(refused, 503, "store-unavailable")
        assert "out of disk space" in b["detail"], b
        assert refused[1].get("retry-after"), refused[1]
        # A read of personal data is served with its audit entry or not at all: when the ledger
        # has no page left for the entry, the read is refused too.
        r = srv.req("GET", "/v1/interactions/" + acked[0], purpose="service")
        if r[0] == 200:
            assert r[2]["body"].startswith("full 0 "), r
        else:
            assert "out of disk space" in assert_problem(r, 503, "store-unavailable")["detail"]
        assert srv.req("GET", "/readyz", token=None)[0] == 200
        # Later writes keep failing cleanly while the volume is full.
        for _ in range(3):
            assert_problem(ingest(9999), 503, "store-unavailable")
        os.unlink(flag)
        st, _, it = ingest(10000)
        assert st == 201, it
        acked[10000] = it["id"]
        for n, iid in acked.items():
            st, _, it = srv.req("GET", "/v1/interactions/" + iid, purpose="service")
            assert st == 200 and it["body"].startswith(f"full {n} "), (n, st, it)
        assert int(sql(srv, "SELECT count(*) FROM interactions")) == len(acked)
        assert integrity(srv) == "ok"
        st, _, v = srv.req("POST", "/v1/audit/verify")
        assert st == 200 and v["ok"] is True, v
        assert "x" * 100 not in srv.logs()
        print(f"    the volume filled after {len(acked) - 6} more writes")
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
        srv.stop()
        srv.cleanup()
