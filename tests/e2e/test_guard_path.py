"""The communication guard over HTTP and in the path of every interaction: check a message;
an outbound block is refused with its findings and nothing stored, unless a supervisor overrides
with a reason (recorded); warnings are stored with findings but without the matched text;
inbound card numbers are masked before storage. Also the guard's reach through the API and the
CLI: personal data in national formats, numbers that fail their own check, dark patterns and
SMS lures, and template placeholders."""
import json
import os

from e2e_util import stored_bytes
from harness import Server, assert_problem

CARD = "4242 4242 4242 4242"


def setup_module():
    srv = Server()
    srv.agent = srv.token("agent", "Agnes")
    srv.supervisor = srv.token("supervisor", "Sam")
    st, _, it = srv.req("POST", "/v1/interactions", {
        "identity": {"type": "email", "value": "guarded@example.com"},
        "channel": "email", "direction": "inbound", "body": "Hello, I have a question."})
    assert st == 201, it
    srv.cid = it["customer_id"]
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def timeline(srv):
    st, _, tl = srv.req("GET", f"/v1/customers/{srv.cid}/timeline?limit=200", purpose="service")
    assert st == 200, tl
    return tl["items"]


def test_check_api_verdicts_and_spans(srv):
    st, _, r = srv.req("POST", "/v1/guard/check", {"text": "Your refund was issued today."},
                       token=srv.agent)
    assert st == 200 and r["verdict"] == "allow" and r["findings"] == []
    text = "Café ☕ card " + CARD + " ok"
    st, _, r = srv.req("POST", "/v1/guard/check", {"text": text, "channel": "email"},
                       token=srv.agent)
    assert st == 200 and r["verdict"] == "block", r
    f = [x for x in r["findings"] if x["rule"] == "PII.CARD"][0]
    raw = text.encode()
    assert raw[f["start"]:f["end"]].decode() == CARD
    utf16 = text.encode("utf-16-le")
    assert utf16[2 * f["start_utf16"]:2 * f["end_utf16"]].decode("utf-16-le") == CARD
    assert "4242" in r["redacted"] and CARD not in r["redacted"]


def test_check_api_bad_input(srv):
    assert_problem(srv.req("POST", "/v1/guard/check", raw=b'{"text":"\xff\xfe"}',
                           token=srv.agent), 400, "malformed-json")
    assert_problem(srv.req("POST", "/v1/guard/check", {"text": 42}, token=srv.agent), 400,
                   "invalid-request")
    assert_problem(srv.req("POST", "/v1/guard/check", {}, token=srv.agent), 400,
                   "invalid-request")
    assert_problem(srv.req("POST", "/v1/guard/check", {"text": "x", "channel": "fax"},
                           token=srv.agent), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/guard/check", {"text": "x"}, token=None), 401,
                   "unauthenticated")
    st, _, r = srv.req("POST", "/v1/guard/check", {"text": ""}, token=srv.agent)
    assert st == 200 and r["verdict"] == "allow"


def test_outbound_block_is_refused_and_recorded(srv):
    before = len(timeline(srv))
    body = assert_problem(srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "email", "direction": "outbound",
        "body": f"We charged your card {CARD} again."}, token=srv.agent), 422, "guard-blocked")
    assert body["verdict"] == "block"
    assert any(f["rule"] == "PII.CARD" for f in body["findings"])
    assert len(timeline(srv)) == before
    st, _, ev = srv.req("GET", "/v1/audit?action=guard.block")
    assert st == 200 and ev["items"] and ev["items"][0]["outcome"] == "denied"


def test_only_a_supervisor_may_override(srv):
    msg = {"customer_id": srv.cid, "channel": "email", "direction": "outbound",
           "body": f"For the chargeback form: card {CARD}.",
           "guard_override": {"reason": "customer asked for the full number to dispute"}}
    assert_problem(srv.req("POST", "/v1/interactions", msg, token=srv.agent), 403, "forbidden")
    assert_problem(srv.req("POST", "/v1/interactions", dict(msg, guard_override={"reason": "ok"}),
                           token=srv.supervisor), 400, "invalid-request")
    st, _, it = srv.req("POST", "/v1/interactions", msg, token=srv.supervisor)
    assert st == 201, it
    assert it["guard"]["overridden"] is True
    assert it["guard"]["override_reason"].startswith("customer asked")
    assert all("match" not in f for f in it["guard"]["findings"])
    st, _, ev = srv.req("GET", "/v1/audit?action=guard.override")
    assert ev["items"] and ev["items"][0]["resource_id"] == it["id"]


def test_warnings_are_stored_with_findings(srv):
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "email", "direction": "outbound",
        "body": "Only 2 left! Buy now or lose this deal forever!"}, token=srv.agent)
    assert st == 201, it
    assert it["guard"]["verdict"] == "warn"
    rules = {f["rule"] for f in it["guard"]["findings"]}
    assert "PRESSURE.FALSE_SCARCITY" in rules
    assert all("match" not in f for f in it["guard"]["findings"])
    stored = [x for x in timeline(srv) if x["id"] == it["id"]][0]
    assert stored["guard"]["verdict"] == "warn"


def test_inbound_cards_are_masked_before_storage(srv):
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "chat", "direction": "inbound",
        "body": f"my card is {CARD}, exp 12/29"}, purpose="service")
    assert st == 201
    assert CARD not in it["body"] and "4242" in it["body"]
    stored = [x for x in timeline(srv) if x["id"] == it["id"]][0]
    assert CARD not in stored["body"]
    assert CARD.encode() not in stored_bytes(srv)
    assert CARD not in srv.logs()


def test_reload(srv):
    st, _, r = srv.req("POST", "/v1/guard/reload")
    assert st == 200 and r["rules"] > 50
    assert_problem(srv.req("POST", "/v1/guard/reload", token=srv.agent), 403, "forbidden")


def check(srv, text, channel="sms"):
    st, _, r = srv.req("POST", "/v1/guard/check", {"text": text, "channel": channel},
                       token=srv.agent)
    assert st == 200, r
    return r


def test_check_api_national_formats_and_precedence(srv):
    text = "Her mobile is 090-1234-5678, mail jürgen@müller.de"
    r = check(srv, text)
    rules = {f["rule"]: f for f in r["findings"]}
    assert r["verdict"] == "warn" and set(rules) == {"PII.PHONE", "PII.EMAIL"}, r
    raw = text.encode()
    f = rules["PII.EMAIL"]
    assert raw[f["start"]:f["end"]].decode() == "jürgen@müller.de"
    assert text.encode("utf-16-le")[2 * f["start_utf16"]:2 * f["end_utf16"]].decode(
        "utf-16-le") == "jürgen@müller.de"
    assert r["redacted"] == "Her mobile is [phone], mail [email]"
    # Numbers that fail their own check are nobody's data, and nothing weaker reports them.
    for text in ("Your order number is 4242 4242 4242 4241.",
                 "The IBAN DE89 3704 0044 0532 0130 01 fails the check digits.",
                 "Payment reference: 0000 1234 5678 90",
                 "Call our Tokyo office on 0570-012-345."):
        r = check(srv, text)
        assert r["verdict"] == "allow" and r["findings"] == [], (text, r)


def test_check_api_practices_and_honest_offers(srv):
    for text, rule in (("14 people are looking at this room right now.",
                        "PRESSURE.ACTIVITY_NOTICE"),
                       ("Offer ends in 14:59", "PRESSURE.VAGUE_DEADLINE"),
                       ("No thanks, I'd rather pay full price", "PRESSURE.CONFIRMSHAMING"),
                       ("We've added travel insurance to your basket.", "MISLEAD.SNEAKING"),
                       ("Congratulations! You've won a £500 voucher. Reply YES to claim.",
                        "MISLEAD.FALSE_PRIZE")):
        r = check(srv, text)
        assert r["verdict"] == "warn" and rule in {f["rule"] for f in r["findings"]}, (text, r)
    r = check(srv, "Our sale runs until 30 November; prices are shown with all fees.", "email")
    assert r["verdict"] == "allow" and r["findings"] == [], r


def test_check_api_template_placeholders(srv):
    text = ("Hi {{first_name}}, your order {{Order Number}} ships today. [FIRST NAME], call "
            "{{support_phone}} or mail {{email}}. %s")
    r = check(srv, text, "email")
    assert r["verdict"] == "allow" and r["findings"] == [], r
    r = check(srv, "Only {{stock}} left in stock!")
    f = [x for x in r["findings"] if x["rule"] == "PRESSURE.FALSE_SCARCITY"][0]
    assert "Only {{stock}} left in stock!".encode()[f["start"]:f["end"]].decode() == \
        "Only {{stock}} left in stock"


def test_cli_guard_kinds(srv):
    rules = os.path.join(os.path.dirname(__file__), "..", "..", "rules")
    code, out, _ = srv.cli("guard", "--rules", rules, "--format", "json", "--channel", "sms", "-",
                           input="Ur mob no. was selected 4 a £500 prize! Call 0906 123 4567 "
                                 "(calls £1.50/min).")
    assert code == 1, out
    found = {f["rule"] for f in json.loads(out)["results"][0]["findings"]}
    assert {"MISLEAD.FALSE_PRIZE", "MISLEAD.PREMIUM_RATE"} <= found, found
    code, out, _ = srv.cli("guard", "--rules", rules, "-",
                           input="Dear [CUSTOMER NAME], SSN on file: 536.22.1234")
    assert code == 2 and "PII.SSN_UNFORMATTED" in out and "[CUSTOMER NAME]" in out, out
    code, out, _ = srv.cli("guard", "--rules", rules, "-",
                           input="Hi {{first_name}}, your refund of {{amount}} is on its way.")
    assert code == 0, out


PUSHY = "Only 2 left, buy now or lose this deal forever!"


def test_check_api_purpose_decides_severity(srv):
    # The same words: warned in a service reply (or with no purpose), blocked in marketing.
    for purpose, verdict in ((None, "warn"), ("service", "warn"), ("marketing", "block"),
                             ("targeted_advertising", "block")):
        body = {"text": PUSHY, "channel": "sms"}
        if purpose:
            body["purpose"] = purpose
        st, _, r = srv.req("POST", "/v1/guard/check", body, token=srv.agent)
        assert st == 200 and r["verdict"] == verdict, (purpose, r)
        sev = {f["rule"]: f["severity"] for f in r["findings"]}
        assert sev["PRESSURE.FALSE_SCARCITY"] == verdict, sev
    st, _, r = srv.req("POST", "/v1/guard/check",
                       {"text": "Our sale runs until 30 November; prices are shown with all fees.",
                        "purpose": "marketing"}, token=srv.agent)
    assert st == 200 and r["verdict"] != "block", r
    assert_problem(srv.req("POST", "/v1/guard/check", {"text": "x", "purpose": "spam"},
                           token=srv.agent), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/guard/check", {"text": "x", "purpose": 7},
                           token=srv.agent), 400, "invalid-request")


def test_cli_guard_purpose(srv):
    rules = os.path.join(os.path.dirname(__file__), "..", "..", "rules")
    code, out, _ = srv.cli("guard", "--rules", rules, "--purpose", "marketing", "-", input=PUSHY)
    assert code == 2 and out.startswith("<stdin>: block: "), out
    code, out, _ = srv.cli("guard", "--rules", rules, "--purpose", "service", "-", input=PUSHY)
    assert code == 1 and out.startswith("<stdin>: warn: "), out
    code, _, err = srv.cli("guard", "--rules", rules, "--purpose", "spam", "-", input=PUSHY)
    assert code == 3 and "--purpose must be one of" in err, err


def test_in_path_purpose_decides_block(srv):
    # Sent as a service reply the pushy words are stored with a warning; sent to sell (with the
    # customer's consent, so consent is not what stops it) they are refused as a guard block.
    st, _, c = srv.req("POST", "/v1/consents", {
        "customer_id": srv.cid, "purpose": "marketing", "state": "given", "channel": "*",
        "method": "web_form"})
    assert st == 201, c
    msg = {"customer_id": srv.cid, "channel": "sms", "direction": "outbound", "body": PUSHY}
    before = len(timeline(srv))
    body = assert_problem(srv.req("POST", "/v1/interactions", dict(msg, purpose="marketing")),
                          422, "guard-blocked")
    assert any(f["rule"] == "PRESSURE.FALSE_SCARCITY" and f["severity"] == "block"
               for f in body["findings"]), body
    assert len(timeline(srv)) == before
    st, _, it = srv.req("POST", "/v1/interactions", dict(msg, purpose="service"),
                        token=srv.agent)
    assert st == 201 and it["guard"]["verdict"] == "warn", it
