"""The purpose gate on every path that returns or uses personal data, through the public
interface: no answer carries personal data without a purpose, a trim and a ledger entry (writes
too); sends are held to role x purpose as reads are; a restriction of processing covers contact
and consent; promotional content is not let through under another purpose; a merged-away id
answers with its survivor's consent; policy and consent give one answer per purpose; refused
attempts reach the customer's access log; a notice hash must be the notice's; the guard never
echoes personal data in clear, and the ledger names the rules and the reason of its blocks and
overrides."""
import json
import urllib.parse

from e2e_util import ndjson
from harness import Server, assert_problem

NAME = "Perpetua Longbottom-Quill"
EMAIL = "perpetua.lq@example.org"
PHONE = "+44 20 7946 0777"
ATTR = "gate-attr-ZX81"
BODY = "my cat Ptolemy-Zebedee knocked the router over"
CARD = "4242 4242 4242 4242"
PROMO = "Big sale this weekend, 30% off everything"


def setup_module():
    srv = Server()
    srv.agent = srv.token("agent", "Agnes (support)")
    srv.supervisor = srv.token("supervisor", "Sam (team lead)")
    srv.compliance = srv.token("compliance", "Carl (DPO office)")
    srv.integration = srv.token("integration", "CRM sync")
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": NAME, "attributes": {"code": ATTR}, "locale": "en-GB",
        "jurisdiction": "EU",
        "identities": [{"type": "email", "value": EMAIL}, {"type": "phone", "value": PHONE}]})
    assert st == 201, c
    srv.cid = c["id"]
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "email", "direction": "inbound",
        "subject": "Router", "body": BODY})
    assert st == 201, it
    srv.iid = it["id"]
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


PERSONAL = (NAME, EMAIL.split("@")[0], "7946", ATTR, "Ptolemy", "perpetua")


def assert_no_personal_data(what, body):
    text = json.dumps(body) if not isinstance(body, bytes) else body.decode("utf-8", "replace")
    for value in PERSONAL:
        assert value.lower() not in text.lower(), (what, value, text[:500])


def new_customer(srv, jurisdiction="EU", **extra):
    st, _, c = srv.req("POST", "/v1/customers", dict(jurisdiction=jurisdiction, **extra))
    assert st == 201, c
    return c["id"]


def check(srv, cid, purpose, channel="*"):
    st, _, d = srv.req("POST", "/v1/consents/check",
                       {"customer_id": cid, "purpose": purpose, "channel": channel})
    assert st == 200, d
    return d


def record(srv, cid, purpose, state, **kw):
    st, _, ev = srv.req("POST", "/v1/consents", dict(
        customer_id=cid, purpose=purpose, state=state, method="web_form", **kw))
    assert st == 201, ev
    return ev


def bulk(srv, body):
    st, _, lines = ndjson(srv, body)
    assert st == 200, lines
    return lines


def access_log(srv, cid):
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log?limit=500", purpose="service")
    assert st == 200, log
    return log["items"]


def ledger(srv, action, cid=None):
    q = f"/v1/audit?action={action}&limit=500" + (f"&customer_id={cid}" if cid else "")
    st, _, ev = srv.req("GET", q)
    assert st == 200, ev
    return ev["items"]


def outbound(cid, body, purpose="service", **kw):
    return dict(customer_id=cid, channel="email", direction="outbound", purpose=purpose,
                body=body, **kw)


# ---- 1. a route either returns no personal data, or requires a purpose, trims and records ----

def test_writes_that_answer_with_the_record_require_a_purpose(srv):
    for method, path, body in (
            ("PATCH", f"/v1/customers/{srv.cid}", {"locale": "en-IE"}),
            ("POST", f"/v1/customers/{srv.cid}/identities",
             {"type": "email", "value": "perpetua.second@example.org"}),
            ("POST", f"/v1/customers/{srv.cid}/merge", {"merge": new_customer(srv)})):
        b = assert_problem(srv.req(method, path, body), 400, "purpose-required")
        assert_no_personal_data(path, b)


def test_write_answers_are_trimmed_and_recorded_as_reads(srv):
    reads = len([e for e in access_log(srv, srv.cid) if e["action"] == "customer.read"])
    st, _, u = srv.req("PATCH", f"/v1/customers/{srv.cid}", {"locale": "en-IE"},
                       token=srv.agent, purpose="billing")
    assert st == 200 and u["display_name"] == NAME and u["locale"] == "en-IE", u
    st, _, u = srv.req("POST", f"/v1/customers/{srv.cid}/identities",
                       {"type": "email", "value": "perpetua.second@example.org"},
                       token=srv.agent, purpose="service")
    assert st == 201 and len(u["identities"]) == 3, u
    # security sees contact data and nothing of the profile.
    st, _, u = srv.req("PATCH", f"/v1/customers/{srv.cid}", {"time_zone": "Europe/Dublin"},
                       purpose="security")
    assert st == 200 and "identities" in u and "attributes" not in u and "locale" not in u, u
    log = access_log(srv, srv.cid)
    now = [e for e in log if e["action"] == "customer.read"]
    assert len(now) >= reads + 3, log
    assert {"billing", "service", "security"} <= {e["purpose"] for e in now[:3]}, now[:3]


def test_restricted_customer_write_answers_carry_reference_fields_only(srv):
    cid = new_customer(srv, display_name=NAME,
                       identities=[{"type": "email", "value": "restricted." + EMAIL}])
    st, _, r = srv.req("POST", f"/v1/customers/{cid}/restriction", {"restricted": True},
                       token=srv.compliance)
    assert st == 200 and r["restricted"] is True and "display_name" not in r, r
    st, _, u = srv.req("PATCH", f"/v1/customers/{cid}", {"locale": "de-DE"}, token=srv.agent,
                       purpose="service")
    assert st == 200 and u["restricted"] is True, u
    assert_no_personal_data("restricted patch", u)
    st, _, u = srv.req("POST", f"/v1/customers/{cid}/identities",
                       {"type": "phone", "value": "+44 20 7946 0778"}, token=srv.agent,
                       purpose="service")
    assert st == 201 and "identities" not in u, u
    # The change stands; the refused reads are in the customer's access log.
    st, _, g = srv.req("GET", f"/v1/customers/{cid}", token=srv.compliance,
                       purpose="legal_obligation")
    assert st == 200 and g["locale"] == "de-DE" and len(g["identities"]) == 2, g
    denied = [e for e in access_log_as(srv, cid) if e["outcome"] == "denied"]
    assert len(denied) >= 2 and all(e["purpose"] == "service" for e in denied), denied


def access_log_as(srv, cid):
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log?limit=500",
                         token=srv.compliance, purpose="legal_obligation")
    assert st == 200, log
    return log["items"]


def test_creating_writes_echo_personal_data_only_under_a_purpose(srv):
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": NAME, "identities": [{"type": "email", "value": "echo." + EMAIL}]})
    assert st == 201 and c["status"] == "active", c
    assert_no_personal_data("create without purpose", c)
    st, _, c2 = srv.req("POST", "/v1/customers", {
        "display_name": NAME, "identities": [{"type": "email", "value": "echo2." + EMAIL}]},
        purpose="service")
    assert st == 201 and c2["display_name"] == NAME, c2
    assert any(e["action"] == "customer.read" for e in access_log(srv, c2["id"]))
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "chat", "direction": "inbound", "body": BODY})
    assert st == 201 and "body" not in it and "subject" not in it, it
    assert_no_personal_data("ingest without purpose", it)
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "chat", "direction": "inbound", "body": BODY},
        purpose="service")
    assert st == 201 and it["body"] == BODY, it
    # The ingestion's own ledger entry says what was echoed and why.
    ev = [e for e in ledger(srv, "interaction.ingest", srv.cid) if e["resource_id"] == it["id"]]
    assert ev and ev[0]["purpose"] == "service", ev
    assert ev[0]["categories"] == "reference,conversation", ev
    # A billing purpose may not see the conversation: nothing of it is echoed.
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "chat", "direction": "inbound", "body": BODY},
        purpose="billing")
    assert st == 201 and "body" not in it, it


def test_no_get_answers_personal_data_without_a_purpose(srv):
    # Every documented GET, with the ids of a customer who has personal data filled in.
    st, _, doc = srv.req("GET", "/v1/openapi.json")
    assert st == 200
    ids = {"id": srv.cid, "slug": "purpose-required", "token": "x"}
    for path, item in doc["paths"].items():
        if "get" not in item:
            continue
        p = path.replace("{id}", srv.iid if path.startswith("/v1/interactions") else srv.cid)
        for k, v in ids.items():
            p = p.replace("{" + k + "}", v)
        st, _, body = srv.req("GET", p)
        assert_no_personal_data(p, body)


# ---- 2. role x purpose on sends ----

def test_sends_are_held_to_role_x_purpose(srv):
    cid = new_customer(srv, "US")  # opt-out regime: consent would allow marketing
    b = assert_problem(srv.req("POST", "/v1/interactions",
                               outbound(cid, "Our spring catalogue is out.", "marketing"),
                               token=srv.agent), 403, "purpose-not-permitted")
    assert "agent" in b["detail"] and "marketing" in b["detail"], b
    assert_problem(srv.req("POST", "/v1/interactions",
                           outbound(cid, "About your data.", "sale_or_sharing"),
                           token=srv.supervisor), 403, "purpose-not-permitted")
    # The refusals are attempts on this customer's data: in their access log.
    denied = [e for e in access_log(srv, cid) if e["action"] == "access.denied"]
    assert len(denied) == 2 and {e["purpose"] for e in denied} == {"marketing",
                                                                     "sale_or_sharing"}, denied
    # A role the policy allows sends under the same purpose.
    st, _, it = srv.req("POST", "/v1/interactions",
                        outbound(cid, "Our spring catalogue is out.", "marketing"),
                        token=srv.integration)
    assert st == 201, it


# ---- 3. restriction covers contact and consent ----

def test_restriction_covers_contact_and_consent(srv):
    cid = new_customer(srv, "US")
    record(srv, cid, "marketing", "given")
    assert check(srv, cid, "marketing", "email")["allow"] is True
    st, _, _ = srv.req("POST", f"/v1/customers/{cid}/restriction", {"restricted": True},
                       token=srv.compliance)
    assert st == 200
    for purpose in ("service", "billing", "marketing", "analytics", "research"):
        d = check(srv, cid, purpose, "email")
        assert d["allow"] is False and d["reason"] == "restricted", (purpose, d)
    for purpose in ("legal_obligation", "security"):
        assert check(srv, cid, purpose, "email")["allow"] is True, purpose
    b = assert_problem(srv.req("POST", "/v1/interactions", outbound(cid, "Your order shipped."),
                               token=srv.agent), 403, "consent-denied")
    assert b["detail"].startswith("restricted:"), b
    assert_problem(srv.req("POST", "/v1/interactions",
                           outbound(cid, "Our spring catalogue is out.", "marketing"),
                           token=srv.integration), 403, "consent-denied")
    # Art. 18(3): the customer is told before the restriction is lifted — a legal duty.
    st, _, it = srv.req("POST", "/v1/interactions",
                        outbound(cid, "We will lift the restriction of your data on 1 June.",
                                 "legal_obligation"))
    assert st == 201, it
    lines = bulk(srv, {"purpose": "service", "customer_ids": [cid], "only_allowed": False})
    assert lines[0]["allow"] is False and lines[0]["reason"] == "restricted", lines
    lines = bulk(srv, {"purpose": "marketing", "all": True})
    assert cid not in [x.get("customer_id") for x in lines], lines
    st, _, _ = srv.req("POST", f"/v1/customers/{cid}/restriction", {"restricted": False},
                       token=srv.compliance)
    assert check(srv, cid, "marketing", "email")["allow"] is True
    st, _, it = srv.req("POST", "/v1/interactions", outbound(cid, "Your order shipped."),
                        token=srv.agent)
    assert st == 201, it


# ---- 4. promotional content under another purpose ----

def test_promotion_sent_as_service_is_a_purpose_mismatch(srv):
    cid = new_customer(srv, "EU")
    before = len(ledger(srv, "purpose.mismatch"))
    b = assert_problem(srv.req("POST", "/v1/interactions", outbound(cid, PROMO),
                               token=srv.agent), 422, "purpose-mismatch")
    assert "marketing" in b["detail"] and "'service'" in b["detail"], b
    rules = {f["rule"] for f in b["findings"] if f["category"] == "marketing"}
    assert {"MARKETING.SALE", "MARKETING.DISCOUNT"} <= rules, b
    ev = ledger(srv, "purpose.mismatch")
    assert len(ev) == before + 1 and ev[0]["outcome"] == "denied", ev
    assert ev[0]["customer_id"] == cid and "MARKETING.SALE" in ev[0]["rules"], ev[0]
    st, _, tl = srv.req("GET", f"/v1/customers/{cid}/timeline", purpose="service")
    assert tl["items"] == [], tl  # nothing stored
    # An ordinary service reply goes out as before, with nothing to report.
    st, _, it = srv.req("POST", "/v1/interactions",
                        outbound(cid, "Your refund of 30 euros was sent today."),
                        token=srv.agent)
    assert st == 201 and "guard" not in it, it
    # Sent for what it is, the customer's consent decides: none given in the EU.
    assert_problem(srv.req("POST", "/v1/interactions", outbound(cid, PROMO, "marketing"),
                           token=srv.integration), 403, "consent-denied")
    record(srv, cid, "marketing", "given")
    st, _, it = srv.req("POST", "/v1/interactions", outbound(cid, PROMO, "marketing"),
                        token=srv.integration)
    assert st == 201, it


def test_purpose_mismatch_override_is_a_supervisors_and_recorded(srv):
    cid = new_customer(srv, "EU")
    msg = outbound(cid, "Our summer sale starts Friday with 50% off swimwear.",
                   purpose_override={"reason": "answers the customer's question about it; "
                                               "asked by perpetua.lq@example.org"})
    assert_problem(srv.req("POST", "/v1/interactions", msg, token=srv.agent), 403, "forbidden")
    assert_problem(srv.req("POST", "/v1/interactions",
                           dict(msg, purpose_override={"reason": "short"}),
                           token=srv.supervisor), 400, "invalid-request")
    st, _, it = srv.req("POST", "/v1/interactions", msg, token=srv.supervisor)
    assert st == 201, it
    po = it["guard"]["purpose_override"]
    assert po["declared"] == "service" and "MARKETING.SALE" in po["rules"], po
    assert EMAIL not in po["reason"] and "[email]" in po["reason"], po
    ev = [e for e in ledger(srv, "purpose.override", cid) if e["resource_id"] == it["id"]]
    assert len(ev) == 1 and "MARKETING.SALE" in ev[0]["rules"], ev
    assert ev[0]["override_reason"].startswith("answers the customer") and EMAIL not in \
        json.dumps(ev)


# ---- 5. consent after a merge ----

def test_merged_away_id_answers_with_the_survivors_consent(srv):
    survivor, merged = new_customer(srv, "EU"), new_customer(srv, "EU")
    record(srv, merged, "marketing", "withdrawn")   # a withdrawal on one side ...
    record(srv, survivor, "marketing", "given")     # ... before a later consent on the other
    record(srv, merged, "analytics", "given")       # a consent only one side gave
    assert check(srv, survivor, "marketing")["allow"] is True
    st, _, _ = srv.req("POST", f"/v1/customers/{survivor}/merge", {"merge": merged},
                       purpose="service")
    assert st == 200
    for cid in (survivor, merged):
        d = check(srv, cid, "marketing", "email")
        assert d["allow"] is False and d["reason"] == "withdrawn", (cid, d)
        assert check(srv, cid, "analytics")["allow"] is True, cid
    lines = bulk(srv, {"purpose": "marketing", "customer_ids": [survivor, merged],
                       "only_allowed": False})
    assert [x["reason"] for x in lines[:2]] == ["withdrawn", "withdrawn"], lines
    everyone = [x.get("customer_id") for x in bulk(srv, {"purpose": "analytics", "all": True})]
    assert survivor in everyone and merged not in everyone, everyone
    # The survivor's consent view holds both histories; a merged id shows the survivor's.
    st, _, view = srv.req("GET", f"/v1/customers/{merged}/consents", purpose="service")
    assert st == 200 and view["customer_id"] == survivor, view
    assert {e["customer_id"] for e in view["history"]} == {survivor, merged}, view
    # A choice made after the merge decides, on either id.
    record(srv, merged, "marketing", "given")
    assert check(srv, survivor, "marketing")["allow"] is True
    assert check(srv, merged, "marketing")["allow"] is True


def test_merge_decisions_survive_a_restart(srv):
    survivor, merged = new_customer(srv, "EU"), new_customer(srv, "EU")
    record(srv, survivor, "personalization", "withdrawn")
    record(srv, merged, "personalization", "given")
    srv.req("POST", f"/v1/customers/{survivor}/merge", {"merge": merged}, purpose="service")
    srv.stop()
    srv.start()
    for cid in (survivor, merged):
        assert check(srv, cid, "personalization")["reason"] == "withdrawn", cid


# ---- 6. one answer per purpose ----

def test_policy_and_consent_agree_on_research(srv):
    cid = new_customer(srv, "EU")
    # Research needs consent in the rules, and none was given: a read under it is refused ...
    b = assert_problem(srv.req("GET", f"/v1/customers/{cid}", token=srv.compliance,
                               purpose="research"), 403, "purpose-not-permitted")
    assert b["detail"].startswith("no_consent"), b
    # ... as the customer's consent view and a consent check say.
    st, _, view = srv.req("GET", f"/v1/customers/{cid}/consents", purpose="service")
    research = [x for x in view["current"] if x["purpose"] == "research"][0]
    assert research["allow"] is False and research["reason"] == "no_consent", research
    assert check(srv, cid, "research")["reason"] == "no_consent"
    record(srv, cid, "research", "given")
    st, _, c = srv.req("GET", f"/v1/customers/{cid}", token=srv.compliance, purpose="research")
    assert st == 200 and c["id"] == cid, c


# ---- 7. refused attempts in the access log ----

def test_access_log_shows_refused_attempts(srv):
    assert_problem(srv.req("GET", f"/v1/customers/{srv.cid}", token=srv.agent,
                           purpose="marketing"), 403, "purpose-not-permitted")
    assert_problem(srv.req("GET", f"/v1/interactions/{srv.iid}", token=srv.agent,
                           purpose="marketing"), 403, "purpose-not-permitted")
    log = access_log(srv, srv.cid)
    denied = [e for e in log if e["action"] == "access.denied"]
    assert len(denied) >= 2, log
    assert denied[0]["outcome"] == "denied" and denied[0]["purpose"] == "marketing", denied
    assert denied[0]["actor_name"] == "Agnes (support)", denied
    # Reading the log is itself a read of the customer, recorded.
    assert log[0]["action"] == "access_log.read", log[0]


# ---- 8. a notice hash must be the notice's ----

def test_notice_hash_must_match(srv):
    import hashlib
    text = "We use your email address to send offers you asked for."
    st, _, n = srv.req("POST", "/v1/notices", {"name": "gate-offers", "text": text})
    assert st == 201, n
    cid = new_customer(srv, "EU")
    for bad in ("0" * 64, hashlib.sha256(b"another text").hexdigest()):
        b = assert_problem(srv.req("POST", "/v1/consents", {
            "customer_id": cid, "purpose": "marketing", "state": "given", "method": "web_form",
            "notice_id": n["id"], "notice_sha256": bad}), 400, "invalid-request")
        assert "notice_sha256" in b["detail"], b
    record(srv, cid, "marketing", "given", notice_id=n["id"],
           notice_sha256=hashlib.sha256(text.encode()).hexdigest())


# ---- the guard's answers and ledger entries ----

def test_guard_answers_mask_personal_data(srv):
    st, _, r = srv.req("POST", "/v1/guard/check",
                       {"text": f"Your card {CARD} and {EMAIL} are on file. Act now!"},
                       token=srv.agent)
    assert st == 200, r
    assert CARD not in json.dumps(r) and EMAIL not in json.dumps(r), r
    card = [f for f in r["findings"] if f["rule"] == "PII.CARD"][0]
    assert card["match"] == "\u2022\u2022\u2022\u2022 4242" and card["end"] > card["start"], card
    # Wording that is not personal data is still shown to its author.
    assert any(f["match"].lower() == "act now" for f in r["findings"]), r["findings"]
    b = assert_problem(srv.req("POST", "/v1/interactions",
                               outbound(srv.cid, f"We charged your card {CARD} again."),
                               token=srv.agent), 422, "guard-blocked")
    assert CARD not in json.dumps(b), b
    assert "4242" not in srv.logs().replace("\u2022\u2022\u2022\u2022 4242", "")
    ev = ledger(srv, "guard.block", srv.cid)
    assert ev and "PII.CARD" in ev[0]["rules"].split(","), ev


def test_guard_override_records_rules_and_reason(srv):
    reason = "customer disputes the charge; call " + PHONE + " to confirm"
    st, _, it = srv.req("POST", "/v1/interactions", outbound(
        srv.cid, f"For the chargeback form: card {CARD}.",
        guard_override={"reason": reason}), token=srv.supervisor)
    assert st == 201, it
    ev = [e for e in ledger(srv, "guard.override", srv.cid) if e["resource_id"] == it["id"]]
    assert len(ev) == 1 and ev[0]["rules"] == "PII.CARD", ev
    assert ev[0]["override_reason"].startswith("customer disputes the charge"), ev
    assert "7946 0777" not in ev[0]["override_reason"], ev
    assert "7946 0777" not in it["guard"]["override_reason"], it["guard"]
    assert it["guard"]["overridden_rules"] == ["PII.CARD"], it["guard"]


def test_guard_cli_masks_personal_data(srv):
    import os
    from harness import ROOT
    for fmt in ("text", "json"):
        rc, out, err = srv.cli("guard", "--rules", os.path.join(ROOT, "rules"), "--format", fmt,
                               "-", input=f"We charged your card {CARD} and wrote to {EMAIL}.")
        assert rc == 2, (rc, out, err)
        assert "PII.CARD" in out and CARD not in out and EMAIL not in out, out
        assert "\u2022\u2022\u2022\u2022 4242" in out, out
