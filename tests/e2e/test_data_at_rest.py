"""Data at rest: the data directory and every file in it belong to their owner alone; thread
ids and Idempotency-Keys never reach the database files in clear; a database made by an older
candor is converted (plaintext gone from the files, identities normalised again, collisions
reported as possible duplicates, never merged). On PostgreSQL the database's files are the
cluster's (PostgreSQL makes them 0600 in a 0700 directory); what is asserted there is that the
data directory holds keys and the URL only, and that no plaintext reaches the database's files
or its write-ahead log."""
import json
import os
import shutil
import stat
import subprocess
import tempfile

from e2e_util import data_sql, stored_bytes, timeline
from pgcluster import db_of
from harness import (BINARY, DB_URL_FILE, ROOT, Server, assert_problem, init_args, pg_cluster,
                     skip_unless_postgres, skip_unless_sqlite)

SECRET_THREAD = "alice.secret@example.com"
SECRET_KEY = "order-for-bob.secret@example.com"


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cli(*args, env=None):
    p = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=300,
                       env=env or dict(os.environ))
    return p.returncode, p.stdout, p.stderr


def test_init_refuses_a_directory_others_can_read_and_creates_its_own_0700(srv):
    tmp = tempfile.mkdtemp(prefix="candor-e2e-modes-")
    try:
        d = os.path.join(tmp, "data")
        os.mkdir(d, 0o755)
        os.chmod(d, 0o755)
        rc, out, err = cli(*init_args(d))
        assert rc != 0 and "chmod 700" in err and "group or others" in err, (rc, out, err)
        assert os.listdir(d) == [], os.listdir(d)
        os.chmod(d, 0o700)
        rc, out, err = cli(*init_args(d))
        assert rc == 0, err
        fresh = os.path.join(tmp, "fresh")
        assert cli(*init_args(fresh))[0] == 0
        assert mode(fresh) == 0o700, oct(mode(fresh))
        for name in os.listdir(d):
            assert mode(os.path.join(d, name)) == 0o600, (name, oct(mode(os.path.join(d, name))))
        # Every command refuses the directory once group or others may use it.
        os.chmod(d, 0o750)
        rc, _, err = cli("token", "list", "--data", d)
        assert rc != 0 and "chmod 700" in err, err
        os.chmod(d, 0o700)
        assert cli("token", "list", "--data", d)[0] == 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_database_files_are_0600_while_serving(srv):
    st, _, _ = srv.req("POST", "/v1/interactions", {
        "identity": {"type": "email", "value": "modes@example.com"}, "channel": "email",
        "direction": "inbound", "body": "hi"})
    assert st == 201
    names = [n for n in os.listdir(srv.data) if n.startswith("candor.db")]
    if srv.db_url:
        # The database lives in the cluster; the directory names it and holds the keys.
        assert names == [] and DB_URL_FILE in os.listdir(srv.data), os.listdir(srv.data)
        c = pg_cluster(srv.db_url)
        oid = c.psql("SELECT oid FROM pg_database WHERE datname = current_database()",
                     db=db_of(srv.db_url))
        files = os.listdir(os.path.join(c.data, "base", oid))
        assert files and all(mode(os.path.join(c.data, "base", oid, f)) == 0o600 for f in files)
        assert mode(c.data) == 0o700
    else:
        assert {"candor.db", "candor.db-wal", "candor.db-shm"} <= set(names), names
    for name in os.listdir(srv.data):
        assert mode(os.path.join(srv.data, name)) == 0o600, (name, oct(mode(os.path.join(srv.data, name))))
    assert mode(srv.data) == 0o700


def test_thread_ids_and_idempotency_keys_never_stored_in_clear(srv):
    body = {"identity": {"type": "email", "value": "threads@example.com"}, "channel": "email",
            "direction": "inbound", "body": "about my order", "thread_id": SECRET_THREAD}
    # The answer shows the thread id (conversation data) under a purpose that may see it.
    st, _, first = srv.req("POST", "/v1/interactions", body, purpose="service",
                           headers={"Idempotency-Key": SECRET_KEY})
    assert st == 201 and first["thread_id"] == SECRET_THREAD, first
    # The key still replays, and a different request under it is still refused.
    st, _, again = srv.req("POST", "/v1/interactions", body, purpose="service",
                           headers={"Idempotency-Key": SECRET_KEY})
    assert st == 200 and again["id"] == first["id"] and again["thread_id"] == SECRET_THREAD, again
    other = dict(body, body="something else")
    assert_problem(srv.req("POST", "/v1/interactions", other,
                           headers={"Idempotency-Key": SECRET_KEY}), 422, "idempotency-key-reused")
    # Threading works: the thread's interactions are found by their thread id.
    cid = first["customer_id"]
    st, _, second = srv.req("POST", "/v1/interactions", dict(body, body="second"))
    assert st == 201
    st, _, third = srv.req("POST", "/v1/interactions", dict(body, body="third", thread_id="other"))
    assert st == 201
    st, _, page = srv.req("GET", f"/v1/customers/{cid}/timeline?thread_id={SECRET_THREAD}",
                          purpose="service")
    assert st == 200 and {i["id"] for i in page["items"]} == {first["id"], second["id"]}, page
    assert all(i["thread_id"] == SECRET_THREAD for i in page["items"]), page
    # A purpose that may not see the conversation sees no thread id.
    st, _, billing = srv.req("GET", f"/v1/customers/{cid}/timeline", purpose="billing")
    assert st == 200 and all("thread_id" not in i for i in billing["items"]), billing
    raw = stored_bytes(srv)
    assert SECRET_THREAD.encode() not in raw
    assert SECRET_KEY.encode() not in raw


def fixture_copy():
    tmp = tempfile.mkdtemp(prefix="candor-e2e-upgrade-")
    data = os.path.join(tmp, "data")
    shutil.copytree(os.path.join(ROOT, "tests", "e2e", "fixtures", "schema8"), data)
    os.chmod(data, 0o700)
    for name in os.listdir(data):
        os.chmod(os.path.join(data, name), 0o600)
    with open(os.path.join(ROOT, "tests", "e2e", "fixtures", "schema8.json")) as f:
        return tmp, data, json.load(f)


def test_an_older_database_is_converted_and_collisions_reported(srv):
    skip_unless_sqlite("the fixture is a SQLite database of schema 8; a PostgreSQL database "
                       "begins at schema 9 (test_the_conversion_at_open_runs_on_postgresql)")
    tmp, data, ids = fixture_copy()
    old = Server(data=data)
    try:
        raw = stored_bytes(old)
        assert SECRET_THREAD.encode() not in raw and SECRET_KEY.encode() not in raw
        # The converted key replays the interaction it recorded.
        body = {"identity": {"type": "email", "value": "ana@example.com"}, "channel": "email",
                "direction": "inbound", "body": "hello", "thread_id": SECRET_THREAD}
        st, _, it = old.req("POST", "/v1/interactions", body, purpose="service",
                            headers={"Idempotency-Key": SECRET_KEY})
        assert st == 200 and it["id"] == ids["ana_interaction"], it
        assert it["thread_id"] == SECRET_THREAD, it
        # The fullwidth customer was not merged, but reported; so was the Cyrillic look-alike.
        st, _, links = old.req("GET", "/v1/possible-duplicates", purpose="service")
        assert st == 200, links
        pairs = {(l["reason"], frozenset((l["customer_id"], l["other_customer_id"])))
                 for l in links["items"]}
        assert ("normalisation", frozenset((ids["fullwidth"], ids["ana"]))) in pairs, links
        assert any(r == "confusable" and ids["cyrillic"] in p for r, p in pairs), links
        st, _, c = old.req("GET", "/v1/customers/" + ids["fullwidth"], purpose="service")
        assert st == 200 and c["status"] == "active", c
        # A new message from the fullwidth spelling goes to the customer who held it first.
        fw = dict(body, identity={"type": "email", "value": "\uff41\uff4e\uff41@example.com"})
        fw.pop("thread_id")
        st, _, it = old.req("POST", "/v1/interactions", fw)
        assert st == 201 and it["customer_id"] == ids["ana"] and not it["customer_created"], it
        assert "core.upgraded" in old.logs()
    finally:
        old.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    # Files of an older database with wider modes were made private.
    tmp, data, ids = fixture_copy()
    try:
        os.chmod(os.path.join(data, "candor.db"), 0o644)
        assert cli("token", "list", "--data", data)[0] == 0
        assert mode(os.path.join(data, "candor.db")) == 0o600
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_conversion_at_open_runs_on_postgresql(srv):
    """The statements that convert an older database's plaintext, on PostgreSQL: an interaction
    put back in the form schema 8 kept (thread id in clear, listed for resealing) and every
    identity listed for normalisation again are converted at the next start."""
    skip_unless_postgres("test_an_older_database_is_converted_and_collisions_reported covers "
                         "SQLite, with a real database of schema 8")
    s = Server()
    try:
        body = {"identity": {"type": "email", "value": "convert@example.com"},
                "channel": "email", "direction": "inbound", "body": "hi",
                "thread_id": "conv-thread"}
        st, _, it = s.req("POST", "/v1/interactions", body)
        assert st == 201, it
        s.stop()
        data_sql(s.data, "UPDATE interactions SET thread_id = 'conv-thread', thread = NULL, "
                         f"thread_hash = NULL WHERE id = '{it['id']}'; "
                         f"INSERT INTO thread_reseal(id) VALUES('{it['id']}'); "
                         "INSERT INTO identity_reindex(kind, lookup) "
                         "SELECT kind, lookup FROM identities")
        s.start()
        assert "core.upgraded" in s.logs(), s.logs()[-2000:]
        assert data_sql(s.data, "SELECT (SELECT count(*) FROM thread_reseal) + "
                                "(SELECT count(*) FROM identity_reindex) + (SELECT count(*) "
                                "FROM interactions WHERE thread_id IS NOT NULL)") == "0"
        items = timeline(s, it["customer_id"], thread_id="conv-thread")
        assert [i["id"] for i in items] == [it["id"]], items
        st, _, again = s.req("POST", "/v1/interactions", dict(body, body="again"))
        assert st == 201 and again["customer_id"] == it["customer_id"], again
    finally:
        s.stop()
        s.cleanup()
