"""Webhooks as an integrator meets them: subscriptions (bad input refused, the secret shown once),
deliveries signed as Standard Webhooks describes and checked by the verifier printed in
docs/webhooks.md (a tampered one refused), in order per customer, retried with backoff through a
receiver answering 500 or too slowly, dead-lettered when it stays down and replayed by API and
CLI, and the metrics. Real receivers: HTTP servers on loopback ports."""
import json
import time

from harness import Server, assert_problem
from webhook_receiver import Receiver, closed_port, docs_verifier

# Fast retries so the tests wait seconds, not hours: up to 4 attempts, 0.1 s then doubling.
ARGS = ["--webhook-timeout", "2", "--webhook-backoff", "100", "--webhook-backoff-max", "1",
        "--webhook-attempts", "4", "--webhook-workers", "4", "--retention-every", "0"]


def setup_module():
    srv = Server(args=ARGS)
    srv.receivers = []
    return srv


def teardown_module(srv):
    for r in srv.receivers:
        r.stop()
    srv.stop()
    srv.cleanup()


def receiver(srv, port=None):
    r = Receiver(port).start()
    srv.receivers.append(r)
    return r


def subscribe(srv, url, events, purpose="service"):
    st, hdr, s = srv.req("POST", "/v1/webhooks", {"url": url, "events": events,
                                                  "purpose": purpose})
    assert st == 201, s
    assert hdr["location"] == "/v1/webhooks/" + s["id"]
    return s


def customer(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Ana Silva"})
    assert st == 201
    return c["id"]


def restrict(srv, cid, on):
    st, _, b = srv.req("POST", f"/v1/customers/{cid}/restriction", {"restricted": on})
    assert st == 200, b


def wait_deliveries(srv, sub, status, n, timeout=30):
    """The subscription's deliveries with that status, once there are n (the worker records an
    outcome just after the receiver answered)."""
    deadline = time.time() + timeout
    while True:
        st, _, page = srv.req("GET", f"/v1/webhook-deliveries?subscription_id={sub}"
                                     f"&status={status}")
        assert st == 200, page
        if len(page["items"]) >= n or time.time() > deadline:
            assert len(page["items"]) == n, page
            return page
        time.sleep(0.1)


def test_subscriptions_refuse_bad_input(srv):
    ok = {"url": "https://crm.example.com/hook", "events": ["customer.erased"],
          "purpose": "service"}
    for bad in ({**ok, "url": "ftp://crm.example.com/"},
                {**ok, "url": "http://crm.example.com/hook"},   # plain http beyond loopback
                {**ok, "url": "https://user:secret@crm.example.com/"},
                {**ok, "url": "https://crm.example.com/#frag"},
                {**ok, "url": "https://" + "a" * 2100 + ".com/"},
                {**ok, "url": 7},
                {**ok, "events": []}, {**ok, "events": ["customer.deleted"]},
                {**ok, "events": "customer.erased"}, {**ok, "events": ["*", "*"]},
                {**ok, "purpose": "gossip"}, {**ok, "purpose": "legal_obligation"},
                {**ok, "status": "sleeping"}, {**ok, "owner": "me"},
                {"events": ["*"], "purpose": "service"}):
        assert_problem(srv.req("POST", "/v1/webhooks", bad), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/webhooks", raw=b"{\"url\":", content_type="application/json"),
                   400, "malformed-json")
    assert_problem(srv.req("POST", "/v1/webhooks", ok, token=None), 401, "unauthenticated")
    for role in ("supervisor", "agent", "compliance", "integration"):
        assert_problem(srv.req("POST", "/v1/webhooks", ok, token=srv.token(role)), 403,
                       "forbidden")
    st, _, page = srv.req("GET", "/v1/webhooks")
    assert st == 200 and page["items"] == []
    for method, path, body in (("GET", "/v1/webhooks/whs_00000000000000000000000000", None),
                               ("PATCH", "/v1/webhooks/whs_00000000000000000000000000",
                                {"status": "paused"}),
                               ("DELETE", "/v1/webhooks/nope", None),
                               ("POST", "/v1/webhook-deliveries/dlv_00000000000000000000000000/"
                                        "replay", None)):
        assert_problem(srv.req(method, path, body), 404, "not-found")
    st, _, types = srv.req("GET", "/v1/webhooks/event-types")
    assert st == 200 and "customer.erased" in [t["name"] for t in types["items"]]


def test_a_delivery_is_signed_and_the_docs_verifier_checks_it(srv):
    verify, VerificationError = docs_verifier()
    r = receiver(srv)
    s = subscribe(srv, r.url, ["consent.changed", "customer.restricted"])
    assert s["secret"].startswith("whsec_") and s["status"] == "active"
    st, _, again = srv.req("GET", f"/v1/webhooks/{s['id']}")
    assert st == 200 and "secret" not in again  # shown once
    cid = customer(srv)
    st, _, _ = srv.req("POST", "/v1/consents", {"customer_id": cid, "purpose": "marketing",
                                                "channel": "email", "state": "given",
                                                "method": "web_form"})
    assert st == 201
    (h, body), = r.wait_for(1)
    event = verify(s["secret"], h, body)
    assert event["type"] == "consent.changed" and h["webhook-id"] == event["id"]
    data = event["data"]
    assert data["customer_id"] == cid and data["purpose"] == "marketing"
    assert data["state"] == "given" and data["consent_event_id"].startswith("cev_")
    assert "Ana" not in body.decode()  # ids and codes only
    assert h["content-type"] == "application/json" and h["candor-attempt"] == "1"
    # Tampered: a changed byte of the body, of the signature, another secret, an old stamp.
    for bad_h, bad_body in (
            (h, body.replace(b"given", b"gives")),
            ({**h, "webhook-signature": "v1," + "A" * 43 + "="}, body),
            ({**h, "webhook-id": "evt_forged"}, body)):
        try:
            verify(s["secret"], bad_h, bad_body)
            raise AssertionError("a tampered delivery verified")
        except VerificationError:
            pass
    try:
        verify("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", h, body)
        raise AssertionError("another secret verified")
    except VerificationError:
        pass
    try:
        verify(s["secret"], h, body, now=int(h["webhook-timestamp"]) + 3600)
        raise AssertionError("a replay an hour later verified")
    except VerificationError:
        pass
    # A rotated secret signs from now on; the old one no longer verifies.
    st, _, rot = srv.req("POST", f"/v1/webhooks/{s['id']}/rotate-secret")
    assert st == 200 and rot["secret"] != s["secret"]
    st, _, t = srv.req("POST", f"/v1/webhooks/{s['id']}/test")
    assert st == 202
    got = r.wait_for(2)
    h2, body2 = got[1]
    assert verify(rot["secret"], h2, body2)["id"] == t["event_id"]
    try:
        verify(s["secret"], h2, body2)
        raise AssertionError("the old secret still verifies")
    except VerificationError:
        pass
    st, _, _ = srv.req("DELETE", f"/v1/webhooks/{s['id']}")
    assert st == 204


def test_order_per_customer_through_errors_and_a_slow_receiver(srv):
    r = receiver(srv)
    s = subscribe(srv, r.url, ["customer.restricted"])
    a, b = customer(srv), customer(srv)
    with r.lock:
        r.fail_next = 3   # the first three attempts get a 500
    for on in (True, False, True, False):
        restrict(srv, a, on)
    restrict(srv, b, True)
    got = r.wait_for(5)
    events = [json.loads(body) for _, body in got]
    a_events = [e["data"]["restricted"] for e in events if e["data"]["customer_id"] == a]
    assert a_events == [True, False, True, False], a_events  # in order despite the retries
    seqs = [e["sequence"] for e in events if e["data"]["customer_id"] == a]
    assert seqs == sorted(seqs)
    assert any(h["candor-attempt"] != "1" for h, _ in got), "no delivery was retried"
    # A receiver slower than the timeout: the attempt fails and is made again.
    with r.lock:
        r.delay = 3.0
    restrict(srv, b, False)
    time.sleep(2.5)
    with r.lock:
        r.delay = 0.0
    got = r.wait_for(6)
    assert json.loads(got[-1][1])["data"] == {"customer_id": b, "restricted": False}
    page = wait_deliveries(srv, s["id"], "delivered", 6)
    assert max(d["attempts"] for d in page["items"]) >= 2
    st, _, _ = srv.req("DELETE", f"/v1/webhooks/{s['id']}")
    assert st == 204


def test_a_receiver_that_stays_down_dead_letters_then_replay_delivers(srv):
    port = closed_port()
    s = subscribe(srv, f"http://127.0.0.1:{port}/hook", ["customer.restricted"])
    cid = customer(srv)
    restrict(srv, cid, True)
    dead, = wait_deliveries(srv, s["id"], "dead", 1)["items"]
    assert dead["attempts"] == 4 and dead["last_status"] is None and dead["last_error"]
    st, _, m = srv.req("GET", "/metrics", token=None)
    assert "candor_webhook_dead_lettered_total 1" in m.decode()
    # The CLI lists it too.
    rc, out, err = srv.cli("webhooks", "dead-letters", "--data", srv.data)
    assert rc == 0, err
    assert [d["id"] for d in json.loads(out)["items"]] == [dead["id"]]
    # The receiver comes back; a replay sends it with its original event id.
    r = receiver(srv, port)
    st, _, rep = srv.req("POST", f"/v1/webhook-deliveries/{dead['id']}/replay")
    assert st == 200 and rep["status"] == "pending" and rep["attempts"] == 0
    (h, body), = r.wait_for(1)
    assert h["webhook-id"] == dead["event_id"]
    assert_problem(srv.req("POST", f"/v1/webhook-deliveries/{dead['id']}/replay"), 409,
                   "conflict")
    # Dead again, then replayed from the command line.
    r.stop()
    restrict(srv, cid, False)
    wait_deliveries(srv, s["id"], "dead", 1)
    r = receiver(srv, port)
    rc, out, err = srv.cli("webhooks", "replay", "--all", "--data", srv.data)
    assert rc == 0 and "replayed 1" in out, (out, err)
    (h, body), = r.wait_for(1)
    assert json.loads(body)["data"]["restricted"] is False
    rc, out, err = srv.cli("webhooks", "replay", "--data", srv.data)
    assert rc == 2 and "usage" in err
    st, _, ev = srv.req("GET", "/v1/audit?action=webhook.replay")
    assert len(ev["items"]) == 2


def test_a_paused_subscription_keeps_its_events(srv):
    r = receiver(srv)
    s = subscribe(srv, r.url, ["customer.restricted"])
    st, _, p = srv.req("PATCH", f"/v1/webhooks/{s['id']}", {"status": "paused"})
    assert st == 200 and p["status"] == "paused"
    cid = customer(srv)
    restrict(srv, cid, True)
    time.sleep(1.0)
    assert r.acknowledged() == []
    st, _, p = srv.req("GET", f"/v1/webhooks/{s['id']}")
    assert p["pending"] == 1
    st, _, p = srv.req("PATCH", f"/v1/webhooks/{s['id']}", {"status": "active"})
    assert st == 200
    r.wait_for(1)


def test_metrics_count_deliveries(srv):
    st, _, m = srv.req("GET", "/metrics", token=None)
    text = m.decode()
    for name in ("candor_webhook_deliveries_queued", "candor_webhook_deliveries_dead",
                 "candor_webhook_deliveries_total", "candor_webhook_attempts_failed_total",
                 "candor_webhook_dead_lettered_total",
                 "candor_webhook_delivery_latency_seconds_count"):
        assert f"\n{name} " in text or f"\n{name}{{" in text, name
    delivered = int(text.split("\ncandor_webhook_deliveries_total ")[1].split()[0])
    assert delivered >= 10
