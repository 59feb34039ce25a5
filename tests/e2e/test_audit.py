"""The audit ledger as an auditor meets it: data goes in through the API, a tree head is signed,
proofs from the API verify with an independent RFC 9162 implementation (below), and every kind
of tampering with the database (the SQLite file through the sqlite3 shell, the PostgreSQL
database through psql) is caught by `candor audit verify`, naming the entry. An export
verifies offline with only the public key, and fails when one line is edited."""
import hashlib
import json
import os

from e2e_util import blob_replace, copy_data, edit_db
from harness import Server, assert_problem


# ---- RFC 9162 §2.1.3.2 / §2.1.4.2 verification, written from the RFC --------------------------

def _h(b):
    return hashlib.sha256(b).digest()


def leaf_hash(data):
    return _h(b"\x00" + data)


def node_hash(l, r):
    return _h(b"\x01" + l + r)


def verify_inclusion(leaf, index, size, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:  # a power of two: first_root is the first node
        proof = [first_root] + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def sth_message(size, ts, root):
    dom = b"candor.audit.sth.v1"
    return len(dom).to_bytes(8, "big") + dom + size.to_bytes(8, "big") + ts.to_bytes(8, "big") + root


# ---- the server --------------------------------------------------------------------------------

def setup_module():
    srv = Server(args=["--sth-interval", "3600"])
    for i in range(9):
        st, _, b = srv.req("POST", "/v1/interactions", {
            "identity": {"type": "email", "value": f"audit{i}@example.com"},
            "channel": "email", "direction": "inbound", "body": f"message {i}"})
        assert st == 201, b
    st, _, srv.sth = srv.req("POST", "/v1/audit/tree-heads")
    assert st == 201, srv.sth
    st, _, srv.pub = srv.req("GET", "/v1/audit/public-key", token=None)
    assert st == 200, srv.pub
    # a little more after the head, so there is a tail beyond it
    for i in range(3):
        srv.req("POST", "/v1/interactions", {
            "identity": {"type": "email", "value": f"late{i}@example.com"},
            "channel": "chat", "direction": "inbound", "body": "later"})
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def test_a_tree_head_is_signed_and_verifies(srv):
    sth, pub = srv.sth, srv.pub
    assert sth["tree_size"] >= 18 and len(sth["root_hash"]) == 64
    st, _, latest = srv.req("GET", "/v1/audit/tree-heads/latest")
    assert st == 200 and latest == sth
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub["public_key_hex"]))
    key.verify(bytes.fromhex(sth["signature"]),
               sth_message(sth["tree_size"], sth["timestamp"], bytes.fromhex(sth["root_hash"])))
    assert pub["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    # signing again without growth returns the same head
    st, _, again = srv.req("POST", "/v1/audit/tree-heads")
    assert st in (200, 201)


def test_b_inclusion_proofs_verify_independently(srv):
    sth = srv.sth
    n, root = sth["tree_size"], bytes.fromhex(sth["root_hash"])
    for seq in range(1, n + 1):
        st, _, p = srv.req("GET", f"/v1/audit/proofs/inclusion?seq={seq}&tree_size={n}")
        assert st == 200, p
        leaf = leaf_hash(p["entry"].encode())
        assert leaf.hex() == p["leaf_hash"]
        assert json.loads(p["entry"])["seq"] == seq
        path = [bytes.fromhex(x) for x in p["audit_path"]]
        assert verify_inclusion(leaf, seq - 1, n, path, root), seq
        # a wrong leaf does not verify
        assert not verify_inclusion(leaf_hash(b"x"), seq - 1, n, path, root)


def test_c_consistency_proofs_verify_independently(srv):
    st, _, latest = srv.req("POST", "/v1/audit/tree-heads")
    assert st in (200, 201), latest
    assert latest["tree_size"] > srv.sth["tree_size"]
    n2 = latest["tree_size"]
    r2 = bytes.fromhex(latest["root_hash"])
    for m in range(1, n2 + 1):
        st, _, c = srv.req("GET", f"/v1/audit/proofs/consistency?first={m}&second={n2}")
        assert st == 200, c
        assert c["second_root"] == latest["root_hash"]
        proof = [bytes.fromhex(x) for x in c["proof"]]
        assert verify_consistency(m, n2, bytes.fromhex(c["first_root"]), r2, proof), m
    first = srv.sth["tree_size"]
    st, _, c = srv.req("GET", f"/v1/audit/proofs/consistency?first={first}&second={n2}")
    assert c["first_root"] == srv.sth["root_hash"]


def test_d_proofs_for_what_does_not_exist_are_problems(srv):
    big = 10 ** 9
    assert_problem(srv.req("GET", f"/v1/audit/proofs/inclusion?seq=1&tree_size={big}"), 404,
                   "not-found")
    assert_problem(srv.req("GET", "/v1/audit/proofs/inclusion?seq=5&tree_size=3"), 404,
                   "not-found")
    assert_problem(srv.req("GET", "/v1/audit/proofs/inclusion?seq=0&tree_size=3"), 400,
                   "invalid-request")
    assert_problem(srv.req("GET", "/v1/audit/proofs/inclusion?seq=abc&tree_size=3"), 400,
                   "invalid-request")
    assert_problem(srv.req("GET", "/v1/audit/proofs/inclusion?tree_size=3"), 400,
                   "invalid-request")
    assert_problem(srv.req("GET", f"/v1/audit/proofs/consistency?first=1&second={big}"), 404,
                   "not-found")
    assert_problem(srv.req("GET", "/v1/audit/proofs/consistency?first=0&second=3"), 400,
                   "invalid-request")
    assert_problem(srv.req("GET", "/v1/audit/proofs/consistency?first=4&second=3"), 400,
                   "invalid-request")


def test_e_roles(srv):
    agent = srv.token("agent")
    assert_problem(srv.req("GET", "/v1/audit/tree-heads/latest", token=agent), 403, "forbidden")
    comp = srv.token("compliance")
    assert srv.req("GET", "/v1/audit/tree-heads/latest", token=comp)[0] == 200


# ---- offline: stop the server, then tamper with copies of the data directory -------------------

def _stopped(srv):
    if srv.proc and srv.proc.poll() is None:
        srv.stop()
    return srv.data


def _copy(srv, name):
    return copy_data(_stopped(srv), os.path.join(srv.tmp, name))


def _sql(data, *stmts):
    edit_db(data, *stmts)


def _verify_fails(srv, data, seq):
    rc, out, err = srv.cli("audit", "verify", "--data", data)
    assert rc == 1, (rc, out, err)
    assert f"entry {seq}" in err, err
    return err


def test_f_untouched_ledger_verifies(srv):
    data = _stopped(srv)
    rc, out, err = srv.cli("audit", "verify", "--data", data)
    assert rc == 0, err
    # the head signed at start, the two the tests asked for and the one at shutdown, each
    # also a line of the heads file
    assert "ok:" in out and "4 signed tree heads" in out, out
    assert "4 trusted heads found in the ledger" in out, out
    with open(os.path.join(data, "audit-heads.jsonl")) as f:
        assert len(f.read().splitlines()) == 4


def test_g_changed_byte_is_named(srv):
    d = _copy(srv, "t-byte")
    _sql(d, "UPDATE audit_events SET entry = " + blob_replace(d, "entry", '"ok"', '"oK"') +
         " WHERE seq = 7")
    _verify_fails(srv, d, 7)


def test_h_deleted_row_is_named(srv):
    d = _copy(srv, "t-delete")
    _sql(d, "DELETE FROM audit_events WHERE seq = 5")
    _verify_fails(srv, d, 5)


def test_i_reordered_rows_are_named(srv):
    d = _copy(srv, "t-swap")
    _sql(d,
         "CREATE TEMP TABLE t AS SELECT seq, ts, entry, prev_hash, hash FROM audit_events "
         "WHERE seq IN (4, 9)",
         "UPDATE audit_events SET ts = (SELECT ts FROM t WHERE t.seq = 13 - audit_events.seq), "
         "entry = (SELECT entry FROM t WHERE t.seq = 13 - audit_events.seq), "
         "prev_hash = (SELECT prev_hash FROM t WHERE t.seq = 13 - audit_events.seq), "
         "hash = (SELECT hash FROM t WHERE t.seq = 13 - audit_events.seq) WHERE seq IN (4, 9)")
    _verify_fails(srv, d, 4)


def test_j_truncated_tail_after_a_tree_head_is_named(srv):
    d = _copy(srv, "t-trunc")
    n = srv.sth["tree_size"]
    _sql(d, f"DELETE FROM audit_events WHERE seq > {n - 3}")
    err = _verify_fails(srv, d, n - 2)
    assert "truncated" in err, err


def test_k_export_verifies_offline_and_an_edit_fails(srv):
    data = _stopped(srv)
    exp = os.path.join(srv.tmp, "ledger.jsonl")
    rc, out, err = srv.cli("audit", "export", "--data", data, "--out", exp)
    assert rc == 0, err
    pem = os.path.join(srv.tmp, "pub.pem")
    with open(pem, "w") as f:
        f.write(srv.pub["public_key_pem"])
    sth = os.path.join(srv.tmp, "sth.json")
    with open(sth, "w") as f:
        json.dump(srv.sth, f)
    rc, out, err = srv.cli("audit", "verify", "--export", exp, "--pubkey", pem, "--tree-head", sth)
    assert rc == 0, err
    rc, out, err = srv.cli("audit", "verify", "--export", exp, "--pubkey",
                           srv.pub["public_key_hex"])
    assert rc == 0, err
    with open(exp) as f:
        lines = f.read().splitlines()
    # edit one entry line: a changed actor
    i = next(k for k, l in enumerate(lines) if '"seq":6,' in l)
    o = json.loads(lines[i])
    o["entry"] = o["entry"].replace('"ok"', '"OK"')
    bad = os.path.join(srv.tmp, "edited.jsonl")
    with open(bad, "w") as f:
        f.write("\n".join(lines[:i] + [json.dumps(o)] + lines[i + 1:]) + "\n")
    rc, out, err = srv.cli("audit", "verify", "--export", bad, "--pubkey", pem)
    assert rc == 1 and "entry 6" in err, (rc, err)
    # the tail cut after the published head (its line included): the pinned head catches it
    cut = os.path.join(srv.tmp, "cut.jsonl")
    n = srv.sth["tree_size"]
    keep = [l for l in lines if json.loads(l).get("type") == "entry" and json.loads(l)["seq"] < n - 1]
    with open(cut, "w") as f:
        f.write("\n".join(keep) + "\n")
    rc, out, err = srv.cli("audit", "verify", "--export", cut, "--pubkey", pem, "--tree-head", sth)
    assert rc == 1 and "truncated" in err and f"entry {n - 1}" in err, (rc, err)
    # a wrong key fails the signatures
    rc, out, err = srv.cli("audit", "verify", "--export", exp, "--pubkey", "11" * 32)
    assert rc != 0, err
