"""No queued delivery is lost to a crash: deliveries are queued while the receiver is slow (some
claimed, in flight) or down, the server is killed with SIGKILL, and after a restart every event
reaches the receiver — at least once, each customer's in order."""
import json
import time

from e2e_util import sql
from harness import Server
from webhook_receiver import Receiver

ARGS = ["--webhook-timeout", "2", "--webhook-backoff", "100", "--webhook-backoff-max", "1",
        "--webhook-attempts", "100", "--webhook-workers", "4", "--retention-every", "0"]


def setup_module():
    return Server(args=ARGS)


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def test_kill9_with_deliveries_pending_loses_none(srv):
    r = Receiver().start()
    try:
        st, _, s = srv.req("POST", "/v1/webhooks", {"url": r.url, "purpose": "service",
                                                    "events": ["customer.restricted"]})
        assert st == 201
        customers = []
        for _ in range(3):
            st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Ana"})
            customers.append(c["id"])
        # Slower than the timeout: what is claimed is in flight when the server dies.
        with r.lock:
            r.delay = 4.0
        for i in range(8):
            for cid in customers:
                st, _, b = srv.req("POST", f"/v1/customers/{cid}/restriction",
                                   {"restricted": i % 2 == 0})
                assert st == 200, b
        time.sleep(1.0)
        srv.kill9()
        queued = sql(srv, "SELECT id, customer_id, seq FROM outbox_events"
                          " WHERE type = 'customer.restricted' ORDER BY seq").splitlines()
        assert len(queued) == 24, queued
        pending = int(sql(srv, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"))
        assert pending > 0  # the crash came with deliveries still to send
        with r.lock:
            r.delay = 0.0
        srv.start()
        got = r.wait_for(24, timeout=60)
        deadline = time.time() + 30
        while time.time() < deadline and int(sql(
                srv, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")) > 0:
            time.sleep(0.2)
        assert sql(srv, "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'") == "0"
        got = r.acknowledged()  # all of them now, duplicates included
        ids = [line.split("|")[0] for line in queued]
        first = []
        for h, body in got:  # at least once: a cut-off attempt may have arrived too
            if h["webhook-id"] not in first:
                first.append(h["webhook-id"])
        assert sorted(first) == sorted(ids), (set(ids) - set(first), set(first) - set(ids))
        events = {}
        for h, body in got:
            e = json.loads(body)
            events.setdefault(e["id"], e)
        for cid in customers:
            seqs = [events[i]["sequence"] for i in first if events[i]["data"]["customer_id"] == cid]
            assert seqs == sorted(seqs) and len(seqs) == 8, (cid, seqs)
    finally:
        r.stop()
