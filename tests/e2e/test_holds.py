"""Legal holds as a compliance officer uses them through the API: placed with a reason and a legal
basis, listed under a purpose (a read recorded on the customer's access log), released with a
reason, every change in the ledger; bad input, unknown ids, missing auth and roles that may not
are refused with a problem and change nothing."""
from e2e_util import sql
from harness import Server, assert_problem


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def customer(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Ana Silva"})
    assert st == 201, c
    return c["id"]


HOLD = {"reason": "Litigation ref. 2026-114", "legal_basis": "legal_claims"}


def test_place_list_release(srv):
    cid = customer(srv)
    st, hdr, h = srv.req("POST", f"/v1/customers/{cid}/holds", HOLD)
    assert st == 201, h
    assert hdr["location"] == f"/v1/customers/{cid}/holds/{h['id']}"
    assert h["status"] == "active" and h["legal_basis"] == "legal_claims"
    assert h["reason"] == HOLD["reason"] and h["expires_at"] is None

    st, _, page = srv.req("GET", f"/v1/customers/{cid}/holds", purpose="legal_obligation")
    assert st == 200, page
    assert [x["id"] for x in page["items"]] == [h["id"]]
    # Reading a customer's holds is on their access log, with the purpose.
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log", purpose="legal_obligation")
    assert st == 200
    reads = [e for e in log["items"] if e.get("action") == "holds.read"]
    assert reads and reads[0]["purpose"] == "legal_obligation", log

    st, _, r = srv.req("POST", f"/v1/customers/{cid}/holds/{h['id']}/release",
                       {"reason": "Case settled"})
    assert st == 200, r
    assert r["status"] == "released" and r["release_reason"] == "Case settled"
    assert "reason" not in r  # the hold's own reason stays behind the purpose-gated listing
    assert_problem(srv.req("POST", f"/v1/customers/{cid}/holds/{h['id']}/release",
                           {"reason": "again"}), 409, "conflict")
    st, _, page = srv.req("GET", f"/v1/customers/{cid}/holds?status=active",
                          purpose="legal_obligation")
    assert st == 200 and page["items"] == []
    st, _, page = srv.req("GET", f"/v1/customers/{cid}/holds?status=released",
                          purpose="legal_obligation")
    assert [x["id"] for x in page["items"]] == [h["id"]]

    st, _, ev = srv.req("GET", f"/v1/audit?customer_id={cid}")
    actions = [e["action"] for e in ev["items"]]
    assert "hold.create" in actions and "hold.release" in actions, actions


def test_bad_input_changes_nothing(srv):
    cid = customer(srv)
    path = f"/v1/customers/{cid}/holds"
    assert_problem(srv.req("POST", path, raw=b"{\"reason\": ", content_type="application/json"),
                   400, "malformed-json")
    for body in ({"legal_basis": "legal_claims"}, {"reason": "x"},
                 {"reason": 42, "legal_basis": "legal_claims"},
                 {"reason": "x", "legal_basis": "because"},
                 {"reason": "", "legal_basis": "legal_claims"},
                 {"reason": "x" * 1001, "legal_basis": "legal_claims"},
                 {"reason": "x", "legal_basis": "legal_claims", "expires_at": "tomorrow"},
                 {"reason": "x", "legal_basis": "legal_claims",
                  "expires_at": "2001-01-01T00:00:00Z"},
                 {"reason": "x", "legal_basis": "legal_claims", "owner": "ana"}):
        assert_problem(srv.req("POST", path, body), 400, "invalid-request")
    assert_problem(srv.req("POST", path, [HOLD]), 400, "malformed-json")
    assert_problem(srv.req("POST", "/v1/customers/cus_00000000000000000000000000/holds", HOLD),
                   404, "not-found")
    assert_problem(srv.req("POST", "/v1/customers/nobody/holds", HOLD), 404, "not-found")
    assert_problem(srv.req("GET", path + "?status=open", purpose="legal_obligation"),
                   400, "invalid-request")
    assert_problem(srv.req("POST", f"{path}/hold_00000000000000000000000000/release",
                           {"reason": "x"}), 404, "not-found")
    assert_problem(srv.req("POST", f"{path}/nohold/release", {"reason": "x"}), 404, "not-found")
    assert sql(srv, f"SELECT count(*) FROM legal_holds WHERE customer_id = '{cid}'") == "0"


def test_auth_role_and_purpose(srv):
    cid = customer(srv)
    path = f"/v1/customers/{cid}/holds"
    assert_problem(srv.req("POST", path, HOLD, token=None), 401, "unauthenticated")
    assert_problem(srv.req("GET", path, token=None, purpose="legal_obligation"), 401,
                   "unauthenticated")
    for role in ("agent", "integration"):
        t = srv.token(role)
        assert_problem(srv.req("POST", path, HOLD, token=t), 403, "forbidden")
        assert_problem(srv.req("GET", path, token=t, purpose="service"), 403, "forbidden")
    for role in ("supervisor", "compliance"):
        st, _, h = srv.req("POST", path, HOLD, token=srv.token(role))
        assert st == 201, h
    # The listing is a read about the customer: a purpose is required, and must be allowed.
    assert_problem(srv.req("GET", path), 400, "purpose-required")
    assert_problem(srv.req("GET", path, purpose="marketing", token=srv.token("compliance")),
                   403, "purpose-not-permitted")


def test_holds_follow_a_merge(srv):
    a, b = customer(srv), customer(srv)
    st, _, h = srv.req("POST", f"/v1/customers/{a}/holds", HOLD)
    assert st == 201
    st, _, m = srv.req("POST", f"/v1/customers/{b}/merge", {"merge": a}, purpose="service")
    assert st == 200, m
    st, _, page = srv.req("GET", f"/v1/customers/{b}/holds?status=active",
                          purpose="legal_obligation")
    assert [(x["id"], x["customer_id"]) for x in page["items"]] == [(h["id"], a)], page
    assert_problem(srv.req("POST", f"/v1/customers/{a}/holds", HOLD), 409, "conflict")
    st, _, r = srv.req("POST", f"/v1/customers/{b}/holds/{h['id']}/release", {"reason": "done"})
    assert st == 200, r
