"""Cases through the HTTP API and the CLI: opened explicitly and from interactions (a new thread
opens a case, a reply reopens a resolved one, the words of a complaint make a complaint), the
status machine, SLA clocks and breaches marked by the sweeper, the fair queue (distinct cases for
agents claiming at once, "why is this next"), blind mode (no customer value for agents in any
answer or export), honest ETAs, the SLA report as JSON and CSV, /metrics, and bad input that is a
problem+json and changes nothing."""
import csv
import io
import json
import os
import shutil
import tempfile
import threading
import time

from e2e_util import sql, stored_bytes
from harness import ROOT, Server, assert_problem

# A 24x7 policy with targets of minutes, so the sweeper has breaches to mark during the test.
FAST_POLICY = """id: fast
name: Fast (test)
calendar: 24x7
pause_on: [pending_customer]
due_soon: "30 minutes"
targets:
  - when: {type: complaint}
    first_response: "1 minutes"
    next_response: "5 minutes"
    resolution: "20 minutes"
  - when: {}
    first_response: "10 minutes"
    next_response: "20 minutes"
    resolution: "1 hours"
"""


def setup_module():
    tmp = tempfile.mkdtemp(prefix="candor-cases-rules-")
    rules = os.path.join(tmp, "rules")
    shutil.copytree(os.path.join(ROOT, "rules"), rules)
    with open(os.path.join(rules, "sla", "standard.yaml"), "w") as f:
        f.write(FAST_POLICY)
    srv = Server(args=["--rules", rules, "--sla-sweep", "200"])
    srv.rules_tmp = tmp
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()
    shutil.rmtree(srv.rules_tmp, ignore_errors=True)


def customer(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Case Customer"})
    assert st == 201, c
    return c["id"]


def open_case(srv, cid, token="admin", **body):
    body = dict({"customer_id": cid}, **body)
    st, hdr, c = srv.req("POST", "/v1/cases", body, token=token, purpose="service")
    assert st == 201, c
    assert hdr["location"] == "/v1/cases/" + c["id"]
    return c


def get(srv, case_id, token="admin", purpose="service"):
    st, _, c = srv.req("GET", "/v1/cases/" + case_id, token=token, purpose=purpose)
    assert st == 200, c
    return c


def case_rows(srv):
    return int(sql(srv, "SELECT count(*) FROM cases"))


def test_a_case_is_opened_read_and_resolved(srv):
    cid = customer(srv)
    c = open_case(srv, cid, type="complaint", impact="high", tags=["billing"])
    assert c["status"] == "new" and c["type"] == "complaint" and c["team"] == "complaints"
    assert c["skill"] == "billing" and c["priority"] == 1
    assert c["sla"]["policy"] == "fast" and c["sla"]["targets"]["first_response"] == "1 minute"
    assert c["sla"]["first_response"]["state"] == "running"
    assert [f["factor"] for f in c["priority_why"]["factors"]] == ["type", "impact"]
    assert c["priority_why"]["customer_value"] == "never counted"
    st, _, c2 = srv.req("PATCH", "/v1/cases/" + c["id"], {
        "status": "resolved", "remedy": {"type": "refund", "amount_minor": 1999,
                                         "currency": "EUR"},
        "outcome": "upheld", "reason": "charged twice", "version": c["version"]},
        purpose="service")
    assert st == 200, c2
    assert c2["status"] == "resolved" and c2["remedy"] == {
        "type": "refund", "amount_minor": 1999, "currency": "EUR"}
    assert c2["sla"]["resolution"]["state"] in ("met", "met_late")
    st, _, ev = srv.req("GET", f"/v1/cases/{c['id']}/events")
    assert st == 200 and [e["action"] for e in ev["items"]][:2] == ["case.create",
                                                                    "case.resolve"], ev
    assert ev["items"][1]["data"]["reason"] == "charged twice"
    assert all(e["audit_seq"] for e in ev["items"])
    # The ledger has the changes, and the read.
    st, _, au = srv.req("GET", "/v1/audit?customer_id=" + cid + "&limit=50")
    actions = [e["action"] for e in au["items"]]
    assert "case.create" in actions and "case.resolve" in actions and "case.read" in actions


def test_reads_need_a_purpose_and_a_role(srv):
    cid = customer(srv)
    c = open_case(srv, cid)
    assert_problem(srv.req("GET", "/v1/cases/" + c["id"]), 400, "purpose-required")
    assert_problem(srv.req("GET", "/v1/cases?limit=5"), 400, "purpose-required")
    assert_problem(srv.req("GET", "/v1/cases/" + c["id"], token=srv.token("agent"),
                           purpose="marketing"), 403, "purpose-not-permitted")
    # The refusal was an attempt on this customer's data: their access log shows it.
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log?limit=500", purpose="service")
    assert st == 200, log
    denied = [e for e in log["items"] if e["action"] == "access.denied"]
    assert len(denied) == 1 and denied[0]["purpose"] == "marketing", denied
    assert_problem(srv.req("GET", "/v1/cases/" + c["id"], token=None, purpose="service"), 401,
                   "unauthenticated")
    compliance = srv.token("compliance")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": cid}, token=compliance), 403,
                   "forbidden")
    agent = srv.token("agent")
    assert_problem(srv.req("PUT", "/v1/agents/agt_01J0000000000000000000000A",
                           {"name": "x", "teams": ["support"]}, token=agent), 403, "forbidden")


def test_bad_input_is_a_problem_and_changes_nothing(srv):
    cid = customer(srv)
    c = open_case(srv, cid)
    before = case_rows(srv)
    version = get(srv, c["id"])["version"]
    url = "/v1/cases/" + c["id"]
    assert_problem(srv.req("POST", "/v1/cases", raw=b"{\"customer_id\": ", purpose="service"),
                   400, "malformed-json")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": 42}, purpose="service"), 400,
                   "invalid-request")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": cid, "type": "grievance"},
                           purpose="service"), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": cid, "tags": "billing"},
                           purpose="service"), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": cid, "colour": "red"},
                           purpose="service"), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": "cus_01J0000000000000000000000A"},
                           purpose="service"), 404, "not-found")
    assert_problem(srv.req("POST", "/v1/cases", {"customer_id": cid,
                                                 "interactions": ["int_01J0000000000000000000000A"]},
                           purpose="service"), 404, "not-found")
    assert case_rows(srv) == before
    # Illegal transitions, resolving without its record, a stale version, unknown ids.
    p = assert_problem(srv.req("PATCH", url, {"status": "closed"}, purpose="service"), 400,
                       "invalid-request")
    assert "cannot go from new to closed" in p["detail"]
    p = assert_problem(srv.req("PATCH", url, {"status": "resolved"}, purpose="service"), 400,
                       "invalid-request")
    assert "remedy" in p["detail"]
    assert_problem(srv.req("PATCH", url, {"status": 3}, purpose="service"), 400, "invalid-request")
    assert_problem(srv.req("PATCH", url, {"remedy": {"type": "refund"}}, purpose="service"), 400,
                   "invalid-request")
    assert_problem(srv.req("PATCH", url, {"status": "open", "version": version + 5},
                           purpose="service"), 409, "conflict")
    assert_problem(srv.req("PATCH", url, {"assignee": "agt_01J0000000000000000000000A"},
                           purpose="service"), 404, "not-found")
    assert_problem(srv.req("PATCH", "/v1/cases/cas_01J0000000000000000000000A",
                           {"status": "open"}, purpose="service"), 404, "not-found")
    assert_problem(srv.req("GET", "/v1/cases/nonsense", purpose="service"), 404, "not-found")
    assert_problem(srv.req("GET", "/v1/cases?status=sleeping", purpose="service"), 400,
                   "invalid-request")
    assert_problem(srv.req("GET", "/v1/cases?cursor=zzz", purpose="service"), 400, "invalid-request")
    after = get(srv, c["id"])
    assert after["status"] == "new" and after["version"] == version and after["remedy"] is None


def test_interactions_open_answer_and_reopen_cases(srv):
    ident = {"type": "email", "value": "reopen@example.com"}
    st, _, it = srv.req("POST", "/v1/interactions", {
        "identity": ident, "channel": "email", "direction": "inbound", "thread_id": "<m1@x>",
        "subject": "Parcel", "body": "Where is my parcel?"})
    assert st == 201, it
    cid = it["customer_id"]
    st, _, l = srv.req("GET", "/v1/cases?customer_id=" + cid, purpose="service")
    assert st == 200 and len(l["items"]) == 1, l
    case = l["items"][0]
    assert case["source"] == "inbound" and case["type"] == "question"
    # The answer on the thread meets the first response.
    st, _, _ = srv.req("POST", "/v1/interactions", {
        "customer_id": cid, "channel": "email", "direction": "outbound", "thread_id": "<m1@x>",
        "body": "It arrives tomorrow between 9 and 12."})
    assert st == 201
    c = get(srv, case["id"])
    assert c["sla"]["first_response"]["state"] in ("met", "met_late")
    assert c["status"] == "open" and len(c["interactions"]) == 2
    st, _, _ = srv.req("PATCH", "/v1/cases/" + case["id"], {
        "status": "resolved", "remedy": {"type": "none"}, "outcome": "answered"},
        purpose="service")
    assert st == 200
    # A reply within the reopen window reopens it.
    st, _, _ = srv.req("POST", "/v1/interactions", {
        "customer_id": cid, "channel": "email", "direction": "inbound", "thread_id": "<m1@x>",
        "body": "It did not come."})
    assert st == 201
    c = get(srv, case["id"])
    assert c["status"] == "reopened" and c["reopened"] == 1, c
    # A new thread whose words say complaint opens a complaint (the guard's complaint rules).
    st, _, _ = srv.req("POST", "/v1/interactions", {
        "customer_id": cid, "channel": "email", "direction": "inbound", "thread_id": "<m2@x>",
        "body": "I want to make a formal complaint about how I was treated."})
    assert st == 201
    st, _, l = srv.req("GET", "/v1/cases?customer_id=" + cid, purpose="service")
    newest = l["items"][0]
    assert newest["type"] == "complaint" and newest["team"] == "complaints", newest
    assert newest["complaint_rules"], newest
    # metadata.case_id naming a case of someone else is refused, and nothing is stored.
    other = open_case(srv, customer(srv))
    n = int(sql(srv, "SELECT count(*) FROM interactions"))
    assert_problem(srv.req("POST", "/v1/interactions", {
        "customer_id": cid, "channel": "sms", "direction": "inbound", "body": "hi",
        "metadata": {"case_id": other["id"]}}), 400, "invalid-request")
    assert int(sql(srv, "SELECT count(*) FROM interactions")) == n


def test_the_sweeper_marks_breaches_and_lists_show_them(srv):
    cid = customer(srv)
    c = open_case(srv, cid, type="complaint")  # first response due in a minute
    deadline = time.time() + 90
    while time.time() < deadline:
        c = get(srv, c["id"])
        if c["sla"]["first_response"]["breached_at"]:
            break
        time.sleep(1)
    assert c["sla"]["first_response"]["state"] == "breached", c
    st, _, l = srv.req("GET", "/v1/cases?sla=breached&limit=200", purpose="service")
    assert st == 200 and c["id"] in [x["id"] for x in l["items"]]
    st, _, ev = srv.req("GET", f"/v1/cases/{c['id']}/events")
    assert "case.sla_breached" in [e["action"] for e in ev["items"]]
    st, _, m = srv.req("GET", "/metrics", token=None)
    text = m.decode()
    assert "candor_cases_breached_open" in text
    assert 'candor_cases_sla_breaches{clock="first_response"}' in text


def test_the_queue_serves_earliest_deadline_first_and_never_twice(srv):
    st, _, a = srv.req("POST", "/v1/agents", {"name": "Queue A", "teams": ["queue-test"]})
    assert st == 201, a
    cid = customer(srv)
    made = [open_case(srv, cid, team="queue-test")["id"] for _ in range(12)]
    st, _, n = srv.req("GET", "/v1/queue/next?agent=" + a["id"], purpose="service")
    assert st == 200 and n["case"]["id"] == made[0], n  # oldest: earliest deadline
    assert n["why"]["clock"] == "first_response" and n["why"]["waiting_in_teams"] == 12
    assert "Earliest deadline first" in n["why"]["summary"]
    assert n["claimed"] is False and get(srv, made[0])["assignee"] is None
    # Six agents with their own tokens claim at once, twice each: twelve distinct cases.
    tokens = []
    for i in range(6):
        st, _, t = srv.req("POST", "/v1/tokens", {"role": "agent", "name": f"queue {i}"})
        st, _, ag = srv.req("POST", "/v1/agents", {"name": f"Q{i}", "teams": ["queue-test"],
                                                   "token_id": t["id"]})
        assert st == 201, ag
        tokens.append(t["token"])
    got, errors = [], []

    def claim(tok):
        for _ in range(2):
            st, _, r = srv.req("POST", "/v1/queue/next", token=tok, purpose="service")
            if st != 200 or r["case"] is None:
                errors.append((st, r))
            else:
                got.append(r["case"]["id"])
    ts = [threading.Thread(target=claim, args=(t,)) for t in tokens]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert sorted(got) == sorted(made), (got, made)
    st, _, n = srv.req("POST", "/v1/queue/next", token=tokens[0], purpose="service")
    assert st == 200 and n["case"] is None
    # Taking a case for someone else is a supervisor's act.
    assert_problem(srv.req("POST", "/v1/queue/next?agent=" + a["id"], token=tokens[0],
                           purpose="service"), 403, "forbidden")
    # A token that is no agent's.
    assert_problem(srv.req("POST", "/v1/queue/next", token=srv.token("agent"),
                           purpose="service"), 404, "not-found")


def test_blind_mode_hides_customer_value_from_agents(srv):
    cid = customer(srv)
    c = open_case(srv, cid, team="blind-test",
                  customer_value={"tier": "gold", "spend_minor": 987654, "currency": "EUR"})
    assert c["customer_value"]["tier"] == "gold"  # an admin sees it
    st, _, t = srv.req("POST", "/v1/tokens", {"role": "agent", "name": "blind agent"})
    st, _, ag = srv.req("POST", "/v1/agents", {"name": "Blind", "teams": ["blind-test"],
                                               "token_id": t["id"]})
    answers = [
        srv.req("GET", "/v1/cases/" + c["id"], token=t["token"], purpose="service")[2],
        srv.req("GET", "/v1/cases?customer_id=" + cid, token=t["token"], purpose="service")[2],
        srv.req("GET", "/v1/queue/next", token=t["token"], purpose="service")[2],
        srv.req("PATCH", "/v1/cases/" + c["id"], {"tags": ["vip-check"]}, token=t["token"],
                purpose="service")[2],
        srv.req("POST", "/v1/queue/next", token=t["token"], purpose="service")[2],
    ]
    for a in answers:
        text = json.dumps(a)
        assert "gold" not in text and "987654" not in text, text
        assert '"customer_value": {' not in text, text
    assert answers[4]["case"]["id"] == c["id"]
    # Nor in the CLI's exports.
    rc, out, err = srv.cli("cases", "list", "--data", srv.data, "--format", "csv",
                           "--rules", os.path.join(srv.rules_tmp, "rules"))
    assert rc == 0, err
    assert "gold" not in out and "987654" not in out and c["id"] in out
    # A supervisor sees it (the blind mode is for agents).
    sup = srv.token("supervisor")
    assert get(srv, c["id"], token=sup)["customer_value"]["spend_minor"] == 987654
    # The value is sealed at rest: nowhere in the database's files in clear.
    assert sql(srv, f"SELECT count(*) FROM cases WHERE id = '{c['id']}'"
                    " AND sealed IS NOT NULL") == "1"
    assert b'"gold"' not in stored_bytes(srv)


def test_etas_and_policies(srv):
    cid = customer(srv)
    c = open_case(srv, cid, type="request")
    st, _, e = srv.req("GET", f"/v1/cases/{c['id']}/eta")
    assert st == 200, e
    assert e["estimate"] is None and e["sample_size"] == 0, e  # no history of requests here
    assert "not enough history" in e["statement"]
    assert_problem(srv.req("GET", "/v1/cases/cas_01J0000000000000000000000A/eta"), 404,
                   "not-found")
    st, _, p = srv.req("GET", "/v1/sla-policies")
    assert st == 200 and p["policies"][0]["id"] == "fast"
    assert p["policies"][0]["targets"][0]["when"] == {"type": ["complaint"]}
    assert p["queue"]["blind"] is True and p["priority"]["customer_value"] is None


def test_the_sla_report_as_json_and_csv(srv):
    st, _, r = srv.req("GET", "/v1/sla-report?period=all&group=team")
    assert st == 200, r
    teams = {row["group"]: row for row in r["rows"]}
    assert "complaints" in teams and teams["complaints"]["opened"] >= 2
    assert teams["complaints"]["first_response"]["breached"] >= 1
    assert_problem(srv.req("GET", "/v1/sla-report?period=fortnight"), 400, "invalid-request")
    assert_problem(srv.req("GET", "/v1/sla-report", token=srv.token("agent")), 403, "forbidden")
    rc, out, err = srv.cli("cases", "report", "--data", srv.data, "--period", "all",
                           "--format", "csv", "--rules", os.path.join(srv.rules_tmp, "rules"))
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    by = {row["group"]: row for row in rows}
    assert by["complaints"]["opened"] == str(teams["complaints"]["opened"])
    rc, out, err = srv.cli("cases", "report", "--data", srv.data, "--format", "json",
                           "--group", "type", "--rules", os.path.join(srv.rules_tmp, "rules"))
    assert rc == 0 and json.loads(out)["group"] == "type", err
    rc, out, err = srv.cli("cases", "report", "--data", srv.data, "--period", "fortnight",
                           "--rules", os.path.join(srv.rules_tmp, "rules"))
    assert rc != 0 and "period" in err
