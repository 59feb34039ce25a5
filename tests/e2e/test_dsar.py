"""Data-subject requests through the public interface: intake by API and by converting an
inbound interaction (the clock starts at the message), deadlines by regime, the lifecycle and
its refusals, one extension, the overdue and due-soon lists, counts in /metrics, the ledger,
the CLI, and bad input that changes nothing."""

import json
import time

from e2e_util import sql, stored_bytes
from harness import Server, assert_problem
from webhook_receiver import Receiver, docs_verifier

EMAIL = "dsar.subject@example.org"


def setup_module():
    srv = Server()
    srv.agent = srv.token("agent", "Agnes (support)")
    srv.dpo = srv.token("compliance", "Dana (DPO office)")
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": "Data Subject", "jurisdiction": "DE",
        "identities": [{"type": "email", "value": EMAIL}]})
    assert st == 201, c
    srv.cid = c["id"]
    st, _, c = srv.req("POST", "/v1/customers", {"jurisdiction": "US-CA"})
    assert st == 201, c
    srv.ca = c["id"]
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def count_requests(srv):
    return int(sql(srv, "SELECT count(*) FROM dsar_requests"))


def test_open_by_api_with_gdpr_deadline(srv):
    st, hdr, r = srv.req("POST", "/v1/dsar", {
        "customer_id": srv.cid, "type": "access", "received_at": "2026-01-31T10:00:00Z",
        "details": "Please send me everything you hold about me."}, token=srv.agent)
    assert st == 201, r
    assert hdr["location"] == f"/v1/dsar/{r['id']}"
    assert r["state"] == "received" and r["regime"] == "gdpr" and r["intake"] == "api"
    # One month from 31 January ends on Saturday 28 February: Monday 2 March, Berlin time.
    assert r["due_at"] == "2026-03-02T23:00:00.000Z"
    assert r["deadline"]["rolled_from"] == "2026-02-28" and r["deadline"]["calendar"] == "de"
    assert r["details"] is None  # sealed: shown only under a purpose that may see it
    srv.rid = r["id"]
    # The customer's words are stored sealed, not in clear.
    assert sql(srv, f"SELECT count(*) FROM dsar_requests WHERE id = '{r['id']}'"
                    " AND details IS NOT NULL") == "1"
    assert b"everything you hold" not in stored_bytes(srv)


def test_reading_the_texts_needs_a_purpose_and_is_recorded(srv):
    assert_problem(srv.req("GET", f"/v1/dsar/{srv.rid}", token=srv.dpo), 400,
                   "purpose-required")
    st, _, r = srv.req("GET", f"/v1/dsar/{srv.rid}", token=srv.dpo, purpose="legal_obligation")
    assert st == 200 and r["details"] == "Please send me everything you hold about me."
    assert [h["to"] for h in r["history"]] == ["received"]
    st, _, log = srv.req("GET", f"/v1/customers/{srv.cid}/access-log", token=srv.dpo,
                         purpose="legal_obligation")
    assert st == 200 and any(e["action"] == "dsar.read" for e in log["items"]), log


def test_lifecycle_and_ledger(srv):
    path = f"/v1/dsar/{srv.rid}/transition"
    # Agents file requests; the privacy office handles them.
    assert_problem(srv.req("POST", path, {"state": "verifying"}, token=srv.agent), 403,
                   "forbidden")
    body = assert_problem(srv.req("POST", path, {"state": "completed"}, token=srv.dpo), 409,
                          "conflict")
    assert "received cannot become completed" in body["detail"]
    for state in ("verifying", "in_progress"):
        st, _, r = srv.req("POST", path, {"state": state}, token=srv.dpo)
        assert st == 200 and r["state"] == state, r
    assert r["acknowledged_at"] is not None
    st, _, audit = srv.req("GET", f"/v1/audit?customer_id={srv.cid}&limit=50")
    actions = [e["action"] for e in audit["items"]]
    for a in ("dsar.open", "dsar.verifying", "dsar.in_progress"):
        assert a in actions, actions


def test_extension_once_with_reason_to_the_customer(srv):
    st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": srv.cid, "type": "portability"},
                       token=srv.dpo)
    rid = r["id"]
    srv.req("POST", f"/v1/dsar/{rid}/transition", {"state": "in_progress"}, token=srv.dpo)
    assert_problem(srv.req("POST", f"/v1/dsar/{rid}/extension", {"reason": "complexity"},
                           token=srv.dpo), 400, "invalid-request")
    st, _, r = srv.req("POST", f"/v1/dsar/{rid}/extension", {
        "reason": "complexity", "explanation": "Your data is spread over three systems."},
        token=srv.dpo)
    assert st == 200 and r["state"] == "extended", r
    assert r["due_at"] > r["original_due_at"] and r["deadline"]["rule"] == "3 months"
    body = assert_problem(srv.req("POST", f"/v1/dsar/{rid}/extension", {
        "reason": "number_of_requests", "explanation": "Again."}, token=srv.dpo), 409,
        "conflict")
    assert "one extension" in body["detail"]
    st, _, r = srv.req("GET", f"/v1/dsar/{rid}", token=srv.dpo, purpose="legal_obligation")
    assert r["extension"]["explanation"] == "Your data is spread over three systems."
    # The customer is told through the outbox, once, the explanation sealed at rest.
    assert sql(srv, "SELECT count(*) FROM outbox_events WHERE type = 'dsar.extended'"
                    f" AND customer_id = '{srv.cid}' AND payload LIKE '%{rid}%'"
                    " AND personal IS NOT NULL") == "1"
    assert b"spread over three systems" not in stored_bytes(srv)


def test_refusal_names_the_authority(srv):
    st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": srv.ca, "type": "erasure"},
                       token=srv.dpo)
    assert r["regime"] == "ccpa" and r["acknowledge_by"] is not None
    assert_problem(srv.req("POST", f"/v1/dsar/{r['id']}/transition", {"state": "refused"},
                           token=srv.dpo), 400, "invalid-request")
    st, _, r = srv.req("POST", f"/v1/dsar/{r['id']}/transition", {
        "state": "refused", "reason": "identity_not_verified",
        "explanation": "We could not confirm the request came from you."}, token=srv.dpo)
    assert st == 200 and r["state"] == "refused"
    assert "California Privacy Protection Agency" in r["refusal"]["complaint"]
    assert r["refusal"]["reason"] == "identity_not_verified"


def test_conversion_starts_the_clock_at_the_message(srv):
    st, _, it = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "email", "direction": "inbound",
        "occurred_at": "2026-05-04T09:00:00Z", "body": "please delete my account"})
    assert st == 201, it
    st, _, r = srv.req("POST", f"/v1/interactions/{it['id']}/dsar", {"type": "erasure"},
                       token=srv.agent)
    assert st == 201, r
    assert r["received_at"] == "2026-05-04T09:00:00.000Z" and r["intake"] == "interaction"
    assert r["interaction_id"] == it["id"] and r["customer_id"] == srv.cid
    assert r["due_at"] == "2026-06-04T22:00:00.000Z"
    # That request is past its deadline now: it is on the overdue list.
    st, _, l = srv.req("GET", "/v1/dsar?due=overdue", token=srv.dpo)
    assert st == 200 and r["id"] in [x["id"] for x in l["items"]], l
    srv.overdue = r["id"]
    # An outbound message carries no request.
    st, _, out = srv.req("POST", "/v1/interactions", {
        "customer_id": srv.cid, "channel": "email", "direction": "outbound",
        "body": "Thanks, we are on it."})
    assert_problem(srv.req("POST", f"/v1/interactions/{out['id']}/dsar", {"type": "erasure"},
                           token=srv.agent), 409, "conflict")


def test_lists_and_metrics(srv):
    st, _, l = srv.req("GET", f"/v1/dsar?customer_id={srv.cid}&state=open", token=srv.agent)
    assert st == 200 and all(x["customer_id"] == srv.cid for x in l["items"])
    assert all(x["state"] not in ("completed", "refused", "withdrawn") for x in l["items"])
    st, _, l = srv.req("GET", "/v1/dsar?state=refused", token=srv.agent)
    assert [x["regime"] for x in l["items"]] == ["ccpa"]
    # The watcher counts every few seconds; /metrics shows its last counts.
    deadline = time.time() + 15
    text = ""
    while time.time() < deadline:
        text = srv.req("GET", "/metrics", token=None)[2].decode()
        if 'candor_dsar_requests{state="refused"} 1' in text:
            break
        time.sleep(0.5)
    assert 'candor_dsar_requests{state="refused"} 1' in text, text[-2000:]
    assert 'candor_dsar_overdue{deadline="answer"}' in text
    assert int(text.split('candor_dsar_overdue{deadline="answer"} ')[1].split()[0]) >= 1


def test_regimes_are_served(srv):
    st, _, g = srv.req("GET", "/v1/dsar/regimes", token=srv.agent)
    assert st == 200 and {x["id"] for x in g["items"]} == {"gdpr", "uk-gdpr", "ccpa", "default"}
    ccpa = next(x for x in g["items"] if x["id"] == "ccpa")
    assert ccpa["deadlines"]["opt_out_sale_sharing"]["answer"] == "15 business days"
    assert ccpa["deadlines"]["access"]["acknowledge"] == "10 business days"


def test_bad_input_changes_nothing(srv):
    before = count_requests(srv)
    cases = [
        ("POST", "/v1/dsar", None, b"{not json", 400, "malformed-json"),
        ("POST", "/v1/dsar", {"customer_id": srv.cid, "type": 5}, None, 400, "invalid-request"),
        ("POST", "/v1/dsar", {"customer_id": srv.cid, "type": "forget"}, None, 400,
         "invalid-request"),
        ("POST", "/v1/dsar", {"customer_id": srv.cid, "type": "access", "extra": 1}, None, 400,
         "invalid-request"),
        ("POST", "/v1/dsar", {"customer_id": "cus_00000000000000000000000000",
                              "type": "access"}, None, 404, "not-found"),
        ("POST", "/v1/dsar", {"customer_id": srv.cid, "type": "access",
                              "received_at": "2999-01-01T00:00:00Z"}, None, 400,
         "invalid-request"),
        ("POST", "/v1/dsar/dsr_00000000000000000000000000/transition", {"state": "withdrawn"},
         None, 404, "not-found"),
        ("POST", f"/v1/dsar/{srv.rid}/transition", {"state": "sideways"}, None, 400,
         "invalid-request"),
        ("POST", "/v1/interactions/int_00000000000000000000000000/dsar", {"type": "erasure"},
         None, 404, "not-found"),
        ("GET", "/v1/dsar?due=tomorrow", None, None, 400, "invalid-request"),
        ("GET", "/v1/dsar?cursor=xyz", None, None, 400, "invalid-request"),
    ]
    for method, path, body, raw, status, slug in cases:
        assert_problem(srv.req(method, path, body, raw=raw, token=srv.dpo), status, slug)
    assert_problem(srv.req("GET", "/v1/dsar", token=None), 401, "unauthenticated")
    assert_problem(srv.req("GET", f"/v1/dsar/{srv.rid}", token=srv.dpo, purpose="marketing"),
                   403, "purpose-not-permitted")
    assert count_requests(srv) == before
    st, _, r = srv.req("GET", f"/v1/dsar/{srv.rid}", token=srv.dpo, purpose="legal_obligation")
    assert r["state"] == "in_progress" and len(r["history"]) == 3


def test_cli_lists_and_moves(srv):
    rc, out, err = srv.cli("dsar", "list", "--data", srv.data, "--due", "overdue")
    assert rc == 0, err
    assert srv.overdue in out and "OVERDUE" in out
    rc, out, err = srv.cli("dsar", "move", srv.overdue, "--data", srv.data, "--state",
                           "in_progress")
    assert rc == 0 and "in_progress" in out, err
    rc, out, err = srv.cli("dsar", "extend", srv.overdue, "--data", srv.data, "--reason",
                           "complexity", "--explanation", "Late already.")
    assert rc != 0 and "deadline has passed" in err, (out, err)
    rc, out, err = srv.cli("dsar", "open", "--data", srv.data, "--customer", srv.cid,
                           "--type", "restriction", "--format", "json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["type"] == "restriction" and r["state"] == "received"
    st, _, audit = srv.req("GET", "/v1/audit?action=dsar.open&limit=50")
    assert any(e["actor_token"] == "cli" and e["resource_id"] == r["id"]
               for e in audit["items"]), audit
    rc, out, err = srv.cli("dsar", "move", r["id"], "--data", srv.data, "--state", "nowhere")
    assert rc != 0 and "'state' must be" in err


def in_progress(srv, cid, typ):
    st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": typ}, token=srv.dpo)
    assert st == 201, r
    st, _, r = srv.req("POST", f"/v1/dsar/{r['id']}/transition", {"state": "in_progress"},
                       token=srv.dpo)
    assert st == 200 and r["state"] == "in_progress", r
    return r["id"]


def test_erasure_waits_for_a_legal_hold_then_shreds(srv):
    email = "erase.subject@example.org"
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": "Erin Erase", "jurisdiction": "FR",
        "identities": [{"type": "email", "value": email}]})
    assert st == 201, c
    cid = c["id"]
    for text in ("my card ends 4242", "my new address is 3 rue Blanche"):
        st, _, it = srv.req("POST", "/v1/interactions", {
            "customer_id": cid, "channel": "email", "direction": "inbound", "body": text})
        assert st == 201, it
    rid = in_progress(srv, cid, "erasure")
    path = f"/v1/dsar/{rid}/fulfilment"
    st, _, proc = srv.req("POST", "/v1/recipients", {
        "name": "Print house", "kind": "processor", "contact": "dpo@print.example",
        "purposes": ["service"], "categories": ["contact"], "scope": "all"}, token=srv.dpo)
    assert st == 201, proc
    # Agents file requests; they do not erase anyone.
    assert_problem(srv.req("POST", path, {}, token=srv.agent), 403, "forbidden")
    assert_problem(srv.req("POST", path, {}, token=None), 401, "unauthenticated")
    assert_problem(srv.req("POST", path, {"purposes": ["marketing"]}, token=srv.dpo), 400,
                   "invalid-request")
    st, _, hold = srv.req("POST", f"/v1/customers/{cid}/holds", {
        "reason": "Litigation ref. 2026-7", "legal_basis": "legal_claims"}, token=srv.dpo)
    assert st == 201, hold
    body = assert_problem(srv.req("POST", path, {}, token=srv.dpo), 409, "conflict")
    assert "legal hold" in body["detail"]
    assert [h["id"] for h in body["holds"]] == [hold["id"]]
    assert body["holds"][0]["legal_basis"] == "legal_claims"
    assert "reason" not in body["holds"][0]  # behind the holds' own purpose-gated listing
    # Nothing went: the customer reads as before, the request is still in progress.
    st, _, got = srv.req("GET", f"/v1/customers/{cid}", purpose="service")
    assert st == 200 and got["display_name"] == "Erin Erase", got
    st, _, r = srv.req("GET", f"/v1/dsar/{rid}", token=srv.dpo, purpose="legal_obligation")
    assert r["state"] == "in_progress" and "tombstone" not in r

    st, _, _ = srv.req("POST", f"/v1/customers/{cid}/holds/{hold['id']}/release",
                       {"reason": "Case closed"}, token=srv.dpo)
    assert st == 200
    st, _, r = srv.req("POST", path, {}, token=srv.dpo)
    assert st == 200, r
    assert r["state"] == "completed" and r["closed_at"] is not None
    t = r["tombstone"]
    assert t["customer_id"] == cid and t["counts"]["interactions"] == 2
    assert t["counts"]["identities"] == 1 and t["erased_by"] == "compliance"
    # The request records whom the erasure told (GDPR Art. 19), and when that was confirmed.
    [told] = [n for n in r["recipients_told"] if n["recipient_id"] == proc["id"]]
    assert told["event_type"] == "customer.erased" and told["status"] == "pending", told
    assert told["request_id"] == rid and told["told_at"] is None
    st, _, _ = srv.req("POST", f"/v1/recipient-notices/{told['id']}/confirm",
                       {"note": "letter ref. 88"}, token=srv.dpo)
    assert st == 200
    st, _, r = srv.req("GET", f"/v1/dsar/{rid}", token=srv.dpo, purpose="legal_obligation")
    [told] = [n for n in r["recipients_told"] if n["recipient_id"] == proc["id"]]
    assert told["status"] == "told" and told["told_at"] is not None, told
    # Removed, the recipient is told nothing more; what it was told stays on the request.
    st, _, _ = srv.req("DELETE", f"/v1/recipients/{proc['id']}", token=srv.dpo)
    assert st == 204
    st, _, r = srv.req("GET", f"/v1/dsar/{rid}", token=srv.dpo, purpose="legal_obligation")
    assert [n["recipient_id"] for n in r["recipients_told"]] == [proc["id"]], r
    # The customer is gone for every reader; the request stays as the record of the answer.
    st, _, got = srv.req("GET", f"/v1/customers/{cid}", purpose="service")
    assert st == 200 and got["status"] == "erased" and "display_name" not in got, got
    st, _, l = srv.req("POST", "/v1/customers/lookup", {"type": "email", "value": email},
                       purpose="service")
    assert st == 404, l
    assert int(sql(srv, f"SELECT count(*) FROM interactions WHERE customer_id = '{cid}'")) == 0
    assert int(sql(srv, f"SELECT count(*) FROM dsar_tombstones WHERE customer_id = '{cid}'")) == 1
    # Recipients are told through the outbox, in the erasure's transaction.
    told = sql(srv, f"SELECT type FROM outbox_events WHERE customer_id = '{cid}' ORDER BY seq")
    assert told.split()[-2:] == ["customer.erased", "dsar.completed"], told
    st, _, audit = srv.req("GET", f"/v1/audit?customer_id={cid}&limit=100")
    actions = [e["action"] for e in audit["items"]]
    assert "customer.erase" in actions and "dsar.completed" in actions, actions
    # Restoring an old backup means replaying the erasures: the help names the ledger's action.
    rc, out, _ = srv.cli("backup", "--help")
    assert rc == 0 and "customer.erase in the ledger" in out, out
    # Once is enough.
    assert_problem(srv.req("POST", path, {}, token=srv.dpo), 409, "conflict")
    assert_problem(srv.req("POST", "/v1/dsar/dsr_00000000000000000000000000/fulfilment", {},
                           token=srv.dpo), 404, "not-found")
    assert_problem(srv.req("POST", "/v1/dsar/nonsense/fulfilment", {}, token=srv.dpo), 404,
                   "not-found")


def test_restriction_objection_rectification_apply_at_once(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Rita Wrongname",
                                                 "jurisdiction": "US-CA"})
    cid = c["id"]
    # Opting out of sale and sharing is a withdrawal, in force for the next check.
    rid = in_progress(srv, cid, "opt_out_sale_sharing")
    st, _, r = srv.req("POST", f"/v1/dsar/{rid}/fulfilment", {}, token=srv.dpo)
    assert st == 200 and r["state"] == "completed", r
    assert len(r["consent_events"]) == 2
    st, _, view = srv.req("GET", f"/v1/customers/{cid}/consents", token=srv.dpo,
                          purpose="legal_obligation")
    assert st == 200, view
    assert "withdrawn" in json.dumps(view) and "sale_or_sharing" in json.dumps(view)
    # Rectification: bad changes are refused and change nothing; good ones read at once.
    rid = in_progress(srv, cid, "rectification")
    assert_problem(srv.req("POST", f"/v1/dsar/{rid}/fulfilment",
                           {"changes": {"display_name": 7}}, token=srv.dpo), 400,
                   "invalid-request")
    assert_problem(srv.req("POST", f"/v1/dsar/{rid}/fulfilment", {}, token=srv.dpo), 400,
                   "invalid-request")
    st, _, r = srv.req("POST", f"/v1/dsar/{rid}/fulfilment",
                       {"changes": {"display_name": "Rita Rightname"}}, token=srv.dpo)
    assert st == 200 and r["state"] == "completed", r
    st, _, got = srv.req("GET", f"/v1/customers/{cid}", purpose="service")
    assert got["display_name"] == "Rita Rightname"
    # Restriction applies to the next read that is not for a restricted purpose.
    rid = in_progress(srv, cid, "restriction")
    st, _, r = srv.req("POST", f"/v1/dsar/{rid}/fulfilment", {}, token=srv.dpo)
    assert st == 200 and r["state"] == "completed", r
    assert sql(srv, f"SELECT restricted FROM customers WHERE id = '{cid}'") == "1"
    kinds = sql(srv, f"SELECT type FROM outbox_events WHERE customer_id = '{cid}'").split()
    assert "customer.rectified" in kinds and "customer.restricted" in kinds, kinds
    # Access is answered by the export, not here.
    rid = in_progress(srv, cid, "access")
    body = assert_problem(srv.req("POST", f"/v1/dsar/{rid}/fulfilment", {}, token=srv.dpo), 409,
                          "conflict")
    assert "export" in body["detail"]


def test_cli_fulfils(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"jurisdiction": "DE"})
    cid = c["id"]
    rid = in_progress(srv, cid, "objection")
    rc, out, err = srv.cli("dsar", "fulfil", rid, "--data", srv.data, "--body",
                           '{"purposes": ["marketing"]}', "--format", "json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["state"] == "completed" and len(r["consent_events"]) == 1
    rc, out, err = srv.cli("dsar", "fulfil", rid, "--data", srv.data)
    assert rc != 0 and "in progress" in err, (out, err)
    rc, out, err = srv.cli("dsar", "fulfil", rid, "--data", srv.data, "--body", "{nope")
    assert rc != 0 and "--body is not JSON" in err, (out, err)


def test_verification_codes_refuse_forgery_and_replay(srv):
    st, _, c = srv.req("POST", "/v1/customers", {
        "jurisdiction": "DE", "identities": [{"type": "email", "value": "who.am.i@example.org"}]})
    cid = c["id"]
    st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": "access"},
                       token=srv.agent)
    rid = r["id"]
    path = f"/v1/dsar/{rid}/verification"
    assert_problem(srv.req("POST", path, {}, token=None), 401, "unauthenticated")
    assert_problem(srv.req("POST", path, {}, token=srv.agent), 403, "forbidden")
    assert_problem(srv.req("POST", path, {"channel": "pigeon"}, token=srv.dpo), 400,
                   "invalid-request")
    body = assert_problem(srv.req("POST", path, {"channel": "phone"}, token=srv.dpo), 409,
                          "conflict")
    assert "no phone identity" in body["detail"]
    assert_problem(srv.req("POST", "/v1/dsar/dsr_00000000000000000000000000/verification", {},
                           token=srv.dpo), 404, "not-found")
    # Nothing sent yet: nothing to check.
    body = assert_problem(srv.req("POST", path + "/check", {"code": "12345678"}, token=srv.dpo),
                          409, "conflict")
    assert body["outcome"] == "none_pending"

    st, _, sent = srv.req("POST", path, {}, token=srv.dpo)
    assert st == 200, sent
    assert sent["channel"] == "email" and sent["attempts_left"] == 5 and sent["sends_left"] == 2
    assert "code" not in sent and "who.am.i" not in json.dumps(sent)
    # The code went to the outbox, sealed: neither it nor the address is stored in clear.
    assert sql(srv, f"SELECT count(*) FROM outbox_events WHERE customer_id = '{cid}'"
                    " AND type = 'dsar.verification_code' AND personal IS NOT NULL") == "1"
    assert "who.am.i" not in sql(srv, "SELECT payload FROM outbox_events")
    st, _, r = srv.req("GET", f"/v1/dsar/{rid}", token=srv.dpo, purpose="legal_obligation")
    assert r["state"] == "verifying" and r["verified_at"] is None
    # Malformed codes are refused and not counted.
    for bad in ("1234", "abcdefgh", 12345678):
        assert_problem(srv.req("POST", path + "/check", {"code": bad}, token=srv.dpo), 400,
                       "invalid-request")
    assert_problem(srv.req("POST", path + "/check", {}, token=srv.dpo), 400, "invalid-request")
    # Forged codes: each counts; the fifth voids the code. (One in 10^8 guesses is right.)
    left = [assert_problem(srv.req("POST", path + "/check", {"code": f"0000000{i}"},
                                   token=srv.dpo), 409, "conflict") for i in range(5)]
    assert [b["outcome"] for b in left] == ["mismatch"] * 4 + ["attempts_exhausted"]
    assert [b["attempts_left"] for b in left[:4]] == [4, 3, 2, 1]
    body = assert_problem(srv.req("POST", path + "/check", {"code": "00000009"}, token=srv.dpo),
                          409, "conflict")
    assert body["outcome"] == "none_pending"
    assert sql(srv, f"SELECT count(*) FROM dsar_verifications WHERE request_id = '{rid}'") == "0"
    st, _, audit = srv.req("GET", f"/v1/audit?customer_id={cid}&limit=50")
    actions = [e["action"] for e in audit["items"]]
    assert "dsar.verification_sent" in actions and "dsar.verification_failed" in actions
    # The address was read for the code: on the customer's access log, under legal_obligation.
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log", token=srv.dpo,
                         purpose="legal_obligation")
    assert any(e["action"] == "customer.read" and e["purpose"] == "legal_obligation"
               for e in log["items"]), log
    # Three codes per request at most.
    for _ in range(2):
        assert srv.req("POST", path, {}, token=srv.dpo)[0] == 200
    body = assert_problem(srv.req("POST", path, {}, token=srv.dpo), 409, "conflict")
    assert "3 codes" in body["detail"]
    # Moving on voids the pending code.
    st, _, r = srv.req("POST", f"/v1/dsar/{rid}/transition", {
        "state": "refused", "reason": "identity_not_verified"}, token=srv.dpo)
    assert st == 200
    assert sql(srv, f"SELECT count(*) FROM dsar_verifications WHERE request_id = '{rid}'") == "0"


def test_verification_code_reaches_a_real_receiver_and_verifies(srv):
    """The code goes to the customer through a webhook (a real HTTP receiver on loopback, as a
    mail or SMS gateway would be), signed; the customer reads it there and gives it back."""
    recv = Receiver().start()
    try:
        st, _, sub = srv.req("POST", "/v1/webhooks", {
            "url": recv.url, "events": ["dsar.verification_code"], "purpose": "service"})
        assert st == 201, sub
        email = "gateway.subject@example.org"
        st, _, c = srv.req("POST", "/v1/customers", {
            "jurisdiction": "DE", "identities": [{"type": "email", "value": email}]})
        cid = c["id"]
        st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": "erasure"},
                           token=srv.agent)
        rid = r["id"]
        path = f"/v1/dsar/{rid}/verification"
        st, _, sent = srv.req("POST", path, {}, token=srv.dpo)
        assert st == 200, sent
        [(headers, body)] = recv.wait_for(1)
        verify, _ = docs_verifier()
        event = verify(sub["secret"], headers, body)
        assert event["type"] == "dsar.verification_code", event
        data = event["data"]
        assert data["request_id"] == rid and data["customer_id"] == cid
        assert data["to"] == email and data["channel"] == "email"
        assert len(data["code"]) == 8 and data["code"].isdigit()
        assert data["expires_at"] == sent["expires_at"]
        # Not in the log, not in the ledger, not in the database in clear.
        assert data["code"] not in srv.logs()
        st, _, audit = srv.req("GET", f"/v1/audit?customer_id={cid}&limit=50")
        assert data["code"] not in json.dumps(audit)
        # A wrong code first (counted), then the one delivered: verified, in progress.
        wrong = "%08d" % ((int(data["code"]) + 1) % 100000000)
        body = assert_problem(srv.req("POST", path + "/check", {"code": wrong}, token=srv.dpo),
                              409, "conflict")
        assert body["outcome"] == "mismatch" and body["attempts_left"] == 4
        st, _, r = srv.req("POST", path + "/check", {"code": data["code"]}, token=srv.dpo)
        assert st == 200 and r["state"] == "in_progress" and r["verified_at"], r
        # The delivered code works once.
        body = assert_problem(srv.req("POST", path + "/check", {"code": data["code"]},
                                      token=srv.dpo), 409, "conflict")
        assert body["outcome"] == "none_pending"
        # Reading the address for the delivery is on the customer's access log.
        st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log", token=srv.dpo,
                             purpose="legal_obligation")
        assert any(e["action"] == "webhook.read" and e["purpose"] == "service"
                   for e in log["items"]), log
    finally:
        recv.stop()


def test_export_is_a_complete_package(srv):
    import csv
    import io
    import zipfile
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": "Xavier Export", "jurisdiction": "DE",
        "identities": [{"type": "email", "value": "xavier@example.org"},
                       {"type": "phone", "value": "+44 20 7946 0958"}]})
    assert st == 201, c
    cid = c["id"]
    bodies = ["Hello, it is me: xavier@example.org or +44 20 7946 0958.",
              "My neighbour Olga (olga.neighbour@example.net) can sign for the parcel.",
              '=HYPERLINK("http://evil.example") "quoted", and a comma']
    for b in bodies:
        st, _, it = srv.req("POST", "/v1/interactions", {
            "customer_id": cid, "channel": "email", "direction": "inbound", "body": b})
        assert st == 201, it
    st, _, ev = srv.req("POST", "/v1/consents", {
        "customer_id": cid, "purpose": "marketing", "channel": "email", "state": "given",
        "method": "web_form"}, token=srv.dpo)
    assert st == 201, ev
    st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": "access"},
                       token=srv.dpo)
    rid = r["id"]
    path = f"/v1/dsar/{rid}/export"
    # Not before the request is in progress (the customer verified).
    assert_problem(srv.req("GET", path, token=srv.dpo, purpose="legal_obligation"), 409,
                   "conflict")
    srv.req("POST", f"/v1/dsar/{rid}/transition", {"state": "in_progress"}, token=srv.dpo)
    assert_problem(srv.req("GET", path, token=None), 401, "unauthenticated")
    assert_problem(srv.req("GET", path, token=srv.agent, purpose="service"), 403, "forbidden")
    assert_problem(srv.req("GET", path, token=srv.dpo), 400, "purpose-required")
    assert_problem(srv.req("GET", path, token=srv.dpo, purpose="security"), 403,
                   "purpose-not-permitted")
    assert_problem(srv.req("GET", "/v1/dsar/dsr_00000000000000000000000000/export",
                           token=srv.dpo, purpose="legal_obligation"), 404, "not-found")
    other = in_progress(srv, cid, "erasure")
    assert_problem(srv.req("GET", f"/v1/dsar/{other}/export", token=srv.dpo,
                           purpose="legal_obligation"), 409, "conflict")

    st, hdr, body = srv.req("GET", path, token=srv.dpo, purpose="legal_obligation")
    assert st == 200, body
    assert hdr["content-type"] == "application/zip"
    assert hdr["content-disposition"] == f'attachment; filename="candor-export-{rid}.zip"'
    z = zipfile.ZipFile(io.BytesIO(body))
    assert z.testzip() is None
    names = z.namelist()
    for n in ("customer.json", "customer.csv", "interactions.json", "interactions.csv",
              "consent.json", "consent.csv", "access_log.json", "access_log.csv",
              "requests.json", "requests.csv", "review.json", "summary.html",
              "manifest.json"):
        assert n in names, names
    manifest = json.loads(z.read("manifest.json"))
    assert manifest["request_id"] == rid and manifest["customer_id"] == cid
    assert set(manifest["categories"]) >= {"reference", "contact", "conversation"}
    assert manifest["sources"] == ["email"] and manifest["recipients"] == []
    import hashlib
    for f in manifest["files"]:
        assert hashlib.sha256(z.read(f["name"])).hexdigest() == f["sha256"], f["name"]
    counts = {f["name"]: f["records"] for f in manifest["files"]}
    assert counts["interactions.json"] == 3 and counts["consent.json"] == 1
    items = json.loads(z.read("interactions.json"))
    assert sorted(i["body"] for i in items) == sorted(bodies)
    rows = list(csv.DictReader(io.StringIO(z.read("interactions.csv").decode())))
    assert len(rows) == 3
    # A cell a spreadsheet would run as a formula is defused; quotes and commas survive.
    assert "'=HYPERLINK(\"http://evil.example\") \"quoted\", and a comma" in \
        [r["body"] for r in rows]
    consent = json.loads(z.read("consent.json"))
    assert consent["history"][0]["receipt"]["signature"], consent
    # Only the neighbour's address is flagged: the customer's own identities are theirs.
    review = json.loads(z.read("review.json"))
    assert [f["match"] for f in review["items"]] == ["olga.neighbour@example.net"], review
    assert manifest["review"] == {"required": True, "passages": 1}
    html = z.read("summary.html").decode()
    assert "Xavier Export" in html and "xavier@example.org" in html
    # The export is a read on the customer's access log, with its purpose.
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log", token=srv.dpo,
                         purpose="legal_obligation")
    assert any(e["action"] == "export.read" and e["purpose"] == "legal_obligation"
               for e in log["items"]), log
