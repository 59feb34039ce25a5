"""Retention through the API and the CLI: a dry run lists what would go and changes nothing; a run
deletes old interactions (per purpose) and erases customers long inactive, leaves customers under
a legal hold alone and says how many, and records its counts in the ledger; bad rules stop the
server and the CLI with the file and line; the schedule inside serve runs the rules."""
import json
import os
import shutil
import time

from e2e_util import sql
from harness import ROOT, Server, assert_problem

DAY = 86400

RULES = """version: 1
rules:
  - data: interactions
    keep: 30 days
    after: last_contact
    why: test
  - data: interactions
    purpose: marketing
    keep: 7 days
    after: occurred
    why: test
  - data: customers
    keep: 90 days
    after: last_contact
    why: test
  - data: idempotency_keys
    keep: 30 days
    after: created
    why: test
  - data: webhook_deliveries
    keep: 90 days
    after: finished
    why: test
  - data: outbox_events
    keep: 90 days
    after: created
    why: test
  - data: audit_ledger
    keep: forever
    why: test
  - data: consent_records
    keep: forever
    why: test
"""


def rules_dir(tmp, text):
    d = os.path.join(tmp, "rules")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "rules"), d)
    with open(os.path.join(d, "retention", "rules.yaml"), "w") as f:
        f.write(text)
    return d


def setup_module():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="candor-retention-")
    srv = Server(args=["--rules", rules_dir(tmp, RULES), "--retention-every", "0"])
    srv.rules_tmp = tmp
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()
    shutil.rmtree(srv.rules_tmp, ignore_errors=True)


def ago(days):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days * DAY))


def customer(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Ana"})
    assert st == 201
    return c["id"]


def said(srv, cid, days, purpose="service"):
    st, _, i = srv.req("POST", "/v1/interactions", {
        "customer_id": cid, "channel": "email", "direction": "inbound", "purpose": purpose,
        "occurred_at": ago(days), "body": "hello"})
    assert st == 201, i
    return i["id"]


def test_setup_data(srv):
    srv.a, srv.b, srv.h = customer(srv), customer(srv), customer(srv)
    srv.c, srv.h2 = customer(srv), customer(srv)
    srv.a_old = [said(srv, srv.a, 60), said(srv, srv.a, 45)]
    srv.b_old = said(srv, srv.b, 60)
    srv.b_new = said(srv, srv.b, 1)
    srv.b_mkt = said(srv, srv.b, 10, purpose="marketing")
    srv.h_old = said(srv, srv.h, 60)
    # C and H2 have had no contact for 200 days.
    old = int((time.time() - 200 * DAY) * 1000)
    sql(srv, f"UPDATE customers SET created_at = {old}, updated_at = {old}"
             f" WHERE id IN ('{srv.c}', '{srv.h2}')")
    for cid in (srv.h, srv.h2):
        st, _, _ = srv.req("POST", f"/v1/customers/{cid}/holds",
                           {"reason": "Litigation 12", "legal_basis": "legal_claims"})
        assert st == 201


def counts(report):
    return {(r["data"], r["purpose"]): r["count"] for r in report["rules"]}


def test_dry_run_lists_and_changes_nothing(srv):
    before = sql(srv, "SELECT count(*) FROM interactions")
    st, _, rep = srv.req("POST", "/v1/retention/runs", {"dry_run": True})
    assert st == 200, rep
    assert rep["dry_run"] is True and rep["held_customers_skipped"] == 2
    c = counts(rep)
    assert c[("interactions", None)] == 2 and c[("interactions", "marketing")] == 1
    assert c[("customers", None)] == 1 and c[("audit_ledger", None)] == 0
    general = next(r for r in rep["rules"] if r["data"] == "interactions" and not r["purpose"])
    assert sorted(general["ids"]) == sorted(srv.a_old) and general["held_customers"] == 1
    cust = next(r for r in rep["rules"] if r["data"] == "customers")
    assert cust["ids"] == [srv.c] and cust["held_customers"] == 1
    assert "Ana" not in json.dumps(rep)  # ids and counts, no personal data
    assert sql(srv, "SELECT count(*) FROM interactions") == before
    rc, out, err = srv.cli("retention", "run", "--dry-run", "--data", srv.data, "--rules",
                           os.path.join(srv.rules_tmp, "rules"))
    assert rc == 0, err
    assert counts(json.loads(out)) == c


def test_run_deletes_erases_and_a_hold_wins(srv):
    rc, out, err = srv.cli("retention", "run", "--data", srv.data, "--rules",
                           os.path.join(srv.rules_tmp, "rules"))
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["dry_run"] is False and rep["held_customers_skipped"] == 2
    assert "ids" not in rep["rules"][0]
    left = set(sql(srv, "SELECT id FROM interactions").split())
    assert not (set(srv.a_old) | {srv.b_mkt}) & left
    assert {srv.b_old, srv.b_new, srv.h_old} <= left  # B was in touch; H is held
    st, _, c = srv.req("GET", f"/v1/customers/{srv.c}", purpose="service")
    assert c["status"] == "erased", c
    st, _, h2 = srv.req("GET", f"/v1/customers/{srv.h2}", purpose="service")
    assert h2["status"] == "active"
    # The counts are in the ledger, bound to the run's record, and listed.
    st, _, ev = srv.req("GET", "/v1/audit?action=retention.run")
    runs = ev["items"]
    assert len(runs) == 3 and runs[0]["resource_id"] == rep["id"]
    assert runs[0]["actor_token"] == "cli"
    st, _, listed = srv.req("GET", "/v1/retention/runs")
    assert listed["items"][0]["id"] == rep["id"]
    assert listed["items"][0]["counts"]["interactions"] == 2
    assert listed["items"][0]["counts"]["held_customers_skipped"] == 2
    # Once the hold is released, the next run takes H's old interactions too.
    st, _, holds = srv.req("GET", f"/v1/customers/{srv.h}/holds", purpose="legal_obligation")
    hid = holds["items"][0]["id"]
    st, _, _ = srv.req("POST", f"/v1/customers/{srv.h}/holds/{hid}/release", {"reason": "over"})
    st, _, rep = srv.req("POST", "/v1/retention/runs", {"dry_run": False})
    assert st == 201 and counts(rep)[("interactions", None)] == 1
    assert srv.h_old not in sql(srv, "SELECT id FROM interactions")


def test_bad_requests_and_roles(srv):
    for body in ({}, {"dry_run": "yes"}, {"dry_run": True, "all": 1}):
        assert_problem(srv.req("POST", "/v1/retention/runs", body), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/retention/runs", raw=b"{", content_type="application/json"),
                   400, "malformed-json")
    assert_problem(srv.req("POST", "/v1/retention/runs", {"dry_run": True}, token=None), 401,
                   "unauthenticated")
    for role in ("agent", "supervisor", "integration"):
        assert_problem(srv.req("POST", "/v1/retention/runs", {"dry_run": True},
                               token=srv.token(role)), 403, "forbidden")
    st, _, rules = srv.req("GET", "/v1/retention/rules", token=srv.token("compliance"))
    assert st == 200 and rules["rules"][1] == {"data": "interactions", "purpose": "marketing",
                                               "keep": "7 days", "after": "occurred",
                                               "why": "test"}


def test_bad_rules_are_refused_with_file_and_line(srv):
    bad = RULES.replace("keep: 7 days", "keep: 7 fortnights")
    d = rules_dir(os.path.join(srv.rules_tmp, "bad"), bad)
    rc, out, err = srv.cli("retention", "rules", "--rules", d)
    assert rc == 2 and "retention/rules.yaml:9:" in err and "keep" in err, err
    for mistake, words in ((RULES.replace("keep: forever\n    why: test\n  - data: consent",
                                          "keep: 5 years\n    why: test\n  - data: consent"),
                            "kept for good"),
                           (RULES.replace("  - data: customers\n    keep: 90 days\n    after: "
                                          "last_contact\n    why: test\n", ""),
                            "no rule for customers"),
                           (RULES.replace("after: finished", "after: occurred"), "after"),
                           (RULES + "  - data: interactions\n    keep: 1 day\n    after: "
                                    "occurred\n    why: twice\n", "already given"),
                           (RULES.replace("why: test", "reason: test", 1), "unknown")):
        d = rules_dir(os.path.join(srv.rules_tmp, "bad"), mistake)
        rc, out, err = srv.cli("retention", "rules", "--rules", d)
        assert rc == 2 and words in err, (words, err)
    rc, out, err = srv.cli("serve", "--data", srv.data, "--listen", "127.0.0.1:0", "--rules", d)
    assert rc != 0 and "retention/rules.yaml" in err, err


def test_the_schedule_runs_the_rules(srv):
    other = Server(args=["--rules", os.path.join(srv.rules_tmp, "rules"),
                         "--retention-every", "1"])
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            st, _, ev = other.req("GET", "/v1/audit?action=retention.run")
            if ev["items"]:
                break
            time.sleep(0.2)
        assert ev["items"] and ev["items"][0]["actor_token"] == "system", ev
    finally:
        other.stop()
        other.cleanup()
