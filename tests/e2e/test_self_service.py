"""The customer's self-service session through the public interface: a one-time code asked for
(the same answer whether or not the identity is on file) and delivered to a real webhook
receiver, signing in with it (wrong, malformed, expired and replayed codes), the cookie's
attributes, and what the signed-in customer sees and does: what is held, who looked at it and
why, consents withdrawn as easily as given (and refused in the path at once), preferences, a
request filed and verified by the session whose clock starts at receipt. Scoped to the
customer's own data: another customer's request is not found, a customer id in a body is
refused, a staff token or console session is no self-service session; changes need the
anti-forgery token; sign-out and revocation end the session. Bad input changes nothing."""
import json
import time

from e2e_util import sql
from harness import Server, assert_problem
from webhook_receiver import Receiver, docs_verifier

ARGS = ["--webhook-timeout", "2", "--webhook-backoff", "100", "--webhook-backoff-max", "1",
        "--retention-every", "0"]
ANA = "ana.self@example.org"
BEN = "ben.self@example.org"


def setup_module():
    srv = Server(args=ARGS)
    srv.recv = Receiver().start()
    st, _, sub = srv.req("POST", "/v1/webhooks", {
        "url": srv.recv.url, "events": ["customer.sign_in_code"], "purpose": "service"})
    assert st == 201, sub
    srv.secret = sub["secret"]
    srv.dpo = srv.token("compliance", "Dana (DPO office)")
    srv.agent = srv.token("agent", "Agnes (support)")
    srv.ids = {}
    for email, name in ((ANA, "Ana Self"), (BEN, "Ben Other")):
        st, _, c = srv.req("POST", "/v1/customers", {
            "display_name": name, "jurisdiction": "DE",
            "identities": [{"type": "email", "value": email}]})
        assert st == 201, c
        srv.ids[email] = c["id"]
    return srv


def teardown_module(srv):
    srv.recv.stop()
    srv.stop()
    srv.cleanup()


def ask_code(srv, email, headers=None):
    st, _, ch = srv.req("POST", "/v1/me/sign-in-codes", {"type": "email", "value": email},
                        token=None, headers=headers)
    assert st == 202, ch
    assert sorted(ch) == ["challenge_id", "expires_at"], ch
    return ch["challenge_id"]


def delivered_code(srv, challenge_id, timeout=30):
    """The code the receiver got for this challenge, its signature checked as docs/webhooks.md
    shows an integrator doing."""
    verify, _ = docs_verifier()
    deadline = time.time() + timeout
    while time.time() < deadline:
        for h, body in srv.recv.acknowledged():
            event = verify(srv.secret, h, body)
            if event["data"].get("challenge_id") == challenge_id:
                return event["data"]
        time.sleep(0.05)
    raise AssertionError(f"no code delivered for {challenge_id}")


def sign_in(srv, email, origin=None):
    """Signs in as the customer of email: (cookie header value, csrf token, session answer,
    Set-Cookie)."""
    cid = ask_code(srv, email)
    data = delivered_code(srv, cid)
    headers = {"Origin": origin} if origin else None
    st, hdr, ses = srv.req("POST", "/v1/me/session", {"challenge_id": cid, "code": data["code"]},
                           token=None, headers=headers)
    assert st == 201, ses
    cookie = hdr["set-cookie"].split(";")[0]
    return cookie, ses["csrf_token"], ses, hdr["set-cookie"]


def me(srv, method, path, cookie, body=None, csrf=None, **kw):
    headers = {"Cookie": cookie}
    if csrf:
        headers["Candor-CSRF"] = csrf
    headers.update(kw.pop("headers", {}))
    return srv.req(method, path, body, token=None, headers=headers, **kw)


def test_asking_for_a_code_tells_nobody_who_is_a_customer(srv):
    before = len(srv.recv.acknowledged())
    unknown = ask_code(srv, "nobody.here@example.org")
    known = ask_code(srv, ANA)
    data = delivered_code(srv, known)
    assert data["to"] == ANA and data["customer_id"] == srv.ids[ANA]
    assert len(data["code"]) == 8 and data["code"].isdigit()
    # Nothing went anywhere for the unknown address, and its challenge takes no code.
    time.sleep(0.3)
    assert len(srv.recv.acknowledged()) == before + 1
    body = assert_problem(srv.req("POST", "/v1/me/session", {
        "challenge_id": unknown, "code": data["code"]}, token=None), 401, "unauthenticated")
    assert body["outcome"] == "mismatch"
    # The code is in no log line and not stored in clear; the ledger says a code was sent.
    assert data["code"] not in srv.logs()
    assert ANA not in sql(srv, "SELECT payload FROM outbox_events")
    assert sql(srv, "SELECT count(*) FROM audit_events WHERE action = 'portal.sign_in_code'"
                    f" AND customer_id = '{srv.ids[ANA]}'") == "1"


def test_bad_input_is_refused_and_stores_nothing(srv):
    before = sql(srv, "SELECT count(*) FROM portal_challenges")
    for bad in ({"type": "pigeon", "value": ANA}, {"type": "email"}, {"value": ANA},
                {"type": "email", "value": 7}, {"type": "email", "value": ANA, "extra": 1},
                {"type": "email", "value": "not an address"}):
        assert_problem(srv.req("POST", "/v1/me/sign-in-codes", bad, token=None), 400,
                       "invalid-request")
    assert_problem(srv.req("POST", "/v1/me/sign-in-codes", raw=b'{"type": "email",', token=None),
                   400, "malformed-json")
    assert_problem(srv.req("POST", "/v1/me/session", raw=b"[1,2", token=None), 400,
                   "malformed-json")
    for bad in ({"challenge_id": "chl_x"}, {"code": "12345678"},
                {"challenge_id": "chl_x", "code": 12345678},
                {"challenge_id": "chl_x", "code": "1234"},
                {"challenge_id": "chl_x", "code": "abcdefgh"}):
        assert_problem(srv.req("POST", "/v1/me/session", bad, token=None), 400,
                       "invalid-request")
    assert sql(srv, "SELECT count(*) FROM portal_challenges") == before


def test_wrong_expired_and_replayed_codes(srv):
    # Wrong codes count; a malformed one does not; the fifth wrong one voids the challenge.
    cid = ask_code(srv, ANA)
    right = delivered_code(srv, cid)["code"]
    wrong = "%08d" % ((int(right) + 1) % 10 ** 8)
    left = []
    for i in range(5):
        if i == 2:
            assert_problem(srv.req("POST", "/v1/me/session", {"challenge_id": cid,
                                                             "code": "12ab"}, token=None),
                           400, "invalid-request")
        body = assert_problem(srv.req("POST", "/v1/me/session", {
            "challenge_id": cid, "code": wrong}, token=None), 401, "unauthenticated")
        left.append((body["outcome"], body["attempts_left"]))
    assert left == [("mismatch", 4), ("mismatch", 3), ("mismatch", 2), ("mismatch", 1),
                    ("attempts_exhausted", 0)], left
    body = assert_problem(srv.req("POST", "/v1/me/session", {
        "challenge_id": cid, "code": right}, token=None), 401, "unauthenticated")
    assert body["outcome"] == "none_pending"
    # Expired: ten minutes later (the row is backdated) the right code is void.
    cid = ask_code(srv, ANA)
    right = delivered_code(srv, cid)["code"]
    sql(srv, f"UPDATE portal_challenges SET expires_at = expires_at - 600001 WHERE id = '{cid}'")
    body = assert_problem(srv.req("POST", "/v1/me/session", {
        "challenge_id": cid, "code": right}, token=None), 401, "unauthenticated")
    assert body["outcome"] == "expired"
    # A newer code voids the older one; the newer one signs in once, and not twice.
    old = ask_code(srv, ANA)
    old_code = delivered_code(srv, old)["code"]
    new = ask_code(srv, ANA)
    new_code = delivered_code(srv, new)["code"]
    body = assert_problem(srv.req("POST", "/v1/me/session", {
        "challenge_id": old, "code": old_code}, token=None), 401, "unauthenticated")
    assert body["outcome"] == "none_pending"
    st, _, _ = srv.req("POST", "/v1/me/session", {"challenge_id": new, "code": new_code},
                       token=None)
    assert st == 201
    body = assert_problem(srv.req("POST", "/v1/me/session", {
        "challenge_id": new, "code": new_code}, token=None), 401, "unauthenticated")
    assert body["outcome"] == "none_pending"
    # The decisions are in the ledger, never the codes.
    st, _, audit = srv.req("GET", f"/v1/audit?customer_id={srv.ids[ANA]}&limit=100")
    text = json.dumps(audit)
    assert "attempts_exhausted" in text and "expired" in text
    assert right not in text and new_code not in text


def test_codes_per_hour_are_capped_without_saying_so(srv):
    # Five codes went to Ana in the tests above: the next answers alike but sends nothing.
    sent = int(sql(srv, "SELECT count(*) FROM portal_challenges"
                        f" WHERE customer_id = '{srv.ids[ANA]}'"))
    assert sent == 5, sent
    before = len(srv.recv.acknowledged())
    ask_code(srv, ANA)
    time.sleep(0.3)
    assert len(srv.recv.acknowledged()) == before
    st, _, audit = srv.req("GET", f"/v1/audit?customer_id={srv.ids[ANA]}&limit=100")
    assert any(e["action"] == "portal.sign_in_code" and e.get("reason") == "rate_limited"
               for e in audit["items"]), audit
    # An hour on, codes flow again.
    sql(srv, "UPDATE portal_challenges SET created_at = created_at - 3600001")


def test_the_cookie_and_the_session(srv):
    cookie, csrf, ses, set_cookie = sign_in(srv, ANA)
    attrs = [a.strip() for a in set_cookie.split(";")]
    assert cookie.startswith("candor_me=cps_") and "HttpOnly" in attrs
    assert "SameSite=Strict" in attrs and "Path=/v1/me" in attrs and "Secure" not in attrs
    assert ses["customer_id"] == srv.ids[ANA] and ses["purpose"] == "legal_obligation"
    st, _, got = me(srv, "GET", "/v1/me/session", cookie)
    assert st == 200 and got["csrf_token"] == csrf and got["session_id"] == ses["session_id"]
    # Behind TLS (an https origin) the cookie is Secure.
    _, _, _, set_cookie = sign_in(srv, BEN, origin="https://privacy.example.com")
    assert "Secure" in [a.strip() for a in set_cookie.split(";")]
    # Only the secret's hash is stored.
    assert cookie.split("=", 1)[1] not in sql(srv, "SELECT hex(hash) FROM portal_sessions"
                                              if not srv.db_url else
                                              "SELECT encode(hash, 'hex') FROM portal_sessions")
    srv.ana = (cookie, csrf)


def test_what_is_held_and_who_looked(srv):
    cookie, _ = srv.ana
    # Staff read Ana's record for a reason; she sees who, when and why.
    st, _, _ = srv.req("GET", f"/v1/customers/{srv.ids[ANA]}", token=srv.agent,
                       purpose="service")
    assert st == 200
    st, _, held = me(srv, "GET", "/v1/me", cookie)
    assert st == 200, held
    assert held["id"] == srv.ids[ANA] and held["display_name"] == "Ana Self"
    assert held["identities"][0]["value"] == ANA
    st, _, log = me(srv, "GET", "/v1/me/access-log?limit=50", cookie)
    assert st == 200, log
    who = [(e["actor_name"], e["purpose"], e["action"]) for e in log["items"]]
    assert ("Agnes (support)", "service", "customer.read") in who, who
    # Her own reads are on her log too, like anyone's.
    assert ("the customer (self-service)", "legal_obligation", "customer.read") in who, who
    # And staff see them in the same log.
    st, _, staff_view = srv.req("GET", f"/v1/customers/{srv.ids[ANA]}/access-log?limit=100",
                                token=srv.dpo, purpose="legal_obligation")
    assert any(e["actor_role"] == "customer" and e["action"] == "access_log.read"
               for e in staff_view["items"]), staff_view
    assert_problem(me(srv, "GET", "/v1/me/access-log?limit=9999", cookie), 400,
                   "invalid-request")


def test_consent_withdrawn_as_easily_as_given(srv):
    cookie, csrf = srv.ana
    cid = srv.ids[ANA]
    for state in ("given", "withdrawn"):
        st, _, view = me(srv, "POST", "/v1/me/consents", cookie, {
            "purpose": "marketing", "channel": "email", "state": state}, csrf=csrf)
        assert st == 201, view
        assert [e["state"] for e in view["history"] if e["purpose"] == "marketing"][-1] == state
    # Withdrawn: the next marketing email is refused in the path.
    st, _, sent = srv.req("POST", "/v1/interactions", {
        "customer_id": cid, "channel": "email", "direction": "outbound", "purpose": "marketing",
        "body": "Our winter offers are here."}, token=srv.token("integration"))
    assert_problem((st, _, sent), 403, "consent-denied")
    st, _, view = me(srv, "GET", "/v1/me/consents", cookie)
    assert st == 200 and "withdrawn" in json.dumps(view["current"]), view
    # The receipt names the session as evidence; the method is the customer's own form.
    assert "self-service session" in json.dumps(view["history"])
    # Bad input changes nothing.
    n = sql(srv, f"SELECT count(*) FROM consent_events WHERE customer_id = '{cid}'")
    for bad in ({"purpose": "marketing", "state": "requested"}, {"purpose": "gossip",
                "state": "given"}, {"state": "given"}, {"purpose": "marketing", "state": "given",
                "customer_id": srv.ids[BEN]}, {"purpose": "marketing", "state": "given",
                "method": "import"}):
        assert_problem(me(srv, "POST", "/v1/me/consents", cookie, bad, csrf=csrf), 400,
                       "invalid-request")
    assert_problem(me(srv, "POST", "/v1/me/consents", cookie, raw=b'{"purpose":', csrf=csrf),
                   400, "malformed-json")
    assert sql(srv, f"SELECT count(*) FROM consent_events WHERE customer_id = '{cid}'") == n
    # Preferences.
    st, _, view = me(srv, "PUT", "/v1/me/preferences", cookie,
                     {"quiet_hours": {"start": "21:00", "end": "08:00"}}, csrf=csrf)
    assert st == 200 and view["preferences"]["quiet_hours"]["start"] == "21:00", view
    assert_problem(me(srv, "PUT", "/v1/me/preferences", cookie, {"quiet_hours": 5}, csrf=csrf),
                   400, "invalid-request")


def test_changes_need_the_anti_forgery_token(srv):
    cookie, csrf = srv.ana
    cid = srv.ids[ANA]
    n = sql(srv, f"SELECT count(*) FROM consent_events WHERE customer_id = '{cid}'")
    body = {"purpose": "analytics", "state": "withdrawn"}
    assert_problem(me(srv, "POST", "/v1/me/consents", cookie, body), 403, "forbidden")
    assert_problem(me(srv, "POST", "/v1/me/consents", cookie, body, csrf="x" * 43), 403,
                   "forbidden")
    # The token of Ben's session does not pass for Ana's.
    _, other_csrf = srv.ana_other = sign_in(srv, BEN)[:2]
    assert_problem(me(srv, "POST", "/v1/me/consents", cookie, body, csrf=other_csrf), 403,
                   "forbidden")
    assert_problem(me(srv, "DELETE", "/v1/me/session", cookie), 403, "forbidden")
    assert sql(srv, f"SELECT count(*) FROM consent_events WHERE customer_id = '{cid}'") == n


def test_requests_filed_in_the_session_are_verified_and_the_customers_own(srv):
    cookie, csrf = srv.ana
    st, hdr, r = me(srv, "POST", "/v1/me/requests", cookie, {
        "type": "erasure", "details": "Please delete my account."}, csrf=csrf)
    assert st == 201, r
    assert hdr["location"] == f"/v1/me/requests/{r['id']}"
    assert r["customer_id"] == srv.ids[ANA] and r["intake"] == "self_service"
    assert r["state"] == "in_progress" and r["verified_at"] and r["acknowledged_at"]
    # The clock started at receipt: now.
    assert r["received_at"][:15] == time.strftime("%Y-%m-%dT%H:%M", time.gmtime())[:15]
    assert [h["to"] for h in r["history"]] == ["received", "in_progress"]
    srv.ana_request = r["id"]
    st, _, mine = me(srv, "GET", f"/v1/me/requests/{r['id']}", cookie)
    assert st == 200 and mine["details"] == "Please delete my account.", mine
    st, _, page = me(srv, "GET", "/v1/me/requests", cookie)
    assert [x["id"] for x in page["items"]] == [r["id"]]
    # The privacy office sees it as any request.
    st, _, staff = srv.req("GET", f"/v1/dsar/{r['id']}", token=srv.dpo,
                           purpose="legal_obligation")
    assert st == 200 and staff["intake"] == "self_service"
    # Another customer's request is not found; naming a customer is refused.
    st, _, bens = srv.req("POST", "/v1/dsar", {"customer_id": srv.ids[BEN], "type": "access"},
                          token=srv.agent)
    assert st == 201
    assert_problem(me(srv, "GET", f"/v1/me/requests/{bens['id']}", cookie), 404, "not-found")
    assert_problem(me(srv, "GET", "/v1/me/requests/nonsense", cookie), 404, "not-found")
    n = sql(srv, "SELECT count(*) FROM dsar_requests")
    for bad in ({"type": "access", "customer_id": srv.ids[BEN]}, {"type": "gossip"}, {},
                {"type": "access", "received_at": "2020-01-01T00:00:00Z"},
                {"type": "access", "details": 5}):
        assert_problem(me(srv, "POST", "/v1/me/requests", cookie, bad, csrf=csrf), 400,
                       "invalid-request")
    assert_problem(me(srv, "POST", "/v1/me/requests", cookie, raw=b"{", csrf=csrf), 400,
                   "malformed-json")
    assert sql(srv, "SELECT count(*) FROM dsar_requests") == n


def test_only_the_customers_session_opens_these_routes(srv):
    cookie, _ = srv.ana
    for path in ("/v1/me", "/v1/me/access-log", "/v1/me/consents", "/v1/me/requests",
                 "/v1/me/session"):
        # No session, an API token, a forged cookie: no one's self-service session.
        assert_problem(srv.req("GET", path, token=None), 401, "unauthenticated")
        assert_problem(srv.req("GET", path), 401, "unauthenticated")
        assert_problem(srv.req("GET", path, token=None,
                               headers={"Cookie": "candor_me=cps_" + "A" * 43}), 401,
                       "unauthenticated")
        assert_problem(srv.req("GET", path, token=None,
                               headers={"Cookie": "candor_me=nonsense"}), 401,
                       "unauthenticated")
    # Another purpose than the customer's own access is refused.
    assert_problem(me(srv, "GET", "/v1/me", cookie, headers={"Candor-Purpose": "marketing"}),
                   403, "purpose-not-permitted")
    # The self-service cookie opens nothing else.
    assert_problem(srv.req("GET", f"/v1/customers/{srv.ids[ANA]}", token=None,
                           headers={"Cookie": cookie}), 401, "unauthenticated")


def test_expiry_sign_out_and_revocation(srv):
    cookie, csrf = srv.ana
    # Idle for fifteen minutes: the session is over.
    sql(srv, "UPDATE portal_sessions SET last_seen = last_seen - 900001"
             f" WHERE customer_id = '{srv.ids[ANA]}' AND ended_at IS NULL")
    body = assert_problem(me(srv, "GET", "/v1/me", cookie), 401, "unauthenticated")
    assert "expired" in body["detail"]
    # Sign-out ends it and clears the cookie; the cookie is no use after.
    cookie, csrf, _, _ = sign_in(srv, ANA)
    st, hdr, _ = me(srv, "DELETE", "/v1/me/session", cookie, csrf=csrf)
    assert st == 204 and "Max-Age=0" in hdr["set-cookie"]
    assert_problem(me(srv, "GET", "/v1/me", cookie), 401, "unauthenticated")
    # Staff revoke every session of a customer (a lost phone).
    bens_cookie, _ = srv.ana_other
    assert me(srv, "GET", "/v1/me", bens_cookie)[0] == 200
    assert_problem(srv.req("DELETE", f"/v1/customers/{srv.ids[BEN]}/sessions",
                           token=srv.agent), 403, "forbidden")
    st, _, out = srv.req("DELETE", f"/v1/customers/{srv.ids[BEN]}/sessions", token=srv.dpo)
    assert st == 200 and out["ended"] == 2, out
    assert_problem(me(srv, "GET", "/v1/me", bens_cookie), 401, "unauthenticated")
    st, _, audit = srv.req("GET", f"/v1/audit?customer_id={srv.ids[BEN]}&limit=100")
    actions = [e["action"] for e in audit["items"]]
    assert "portal.revoke" in actions and "portal.sign_in" in actions, actions
