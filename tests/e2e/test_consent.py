"""Consent and preferences: decisions, events with signed receipts (verified with the openssl
command-line tool, as an outside party would), notices and staleness, GPC, preferences, caps,
quiet hours and topic opt-outs in the path of outbound messages, and one-click unsubscribe
(RFC 8058)."""
import base64
import hashlib
import json
import os
import subprocess
import tempfile

from e2e_util import ndjson
from harness import Server, assert_problem


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def customer(srv, jurisdiction="EU", tz="Europe/Berlin"):
    st, _, c = srv.req("POST", "/v1/customers", {"jurisdiction": jurisdiction, "time_zone": tz})
    assert st == 201, c
    # A single check knows a customer created a moment ago (an id the in-memory projection has
    # not seen yet is looked up once).
    assert check(srv, c["id"], "marketing")["reason"] != "unknown_customer"
    return c["id"]


def check(srv, cid, purpose, channel="*", **kw):
    body = {"customer_id": cid, "purpose": purpose, "channel": channel, **kw}
    st, _, d = srv.req("POST", "/v1/consents/check", body)
    assert st == 200, d
    return d


def record(srv, cid, purpose, state, channel="*", method="web_form", **kw):
    body = {"customer_id": cid, "purpose": purpose, "state": state, "channel": channel,
            "method": method, **kw}
    return srv.req("POST", "/v1/consents", body)


def count_events(srv, cid):
    st, _, h = srv.req("GET", f"/v1/customers/{cid}/consents", purpose="service")
    assert st == 200, h
    return len(h["history"])


def test_a_give_check_withdraw(srv):
    cid = customer(srv)
    assert check(srv, cid, "service")["reason"] == "not_required"
    d = check(srv, cid, "marketing", "email")
    assert d["allow"] is False and d["reason"] == "no_consent" and d["regime"] == "EU"
    st, hdr, ev = record(srv, cid, "marketing", "given", evidence="form-123")
    assert st == 201, ev
    assert hdr["location"] == f"/v1/consents/{ev['id']}/receipt"
    d = check(srv, cid, "marketing", "email")
    assert d["allow"] is True and d["reason"] == "consent_given" and d["event_id"] == ev["id"]
    # Withdrawing takes exactly the same fields as giving.
    st, _, w = record(srv, cid, "marketing", "withdrawn", evidence="form-124")
    assert st == 201, w
    d = check(srv, cid, "marketing", "email")
    assert d["allow"] is False and d["reason"] == "withdrawn" and d["event_id"] == w["id"]
    st, _, h = srv.req("GET", f"/v1/customers/{cid}/consents", purpose="service")
    assert [e["state"] for e in h["history"]] == ["given", "withdrawn"]
    assert h["jurisdiction"] == "EU"


def test_b_channel_specific_and_all(srv):
    cid = customer(srv)
    record(srv, cid, "marketing", "given")
    record(srv, cid, "marketing", "withdrawn", channel="sms")
    assert check(srv, cid, "marketing", "email")["allow"] is True
    assert check(srv, cid, "marketing", "sms")["reason"] == "withdrawn"


def test_c_receipt_verified_with_openssl(srv):
    cid = customer(srv)
    st, _, ev = record(srv, cid, "personalization", "given", method="chat")
    assert st == 201
    st, _, rc = srv.req("GET", f"/v1/consents/{ev['id']}/receipt")
    assert st == 200, rc
    assert rc["alg"] == "Ed25519" and rc["receipt"]["consentReceiptID"] == ev["id"]
    assert rc["receipt"]["piiPrincipalId"] == cid
    st, _, keys = srv.req("GET", "/.well-known/candor-keys.json", token=None)
    assert st == 200
    key = keys["keys"][0]
    assert key["kid"] == rc["key_id"]
    # The key id is the SHA-256 of the key's DER SubjectPublicKeyInfo, computed here from the PEM.
    der = base64.b64decode("".join(line for line in key["public_key_pem"].splitlines()
                                   if not line.startswith("-----")))
    assert len(der) == 44 and der[:12] == bytes.fromhex("302a300506032b6570032100"), der
    assert key["kid"] == hashlib.sha256(der).hexdigest(), key
    with tempfile.TemporaryDirectory() as d:
        pad = "=" * (-len(rc["payload"]) % 4)
        msg = base64.urlsafe_b64decode(rc["payload"] + pad)
        assert json.loads(msg) == rc["receipt"]
        paths = {n: os.path.join(d, n) for n in ("pub.pem", "msg", "sig")}
        open(paths["pub.pem"], "w").write(key["public_key_pem"])
        open(paths["msg"], "wb").write(msg)
        open(paths["sig"], "wb").write(bytes.fromhex(rc["signature"]))
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["pub.pem"], "-rawin",
               "-in", paths["msg"], "-sigfile", paths["sig"]]
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0 and "Signature Verified Successfully" in p.stdout, p
        # One changed byte and the signature no longer verifies.
        open(paths["msg"], "wb").write(msg.replace(b"given", b"GIVEN"))
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode != 0


def test_d_stale_notice(srv):
    st, _, n1 = srv.req("POST", "/v1/notices", {"name": "marketing-e2e", "text": "We email you.",
                                                "material": True})
    assert st == 201 and n1["version"] == 1, n1
    # Same text again: the same notice (content-addressed).
    st, _, again = srv.req("POST", "/v1/notices", {"name": "marketing-e2e",
                                                   "text": "We email you."})
    assert st == 200 and again["id"] == n1["id"]
    cid = customer(srv)
    st, _, ev = record(srv, cid, "marketing", "given", notice_id=n1["id"],
                       notice_sha256=n1["sha256"])
    assert st == 201, ev
    assert check(srv, cid, "marketing")["allow"] is True
    st, _, n2 = srv.req("POST", "/v1/notices", {"name": "marketing-e2e",
                                                "text": "We email you, typo fixed."})
    assert st == 201 and n2["version"] == 2 and n2["material"] is False
    assert check(srv, cid, "marketing")["allow"] is True  # not material
    st, _, n3 = srv.req("POST", "/v1/notices", {"name": "marketing-e2e",
                                                "text": "We now also share with partners.",
                                                "material": True})
    assert st == 201 and n3["version"] == 3
    d = check(srv, cid, "marketing")
    assert d["allow"] is False and d["reason"] == "stale_notice"
    record(srv, cid, "marketing", "given", notice_id=n3["id"])
    assert check(srv, cid, "marketing")["allow"] is True
    st, _, got = srv.req("GET", f"/v1/notices/{n3['id']}")
    assert st == 200 and got["text"] == "We now also share with partners."
    # A wrong hash of the notice text shown is refused.
    st, _, b = record(srv, cid, "marketing", "given", notice_id=n3["id"],
                      notice_sha256=n1["sha256"])
    assert st == 400, b


def test_e_gpc(srv):
    st, _, g = srv.req("GET", "/.well-known/gpc.json", token=None)
    assert st == 200 and g["gpc"] is True and "lastUpdate" in g
    cid = customer(srv, "US-CA", "America/Los_Angeles")
    d = check(srv, cid, "sale_or_sharing")
    assert d["allow"] is True and d["reason"] == "not_opted_out"
    assert_problem(srv.req("POST", "/v1/consents/signals", {"customer_id": cid}), 400,
                   "invalid-request")
    st, _, s = srv.req("POST", "/v1/consents/signals", {"customer_id": cid},
                       headers={"Sec-GPC": "1"})
    assert st == 200 and len(s["recorded"]) == 2, s
    d = check(srv, cid, "sale_or_sharing")
    assert d["allow"] is False and d["reason"] == "gpc"
    assert check(srv, cid, "targeted_advertising")["reason"] == "gpc"
    # The same signal again changes nothing.
    st, _, s = srv.req("POST", "/v1/consents/signals", {"customer_id": cid},
                       headers={"Sec-GPC": "1"})
    assert st == 200 and s["recorded"] == [] and len(s["skipped"]) == 2
    # An explicit opt-in afterwards wins, and later GPC signals do not override it.
    st, _, ev = record(srv, cid, "sale_or_sharing", "given", method="web_form")
    assert st == 201
    assert check(srv, cid, "sale_or_sharing")["allow"] is True
    st, _, s = srv.req("POST", "/v1/consents/signals", {"customer_id": cid},
                       headers={"Sec-GPC": "1"})
    assert [k["reason"] for k in s["skipped"] if k["purpose"] == "sale_or_sharing"] == \
        ["explicit_opt_in_after_gpc"]
    assert check(srv, cid, "sale_or_sharing")["allow"] is True
    st, _, h = srv.req("GET", f"/v1/customers/{cid}/consents", purpose="service")
    gpc = [e for e in h["history"] if e["method"] == "gpc"]
    assert len(gpc) == 2 and all(e["evidence"].startswith("Sec-GPC: 1; request req_")
                                 for e in gpc)


def test_f_outbound_refused_in_path_is_recorded(srv):
    cid = customer(srv)
    msg = {"customer_id": cid, "channel": "email", "direction": "outbound",
           "purpose": "marketing", "body": "Our autumn newsletter"}
    before = srv.req("GET", f"/v1/customers/{cid}/timeline", purpose="service")[2]["items"]
    body = assert_problem(srv.req("POST", "/v1/interactions", msg), 403, "consent-denied")
    assert body["detail"].startswith("no_consent"), body
    after = srv.req("GET", f"/v1/customers/{cid}/timeline", purpose="service")[2]["items"]
    assert len(after) == len(before)  # refused before anything was stored
    st, _, au = srv.req("GET", f"/v1/audit?customer_id={cid}&action=interaction.outbound")
    assert st == 200 and au["items"] and au["items"][0]["outcome"] == "denied"
    # Service messages need no consent and still go out.
    st, _, it = srv.req("POST", "/v1/interactions", dict(msg, purpose="service",
                                                         body="Your order has shipped."))
    assert st == 201, it
    # Once the customer opts in, the same marketing message is allowed.
    record(srv, cid, "marketing", "given")
    st, _, it = srv.req("POST", "/v1/interactions", msg)
    assert st == 201, it


def test_f3_outbound_by_identity_decides_for_the_owner_after_a_merge(srv):
    # The identity's owner is remembered between requests; a merge must make the next
    # outbound message by that identity be decided for the survivor, not the merged customer.
    ident = {"type": "email", "value": "merge-consent@example.com"}
    for _ in range(2):
        st, _, it = srv.req("POST", "/v1/interactions", {
            "identity": ident, "channel": "email", "direction": "inbound", "body": "Hello"})
        assert st == 201, it
    merged = it["customer_id"]
    survivor = customer(srv)
    assert record(srv, survivor, "marketing", "given")[0] == 201
    msg = {"identity": ident, "channel": "email", "direction": "outbound",
           "purpose": "marketing", "body": "Our autumn newsletter"}
    body = assert_problem(srv.req("POST", "/v1/interactions", msg), 403, "consent-denied")
    assert body["detail"].startswith("no_consent"), body
    st, _, m = srv.req("POST", f"/v1/customers/{survivor}/merge", {"merge": merged},
                       purpose="service")
    assert st == 200, m
    st, _, it = srv.req("POST", "/v1/interactions", msg)
    assert st == 201 and it["customer_id"] == survivor, it


def test_f2_outbound_topic_opted_out_refused_in_path(srv):
    # US-CA: marketing is opt-out, so it is allowed until the customer says otherwise; here
    # they opted out of one topic only.
    cid = customer(srv, "US-CA", "UTC")
    st, _, p = srv.req("POST", f"/v1/customers/{cid}/preferences",
                       {"topics_opted_out": ["newsletter"]})
    assert st == 200, p
    msg = {"customer_id": cid, "channel": "email", "direction": "outbound",
           "purpose": "marketing", "body": "This month's newsletter",
           "metadata": {"topic": "newsletter"}}
    before = srv.req("GET", f"/v1/customers/{cid}/timeline", purpose="service")[2]["items"]
    body = assert_problem(srv.req("POST", "/v1/interactions", msg), 403, "consent-denied")
    assert body["detail"].startswith("topic_opted_out:") and "'newsletter'" in body["detail"], \
        body
    after = srv.req("GET", f"/v1/customers/{cid}/timeline", purpose="service")[2]["items"]
    assert len(after) == len(before)  # refused before anything was stored
    st, _, au = srv.req("GET", f"/v1/audit?customer_id={cid}&action=interaction.outbound")
    assert st == 200 and au["items"][0]["outcome"] == "denied", au
    assert au["items"][0]["reason"] == "topic_opted_out", au
    # Another topic, or none, goes out; so does a service message about the opted-out topic.
    st, _, it = srv.req("POST", "/v1/interactions",
                        dict(msg, metadata={"topic": "offers"}, body="An offer"))
    assert st == 201, it
    st, _, it = srv.req("POST", "/v1/interactions", dict(msg, metadata={}, body="Hello"))
    assert st == 201, it
    st, _, it = srv.req("POST", "/v1/interactions",
                        dict(msg, purpose="service", body="Your newsletter address changed."))
    assert st == 201, it
    # A topic that is not a string cannot slip past the check.
    assert_problem(srv.req("POST", "/v1/interactions",
                           dict(msg, metadata={"topic": ["newsletter"]})), 400,
                   "invalid-request")


def test_g_bulk(srv):
    ids = [customer(srv) for _ in range(5)]
    for cid in ids[:3]:
        record(srv, cid, "analytics", "given")
    st, ctype, lines = ndjson(srv, {"purpose": "analytics", "customer_ids": ids + ["cus_bogus"]})
    assert st == 200 and ctype.startswith("application/x-ndjson")
    assert [x["customer_id"] for x in lines[:-1]] == ids[:3]
    assert lines[-1]["summary"] == {"checked": 6, "allowed": 3}
    st, _, lines = ndjson(srv, {"purpose": "analytics", "all": True, "only_allowed": False})
    assert st == 200 and lines[-1]["summary"]["allowed"] >= 3
    assert lines[-1]["summary"]["checked"] == len(lines) - 1
    assert_problem(srv.req("POST", "/v1/consents/check/bulk", {"purpose": "analytics"}), 400,
                   "invalid-request")


def test_h_preferences_quiet_hours(srv):
    cid = customer(srv, "US-CA", "America/New_York")
    st, _, p = srv.req("POST", f"/v1/customers/{cid}/preferences",
                       {"quiet_hours": {"start": "21:00", "end": "08:00"},
                        "topics_opted_out": ["promotions"],
                        "caps": [{"purpose": "marketing", "channel": "email", "max": 1,
                                  "days": 7}]}, purpose="service")
    assert st == 200, p
    assert p["preferences"]["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    # 2026-07-01 02:00 UTC is 22:00 in New York (EDT): quiet. 16:00 UTC is noon: not quiet.
    assert check(srv, cid, "marketing", "email", at="2026-07-01T02:00:00Z")["reason"] == \
        "quiet_hours"
    assert check(srv, cid, "marketing", "email", at="2026-07-01T16:00:00Z")["allow"] is True
    assert check(srv, cid, "marketing", "email", topic="promotions",
                 at="2026-07-01T16:00:00Z")["reason"] == "topic_opted_out"
    assert_problem(srv.req("POST", f"/v1/customers/{cid}/preferences",
                           {"quiet_hours": {"start": "25:00", "end": "08:00"}}), 400,
                   "invalid-request")


def test_i_unsubscribe_one_click(srv):
    cid = customer(srv)
    record(srv, cid, "marketing", "given", channel="email")
    st, _, link = srv.req("POST", "/v1/consents/unsubscribe-links",
                          {"customer_id": cid, "purpose": "marketing", "channel": "email",
                           "base_url": "https://mail.example.com/"})
    assert st == 201, link
    assert link["headers"]["List-Unsubscribe"] == f"<https://mail.example.com/u/{link['token']}>"
    assert link["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = "/u/" + link["token"]
    st, hdr, page = srv.req("GET", path, token=None)
    assert st == 200 and hdr["content-type"].startswith("text/html") and b"<form" in page
    assert check(srv, cid, "marketing", "email")["allow"] is True  # GET changes nothing
    form = "application/x-www-form-urlencoded"
    # A forged token: one changed character. Refused, nothing changes.
    t = link["token"]
    forged = "/u/" + t[:10] + ("A" if t[10] != "A" else "B") + t[11:]
    n0 = count_events(srv, cid)
    assert_problem(srv.req("POST", forged, token=None, raw=b"List-Unsubscribe=One-Click",
                           content_type=form), 404, "not-found")
    assert_problem(srv.req("GET", forged, token=None), 404, "not-found")
    assert count_events(srv, cid) == n0
    # Without the One-Click body: refused.
    assert_problem(srv.req("POST", path, token=None, raw=b"x=y", content_type=form), 400,
                   "invalid-request")
    st, _, done = srv.req("POST", path, token=None, raw=b"List-Unsubscribe=One-Click",
                          content_type=form)
    assert st == 200 and b"no longer receive" in done
    d = check(srv, cid, "marketing", "email")
    assert d["allow"] is False and d["reason"] == "withdrawn"
    assert count_events(srv, cid) == n0 + 1
    # Replay: refused, nothing changes.
    assert_problem(srv.req("POST", path, token=None, raw=b"List-Unsubscribe=One-Click",
                           content_type=form), 409, "conflict")
    assert count_events(srv, cid) == n0 + 1


def test_j_malformed_events_leave_ledger_unchanged(srv):
    cid = customer(srv)
    n0 = count_events(srv, cid)
    bad = [
        {"customer_id": cid, "purpose": "marketing", "state": "given"},            # no method
        {"customer_id": cid, "purpose": "nope", "state": "given", "method": "api"},
        {"customer_id": cid, "purpose": "marketing", "state": "maybe", "method": "api"},
        {"customer_id": cid, "purpose": "marketing", "state": "given", "method": "fax"},
        {"customer_id": cid, "purpose": "marketing", "state": "given", "method": "api",
         "channel": "pigeon"},
        {"customer_id": cid, "purpose": "marketing", "state": "given", "method": "api",
         "surprise": 1},
        {"customer_id": cid, "purpose": "marketing", "state": "given", "method": "api",
         "expires_at": "yesterday"},
        {"customer_id": cid, "purpose": "marketing", "state": "withdrawn", "method": "api",
         "expires_at": "2030-01-01T00:00:00Z"},
        {"customer_id": "cus_0000", "purpose": "marketing", "state": "given", "method": "api"},
    ]
    for b in bad:
        assert_problem(srv.req("POST", "/v1/consents", b), 400, "invalid-request")
    st, _, b = srv.req("POST", "/v1/consents", raw=b"{not json")
    assert st == 400 and b["type"] == "/problems/malformed-json"
    missing = "cus_" + "0" * 26
    assert_problem(srv.req("POST", "/v1/consents", {"customer_id": missing,
                                                    "purpose": "marketing", "state": "given",
                                                    "method": "api"}), 404, "not-found")
    assert count_events(srv, cid) == n0
    assert_problem(srv.req("GET", f"/v1/customers/{cid}/consents"), 400, "purpose-required")


def test_k_casl_implied_consent(srv):
    cid = customer(srv, "CA", "America/Toronto")
    st, _, ev = record(srv, cid, "marketing", "given", legal_basis="implied_consent",
                       method="import", purchase_at="2025-06-01T00:00:00Z")
    assert st == 201, ev
    d = check(srv, cid, "marketing", at="2026-11-25T12:00:00Z")
    assert d["allow"] is True and d["basis"] == "implied_consent"
    assert d["expires_at"] == "2027-06-01T00:00:00.000Z"
    assert check(srv, cid, "marketing", at="2027-06-02T00:00:00Z")["reason"] == "expired"
    st, _, b = record(srv, cid, "marketing", "given", legal_basis="implied_consent",
                      method="import")
    assert st == 400, b  # implied consent needs the purchase
