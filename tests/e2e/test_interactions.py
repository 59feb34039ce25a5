"""Interactions on every channel, identity resolution on ingestion, Idempotency-Key, size limits,
and the timeline: newest first, filters, and cursor pages that stay stable while new
interactions arrive."""
import socket
import threading

from e2e_util import counts, interaction, timeline
from harness import Server, assert_problem

CHANNELS = ["email", "sms", "phone", "chat", "social", "app", "push", "post", "in_person"]


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def new_customer(srv, **body):
    st, _, c = srv.req("POST", "/v1/customers", body)
    assert st == 201, c
    return c["id"]


def post(srv, body, **kw):
    # Under a purpose that may see the conversation, the answer echoes what was sent.
    kw.setdefault("purpose", "service")
    return srv.req("POST", "/v1/interactions", body, **kw)


def test_every_channel_and_direction(srv):
    cid = new_customer(srv)
    made = {}
    for ch in CHANNELS:
        for d in ("inbound", "outbound"):
            st, hdr, it = post(srv, interaction(cid, channel=ch, direction=d, body=f"{ch}/{d}",
                                                thread_id="t-1", subject="s"))
            assert st == 201, (ch, d, it)
            assert (it["channel"], it["direction"], it["body"]) == (ch, d, f"{ch}/{d}"), it
            assert it["customer_id"] == cid and it["thread_id"] == "t-1", it
            assert it["purpose"] == "service" and it["id"].startswith("int_"), it
            assert hdr["location"] == "/v1/interactions/" + it["id"]
            made[it["id"]] = (ch, d)
    st, _, one = srv.req("GET", "/v1/interactions/" + next(iter(made)), purpose="service")
    assert st == 200 and one["body"] == "email/inbound", one
    tl = timeline(srv, cid)
    assert {i["id"]: (i["channel"], i["direction"]) for i in tl} == made


def test_by_identity_creates_then_reuses_customer(srv):
    ident = {"type": "email", "value": "Walk.In@Example.com"}
    st, _, a = post(srv, {"identity": ident, "channel": "email", "direction": "inbound"})
    assert st == 201 and a["customer_created"] is True, a
    st, _, b = post(srv, {"identity": {"type": "email", "value": "walk.in@example.COM"},
                          "channel": "sms", "direction": "outbound"})
    assert st == 201 and b["customer_created"] is False and b["customer_id"] == a["customer_id"]
    st, _, c = srv.req("GET", "/v1/customers/" + a["customer_id"], purpose="service")
    assert [i["value"] for i in c["identities"]] == ["walk.in@example.com"], c
    st, _, c = post(srv, {"identity": {"type": "social", "network": "TikTok", "value": "@Walker"},
                          "channel": "social", "direction": "inbound"})
    assert st == 201 and c["customer_created"] is True and c["customer_id"] != a["customer_id"]


def test_customer_id_and_identity_exactly_one(srv):
    cid = new_customer(srv)
    before = counts(srv)
    for body in ({"customer_id": cid, "identity": {"type": "email", "value": "x@example.com"},
                  "channel": "chat", "direction": "inbound"},
                 {"channel": "chat", "direction": "inbound"}):
        b = assert_problem(post(srv, body), 400, "invalid-request")
        assert "customer_id" in b["detail"] and "identity" in b["detail"], b
    assert_problem(post(srv, interaction("cus_00000000000000000000000000")), 404, "not-found")
    assert counts(srv) == before


def test_occurred_at_offsets_and_bad_values(srv):
    cid = new_customer(srv)
    for given, stored in (("2026-11-20T10:00:00+02:00", "2026-11-20T08:00:00.000Z"),
                          ("2026-11-20T10:00:00-05:30", "2026-11-20T15:30:00.000Z"),
                          ("2026-11-20T10:00:00.250Z", "2026-11-20T10:00:00.250Z"),
                          ("2026-11-20t10:00:00z", "2026-11-20T10:00:00.000Z")):
        st, _, it = post(srv, interaction(cid, occurred_at=given))
        assert st == 201 and it["occurred_at"] == stored, (given, st, it)
    before = counts(srv)
    for bad in ("yesterday", "2026-11-20", "2026-13-01T00:00:00Z", "2026-11-20T25:00:00Z",
                "2026-11-20T10:00:00", "2026-11-20T10:00:00+2", 1700000000):
        b = assert_problem(post(srv, interaction(cid, occurred_at=bad)), 400, "invalid-request")
        assert "occurred_at" in b["detail"], (bad, b)
    assert counts(srv) == before


def test_unknown_channel_direction_and_metadata_shape(srv):
    cid = new_customer(srv)
    before = counts(srv)
    for patch, word in (({"channel": "fax"}, "channel"), ({"channel": "EMAIL"}, "channel"),
                        ({"direction": "sideways"}, "direction"),
                        ({"metadata": [1, 2]}, "metadata"), ({"metadata": "x"}, "metadata"),
                        ({"purpose": "gossip"}, "purpose")):
        b = assert_problem(post(srv, interaction(cid, **patch)), 400, "invalid-request")
        assert word in b["detail"], (patch, b)
    assert counts(srv) == before
    st, _, it = post(srv, interaction(cid, metadata={"order": "A-1", "n": 2, "tags": ["x"]}))
    assert st == 201 and it["metadata"] == {"order": "A-1", "n": 2, "tags": ["x"]}, it


def test_oversized_request_is_413_before_the_body_is_sent(srv):
    before = counts(srv)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        s.sendall(("POST /v1/interactions HTTP/1.1\r\nHost: candor\r\n"
                   f"Authorization: Bearer {srv.admin}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {2 * 1024 * 1024}\r\n\r\n").encode() + b'{"body":"')
        # Only 9 of 2 MiB bytes were sent: the answer can only come from the headers.
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), data[:300]
    assert b"application/problem+json" in head, head
    assert b'"type":"/problems/payload-too-large"' in body, body
    assert counts(srv) == before
    assert srv.req("GET", "/healthz", token=None)[0] == 200


def test_body_member_over_256k_is_413(srv):
    cid = new_customer(srv)
    before = counts(srv)
    b = assert_problem(post(srv, interaction(cid, body="x" * (256 * 1024 + 1))), 413,
                       "payload-too-large")
    assert "'body'" in b["detail"], b
    # Exactly at the limit is fine.
    st, _, it = post(srv, interaction(cid, body="y" * (256 * 1024)))
    assert st == 201 and len(it["body"]) == 256 * 1024
    after = counts(srv)
    assert after["interactions"] == before["interactions"] + 1


def test_idempotency_key_replays_the_first_response(srv):
    cid = new_customer(srv)
    body = interaction(cid, body="order #1 arrived broken")
    st, h1, first = post(srv, body, headers={"Idempotency-Key": "order-1-broken"})
    assert st == 201 and "idempotent-replayed" not in h1, first
    st, h2, again = post(srv, body, headers={"Idempotency-Key": "order-1-broken"})
    assert st == 200 and h2.get("idempotent-replayed") == "true", (st, h2)
    assert again["id"] == first["id"] and again["body"] == first["body"]
    assert len(timeline(srv, cid)) == 1
    # Same key, different body: 422, and nothing new is stored.
    before = counts(srv)
    p = assert_problem(post(srv, interaction(cid, body="order #1 arrived fine"),
                            headers={"Idempotency-Key": "order-1-broken"}), 422,
                       "idempotency-key-reused")
    assert "different" in p["detail"], p
    assert counts(srv) == before and len(timeline(srv, cid)) == 1
    # Keys are scoped per token: another integration may use the same key.
    other = srv.token("integration", "shop connector")
    st, _, mine = post(srv, body, token=other, headers={"Idempotency-Key": "order-1-broken"})
    assert st == 201 and mine["id"] != first["id"], mine
    st, h3, mine2 = post(srv, body, token=other, headers={"Idempotency-Key": "order-1-broken"})
    assert st == 200 and mine2["id"] == mine["id"] and h3.get("idempotent-replayed") == "true"
    assert len(timeline(srv, cid)) == 2
    # A malformed key is refused.
    assert_problem(post(srv, body, headers={"Idempotency-Key": "k" * 256}), 400,
                   "invalid-request")


def test_idempotency_under_concurrent_retries(srv):
    cid = new_customer(srv)
    body = interaction(cid, body="retry storm")
    results = []

    def go():
        results.append(post(srv, body, headers={"Idempotency-Key": "storm-1"}))

    ts = [threading.Thread(target=go) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert all(r[0] in (200, 201) for r in results), [r[0] for r in results]
    assert sorted(r[0] for r in results).count(201) == 1, [r[0] for r in results]
    assert len({r[2]["id"] for r in results}) == 1
    assert len(timeline(srv, cid)) == 1


def test_timeline_newest_first_with_filters(srv):
    cid = new_customer(srv)
    for day in range(1, 11):
        ch = CHANNELS[day % 3]
        d = "inbound" if day % 2 else "outbound"
        assert post(srv, interaction(cid, channel=ch, direction=d,
                                     occurred_at=f"2026-10-{day:02d}T12:00:00Z"))[0] == 201
    tl = timeline(srv, cid)
    times = [i["occurred_at"] for i in tl]
    assert times == sorted(times, reverse=True) and len(times) == 10, times
    assert times[0].startswith("2026-10-10")
    sms = timeline(srv, cid, channel="sms")
    assert sms and all(i["channel"] == "sms" for i in sms)
    assert len(sms) == sum(1 for i in tl if i["channel"] == "sms")
    out = timeline(srv, cid, direction="outbound")
    assert len(out) == 5 and all(i["direction"] == "outbound" for i in out)
    both = timeline(srv, cid, channel="phone", direction="inbound")
    assert both == [i for i in tl if i["channel"] == "phone" and i["direction"] == "inbound"]


def test_timeline_limits_filters_and_cursor_errors(srv):
    cid = new_customer(srv)
    assert post(srv, interaction(cid))[0] == 201
    base = f"/v1/customers/{cid}/timeline"
    for q in ("limit=0", "limit=201", "limit=abc", "limit=", "limit=-1", "limit=1.5",
              "channel=fax", "direction=up", "cursor=not-a-cursor!", "cursor=Zm9vYmFy"):
        b = assert_problem(srv.req("GET", f"{base}?{q}", purpose="service"), 400,
                           "invalid-request")
        assert q.split("=")[0] in b["detail"], (q, b)
    for q in ("limit=1", "limit=200"):
        assert srv.req("GET", f"{base}?{q}", purpose="service")[0] == 200
    assert_problem(srv.req("GET", "/v1/customers/cus_00000000000000000000000000/timeline",
                           purpose="service"), 404, "not-found")
    assert_problem(srv.req("GET", "/v1/customers/nobody/timeline", purpose="service"), 404,
                   "not-found")


def test_cursor_pages_walk_everything_once_under_concurrent_inserts(srv):
    cid = new_customer(srv)
    # Several share a timestamp, so the keyset must break ties by id.
    expected = []
    for i in range(45):
        st, _, it = post(srv, interaction(cid, body=f"old {i}",
                                          occurred_at=f"2026-09-{1 + i // 3:02d}T08:00:00Z"))
        assert st == 201
        expected.append(it["id"])
    seen, cursor, pages, inserted = [], None, 0, []
    while True:
        path = f"/v1/customers/{cid}/timeline?limit=7" + (f"&cursor={cursor}" if cursor else "")
        st, _, page = srv.req("GET", path, purpose="service")
        assert st == 200, page
        seen += page["items"]
        pages += 1
        # New interactions arrive between pages (they are newer than everything walked).
        for _ in range(2):
            st, _, it = post(srv, interaction(cid, body="new"))
            assert st == 201
            inserted.append(it["id"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    ids = [i["id"] for i in seen]
    assert len(ids) == len(set(ids)), "duplicates across pages"
    assert sorted(ids) == sorted(expected), (len(ids), len(expected))
    assert pages == 7
    keys = [(i["occurred_at"], i["id"]) for i in seen]
    assert keys == sorted(keys, reverse=True)
    assert len(timeline(srv, cid)) == 45 + len(inserted)
