"""Purpose-bound access and encryption at rest, through the public interface: a purpose the
role may not use is refused and recorded; answers carry only the categories the purpose may
see; a restricted customer is readable only for legal_obligation and security; the customer's
access log shows who read what and why; personal values never appear in the database file, the
WAL or the server log."""

from e2e_util import stored_bytes
from harness import Server, assert_problem

EMAIL = "wilhelmina.quarterstaff@example.org"
PHONE = "+44 20 7946 0321"
NAME = "Wilhelmina Quarterstaff"
BODY = "my neighbour's dog is called Bartholomew-Zephyr"
SUBJECT = "Zanzibar rescheduling"
ATTR = "vip-code-QX91"


def setup_module():
    srv = Server()
    srv.agent = srv.token("agent", "Agnes (support)")
    srv.compliance = srv.token("compliance", "Carl (DPO office)")
    srv.integration = srv.token("integration", "CRM sync")
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": NAME, "attributes": {"code": ATTR}, "locale": "en-GB",
        "jurisdiction": "UK",
        "identities": [{"type": "email", "value": EMAIL}, {"type": "phone", "value": PHONE}]})
    assert st == 201, c
    srv.cid = c["id"]
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "email", "direction": "inbound",
        "subject": SUBJECT, "body": BODY, "metadata": {"note": ATTR}})
    assert st == 201, it
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def test_role_may_not_use_purpose(srv):
    before = len(srv.req("GET", "/v1/audit?action=access.denied&limit=500")[2]["items"])
    body = assert_problem(srv.req("GET", f"/v1/customers/{srv.cid}", token=srv.agent,
                                  purpose="marketing"), 403, "purpose-not-permitted")
    assert "agent" in body["detail"] and "marketing" in body["detail"]
    after = srv.req("GET", "/v1/audit?action=access.denied&limit=500")[2]["items"]
    assert len(after) == before + 1
    assert after[0]["outcome"] == "denied" and after[0]["purpose"] == "marketing"
    assert after[0]["customer_id"] == srv.cid


def test_answers_are_trimmed_to_the_purpose(srv):
    st, _, full = srv.req("GET", f"/v1/customers/{srv.cid}", token=srv.agent, purpose="service")
    assert st == 200 and full["display_name"] == NAME and full["attributes"]["code"] == ATTR
    st, _, bill = srv.req("GET", f"/v1/customers/{srv.cid}/timeline", token=srv.agent,
                          purpose="billing")
    assert st == 200 and bill["items"], bill
    assert "body" not in bill["items"][0] and "subject" not in bill["items"][0]
    st, _, sec = srv.req("GET", f"/v1/customers/{srv.cid}", token=srv.compliance,
                         purpose="security")
    assert st == 200 and "identities" in sec and "attributes" not in sec and "locale" not in sec


def test_consent_purposes_need_consent(srv):
    # analytics needs the customer's consent; none was given, so the read is refused.
    assert_problem(srv.req("GET", f"/v1/customers/{srv.cid}", token=srv.integration,
                           purpose="analytics"), 403, "purpose-not-permitted")


def test_restriction_blocks_all_but_legal_and_security(srv):
    st, _, c = srv.req("POST", f"/v1/customers/{srv.cid}/restriction", {"restricted": True},
                       token=srv.compliance)
    assert st == 200 and c["restricted"] is True
    assert_problem(srv.req("GET", f"/v1/customers/{srv.cid}/timeline", token=srv.agent,
                           purpose="service"), 403, "purpose-not-permitted")
    st, _, tl = srv.req("GET", f"/v1/customers/{srv.cid}/timeline", token=srv.compliance,
                        purpose="legal_obligation")
    assert st == 200 and tl["items"][0]["body"] == BODY
    assert_problem(srv.req("POST", f"/v1/customers/{srv.cid}/restriction", {"restricted": True},
                           token=srv.agent), 403, "forbidden")
    assert_problem(srv.req("POST", f"/v1/customers/{srv.cid}/restriction", {"restricted": "yes"},
                           token=srv.compliance), 400, "invalid-request")
    st, _, c = srv.req("POST", f"/v1/customers/{srv.cid}/restriction", {"restricted": False},
                       token=srv.compliance)
    assert st == 200 and c["restricted"] is False
    assert srv.req("GET", f"/v1/customers/{srv.cid}/timeline", token=srv.agent,
                   purpose="service")[0] == 200


def test_access_log_shows_who_when_why(srv):
    st, _, log = srv.req("GET", f"/v1/customers/{srv.cid}/access-log?limit=100",
                         token=srv.compliance, purpose="legal_obligation")
    assert st == 200
    items = log["items"]
    names = {i["actor_name"] for i in items}
    assert "Agnes (support)" in names and "Carl (DPO office)" in names
    billing = [i for i in items if i.get("purpose") == "billing"]
    assert billing and billing[0]["categories"] == "reference,contact,profile,coarse"
    assert any(i["outcome"] == "denied" for i in items)
    # The access log exposes no token ids or request internals.
    assert all("actor_token" not in i and "request_id" not in i for i in items)


def test_no_plaintext_at_rest_or_in_logs(srv):
    # Make sure the WAL holds recent pages too: write once more.
    srv.req("POST", "/v1/interactions", {"customer_id": srv.cid, "channel": "chat",
                                         "direction": "inbound", "body": BODY})
    needles = [EMAIL, "7946 0321", "442079460321", NAME, BODY, SUBJECT, ATTR]
    blob = stored_bytes(srv)
    for n in needles:
        assert n.encode() not in blob, f"{n!r} in plaintext in the database's files"
    logs = srv.logs()
    for n in needles:
        assert n not in logs, f"{n!r} in the server log"
