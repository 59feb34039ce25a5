"""The web console's server side over HTTP and the CLI: staff accounts (`candor staff`, the admin
routes), sign-in with its lockout, the session cookie and its anti-forgery token, the purpose a
session works under, the bearer-token API left as it was, and the embedded files (types,
Content-Security-Policy, ETag, gzip). The pages themselves are tested in a browser (tests/web)."""
import gzip
import json

from harness import Server, assert_problem

PW = "correct horse battery staple"


def setup_module():
    srv = Server()
    for user, role in (("ana", "agent"), ("sam", "supervisor"), ("lou", "agent")):
        rc, _, err = srv.cli("staff", "add", user, "--role", role, "--name", user.title(),
                             "--data", srv.data, input=PW + "\n")
        assert rc == 0, err
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def sign_in(srv, user, pw=PW, headers=None):
    st, hdr, body = srv.req("POST", "/console/session", {"username": user, "password": pw},
                            token=None, headers=headers)
    return st, hdr, body


def session(srv, user="ana"):
    """Signs in; returns (cookie header value, csrf token)."""
    st, hdr, body = sign_in(srv, user)
    assert st == 201, body
    cookie = hdr["set-cookie"].split(";")[0]
    return cookie, body["csrf_token"]


def as_session(srv, method, path, cookie, csrf=None, body=None, purpose=None, headers=None):
    h = {"Cookie": cookie}
    if csrf:
        h["Candor-CSRF"] = csrf
    h.update(headers or {})
    return srv.req(method, path, body, token=None, purpose=purpose, headers=h)


def test_staff_cli_add_list_disable(srv):
    rc, out, err = srv.cli("staff", "list", "--data", srv.data, "--format", "json")
    assert rc == 0, err
    items = json.loads(out)
    assert [a["username"] for a in items] == ["ana", "sam", "lou"]
    assert all(not {"password", "password_hash"} & a.keys() and "argon2" not in json.dumps(a)
               for a in items)
    # The password comes from standard input only, and must be long enough.
    rc, _, err = srv.cli("staff", "add", "kim", "--role", "agent", "--name", "Kim", "--data",
                         srv.data, input="short\n")
    assert rc != 0 and "12" in err, err
    rc, _, err = srv.cli("staff", "add", "ana", "--role", "agent", "--name", "Ana", "--data",
                         srv.data, input=PW + "\n")
    assert rc != 0 and "exists" in err, err
    rc, _, err = srv.cli("staff", "add", "kim", "--role", "root", "--name", "Kim", "--data",
                         srv.data, input=PW + "\n")
    assert rc != 0 and "--role" in err, err
    rc, out, err = srv.cli("staff", "disable", "nobody", "--data", srv.data)
    assert rc != 0 and "no staff account" in err, (out, err)


def test_sign_in_sets_a_strict_http_only_cookie(srv):
    st, hdr, body = sign_in(srv, "ANA")
    assert st == 201, body
    cookie = hdr["set-cookie"]
    assert cookie.startswith("candor_session=css_"), cookie
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert attr in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    assert body["staff"]["username"] == "ana" and body["staff"]["role"] == "agent"
    assert body["purpose"] is None and body["purposes"] == ["service", "billing"], body
    assert len(body["csrf_token"]) == 43
    # The secret is in the cookie only, never in the body.
    assert cookie.split(";")[0].split("=", 1)[1] not in json.dumps(body)
    # Behind TLS (the page's origin is https) the cookie is Secure.
    st, hdr, _ = sign_in(srv, "ana", headers={"Origin": "https://candor.example.com"})
    assert st == 201 and "; Secure" in hdr["set-cookie"], hdr


def test_sign_in_refusals_and_bad_input(srv):
    a = assert_problem(sign_in(srv, "ana", "wrong password"), 401, "unauthenticated")
    b = assert_problem(sign_in(srv, "nobody"), 401, "unauthenticated")
    assert a["detail"] == b["detail"] == "the username or the password is wrong"
    assert_problem(srv.req("POST", "/console/session", {"username": "ana"}, token=None), 400,
                   "invalid-request")
    assert_problem(srv.req("POST", "/console/session", {"username": "ana", "password": PW,
                                                        "remember": True}, token=None),
                   400, "invalid-request")
    assert_problem(srv.req("POST", "/console/session", {"username": 1, "password": PW},
                           token=None), 400, "invalid-request")
    assert_problem(srv.req("POST", "/console/session", raw=b'{"username": "ana",', token=None),
                   400, "malformed-json")
    # A form post (what another site could make a browser send) is not taken.
    assert_problem(srv.req("POST", "/console/session", raw=b"username=ana&password=x",
                           token=None, content_type="application/x-www-form-urlencoded"),
                   415, "unsupported-media-type")
    assert_problem(srv.req("POST", "/console/session", raw=json.dumps(
        {"username": "ana", "password": PW}).encode(), token=None, content_type=None),
        415, "unsupported-media-type")


def test_five_wrong_passwords_lock_the_account(srv):
    for _ in range(4):
        assert_problem(sign_in(srv, "lou", "guess guess guess"), 401, "unauthenticated")
    body = assert_problem(sign_in(srv, "lou", "guess guess guess"), 401, "unauthenticated")
    assert "locked until" in body["detail"], body
    # The right password is refused while the lock lasts.
    body = assert_problem(sign_in(srv, "lou"), 401, "unauthenticated")
    assert "locked until" in body["detail"], body
    st, _, lst = srv.req("GET", "/v1/staff")
    lou = [a for a in lst["items"] if a["username"] == "lou"][0]
    assert lou["status"] == "locked" and lou["locked_until"], lou
    # The ledger shows each attempt, never the password.
    st, _, audit = srv.req("GET", "/v1/audit?action=staff.sign_in&limit=50")
    assert st == 200
    mine = [e for e in audit["items"] if e["actor_token"] == lou["id"]]
    assert len(mine) == 6 and all(e["outcome"] == "denied" for e in mine), mine
    assert "guess" not in json.dumps(audit)


def test_session_acts_through_the_purpose_gate(srv):
    cookie, csrf = session(srv)
    # No purpose chosen yet: a read of personal data asks for one.
    assert_problem(as_session(srv, "GET", "/v1/customers", cookie), 400, "purpose-required")
    # A purpose outside the role is refused.
    assert_problem(as_session(srv, "PUT", "/console/session/purpose", cookie, csrf,
                              {"purpose": "marketing"}), 403, "purpose-not-permitted")
    assert_problem(as_session(srv, "PUT", "/console/session/purpose", cookie, csrf,
                              {"purpose": "gossip"}), 400, "purpose-unknown")
    st, _, body = as_session(srv, "PUT", "/console/session/purpose", cookie, csrf,
                             {"purpose": "service"})
    assert st == 200 and body["purpose"] == "service", body
    # Now reads work under it, and a request naming another purpose is refused.
    st, _, cust = srv.req("POST", "/v1/customers", {"display_name": "Bea"})
    assert st == 201
    st, _, got = as_session(srv, "GET", "/v1/customers/" + cust["id"], cookie)
    assert st == 200 and got["display_name"] == "Bea", got
    assert_problem(as_session(srv, "GET", "/v1/customers/" + cust["id"], cookie,
                              purpose="billing"), 403, "purpose-not-permitted")
    # The read is in the customer's access log under the person's name and the purpose, and
    # so is the refused attempt under another purpose, as for a token.
    st, _, log = srv.req("GET", f"/v1/customers/{cust['id']}/access-log", purpose="service")
    assert any(e.get("actor_name") == "Ana" and e.get("purpose") == "service"
               and e["outcome"] == "ok" for e in log["items"]), log
    denied = [e for e in log["items"] if e["outcome"] == "denied"]
    assert [(e["actor_name"], e["purpose"]) for e in denied] == [("Ana", "billing")], log
    st, _, audit = srv.req("GET", "/v1/audit?action=access.denied&limit=50")
    mine = [e for e in audit["items"] if e.get("customer_id") == cust["id"]]
    assert len(mine) == 1 and mine[0]["reason"] == "purpose-not-permitted", audit
    # A purpose that does not exist is a bad request, as for a token.
    assert_problem(as_session(srv, "GET", "/v1/customers/" + cust["id"], cookie,
                              purpose="gossip"), 400, "purpose-unknown")
    # The role is the account's: an agent may not list tokens.
    assert_problem(as_session(srv, "GET", "/v1/tokens", cookie), 403, "forbidden")


def test_changes_need_the_anti_forgery_token(srv):
    cookie, csrf = session(srv)
    as_session(srv, "PUT", "/console/session/purpose", cookie, csrf, {"purpose": "service"})
    check = {"text": "Your card 4242 4242 4242 4242 is on file."}
    assert_problem(as_session(srv, "POST", "/v1/guard/check", cookie, None, check), 403,
                   "forbidden")
    assert_problem(as_session(srv, "POST", "/v1/guard/check", cookie, "x" * 43, check), 403,
                   "forbidden")
    other_cookie, other_csrf = session(srv, "sam")
    assert_problem(as_session(srv, "POST", "/v1/guard/check", cookie, other_csrf, check), 403,
                   "forbidden")
    st, _, body = as_session(srv, "POST", "/v1/guard/check", cookie, csrf, check)
    assert st == 200 and body["verdict"] == "block", body
    # The consent check runs inline for tokens; with a session it is checked the same way.
    assert_problem(as_session(srv, "POST", "/v1/consents/check", cookie, None,
                              {"customer_id": "cus_01M996VNB67AK0QBRDFPYG0GWB",
                               "purpose": "service", "channel": "email"}), 403, "forbidden")


def test_bearer_tokens_are_judged_alone(srv):
    cookie, csrf = session(srv, "sam")
    as_session(srv, "PUT", "/console/session/purpose", cookie, csrf, {"purpose": "service"})
    # A bearer token with a session cookie beside it: the token decides, no CSRF needed.
    agent = srv.token("agent", "agent with cookie")
    st, _, _ = srv.req("POST", "/v1/guard/check", {"text": "hello"}, token=agent,
                       headers={"Cookie": cookie})
    assert st == 200
    # A bad token is not rescued by a good cookie.
    assert_problem(srv.req("GET", "/v1/customers", token="cnd_" + "A" * 43, purpose="service",
                           headers={"Cookie": cookie}), 401, "unauthenticated")
    # A token has no console session.
    assert_problem(srv.req("GET", "/console/session"), 404, "not-found")
    assert_problem(srv.req("GET", "/console/session", token=None), 401, "unauthenticated")


def test_sign_out_revoke_and_disable_end_sessions(srv):
    cookie, csrf = session(srv)
    assert as_session(srv, "GET", "/console/session", cookie)[0] == 200
    assert_problem(as_session(srv, "DELETE", "/console/session", cookie), 403, "forbidden")
    st, hdr, _ = as_session(srv, "DELETE", "/console/session", cookie, csrf)
    assert st == 204 and "Max-Age=0" in hdr["set-cookie"], hdr
    body = assert_problem(as_session(srv, "GET", "/console/session", cookie), 401,
                          "unauthenticated")
    assert "ended" in body["detail"], body
    # An administrator ends every session of an account.
    c1, _ = session(srv)
    c2, _ = session(srv)
    st, _, body = srv.req("DELETE", "/v1/staff/ana/sessions")
    assert st == 200 and body["ended"] >= 2, body
    for c in (c1, c2):
        assert_problem(as_session(srv, "GET", "/console/session", c), 401, "unauthenticated")
    # Disabling ends its sessions too, and the account cannot sign in again.
    c3, _ = session(srv, "sam")
    st, _, lst = srv.req("GET", "/v1/staff")
    sam = [a for a in lst["items"] if a["username"] == "sam"][0]
    st, _, body = srv.req("POST", f"/v1/staff/{sam['id']}/disable")
    assert st == 200 and body["status"] == "disabled", body
    assert_problem(as_session(srv, "GET", "/console/session", c3), 401, "unauthenticated")
    assert_problem(sign_in(srv, "sam"), 401, "unauthenticated")
    assert_problem(srv.req("POST", f"/v1/staff/{sam['id']}/disable"), 409, "conflict")
    assert_problem(srv.req("POST", "/v1/staff/nobody/disable"), 404, "not-found")
    assert_problem(srv.req("DELETE", "/v1/staff/stf_01M996TJKS51HNX6C129KAH5YD/sessions"), 404,
                   "not-found")


def test_admin_routes_for_staff(srv):
    st, _, a = srv.req("POST", "/v1/staff", {"username": "Zoe", "name": "Zoë Z", "role":
                                             "compliance", "password": PW})
    assert st == 201 and a["username"] == "zoe" and a["status"] == "active", a
    assert not {"password", "password_hash"} & a.keys() and PW not in json.dumps(a)
    assert a["must_change_password"] is False, a
    assert_problem(srv.req("POST", "/v1/staff", {"username": "zoe", "name": "Z", "role":
                                                 "agent", "password": PW}), 409, "conflict")
    for bad in ({"username": "z", "name": "Z", "role": "agent"},
                {"username": "z", "name": "Z", "role": "agent", "password": "short"},
                {"username": "z z", "name": "Z", "role": "agent", "password": PW},
                {"username": "z", "name": "Z", "role": "root", "password": PW},
                {"username": "z", "name": "", "role": "agent", "password": PW},
                {"username": "z", "name": "Z", "role": "agent", "password": PW, "x": 1}):
        assert_problem(srv.req("POST", "/v1/staff", bad), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/staff", raw=b"{", content_type="application/json"),
                   400, "malformed-json")
    agent = srv.token("agent", "not an admin")
    assert_problem(srv.req("GET", "/v1/staff", token=agent), 403, "forbidden")
    assert_problem(srv.req("POST", "/v1/staff", {"username": "x", "name": "X", "role": "admin",
                                                 "password": PW}, token=agent), 403, "forbidden")
    assert_problem(srv.req("GET", "/v1/staff", token=None), 401, "unauthenticated")
    # The new account signs in.
    assert sign_in(srv, "zoe")[0] == 201


def add_staff(srv, user, role="agent", pw=PW):
    st, _, a = srv.req("POST", "/v1/staff", {"username": user, "name": user.title(),
                                             "role": role, "password": pw})
    assert st == 201, a
    return a


def test_own_password_change_ends_the_other_sessions(srv):
    acct = add_staff(srv, "pia")
    cookie, csrf = session(srv, "pia")
    other, _ = session(srv, "pia")
    new = "a brand new passphrase"
    path = "/console/session/password"
    # The anti-forgery token, the current password and a valid new one are all needed.
    assert_problem(as_session(srv, "PUT", path, cookie, None,
                              {"current_password": PW, "new_password": new}), 403, "forbidden")
    for bad in ({"current_password": PW}, {"new_password": new},
                {"current_password": PW, "new_password": "short"},
                {"current_password": PW, "new_password": PW},
                {"current_password": 1, "new_password": new},
                {"current_password": PW, "new_password": new, "x": 1}):
        assert_problem(as_session(srv, "PUT", path, cookie, csrf, bad), 400, "invalid-request")
    assert_problem(srv.req("PUT", path, raw=b"{", token=None, headers={
        "Cookie": cookie, "Candor-CSRF": csrf}), 400, "malformed-json")
    body = assert_problem(as_session(srv, "PUT", path, cookie, csrf,
                                     {"current_password": "not the password", "new_password":
                                      new}), 403, "forbidden")
    assert "current password is wrong" in body["detail"], body
    # An API token has no password to change.
    assert_problem(srv.req("PUT", path, {"current_password": PW, "new_password": new}), 404,
                   "not-found")
    st, _, body = as_session(srv, "PUT", path, cookie, csrf,
                             {"current_password": PW, "new_password": new})
    assert st == 200 and body == {"other_sessions_ended": 1}, body
    # The session that changed it goes on, the other one ended; the old password no longer signs in.
    assert as_session(srv, "GET", "/console/session", cookie)[0] == 200
    assert_problem(as_session(srv, "GET", "/console/session", other), 401, "unauthenticated")
    assert_problem(sign_in(srv, "pia"), 401, "unauthenticated")
    assert sign_in(srv, "pia", new)[0] == 201
    # The ledger has the change and the refused attempt, never a password.
    st, _, audit = srv.req("GET", "/v1/audit?action=staff.password_change&limit=50")
    mine = [e for e in audit["items"] if e["actor_token"] == acct["id"]]
    assert sorted(e["outcome"] for e in mine) == ["denied", "ok"], mine
    assert "passphrase" not in json.dumps(audit) and "not the password" not in json.dumps(audit)


def test_wrong_current_passwords_count_towards_the_lockout(srv):
    add_staff(srv, "quin")
    cookie, csrf = session(srv, "quin")
    for _ in range(5):
        assert_problem(as_session(srv, "PUT", "/console/session/password", cookie, csrf,
                                  {"current_password": "guess guess guess",
                                   "new_password": "whatever it may be"}), 403, "forbidden")
    body = assert_problem(as_session(srv, "PUT", "/console/session/password", cookie, csrf,
                                     {"current_password": PW,
                                      "new_password": "whatever it may be"}), 403, "forbidden")
    assert "locked" in body["detail"], body
    assert "locked until" in assert_problem(sign_in(srv, "quin"), 401,
                                            "unauthenticated")["detail"]


def test_admin_reset_forces_a_new_password_at_next_sign_in(srv):
    acct = add_staff(srv, "rex")
    old, _ = session(srv, "rex")
    temp = "temporary passphrase 7319"
    for bad in ({}, {"password": "short"}, {"password": 12345678901234},
                {"password": temp, "x": 1}):
        assert_problem(srv.req("POST", "/v1/staff/rex/password", bad), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/staff/nobody/password", {"password": temp}), 404,
                   "not-found")
    agent = srv.token("agent", "no resets")
    assert_problem(srv.req("POST", "/v1/staff/rex/password", {"password": temp}, token=agent),
                   403, "forbidden")
    st, _, body = srv.req("POST", f"/v1/staff/{acct['id']}/password", {"password": temp})
    assert st == 200 and body["must_change_password"] is True and body["sessions"] == 0, body
    assert not {"password", "password_hash"} & body.keys() and temp not in json.dumps(body)
    # Its sessions ended; the old password is gone; the temporary one signs in...
    assert_problem(as_session(srv, "GET", "/console/session", old), 401, "unauthenticated")
    assert_problem(sign_in(srv, "rex"), 401, "unauthenticated")
    st, hdr, ses = sign_in(srv, "rex", temp)
    assert st == 201 and ses["must_change_password"] is True, ses
    cookie, csrf = hdr["set-cookie"].split(";")[0], ses["csrf_token"]
    # ...to a session that may only choose a new password (or read itself, or sign out).
    body = assert_problem(as_session(srv, "PUT", "/console/session/purpose", cookie, csrf,
                                     {"purpose": "service"}), 403, "forbidden")
    assert "temporary password" in body["detail"], body
    assert_problem(as_session(srv, "POST", "/v1/guard/check", cookie, csrf, {"text": "hi"}),
                   403, "forbidden")
    assert as_session(srv, "GET", "/console/session", cookie)[0] == 200
    st, _, body = as_session(srv, "PUT", "/console/session/password", cookie, csrf,
                             {"current_password": temp, "new_password": "rex's own passphrase"})
    assert st == 200, body
    st, _, ses = as_session(srv, "GET", "/console/session", cookie)
    assert ses["must_change_password"] is False, ses
    st, _, _ = as_session(srv, "PUT", "/console/session/purpose", cookie, csrf,
                          {"purpose": "service"})
    assert st == 200
    st, _, lst = srv.req("GET", "/v1/staff")
    assert [a["must_change_password"] for a in lst["items"] if a["username"] == "rex"] == [False]
    st, _, audit = srv.req("GET", "/v1/audit?action=staff.password_reset&limit=50")
    assert [e["resource_id"] for e in audit["items"]] == [acct["id"]], audit
    assert "temporary" not in json.dumps(audit)


def test_reset_lifts_a_lockout_and_refuses_disabled_or_own_accounts(srv):
    acct = add_staff(srv, "sol")
    for _ in range(5):
        sign_in(srv, "sol", "guess guess guess")
    assert "locked until" in assert_problem(sign_in(srv, "sol"), 401,
                                            "unauthenticated")["detail"]
    st, _, body = srv.req("POST", "/v1/staff/sol/password", {"password": "temporary for sol"})
    assert st == 200 and body["status"] == "active", body
    assert sign_in(srv, "sol", "temporary for sol")[0] == 201
    srv.req("POST", f"/v1/staff/{acct['id']}/disable")
    assert_problem(srv.req("POST", "/v1/staff/sol/password", {"password": "temporary again"}),
                   409, "conflict")
    # An administrator signed in to the console resets others, not themselves.
    add_staff(srv, "tia", role="admin")
    cookie, csrf = session(srv, "tia")
    body = assert_problem(as_session(srv, "POST", "/v1/staff/tia/password", cookie, csrf,
                                     {"password": "temporary for tia"}), 400,
                          "invalid-request")
    assert "own account" in body["detail"], body
    # The command line resets too (for the last administrator), reading the password from
    # standard input only.
    rc, out, err = srv.cli("staff", "reset-password", "tia", "--data", srv.data,
                           input="temporary from the cli\n")
    assert rc == 0 and "tia" in out and "temporary" not in out, err
    assert sign_in(srv, "tia", "temporary from the cli")[2]["must_change_password"] is True
    rc, _, err = srv.cli("staff", "reset-password", "tia", "--data", srv.data, input="short\n")
    assert rc != 0 and "12" in err, err


def test_failed_sign_ins_are_throttled_per_address(_srv):
    srv = Server(args=("--sign-in-limit", "3"))
    try:
        for user in ("ana", "bob"):
            rc, _, err = srv.cli("staff", "add", user, "--role", "agent", "--name", user,
                                 "--data", srv.data, input=PW + "\n")
            assert rc == 0, err
        # Right passwords and bad input do not count.
        for _ in range(4):
            assert sign_in(srv, "ana")[0] == 201
        for _ in range(4):
            assert_problem(sign_in(srv, "", "x"), 400, "invalid-request")
        # Three wrong passwords over two accounts use up the address's allowance...
        for user in ("ana", "bob", "ana"):
            assert_problem(sign_in(srv, user, "guess guess guess"), 401, "unauthenticated")
        # ...so the next attempt, right or wrong and for any account, waits out the window.
        for user in ("bob", "nobody"):
            st, hdr, body = sign_in(srv, user)
            body = assert_problem((st, hdr, body), 429, "too-many-requests")
            assert 1 <= int(hdr["retry-after"]) <= 900, hdr
            assert "try again in 15 minutes" in body["detail"], body
        # No account was locked by it (bob failed once only), and the API is not affected.
        st, _, lst = srv.req("GET", "/v1/staff")
        assert all(a["status"] == "active" for a in lst["items"]), lst
        st, _, m = srv.req("GET", "/metrics", token=None)
        assert ('candor_http_requests_total{route="POST /console/session",status="429"} 2'
                in m.decode()), m
        # Nothing of the attempts in the log: no password, no address.
        logs = srv.logs()
        assert "guess" not in logs and PW not in logs, logs
        assert "127.0.0.1" not in logs.replace(f"127.0.0.1:{srv.port}", ""), logs
    finally:
        srv.stop()
        srv.cleanup()


def csp_report(srv, body, ctype="application/csp-report"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return srv.req("POST", "/console/csp-report", raw=raw, token=None, content_type=ctype)


def test_csp_violation_reports_are_counted_and_logged_without_urls(_srv):
    srv = Server()
    try:
        st, hdr, _ = srv.req("GET", "/console/", token=None)
        assert "report-uri /console/csp-report" in hdr["content-security-policy"], hdr
        assert "report-to csp" in hdr["content-security-policy"], hdr
        assert hdr["reporting-endpoints"] == 'csp="/console/csp-report"', hdr
        secret = "ana.silva%40example.com"
        legacy = {"csp-report": {
            "document-uri": f"http://127.0.0.1/console/workspace?email={secret}",
            "referrer": "", "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem", "original-policy": "default-src 'none'",
            "blocked-uri": f"https://cdn.evil.example:8443/x.js?who={secret}",
            "status-code": 200}}
        st, _, body = csp_report(srv, legacy)
        assert st == 204, body
        modern = [
            {"type": "csp-violation", "age": 10, "url": f"http://127.0.0.1/console/?q={secret}",
             "user_agent": "Chromium", "body": {
                 "documentURL": f"http://127.0.0.1/console/?q={secret}",
                 "effectiveDirective": "style-src-attr", "blockedURL": "inline",
                 "disposition": "enforce"}},
            {"type": "deprecation", "age": 1, "url": "x", "body": {"id": "x"}},
            {"type": "csp-violation", "age": 10, "url": "x", "body": {
                "effectiveDirective": "made-up-directive",
                "blockedURL": f"data:text/plain,{secret}"}}]
        st, _, body = csp_report(srv, modern, "application/reports+json")
        assert st == 204, body
        # Bad reports: each refused clearly, and nothing of them is counted.
        assert_problem(csp_report(srv, b"{not json"), 400, "invalid-request")
        assert_problem(csp_report(srv, {"other": 1}), 400, "invalid-request")
        assert_problem(csp_report(srv, {"csp-report": {}}, "application/reports+json"), 400,
                       "invalid-request")
        assert_problem(csp_report(srv, [{"type": "csp-violation"}], "application/reports+json"),
                       400, "invalid-request")
        assert_problem(csp_report(srv, legacy, "application/json"), 415,
                       "unsupported-media-type")
        assert_problem(csp_report(srv, legacy, None), 415, "unsupported-media-type")
        big = {"csp-report": dict(legacy["csp-report"], **{"script-sample": "x" * 20000})}
        body = assert_problem(csp_report(srv, big), 413, "payload-too-large")
        assert "16384" in body["detail"], body
        st, _, m = srv.req("GET", "/metrics", token=None)
        m = m.decode()
        for line in ('candor_csp_violations_total{directive="script-src-elem"} 1',
                     'candor_csp_violations_total{directive="style-src-attr"} 1',
                     'candor_csp_violations_total{directive="other"} 1',
                     'candor_csp_violations_total{directive="img-src"} 0'):
            assert line in m, m
        # The log names the directive and the blocked origin, never a URL's path or query.
        logs = srv.logs()
        lines = [json.loads(x) for x in logs.splitlines()
                 if '"console.csp_violation"' in x]
        assert [(x["directive"], x["blocked"]) for x in lines] == [
            ("script-src-elem", "https://cdn.evil.example:8443"), ("style-src-attr", "inline"),
            ("other", "data")], lines
        assert secret not in logs and "ana.silva" not in logs and "x.js" not in logs, logs
        # At most 60 reports a minute from one address; then 429 with Retry-After.
        sent = 8  # the reports above but the oversized one (refused unread) each took one
        while sent < 60:
            assert csp_report(srv, legacy)[0] == 204
            sent += 1
        st, hdr, body = csp_report(srv, legacy)
        assert_problem((st, hdr, body), 429, "too-many-requests")
        assert 1 <= int(hdr["retry-after"]) <= 60, hdr
    finally:
        srv.stop()
        srv.cleanup()


def test_console_files_are_served_embedded(srv):
    st, hdr, body = srv.req("GET", "/console/", token=None)
    assert st == 200 and hdr["content-type"] == "text/html; charset=utf-8", hdr
    assert b"Sign in" in body
    csp = hdr["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert hdr["x-frame-options"] == "DENY" and hdr["referrer-policy"] == "no-referrer"
    assert hdr["cache-control"] == "no-cache" and hdr["etag"].startswith('"'), hdr
    for path, ctype in (("/console/workspace", "text/html; charset=utf-8"),
                        ("/console/workspace.js", "text/javascript; charset=utf-8"),
                        ("/console/console.css", "text/css; charset=utf-8"),
                        ("/console/favicon.svg", "image/svg+xml")):
        st, hdr, body = srv.req("GET", path, token=None)
        assert st == 200 and hdr["content-type"] == ctype, (path, hdr)
        # Revalidation: the same ETag answers 304 with no body.
        st2, hdr2, body2 = srv.req("GET", path, token=None,
                                   headers={"If-None-Match": hdr["etag"]})
        assert st2 == 304 and body2 == b"", (path, st2)
        # Compressed when the client takes it, and the same bytes once inflated.
        st3, hdr3, body3 = srv.req("GET", path, token=None,
                                   headers={"Accept-Encoding": "gzip, br"})
        if hdr3.get("content-encoding") == "gzip":
            assert gzip.decompress(body3) == body and len(body3) < len(body), path
        else:
            assert body3 == body
        st4, hdr4, _ = srv.req("GET", path, token=None, headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in hdr4, hdr4
    assert_problem(srv.req("GET", "/console/nothing.js", token=None), 404, "not-found")
    assert_problem(srv.req("GET", "/console/..%2Fdata", token=None), 400, "invalid-uri")
    assert_problem(srv.req("POST", "/console/workspace", token=None), 405, "method-not-allowed")
    # No inline script or style in any page: the CSP would refuse it.
    for page in ("/console/", "/console/workspace", "/console/staff"):
        html = srv.req("GET", page, token=None)[2].decode()
        assert "<script>" not in html and "style=" not in html and "<style" not in html, page
