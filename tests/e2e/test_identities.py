"""Identities: Unicode spellings a reader cannot tell apart (fullwidth letters, zero-width
spaces, case) find the same customer; a look-alike that normalisation keeps apart (a Cyrillic
а) creates a customer but is linked to the first as a possible duplicate, which supervisors
list (purpose-gated, audited), merge or dismiss. occurred_at is bounded."""
import datetime

from harness import Server, assert_problem

CYRILLIC_A = "\u0430"


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def ingest(srv, value, type_="email", **kw):
    body = {"identity": {"type": type_, "value": value}, "channel": "email",
            "direction": "inbound", "body": "hello"}
    body.update(kw)
    return srv.req("POST", "/v1/interactions", body)


def test_spellings_a_reader_cannot_tell_apart_find_one_customer(srv):
    st, _, first = ingest(srv, "ana.silva@example.com")
    assert st == 201 and first["customer_created"], first
    for v in ("\uff41\uff4e\uff41.silva@example.com",       # fullwidth letters
              "ana.sil\u200bva@example.com",                  # zero-width space
              "ANA.SILVA@EXAMPLE.COM", "Ana.Silva@Example.com\u00ad",  # case, soft hyphen
              "ana.silva\uff20example.com"):                  # fullwidth @
        st, _, it = ingest(srv, v)
        assert st == 201 and it["customer_id"] == first["customer_id"], (v, it)
        assert it["customer_created"] is False, (v, it)
    st, _, p1 = ingest(srv, "+44 20 7946 0958", type_="phone")
    st, _, p2 = ingest(srv, "\uff0b\uff14\uff14 \uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18",
                       type_="phone")
    assert st == 201 and p2["customer_id"] == p1["customer_id"], (p1, p2)
    st, _, c = srv.req("GET", "/v1/customers/" + first["customer_id"], purpose="service")
    assert [i["value"] for i in c["identities"]] == ["ana.silva@example.com"], c


def test_a_lookalike_is_linked_not_merged_and_listed_for_supervisors(srv):
    st, _, orig = ingest(srv, "mateo@example.com")
    st, _, fake = ingest(srv, "mate" + "\u043e" + "@example.com")  # Cyrillic о
    assert st == 201 and fake["customer_created"] and fake["customer_id"] != orig["customer_id"]
    assert_problem(srv.req("GET", "/v1/possible-duplicates"), 400, "purpose-required")
    agent = srv.token("agent", "agent dup")
    assert_problem(srv.req("GET", "/v1/possible-duplicates", token=agent, purpose="service"),
                   403, "forbidden")
    sup = srv.token("supervisor", "supervisor dup")
    st, _, page = srv.req("GET", "/v1/possible-duplicates", token=sup, purpose="service")
    assert st == 200, page
    link = [l for l in page["items"] if l["customer_id"] == fake["customer_id"]]
    assert len(link) == 1, page
    link = link[0]
    assert link["other_customer_id"] == orig["customer_id"] and link["status"] == "open"
    assert link["reason"] == "confusable" and link["identity_type"] == "email", link
    values = {i["customer_id"]: i for i in link["identities"]}
    assert values[orig["customer_id"]]["value"] == "mateo@example.com"
    assert values[fake["customer_id"]]["unusual_characters"] == [
        "U+043E CYRILLIC SMALL LETTER O"], link
    # The read is in both customers' access logs.
    for cid in (orig["customer_id"], fake["customer_id"]):
        st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log", purpose="service")
        assert any(e["action"] == "possible_duplicate.read" for e in log["items"]), log
    # A purpose that may not see contact data sees the link, not the identities.
    st, _, page = srv.req("GET", "/v1/possible-duplicates", purpose="analytics")
    assert st == 200 and page["items"] and all("identities" not in l for l in page["items"])
    # Two ASCII spellings that only look alike in some fonts are not linked.
    st, _, a = ingest(srv, "john1@example.com")
    st, _, b = ingest(srv, "johnl@example.com")
    st, _, page = srv.req("GET", "/v1/possible-duplicates?status=all", purpose="service")
    assert not [l for l in page["items"] if b["customer_id"] in (l["customer_id"],
                                                                    l["other_customer_id"])]


def test_dismiss_and_merge(srv):
    st, _, a = ingest(srv, "lena@example.com")
    st, _, b = ingest(srv, "l" + "\u0435" + "na@example.com")  # Cyrillic е
    st, _, c = ingest(srv, "len" + CYRILLIC_A + "@example.com")
    st, _, page = srv.req("GET", "/v1/possible-duplicates", purpose="service")
    by = {(l["customer_id"], l["other_customer_id"]): l for l in page["items"]}
    lb, lc = by[(b["customer_id"], a["customer_id"])], by[(c["customer_id"], a["customer_id"])]
    # c looks like b too: each pair of customers gets its own link.
    assert (c["customer_id"], b["customer_id"]) in by, by
    st, _, d = srv.req("POST", f"/v1/possible-duplicates/{lb['id']}/dismiss")
    assert st == 200 and d["status"] == "dismissed" and d["resolved_by"], d
    assert_problem(srv.req("POST", f"/v1/possible-duplicates/{lb['id']}/dismiss"), 409, "conflict")
    assert_problem(srv.req("POST", f"/v1/possible-duplicates/{lb['id']}/merge", {}), 409, "conflict")
    assert_problem(srv.req("POST", "/v1/possible-duplicates/dup_nope/dismiss"), 404, "not-found")
    assert_problem(srv.req("POST", f"/v1/possible-duplicates/{lc['id']}/merge",
                           {"survivor": "cus_01M98TWBD7BFAV0W19W0TAZGHZ"}), 400, "invalid-request")
    assert_problem(srv.req("POST", f"/v1/possible-duplicates/{lc['id']}/merge", {"x": 1}),
                   400, "invalid-request")
    st, _, m = srv.req("POST", f"/v1/possible-duplicates/{lc['id']}/merge", {})
    assert st == 200 and m["status"] == "merged", m
    st, _, gone = srv.req("GET", "/v1/customers/" + c["customer_id"], purpose="service")
    assert gone["status"] == "merged" and gone["merged_into"] == a["customer_id"], gone
    st, _, page = srv.req("GET", "/v1/possible-duplicates?status=merged", purpose="service")
    assert lc["id"] in [l["id"] for l in page["items"]], page
    assert_problem(srv.req("GET", "/v1/possible-duplicates?status=maybe", purpose="service"),
                   400, "invalid-request")
    st, _, audit = srv.req("GET", "/v1/audit?limit=50")
    actions = [e["action"] for e in audit["items"]]
    assert "possible_duplicate.dismiss" in actions and "identity.possible_duplicate" in actions


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_occurred_at_is_bounded(srv):
    now = datetime.datetime.now(datetime.timezone.utc)
    for when in ("9999-12-31T23:59:59Z", iso(now + datetime.timedelta(hours=25))):
        r = ingest(srv, "clock@example.com", occurred_at=when)
        body = assert_problem(r, 400, "invalid-request")
        assert "occurred_at" in body["detail"] and "86400 seconds" in body["detail"], body
    body = assert_problem(ingest(srv, "clock@example.com", occurred_at="1969-12-31T23:59:59Z"),
                          400, "invalid-request")
    assert "1970" in body["detail"], body
    for when in (iso(now + datetime.timedelta(hours=23)), "1970-01-01T00:00:00Z",
                 iso(now - datetime.timedelta(days=3650))):
        st, _, it = ingest(srv, "clock@example.com", occurred_at=when)
        assert st == 201, (when, it)


def test_the_future_skew_is_configurable(_):
    srv = Server(args=["--max-future-skew", "60"])
    try:
        now = datetime.datetime.now(datetime.timezone.utc)
        body = assert_problem(ingest(srv, "skew@example.com",
                                     occurred_at=iso(now + datetime.timedelta(minutes=5))),
                              400, "invalid-request")
        assert "60 seconds" in body["detail"], body
        st, _, _ = ingest(srv, "skew@example.com", occurred_at=iso(now + datetime.timedelta(seconds=20)))
        assert st == 201
    finally:
        srv.stop()
        srv.cleanup()
