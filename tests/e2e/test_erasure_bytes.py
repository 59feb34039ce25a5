"""Erasure on the raw bytes, through the public interface: a customer's sealed values and data
key are captured as stored, the customer is erased by a data-subject request while two clients
keep sending messages from the same address, and then the database file and its write-ahead
log are searched byte by byte. Nothing of the erased customer may be left: no wrapped key, no
ciphertext (under a key that no longer exists it would be undecryptable, but on SQLite, with
secure_delete and the log checkpointed, it is simply gone), no plaintext, and no row filed
under them; every row left opens under its own customer's key (`candor audit verify`). An
export made afterwards is refused: nothing of theirs is held."""

import threading
import time

from e2e_util import sql, stored_bytes
from harness import Server, assert_problem, skip_unless_sqlite

EMAIL = "shred.me@example.org"


def setup_module():
    srv = Server()
    srv.dpo = srv.token("compliance", "Dana (DPO office)")
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def send(srv, text):
    return srv.req("POST", "/v1/interactions", {
        "identity": {"type": "email", "value": EMAIL}, "channel": "email",
        "direction": "inbound", "subject": "About me", "body": text})


def sealed_values(srv, cid):
    """Every sealed value and key of the customer as stored (hex), long enough to be unique."""
    rows = sql(srv, f"SELECT hex(key_wrapped) FROM customers WHERE id = '{cid}';"
                    f"SELECT hex(display_name) FROM customers WHERE id = '{cid}';"
                    f"SELECT hex(value) FROM identities WHERE customer_id = '{cid}';"
                    f"SELECT hex(body) FROM interactions WHERE customer_id = '{cid}';"
                    f"SELECT hex(subject) FROM interactions WHERE customer_id = '{cid}'")
    return [bytes.fromhex(h)[:48] for h in rows.split() if len(h) >= 64]


def test_erasure_leaves_no_bytes_while_messages_keep_coming(srv):
    skip_unless_sqlite("secure_delete and a truncated log: PostgreSQL keeps old row versions "
                       "until VACUUM (docs/crypto.md)")
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": "Sam Shred", "jurisdiction": "DE",
        "identities": [{"type": "email", "value": EMAIL}]})
    assert st == 201, c
    cid = c["id"]
    secrets = [f"diagnosis-{i}-xq7" for i in range(20)]
    for s in secrets:
        st, _, it = send(srv, f"my {s} is private")
        assert st == 201 and it["customer_id"] == cid, it
    before = sealed_values(srv, cid)
    assert len(before) >= 1 + 1 + 1 + 20 + 20
    raw = stored_bytes(srv)
    # The search sees them now: otherwise their absence afterwards would prove nothing.
    assert all(v in raw for v in before)
    assert not any(s.encode() in raw for s in secrets)  # sealed from the start

    st, _, acc = srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": "access"},
                         token=srv.dpo)
    srv.req("POST", f"/v1/dsar/{acc['id']}/transition", {"state": "in_progress"}, token=srv.dpo)
    st, _, r = srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": "erasure"},
                       token=srv.dpo)
    rid = r["id"]
    st, _, _ = srv.req("POST", f"/v1/dsar/{rid}/transition", {"state": "in_progress"},
                       token=srv.dpo)
    assert st == 200

    stop = threading.Event()
    sent = []

    def feeder(n):
        i = 0
        while not stop.is_set():
            st, _, it = send(srv, f"later message {n}-{i}")
            sent.append((st, it.get("customer_id") if isinstance(it, dict) else None))
            i += 1

    threads = [threading.Thread(target=feeder, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    while len(sent) < 10:
        time.sleep(0.01)
    st, _, done = srv.req("POST", f"/v1/dsar/{rid}/fulfilment", {}, token=srv.dpo)
    assert st == 200 and done["state"] == "completed", done
    at_erasure = len(sent)
    while len(sent) < at_erasure + 10:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert all(st == 201 for st, _ in sent), [s for s in sent if s[0] != 201][:3]
    # Messages after the erasure started a new customer; none is filed under the erased one.
    assert int(sql(srv, f"SELECT count(*) FROM interactions WHERE customer_id = '{cid}'")) == 0
    assert int(sql(srv, f"SELECT count(*) FROM identities WHERE customer_id = '{cid}'")) == 0
    assert sql(srv, f"SELECT key_wrapped IS NULL FROM customers WHERE id = '{cid}'") == "1"
    later = {c for st, c in sent[at_erasure:]}
    assert cid not in later and len(later) == 1, later

    raw = stored_bytes(srv)
    left = [i for i, v in enumerate(before) if v in raw]
    assert not left, f"{len(left)} sealed values of the erased customer are still on disk"
    assert not any(s.encode() in raw for s in secrets)
    assert EMAIL.encode() not in raw and b"Sam Shred" not in raw

    # Every row left opens under its own customer's key, offline.
    srv.stop()
    rc, out, err = srv.cli("audit", "verify", "--data", srv.data)
    assert rc == 0, (out, err)
    srv.start()
    # Nothing of theirs is held: an export made now is refused, and so is a new request.
    body = assert_problem(srv.req("GET", f"/v1/dsar/{acc['id']}/export", token=srv.dpo,
                                  purpose="legal_obligation"), 409, "conflict")
    assert "erased" in body["detail"]
    body = assert_problem(srv.req("POST", "/v1/dsar", {"customer_id": cid, "type": "access"},
                                  token=srv.dpo), 409, "conflict")
    assert "erased" in body["detail"]
