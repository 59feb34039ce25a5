"""POST /v1/interactions:batch: up to 100 interactions in one request, each through the same
checks as a single ingestion (validation, consent, the guard, the purpose policy), one result per
item in order, idempotent per item by its idempotency_key; a malformed batch stores nothing."""
from e2e_util import sql
from harness import Server, assert_problem

CARD = "4242 4242 4242 4242"


def setup_module():
    srv = Server()
    srv.agent = srv.token("agent", "Batch agent")
    st, _, c = srv.req("POST", "/v1/customers", {"jurisdiction": "EU", "time_zone": "UTC"})
    assert st == 201, c
    srv.cid = c["id"]
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def count(srv):
    return int(sql(srv, "SELECT count(*) FROM interactions"))


def batch(srv, items, **kw):
    return srv.req("POST", "/v1/interactions:batch", {"items": items}, **kw)


def inbound(value, text, **extra):
    return {"identity": {"type": "external", "network": "batch", "value": value},
            "channel": "chat", "direction": "inbound", "body": text, **extra}


def test_each_item_gets_its_own_result(srv):
    before = count(srv)
    items = [
        inbound("b-1", "first", idempotency_key="k-1"),
        {"channel": "pigeon", "direction": "inbound", "customer_id": srv.cid},
        {"customer_id": srv.cid, "channel": "email", "direction": "outbound",
         "purpose": "marketing", "body": "Our autumn newsletter"},
        {"customer_id": srv.cid, "channel": "email", "direction": "outbound",
         "body": f"We charged your card {CARD} again."},
        {"customer_id": srv.cid, "channel": "email", "direction": "inbound", "body": "thanks"},
    ]
    st, _, b = batch(srv, items)
    assert st == 200, b
    res = b["items"]
    assert [r["status"] for r in res] == [201, 400, 403, 422, 201], res
    assert b["succeeded"] == 2 and b["failed"] == 3
    assert res[0]["interaction"]["customer_created"] is True
    assert res[4]["interaction"]["customer_id"] == srv.cid
    assert res[1]["problem"]["type"] == "/problems/invalid-request"
    assert res[2]["problem"]["type"] == "/problems/consent-denied"
    assert res[3]["problem"]["type"] == "/problems/guard-blocked"
    assert any(f["rule"] == "PII.CARD" for f in res[3]["problem"]["findings"])
    assert CARD not in str(b)
    assert count(srv) == before + 2
    # The purpose policy applies per item: an agent may not send marketing.
    st, _, b = batch(srv, [items[2], inbound("b-agent", "fine")], token=srv.agent)
    assert [r["status"] for r in b["items"]] == [403, 201], b
    assert b["items"][0]["problem"]["type"] == "/problems/purpose-not-permitted"
    assert count(srv) == before + 3
    # Recorded as single ingestions are: one ledger entry each, the refusals too.
    st, _, ev = srv.req("GET", "/v1/audit?action=interaction.ingest&limit=5")
    ids = {e["resource_id"] for e in ev["items"]}
    assert res[0]["interaction"]["id"] in ids and res[4]["interaction"]["id"] in ids
    srv.first = res[0]["interaction"]["id"]


def test_a_key_makes_an_item_idempotent(srv):
    before = count(srv)
    st, _, b = batch(srv, [inbound("b-1", "first", idempotency_key="k-1"),
                           inbound("b-2", "second")])
    assert st == 200, b
    assert [r["status"] for r in b["items"]] == [200, 201]
    assert b["items"][0]["interaction"]["id"] == srv.first
    assert count(srv) == before + 1
    # The same key with another item is refused, as a single ingestion's would be.
    st, _, b = batch(srv, [inbound("b-1", "changed", idempotency_key="k-1")])
    assert b["items"][0]["status"] == 422, b
    assert b["items"][0]["problem"]["type"] == "/problems/idempotency-key-reused"
    assert count(srv) == before + 1


def test_many_items_share_commits(srv):
    before = count(srv)
    st, _, b = batch(srv, [inbound(f"m-{i % 7}", f"item {i}", idempotency_key=f"m-{i}")
                           for i in range(100)])
    assert st == 200 and b["succeeded"] == 100, b
    assert len({r["interaction"]["id"] for r in b["items"]}) == 100
    assert count(srv) == before + 100


def test_a_malformed_batch_stores_nothing(srv):
    before = count(srv)
    good = inbound("bad-1", "never stored")
    for body, why in [
        ({}, "'items' must be an array"),
        ({"items": []}, "'items' must be an array"),
        ({"items": [good] * 101}, "1 to 100"),
        ({"items": [good, 3]}, "'items[1]' must be an object"),
        ({"items": [good], "extra": 1}, "unknown member 'extra'"),
        ({"items": [good, dict(good, idempotency_key="")]}, "idempotency_key"),
        ({"items": [good, dict(good, idempotency_key="sp ace")]}, "printable ASCII"),
        ({"items": [good, dict(good, idempotency_key=7)]}, "idempotency_key"),
    ]:
        body = assert_problem(srv.req("POST", "/v1/interactions:batch", body), 400,
                              "invalid-request")
        assert why in body["detail"], (why, body)
    assert_problem(srv.req("POST", "/v1/interactions:batch", raw=b'{"items": [}'), 400,
                   "malformed-json")
    assert_problem(srv.req("POST", "/v1/interactions:batch", {"items": [good]}, token=None),
                   401, "unauthenticated")
    compliance = srv.token("compliance", "Auditor")
    st, _, b = srv.req("POST", "/v1/interactions:batch", {"items": [good]}, token=compliance)
    assert st == 403, b
    assert count(srv) == before
