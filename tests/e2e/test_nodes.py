"""Two `candor serve` processes on one PostgreSQL database behave as one service: a consent
change, a revocation or an Idempotency-Key made through one is honoured by the other within
the stated bound (CD_STORE_FEED_BOUND_MS, one second); one server signs the tree heads, and
another takes over when it dies; and with clients spread over both, one killed with SIGKILL
under load loses nothing it acknowledged, the ledger verifies as one chain, and every consent
change the dead server acknowledged is what the survivor decides on. PostgreSQL only: SQLite
is one process's database."""
import http.client
import os
import shutil
import subprocess
import threading
import time

from e2e_util import sql
from harness import BACKEND, Server, skip_unless_postgres

BOUND = 1.0  # seconds: CD_STORE_FEED_BOUND_MS
ARGS = ["--sth-interval", "1"]


def setup_module():
    if BACKEND != "postgres":
        return {}
    a = Server(args=ARGS)
    # A second server is a copy of the data directory: the same keys and database URL.
    data_b = os.path.join(a.tmp, "data-b")
    shutil.copytree(a.data, data_b)
    b = Server(data=data_b, args=ARGS, init=False)
    return {"a": a, "b": b}


def teardown_module(ctx):
    for name in ("a", "b"):
        if name in ctx:
            ctx[name].stop(check=False)
            ctx[name].cleanup()


def customer(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"jurisdiction": "EU", "time_zone": "UTC"})
    assert st == 201, c
    return c["id"]


def record(srv, cid, state, purpose="marketing"):
    return srv.req("POST", "/v1/consents", {"customer_id": cid, "purpose": purpose,
                                            "state": state, "channel": "*",
                                            "method": "web_form"})


def allowed(srv, cid, purpose="marketing"):
    st, _, d = srv.req("POST", "/v1/consents/check",
                       {"customer_id": cid, "purpose": purpose, "channel": "email"})
    assert st == 200, d
    return d["allow"], d.get("event_id")


def within_bound(fn, bound=BOUND):
    """Polls fn() until it is true; returns the seconds it took, failing past the bound plus
    what one request over loopback to an ASan build takes."""
    t0 = time.time()
    while not fn():
        assert time.time() - t0 < bound + 1.0, "not seen within the bound"
        time.sleep(0.02)
    return time.time() - t0


def test_consent_change_reaches_the_other_server(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    cid = customer(a)
    assert allowed(b, cid) == (False, None)
    st, _, ev = record(a, cid, "given")
    assert st == 201, ev
    within_bound(lambda: allowed(b, cid) == (True, ev["id"]))
    st, _, wd = record(a, cid, "withdrawn")
    assert st == 201, wd
    within_bound(lambda: allowed(b, cid) == (False, wd["id"]))
    # And the other way round.
    st, _, ev2 = record(b, cid, "given")
    assert st == 201, ev2
    within_bound(lambda: allowed(a, cid) == (True, ev2["id"]))


def test_preferences_reach_the_other_server(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    cid = customer(a)
    assert record(a, cid, "given")[0] == 201
    st, _, p = a.req("POST", f"/v1/customers/{cid}/preferences",
                     {"topics_opted_out": ["offers"]})
    assert st == 200, p

    def opted_out():
        st, _, d = b.req("POST", "/v1/consents/check",
                         {"customer_id": cid, "purpose": "marketing", "channel": "email",
                          "topic": "offers"})
        assert st == 200, d
        return d["reason"] == "topic_opted_out"
    within_bound(opted_out)


def test_revocation_reaches_the_other_server(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    st, _, t = a.req("POST", "/v1/tokens", {"role": "agent", "name": "nodes"})
    assert st == 201, t
    assert b.req("GET", "/v1/customers?limit=1", token=t["token"], purpose="service")[0] == 200
    st, _, _ = a.req("DELETE", f"/v1/tokens/{t['id']}")
    assert st in (200, 204)
    within_bound(lambda: b.req("GET", "/v1/customers?limit=1", token=t["token"],
                               purpose="service")[0] == 401)


def test_one_idempotency_key_across_servers(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    body = {"identity": {"type": "external", "network": "nodes", "value": "idem-1"},
            "channel": "chat", "direction": "inbound", "body": "once"}
    answers = []

    def send(srv):
        answers.append(srv.req("POST", "/v1/interactions", body,
                               headers={"Idempotency-Key": "nodes-key-1"}))
    threads = [threading.Thread(target=send, args=(s,)) for s in (a, b, a, b)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    ids = {x[2]["id"] for x in answers if x[0] in (200, 201)}
    assert len(answers) == 4 and all(x[0] in (200, 201) for x in answers), answers
    assert len(ids) == 1, answers
    assert sql(a, "SELECT count(*) FROM interactions i JOIN identities d ON "
                  "d.customer_id = i.customer_id WHERE i.id = '%s'" % ids.pop()) != "0"


def test_a_lost_feed_resyncs(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    cid = customer(a)
    # The feeds' connections end (as in a network cut); changes made meanwhile are not
    # announced to them, and the resync after they reconnect applies them.
    n = sql(a, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
               " WHERE datname = current_database() AND pid <> pg_backend_pid()"
               " AND (query LIKE '%pg_try_advisory_lock%' OR query LIKE '%pg_notify(%')")
    assert int(n) >= 2, n
    st, _, ev = record(a, cid, "given")
    assert st == 201, ev
    within_bound(lambda: allowed(b, cid) == (True, ev["id"]))
    within_bound(lambda: "store.feed_reconnected" in b.logs())
    for srv in (a, b):
        st, _, r = srv.req("GET", "/readyz", token=None)
        assert st == 200 and r["store"] == "postgres", r


def heads_signed_by(srv):
    return srv.logs().count('"audit.tree_head"')


def test_heads_signed_by_one_server(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    before = (heads_signed_by(a), heads_signed_by(b))
    for i in range(6):  # the ledger grows on both; heads fall due every second
        customer(a if i % 2 else b)
        time.sleep(0.5)
    after = (heads_signed_by(a), heads_signed_by(b))
    grew = [after[0] > before[0], after[1] > before[1]]
    assert grew.count(True) == 1, (before, after)
    ctx["signer"] = "a" if grew[0] else "b"


class Client(threading.Thread):
    """Ingests interactions with its own Idempotency-Keys on its server, and each time a consent
    event; when its server is gone (a cut connection or a 503), retries the same request with
    the same key on the other one, as a client behind a load balancer would."""

    def __init__(self, n, servers, stop):
        super().__init__(daemon=True)
        self.n, self.servers, self.stop = n, servers, stop
        self.acked = {}      # key -> interaction id
        self.consents = {}   # customer id -> (state, event id) of the last acknowledged event
        self.cid = None

    def send(self, method, path, body, key=None):
        order = self.servers[self.n % 2:] + self.servers[:self.n % 2]
        for attempt in range(200):
            srv = order[0] if attempt == 0 or order[0].proc.poll() is None else order[1]
            try:
                st, hdr, b = srv.req(method, path, body, timeout=60,
                                     headers={"Idempotency-Key": key} if key else None)
            except (OSError, http.client.HTTPException):
                order = order[1:] + order[:1]
                continue
            if st == 503:
                time.sleep(0.1)
                order = order[1:] + order[:1]
                continue
            return st, b
        raise AssertionError("no server answered")

    def run(self):
        st, c = self.send("POST", "/v1/customers", {"jurisdiction": "EU", "time_zone": "UTC"})
        assert st == 201, c
        self.cid = c["id"]
        i = 0
        while not self.stop.is_set():
            i += 1
            key = f"n{self.n}-{i}"
            body = {"identity": {"type": "external", "network": "nodes",
                                 "value": f"n{self.n}-{i % 5}"},
                    "channel": "chat", "direction": "inbound", "body": f"client {self.n} #{i}"}
            st, b = self.send("POST", "/v1/interactions", body, key)
            assert st in (200, 201), (st, b)
            self.acked[key] = b["id"]
            if i % 4 == 0:
                state = "given" if i % 8 == 0 else "withdrawn"
                st, ev = self.send("POST", "/v1/consents",
                                   {"customer_id": self.cid, "purpose": "marketing",
                                    "state": state, "channel": "*", "method": "web_form"})
                assert st == 201, (st, ev)
                self.consents[self.cid] = (state, ev["id"])


def test_server_killed_under_load(ctx):
    skip_unless_postgres("several servers share a PostgreSQL database")
    a, b = ctx["a"], ctx["b"]
    victim, survivor = (a, b) if ctx.get("signer", "a") == "a" else (b, a)
    stop = threading.Event()
    clients = [Client(n, [a, b], stop) for n in range(6)]
    [c.start() for c in clients]
    time.sleep(2.0)
    acked_before = sum(len(c.acked) for c in clients)
    signed_before = heads_signed_by(survivor)
    victim.kill9()
    t_kill = time.time()
    time.sleep(3.0)
    stop.set()
    [c.join(timeout=120) for c in clients]
    assert not any(c.is_alive() for c in clients)
    acked = {k: v for c in clients for k, v in c.acked.items()}
    assert acked_before > 0 and len(acked) > acked_before, (acked_before, len(acked))
    # Nothing acknowledged is lost, and no key made two interactions.
    stored = set(sql(survivor, "SELECT id FROM interactions").split())
    assert set(acked.values()) <= stored, len(set(acked.values()) - stored)
    assert len(set(acked.values())) == len(acked)
    # Every consent change acknowledged by either server is what the survivor decides on.
    for c in clients:
        for cid, (state, ev) in c.consents.items():
            assert allowed(survivor, cid) == (state == "given", ev), (cid, state, ev)
    # The survivor took over the signing of tree heads (it held no lease before).
    within_bound(lambda: heads_signed_by(survivor) > signed_before, bound=4.0)
    assert time.time() - t_kill < 30
    # One chain, verified with the heads the database holds.
    rc, out, err = survivor.cli("audit", "verify", "--data", survivor.data)
    assert rc == 0, out + err
