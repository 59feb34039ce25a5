"""Evidence that cannot be edited quietly: for every kind of edit made to the database (the SQLite
file, or the PostgreSQL database) while the server is stopped (an audit entry's bytes, its index
columns, the ledger's tail, the signed tree heads, the columns of a consent event, sealed bodies
swapped between rows, rows moved to another customer, an interaction's metadata), `candor audit
verify` exits 1 and names what was edited; a server started on the edited file refuses the
edited data with a clear problem (or denies the edited consent), logs it and counts it in
/metrics."""
import json
import os

from e2e_util import blob_replace, copy_data, edit_db, query_db
from harness import Server, assert_problem


def setup_module():
    srv = Server(args=["--sth-interval", "3600"])
    ids = {}
    for who in ("a", "b"):
        st, _, b = srv.req("POST", "/v1/interactions", {
            "identity": {"type": "email", "value": f"tamper-{who}@example.com"},
            "channel": "email", "direction": "inbound", "subject": f"subject {who}",
            "body": f"the email of {who}", "occurred_at": "2026-03-01T10:00:00Z"})
        assert st == 201, b
        ids[who] = b["customer_id"]
        ids[f"{who}_email"] = b["id"]
    st, _, b = srv.req("POST", "/v1/interactions", {
        "customer_id": ids["a"], "channel": "sms", "direction": "inbound",
        "body": "the sms of a", "occurred_at": "2026-03-02T10:00:00Z"})
    assert st == 201, b
    ids["a_sms"] = b["id"]
    # a read of a's data, which a's access log shows
    st, _, b = srv.req("GET", f"/v1/customers/{ids['a']}/timeline", purpose="service")
    assert st == 200 and len(b["items"]) == 2, b
    # a head over all of it, which the consent receipt below carries out of the database
    st, _, srv.sth = srv.req("POST", "/v1/audit/tree-heads")
    assert st == 201, srv.sth
    st, _, b = srv.req("POST", "/v1/consents", {
        "customer_id": ids["a"], "purpose": "marketing", "channel": "email", "state": "given",
        "method": "web_form"})
    assert st == 201, b
    ids["consent"] = b["id"]
    st, _, srv.receipt = srv.req("GET", f"/v1/consents/{ids['consent']}/receipt")
    assert st == 200, srv.receipt
    st, _, d = srv.req("POST", "/v1/consents/check", {
        "customer_id": ids["a"], "purpose": "marketing", "channel": "email"})
    assert st == 200 and d["allow"] is True, d
    srv.ids = ids
    srv.stop()  # a clean shutdown: a last head over every entry, here and in the heads file
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def _copy(srv, name):
    return copy_data(srv.data, os.path.join(srv.tmp, name))


def _sql(data, *stmts):
    edit_db(data, *stmts)


def _query(data, q):
    return [tuple(int(v) if v.lstrip("-").isdigit() else v for v in row)
            for row in query_db(data, q)]


def _verify(srv, data, *extra):
    return srv.cli("audit", "verify", "--data", data, *extra)


def _fails(srv, data, *needles, extra=()):
    rc, out, err = _verify(srv, data, *extra)
    assert rc == 1, (rc, out, err)
    for n in needles:
        assert n in err, (n, err)
    return err


def _metric(srv, kind):
    st, _, body = srv.req("GET", "/metrics", token=None)
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith(f'candor_integrity_errors_total{{kind="{kind}"}}'):
            return int(line.split()[-1])
    raise AssertionError("no integrity counter for " + kind)


def test_a_untouched_data_verifies(srv):
    rc, out, err = _verify(srv, srv.data)
    assert rc == 0, (out, err)
    assert "trusted heads found in the ledger" in out, out
    assert "1 consent events match their ledger entries and signed receipts" in out, out
    assert "the sealed fields of 3 interactions (5 values), 2 identities and 2 customers" in out


def test_b_an_entry_byte(srv):
    d = _copy(srv, "t-entry")
    seq = _query(d, "SELECT seq FROM audit_events WHERE action = 'timeline.read'")[0][0]
    _sql(d, "UPDATE audit_events SET entry = " + blob_replace(d, "entry", "service", "billing") +
         f" WHERE seq = {seq}")
    _fails(srv, d, f"FAILED at entry {seq}", "was altered")


def test_c_an_index_column_hides_a_read_from_the_access_log(srv):
    d = _copy(srv, "t-column")
    a, b = srv.ids["a"], srv.ids["b"]
    seq = _query(d, "SELECT seq FROM audit_events WHERE action = 'timeline.read'")[0][0]
    _sql(d, f"UPDATE audit_events SET customer_id = '{b}' WHERE seq = {seq}")
    _fails(srv, d, f"FAILED at entry {seq}", "its customer_id column was altered")
    for col, val in (("action", "'customer.read'"), ("actor_token", "'tok_x'"),
                     ("ts", "ts + 1")):
        d2 = _copy(srv, "t-column-" + col)
        _sql(d2, f"UPDATE audit_events SET {col} = {val} WHERE seq = {seq}")
        _fails(srv, d2, f"FAILED at entry {seq}", f"its {col} column was altered")
    # served: the moved read is refused in b's access log, not shown; a's no longer lists it
    s2 = Server(data=d, args=["--sth-interval", "3600"])
    try:
        body = assert_problem(s2.req("GET", f"/v1/customers/{b}/access-log", purpose="service"),
                              500, "integrity-error")
        assert f"audit entry {seq}: its customer_id column" in body["detail"], body
        assert _metric(s2, "audit_row") == 1
        st, _, log = s2.req("GET", f"/v1/customers/{a}/access-log", purpose="service")
        assert st == 200 and all(i["action"] != "timeline.read" for i in log["items"]), log
    finally:
        s2.stop()
    assert '"msg":"integrity.error","kind":"audit_row"' in s2.logs()
    s2.cleanup()


def test_d_a_cut_tail_with_its_heads(srv):
    d = _copy(srv, "t-tail")
    n = _query(d, "SELECT max(seq) FROM audit_events")[0][0]
    cut = n - 3
    # the rows, the heads that covered them and the Merkle nodes over them: the database alone
    # is consistent again
    _sql(d, f"DELETE FROM audit_events WHERE seq > {cut}",
         f"DELETE FROM audit_tree_heads WHERE tree_size > {cut}",
         f"DELETE FROM audit_nodes WHERE (idx + 1) << CAST(level AS INTEGER) > {cut}")
    rc, out, err = _verify(srv, d, "--ledger-only")
    assert rc == 1, out
    err = _fails(srv, d, f"audit entry {cut + 1} is missing", "audit-heads.jsonl", "truncated")
    # without the heads file, the head in a consent receipt (a witness) still catches a cut
    # below it
    os.remove(os.path.join(d, "audit-heads.jsonl"))
    receipt_size = srv.receipt["receipt"]["auditTreeHead"]["tree_size"]
    assert receipt_size == srv.sth["tree_size"]
    d2 = _copy(srv, "t-tail-receipt")
    os.remove(os.path.join(d2, "audit-heads.jsonl"))
    cut2 = receipt_size - 1
    _sql(d2, f"DELETE FROM audit_events WHERE seq > {cut2}",
         f"DELETE FROM audit_tree_heads WHERE tree_size > {cut2}",
         f"DELETE FROM audit_nodes WHERE (idx + 1) << CAST(level AS INTEGER) > {cut2}")
    rc, out, err = _verify(srv, d2, "--ledger-only")
    assert rc == 0, err  # nothing in the database tells
    receipt = os.path.join(srv.tmp, "receipt.json")
    with open(receipt, "w") as f:
        json.dump(srv.receipt, f)
    _fails(srv, d2, f"audit entry {cut2 + 1} is missing", "receipt.json", "truncated",
           extra=("--ledger-only", "--trusted-head", receipt))


def test_e_deleted_heads(srv):
    d = _copy(srv, "t-heads")
    _sql(d, "DELETE FROM audit_tree_heads")
    _fails(srv, d, "audit-heads.jsonl:1) is not in the database: signed tree heads were deleted")
    # a server started on it says so at start (counted) and in the API's verify
    s2 = Server(data=d, args=["--sth-interval", "3600"])
    try:
        assert _metric(s2, "tree_head") == 1
        st, _, v = s2.req("POST", "/v1/audit/verify")
        assert st == 200 and v["ok"] is False, v
        assert "is not in the database: signed tree heads were deleted" in v["detail"], v
    finally:
        s2.stop()
    s2.cleanup()
    # one head only, the newest
    d2 = _copy(srv, "t-heads-one")
    _sql(d2, "DELETE FROM audit_tree_heads WHERE tree_size = (SELECT max(tree_size) FROM "
             "audit_tree_heads)")
    _fails(srv, d2, "is not in the database")


def test_f_consent_columns(srv):
    cev, a = srv.ids["consent"], srv.ids["a"]
    for col, val in (("purpose", "'analytics'"), ("state_code", "4"), ("channel", "'sms'")):
        d = _copy(srv, "t-consent-" + col)
        _sql(d, f"UPDATE consent_events SET {col} = {val} WHERE id = '{cev}'")
        _fails(srv, d, f"consent event {cev}", f"its {col} column differs from its signed receipt")
    # served: the edited event does not count: a's consent is denied, the failure counted
    d = _copy(srv, "t-consent-served")
    _sql(d, f"UPDATE consent_events SET state = 'withdrawn', state_code = 4 WHERE id = '{cev}'")
    s2 = Server(data=d, args=["--sth-interval", "3600"])
    try:
        for purpose in ("marketing", "analytics"):
            st, _, dec = s2.req("POST", "/v1/consents/check", {
                "customer_id": a, "purpose": purpose, "channel": "email"})
            assert st == 200 and dec["allow"] is False and dec["reason"] == "invalidated", dec
        assert _metric(s2, "consent_event") == 1
    finally:
        s2.stop()
    assert f'"event_id":"{cev}"' in s2.logs()
    s2.cleanup()


def test_g_swapped_ciphertexts(srv):
    d = _copy(srv, "t-swap")
    em, sms = srv.ids["a_email"], srv.ids["a_sms"]
    _sql(d, f"UPDATE interactions SET body = (SELECT body FROM interactions WHERE id = '{em}') "
            f"WHERE id = '{sms}'")
    _fails(srv, d, f"interaction {sms}: its sealed body does not open under its row")
    s2 = Server(data=d, args=["--sth-interval", "3600"])
    try:
        for path in (f"/v1/customers/{srv.ids['a']}/timeline", f"/v1/interactions/{sms}"):
            body = assert_problem(s2.req("GET", path, purpose="service"), 500, "integrity-error")
            assert f"interaction {sms}: its sealed body does not belong to this row" in \
                body["detail"], body
            assert "the email of a" not in json.dumps(body)
        assert _metric(s2, "sealed_field") == 2
        # the untouched row of the same customer is still served
        st, _, b = s2.req("GET", f"/v1/interactions/{em}", purpose="service")
        assert st == 200 and b["body"] == "the email of a", b
    finally:
        s2.stop()
    logs = s2.logs()
    s2.cleanup()
    assert f'"interaction_id":"{sms}"' in logs and '"field":"body"' in logs
    assert "the email of a" not in logs


def test_h_moved_rows(srv):
    d = _copy(srv, "t-move")
    sms, b = srv.ids["a_sms"], srv.ids["b"]
    _sql(d, f"UPDATE interactions SET customer_id = '{b}' WHERE id = '{sms}'")
    _fails(srv, d, f"interaction {sms}: its sealed body does not open under its row")
    s2 = Server(data=d, args=["--sth-interval", "3600"])
    try:
        assert_problem(s2.req("GET", f"/v1/customers/{b}/timeline", purpose="service"), 500,
                       "integrity-error")
    finally:
        s2.stop()
        s2.cleanup()
    # an identity moved to the other customer
    d2 = _copy(srv, "t-move-identity")
    _sql(d2, f"UPDATE identities SET customer_id = '{b}' WHERE customer_id = '{srv.ids['a']}'")
    _fails(srv, d2, f"customer {b}: its identity (email) does not open under its key")


def test_i_edited_metadata(srv):
    sms = srv.ids["a_sms"]
    for col, val in (("channel", "'chat'"), ("direction", "'outbound'"),
                     ("occurred_at", "occurred_at - 86400000"), ("purpose", "'marketing'")):
        d = _copy(srv, "t-meta-" + col)
        _sql(d, f"UPDATE interactions SET {col} = {val} WHERE id = '{sms}'")
        _fails(srv, d, f"interaction {sms}: its sealed body does not open under its row",
               "channel, direction, occurred_at or purpose was edited")


def test_j_every_edit_at_once_is_reported_by_kind(srv):
    """One run names the first edit of each kind: the ledger, the consent events, the rows."""
    d = _copy(srv, "t-all")
    _sql(d, "UPDATE audit_events SET action = 'x' WHERE seq = 3",
         f"UPDATE consent_events SET purpose = 'analytics'",
         f"UPDATE interactions SET channel = 'post' WHERE id = '{srv.ids['a_sms']}'")
    err = _fails(srv, d, "FAILED at entry 3", "consent event", f"interaction {srv.ids['a_sms']}")
    assert err.count("FAILED") == 3, err
