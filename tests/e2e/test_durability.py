"""kill -9 during sustained concurrent ingestion: after a restart on the same data directory,
every interaction that got a 2xx is there, the database's consistency check passes (SQLite's
PRAGMA integrity_check, PostgreSQL's amcheck), and the audit ledger verifies offline."""
import http.client
import json
import threading
import time

from e2e_util import integrity, sql
from harness import Server

THREADS = 16
SECONDS = 5.0


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def writer(srv, n, stop, acked, errors):
    conn = None
    i = 0
    while not stop.is_set():
        i += 1
        body = json.dumps({"identity": {"type": "external", "network": "loadgen",
                                        "value": f"w{n}-c{i % 5}"},
                           "channel": "chat", "direction": "inbound",
                           "body": f"writer {n} message {i}"})
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request("POST", "/v1/interactions", body=body,
                         headers={"Authorization": "Bearer " + srv.admin,
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            payload = r.read()
            if 200 <= r.status < 300:
                acked.append((json.loads(payload)["id"], f"writer {n} message {i}"))
            else:
                errors.append(r.status)
        except (OSError, http.client.HTTPException):
            # The server died mid-request: this one was never acknowledged.
            conn = None
            if stop.is_set():
                return
            time.sleep(0.01)


def test_every_acknowledged_write_survives_kill9(srv):
    stop = threading.Event()
    acked, errors = [], []
    ts = [threading.Thread(target=writer, args=(srv, n, stop, acked, errors), daemon=True)
          for n in range(THREADS)]
    [t.start() for t in ts]
    time.sleep(SECONDS)
    n_before_kill = len(acked)
    srv.kill9()  # mid-stream: the writers are still posting
    stop.set()
    [t.join(timeout=15) for t in ts]
    assert n_before_kill > 100, f"only {n_before_kill} writes acknowledged in {SECONDS}s"
    assert not [e for e in errors if e >= 500 and e != 503], errors[:20]
    assert integrity(srv) == "ok"
    srv.start()  # same data directory, new port
    missing = []
    for iid, text in acked:
        st, _, it = srv.req("GET", "/v1/interactions/" + iid, purpose="service")
        if st != 200 or it["body"] != text:
            missing.append((iid, st))
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost: {missing[:5]}"
    stored = int(sql(srv, "SELECT count(*) FROM interactions"))
    assert stored >= len(acked), (stored, len(acked))
    print(f"    {len(acked)} acknowledged, {stored} stored, killed mid-stream")
    # The server keeps working after the restart.
    st, _, it = srv.req("POST", "/v1/interactions", {
        "identity": {"type": "external", "network": "loadgen", "value": "after"},
        "channel": "chat", "direction": "inbound"})
    assert st == 201, it


def test_integrity_and_audit_chain_after_restart(srv):
    srv.stop()
    assert integrity(srv) == "ok"
    rc, out, err = srv.cli("audit", "verify", "--data", srv.data)
    assert rc == 0, (rc, out, err)
    srv.start()
    st, _, v = srv.req("POST", "/v1/audit/verify")
    assert st == 200 and v["ok"] is True and v["checked"] > 0, v


def test_sigterm_under_load_stops_cleanly_and_keeps_every_acknowledged_write(srv):
    """A graceful stop while writers are mid-flight: the answers already queued for a commit are
    sent or refused, never lost; the process exits 0 without a sanitizer report (stop checks)."""
    stop = threading.Event()
    acked, errors = [], []
    ts = [threading.Thread(target=writer, args=(srv, 100 + n, stop, acked, errors), daemon=True)
          for n in range(THREADS)]
    [t.start() for t in ts]
    time.sleep(2.0)
    srv.stop()  # SIGTERM while the writers are still posting
    stop.set()
    [t.join(timeout=15) for t in ts]
    assert len(acked) > 50, len(acked)
    assert not [e for e in errors if e >= 500 and e != 503], errors[:20]
    srv.start()
    missing = [iid for iid, text in acked
               if srv.req("GET", "/v1/interactions/" + iid, purpose="service")[0] != 200]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost"
