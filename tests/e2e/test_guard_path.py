"""The communication guard over HTTP and in the path of every interaction: check a message;
an outbound block is refused with its findings and nothing stored, unless a supervisor overrides
with a reason (recorded); warnings are stored with findings but without the matched text;
inbound card numbers are masked before storage."""
import os

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
    for name in ("candor.db", "candor.db-wal"):
        p = os.path.join(srv.data, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                assert CARD.encode() not in f.read()
    assert CARD not in srv.logs()


def test_reload(srv):
    st, _, r = srv.req("POST", "/v1/guard/reload")
    assert st == 200 and r["rules"] > 50
    assert_problem(srv.req("POST", "/v1/guard/reload", token=srv.agent), 403, "forbidden")
