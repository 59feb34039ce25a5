"""Incidents through the HTTP API: opened, customers linked by list and by query (one follow-up
case each, nobody twice), notices told as the customers' preferences allow (quiet hours defer a
service notice, the sweeper tells it later; a legal notice goes out whatever they are), each
notice recorded with its channel and time, in the case's history and on the outbox; roles; and
bad input that is a problem+json and changes nothing."""
import time

from e2e_util import sql
from harness import Server, assert_problem


def setup_module():
    return Server(args=["--sla-sweep", "200"])


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def customer(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Affected Customer"})
    assert st == 201, c
    return c["id"]


def incident(srv, **body):
    st, hdr, i = srv.req("POST", "/v1/incidents", dict({"kind": "outage", "title": "Down"}, **body))
    assert st == 201, i
    assert hdr["location"] == "/v1/incidents/" + i["id"]
    return i


def affected(srv, iid, **query):
    path = "/v1/incidents/%s/customers" % iid
    if query:
        path += "?" + "&".join("%s=%s" % kv for kv in query.items())
    st, _, r = srv.req("GET", path)
    assert st == 200, r
    return {it["customer_id"]: it for it in r["items"]}


def quiet_now(srv, cid):
    """Quiet hours around the current UTC minute, for a customer without a time zone."""
    t = time.gmtime()
    start = "%02d:%02d" % (t.tm_hour, 0)
    end = "%02d:%02d" % ((t.tm_hour + 2) % 24, 0)
    st, _, r = srv.req("POST", "/v1/customers/%s/preferences" % cid,
                       {"quiet_hours": {"start": start, "end": end}})
    assert st == 200, r


def test_customers_are_linked_each_with_one_case(srv):
    a, b = customer(srv), customer(srv)
    i = incident(srv, severity="high", tags=["technical"], team="support")
    assert i["status"] == "open" and i["customers"]["affected"] == 0
    st, _, r = srv.req("POST", "/v1/incidents/%s/customers" % i["id"],
                       {"customer_ids": [a, b, "cus_01J0000000000000000000000A"]})
    assert st == 200, r
    assert (r["added"], r["cases_opened"]) == (2, 2), r
    assert r["unknown"] == ["cus_01J0000000000000000000000A"], r
    st, _, r = srv.req("POST", "/v1/incidents/%s/customers" % i["id"], {"customer_ids": [a]})
    assert (r["added"], r["already_affected"], r["cases_opened"]) == (0, 1, 0), r
    st, _, page = srv.req("GET", "/v1/cases?incident_id=" + i["id"], purpose="service")
    assert st == 200 and len(page["items"]) == 2, page
    assert {c["type"] for c in page["items"]} == {"incident_follow_up"}
    assert {c["impact"] for c in page["items"]} == {"high"}
    st, _, got = srv.req("GET", "/v1/incidents/" + i["id"])
    assert got["customers"]["affected"] == 2 and got["customers"]["not_yet_told"] == 2, got
    # By a query over cases: the customers with an active case tagged "technical".
    j = incident(srv, kind="billing_error", title="Double charge")
    st, _, r = srv.req("POST", "/v1/incidents/%s/customers" % j["id"],
                       {"query": {"tag": "technical", "active_only": True}})
    assert st == 200 and r["by"] == "query" and r["added"] == 2, r
    # A status change is written into the history of each active case.
    st, _, ch = srv.req("PATCH", "/v1/incidents/" + i["id"], {"status": "monitoring",
                                                              "version": got["version"]})
    assert st == 200 and ch["status"] == "monitoring", ch
    st, _, ev = srv.req("GET", "/v1/cases/%s/events" % page["items"][0]["id"])
    assert "case.incident_update" in [e["action"] for e in ev["items"]], ev


def test_notices_respect_quiet_hours_except_legal_ones(srv):
    quiet, day, held = customer(srv), customer(srv), customer(srv)
    quiet_now(srv, quiet)
    # Processing restricted (GDPR Art. 18): no service message, only what the law requires.
    st, _, _ = srv.req("POST", "/v1/customers/%s/restriction" % held, {"restricted": True},
                       token=srv.token("compliance"))
    assert st == 200
    i = incident(srv, title="Payments down")
    srv.req("POST", "/v1/incidents/%s/customers" % i["id"], {"customer_ids": [quiet, day, held]})
    st, _, r = srv.req("POST", "/v1/incidents/%s/notify" % i["id"], {"channel": "sms"})
    assert st == 200, r
    assert (r["told"], r["deferred"], r["withheld"]) == (1, 1, 1), r
    assert r["withheld_reasons"] == {"restricted": 1}, r
    seen = affected(srv, i["id"])
    assert seen[day]["notice"] == "told" and seen[day]["channel"] == "sms" and seen[day]["at"]
    assert seen[quiet]["notice"] == "deferred" and seen[quiet]["reason"] == "quiet_hours"
    assert seen[held]["notice"] == "withheld" and seen[held]["at"] is None
    # Nobody is told twice; the sweeper keeps the deferred one while the quiet hours hold.
    st, _, r = srv.req("POST", "/v1/incidents/%s/notify" % i["id"], {"channel": "sms"})
    assert r["told"] == 0, r
    time.sleep(0.6)
    assert affected(srv, i["id"])[quiet]["notice"] == "deferred"
    # Each notice told is in the case's history and on the outbox.
    case_id = seen[day]["case_id"]
    st, _, ev = srv.req("GET", "/v1/cases/%s/events" % case_id)
    told = [e for e in ev["items"] if e["action"] == "case.incident_notice"]
    assert len(told) == 1 and told[0]["data"]["channel"] == "sms" and told[0]["audit_seq"], ev
    assert int(sql(srv, "SELECT count(*) FROM outbox_events WHERE type = 'incident.notice'"
                        " AND customer_id = '%s'" % day)) == 1
    # The law requires telling of this breach: told now, quiet hours or not.
    b = incident(srv, kind="data_breach", title="Wrong addresses",
                 legal_notice={"required": True, "basis": "GDPR Art. 34"})
    srv.req("POST", "/v1/incidents/%s/customers" % b["id"], {"customer_ids": [quiet, day, held]})
    st, _, r = srv.req("POST", "/v1/incidents/%s/notify" % b["id"],
                       {"channel": "sms", "legal_notice": True})
    assert (r["told"], r["deferred"], r["withheld"]) == (3, 0, 0), r
    seen = affected(srv, b["id"], notice="told")
    assert seen[quiet]["reason"] == "legal_notice" and seen[quiet]["basis"] == "legal_obligation"


def test_roles(srv):
    i = incident(srv)
    agent, compliance = srv.token("agent"), srv.token("compliance")
    assert_problem(srv.req("POST", "/v1/incidents", {"kind": "outage", "title": "x"},
                           token=agent), 403, "forbidden")
    assert_problem(srv.req("POST", "/v1/incidents/%s/notify" % i["id"], {"channel": "email"},
                           token=compliance), 403, "forbidden")
    assert_problem(srv.req("GET", "/v1/incidents", token=None), 401, "unauthenticated")
    st, _, _ = srv.req("GET", "/v1/incidents/%s/customers" % i["id"], token=compliance)
    assert st == 200
    st, _, _ = srv.req("GET", "/v1/incidents/" + i["id"], token=agent)
    assert st == 200


def test_bad_input_is_a_problem_and_changes_nothing(srv):
    before = int(sql(srv, "SELECT count(*) FROM incidents"))
    for body in ({"title": "no kind"}, {"kind": "flood", "title": "x"}, {"kind": "outage"},
                 {"kind": "outage", "title": ""}, {"kind": "outage", "title": "x" * 201},
                 {"kind": "outage", "title": "x", "legal_notice": {"required": True}},
                 {"kind": "outage", "title": "x", "colour": "red"}, {"kind": 3, "title": "x"},
                 {"kind": "outage", "title": "x", "started_at": "yesterday"}):
        assert_problem(srv.req("POST", "/v1/incidents", body), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/incidents", raw=b"{\"kind\": "), 400, "malformed-json")
    assert int(sql(srv, "SELECT count(*) FROM incidents")) == before
    i = incident(srv)
    url = "/v1/incidents/" + i["id"]
    cases = int(sql(srv, "SELECT count(*) FROM cases"))
    for body in ({}, {"customer_ids": []}, {"customer_ids": ["nope"]}, {"query": {}},
                 {"query": {"tag": "Not A Tag"}}, {"customer_ids": ["x"], "query": {"tag": "a"}}):
        assert_problem(srv.req("POST", url + "/customers", body), 400, "invalid-request")
    assert int(sql(srv, "SELECT count(*) FROM cases")) == cases
    assert_problem(srv.req("POST", url + "/notify", {}), 400, "invalid-request")
    assert_problem(srv.req("POST", url + "/notify", {"channel": "pigeon"}), 400, "invalid-request")
    assert_problem(srv.req("POST", url + "/notify", {"channel": "email", "legal_notice": True}),
                   400, "invalid-request")
    assert_problem(srv.req("GET", "/v1/incidents/inc_01J0000000000000000000000A"), 404, "not-found")
    assert_problem(srv.req("GET", "/v1/incidents/nonsense"), 404, "not-found")
    assert_problem(srv.req("GET", "/v1/incidents?status=asleep"), 400, "invalid-request")
    assert_problem(srv.req("GET", url + "/customers?notice=maybe"), 400, "invalid-request")
    assert_problem(srv.req("PATCH", url, {"status": "resolved", "version": 9}), 409, "conflict")
    st, _, r = srv.req("PATCH", url, {"status": "resolved"})
    assert st == 200 and r["resolved_at"], r
    assert_problem(srv.req("PATCH", url, {"status": "open"}), 400, "invalid-request")
    assert_problem(srv.req("POST", url + "/customers", {"query": {"tag": "billing"}}), 409,
                   "conflict")
    st, _, r = srv.req("GET", url)
    assert r["status"] == "resolved" and r["title"] == "Down", r
