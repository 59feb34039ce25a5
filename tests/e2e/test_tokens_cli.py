"""Tokens over HTTP and the CLI: secrets shown once, revocation, roles; `candor --help` and
`--help` on each subcommand; init writes admin.token 0600 and refuses to run twice; a data
directory on PostgreSQL keeps its database's URL, and every command holds to that database."""
import json
import time
import os
import shutil
import stat

from harness import (DB_URL_FILE, Server, assert_problem, init_args, pg_cluster,
                     skip_unless_postgres)

SUBCOMMANDS = ["init", "serve", "token", "staff", "audit", "guard", "backup"]


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def test_token_create_list_revoke_over_http(srv):
    st, hdr, t = srv.req("POST", "/v1/tokens", {"role": "agent", "name": "Agent Alice"})
    assert st == 201, t
    assert t["role"] == "agent" and t["name"] == "Agent Alice" and t["id"].startswith("tok_")
    secret = t["token"]
    assert len(secret) >= 43, secret  # >= 256 bits, base64url
    # The secret works, and appears nowhere else.
    assert srv.req("GET", "/v1/customers", token=secret, purpose="service")[0] == 200
    st, _, lst = srv.req("GET", "/v1/tokens")
    assert st == 200 and t["id"] in [x["id"] for x in lst["items"]]
    assert secret not in json.dumps(lst)
    assert all("token" not in x and "hash" not in x for x in lst["items"]), lst
    mine = [x for x in lst["items"] if x["id"] == t["id"]][0]
    assert mine["revoked_at"] is None and mine["role"] == "agent"
    # Revoke: 204, then 401 for the token, and revoked_at is set; revoking again is 409.
    st, _, body = srv.req("DELETE", "/v1/tokens/" + t["id"])
    assert st == 204 and body == b"", (st, body)
    r = srv.req("GET", "/v1/customers", token=secret, purpose="service")
    assert_problem(r, 401, "unauthenticated")
    assert "revoked" in r[2]["detail"], r
    st, _, lst = srv.req("GET", "/v1/tokens")
    assert [x for x in lst["items"] if x["id"] == t["id"]][0]["revoked_at"]
    assert_problem(srv.req("DELETE", "/v1/tokens/" + t["id"]), 409, "conflict")
    for bad in ({"role": "root", "name": "x"}, {"role": "agent"}, {"name": "x"},
                {"role": "agent", "name": "x" * 101}):
        assert_problem(srv.req("POST", "/v1/tokens", bad), 400, "invalid-request")


def test_every_role_can_be_issued(srv):
    # Every role may list customers; config/policy.yaml lets each but compliance declare the
    # purpose service. Only admin manages tokens.
    for role in ("admin", "supervisor", "agent", "compliance", "integration"):
        tok = srv.token(role, f"{role} e2e")
        r = srv.req("GET", "/v1/customers", token=tok, purpose="service")
        if role == "compliance":
            assert_problem(r, 403, "purpose-not-permitted")
        else:
            assert r[0] == 200, (role, r)
        r = srv.req("GET", "/v1/customers", token=tok, purpose="legal_obligation")
        if role in ("admin", "compliance"):
            assert r[0] == 200, (role, r)
        else:
            assert_problem(r, 403, "purpose-not-permitted")
        r = srv.req("GET", "/v1/tokens", token=tok)
        if role == "admin":
            assert r[0] == 200, (role, r)
        else:
            assert_problem(r, 403, "forbidden")


def test_cli_token_create_list_revoke(srv):
    rc, out, err = srv.cli("token", "create", "--data", srv.data, "--role", "agent", "--name",
                           "CLI agent")
    assert rc == 0, err
    token = out.strip()
    assert token.startswith("cnd_") and "\n" not in token, out
    assert "shown only once" in err
    # The running server accepts a token the CLI created.
    assert srv.req("GET", "/v1/customers", token=token, purpose="service")[0] == 200
    rc, out, err = srv.cli("token", "list", "--data", srv.data)
    assert rc == 0 and "CLI agent" in out and "agent" in out and token not in out, out
    rc, out, err = srv.cli("token", "list", "--data", srv.data, "--format", "json")
    rows = json.loads(out)
    row = [r for r in rows if r["name"] == "CLI agent"][0]
    # The server has the token in its cache now; another process revokes it. The server's
    # cache reads the revocation counter at least every 100 ms (docs/architecture.md).
    assert srv.req("GET", "/v1/customers", token=token, purpose="service")[0] == 200
    rc, out, err = srv.cli("token", "revoke", row["id"], "--data", srv.data)
    assert rc == 0, err
    time.sleep(0.15)
    r = assert_problem(srv.req("GET", "/v1/customers", token=token, purpose="service"), 401,
                       "unauthenticated")
    assert "revoked" in r["detail"], r
    rc, _, err = srv.cli("token", "revoke", "tok_00000000000000000000000000", "--data", srv.data)
    assert rc != 0 and "no token" in err, err
    rc, _, err = srv.cli("token", "create", "--data", srv.data, "--role", "root", "--name", "x")
    assert rc != 0 and "--role" in err, err


def test_tokens_expire(srv):
    st, _, t = srv.req("POST", "/v1/tokens", {"role": "agent", "name": "short", "expires_in": 2})
    assert st == 201 and t["expires_at"], t
    st, _, forever = srv.req("POST", "/v1/tokens", {"role": "agent", "name": "forever"})
    assert st == 201 and forever["expires_at"] is None, forever
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    st, _, dated = srv.req("POST", "/v1/tokens", {"role": "agent", "name": "dated",
                                                   "expires_at": later})
    assert st == 201 and dated["expires_at"].startswith(later[:19]), dated
    assert srv.req("GET", "/v1/customers", token=t["token"], purpose="service")[0] == 200
    st, _, lst = srv.req("GET", "/v1/tokens")
    mine = {x["id"]: x for x in lst["items"]}
    assert mine[t["id"]]["status"] == "active" and mine[t["id"]]["expires_at"] == t["expires_at"]
    assert mine[forever["id"]]["expires_at"] is None
    time.sleep(2.1)
    r = assert_problem(srv.req("GET", "/v1/customers", token=t["token"], purpose="service"), 401,
                       "unauthenticated")
    assert "expired" in r["detail"], r
    st, _, lst = srv.req("GET", "/v1/tokens")
    assert {x["id"]: x for x in lst["items"]}[t["id"]]["status"] == "expired"
    for bad in ({"expires_in": 0}, {"expires_in": -5}, {"expires_in": "90d"},
                {"expires_in": 10 ** 12}, {"expires_at": "2001-01-01T00:00:00Z"},
                {"expires_at": "soon"}, {"expires_in": 60, "expires_at": later}):
        assert_problem(srv.req("POST", "/v1/tokens", dict({"role": "agent", "name": "x"}, **bad)),
                       400, "invalid-request")
    rc, out, err = srv.cli("token", "create", "--data", srv.data, "--role", "agent", "--name",
                           "ninety days", "--expires", "90d")
    assert rc == 0 and "expires" in err, err
    rc, out, err = srv.cli("token", "list", "--data", srv.data, "--format", "json")
    row = [x for x in json.loads(out) if x["name"] == "ninety days"][0]
    days = (time.mktime(time.strptime(row["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) -
            time.mktime(time.strptime(row["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))) / 86400
    assert abs(days - 90) < 0.01 and row["status"] == "active", row
    rc, out, _ = srv.cli("token", "list", "--data", srv.data)
    assert "expired" in out and row["expires_at"] in out, out
    for bad in ("0d", "90x", "d", "-3h", "2001-01-01T00:00:00Z", "99999y"):
        rc, _, err = srv.cli("token", "create", "--data", srv.data, "--role", "agent", "--name",
                             "bad", "--expires", bad)
        assert rc == 2 and "--expires" in err, (bad, rc, err)


def test_help_everywhere(srv):
    rc, out, err = srv.cli("--help")
    assert rc == 0 and "usage: candor" in out, (rc, out, err)
    for sub in SUBCOMMANDS:
        assert sub in out, (sub, out)
        rc, o, e = srv.cli(sub, "--help")
        assert rc == 0 and f"candor {sub}" in o and "--help" in o, (sub, rc, o, e)
    rc, _, err = srv.cli("frobnicate")
    assert rc != 0 and "unknown command" in err, err


def test_init_writes_admin_token_0600_and_refuses_twice(srv):
    path = os.path.join(srv.data, "admin.token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for key in ("master.key", "signing.key"):
        assert stat.S_IMODE(os.stat(os.path.join(srv.data, key)).st_mode) == 0o600, key
    d = os.path.join(srv.tmp, "second")
    rc, out, err = srv.cli(*init_args(d))
    assert rc == 0, err
    with open(os.path.join(d, "admin.token")) as f:
        first = f.read()
    rc, out, err = srv.cli(*init_args(d))
    assert rc != 0 and "already initialised" in err, (rc, err)
    with open(os.path.join(d, "admin.token")) as f:
        assert f.read() == first  # nothing overwritten
    rc, _, err = srv.cli("init")
    assert rc != 0 and "--data" in err, err


def test_serve_refuses_bad_options(srv):
    for args, needle in ((["--workers", "abc"], "--workers"), (["--max-body", "5"], "--max-body"),
                         (["--listen", "nohost"], "--listen"), (["--bogus"], "unknown option"),
                         (["--sth-interval", "0"], "--sth-interval"),
                         (["--statement-timeout", "-1"], "--statement-timeout")):
        rc, _, err = srv.cli("serve", "--data", srv.data, *args)
        assert rc != 0 and needle in err, (args, rc, err)


def test_a_data_directory_on_postgresql_holds_to_its_database(srv):
    skip_unless_postgres("database.url is PostgreSQL's; SQLite's database is DIR/candor.db")
    c = pg_cluster(srv.db_url)
    url = srv.db_url
    # The URL is kept 0600 beside the keys; the database holds the schema and the token.
    assert stat.S_IMODE(os.stat(os.path.join(srv.data, DB_URL_FILE)).st_mode) == 0o600
    rc, out, err = srv.cli("token", "list", "--data", srv.data)
    assert rc == 0 and "admin (candor init)" in out, (rc, out, err)
    # init: only a PostgreSQL URL, and never a database that already holds an instance.
    d = os.path.join(srv.tmp, "other")
    rc, _, err = srv.cli("init", "--data", d, "--db", "sqlite:/tmp/x.db")
    assert rc == 2 and "postgres://" in err, (rc, err)
    rc, _, err = srv.cli("init", "--data", d, "--db", url)
    assert rc == 1 and "already holds a Candor instance" in err, (rc, err)
    assert not os.path.exists(os.path.join(d, DB_URL_FILE))
    bad = url.replace("host=", "host=/nonexistent-")
    rc, _, err = srv.cli("init", "--data", os.path.join(srv.tmp, "nowhere"), "--db", bad)
    assert rc == 1 and "cannot connect to PostgreSQL" in err, (rc, err)
    # --db on a later command must name the directory's own database.
    other = c.create_database()
    rc, _, err = srv.cli("serve", "--data", srv.data, "--db", other, "--listen", "127.0.0.1:0")
    assert rc == 1 and "another database" in err, (rc, err)
    rc, _, err = srv.cli("backup", "--data", srv.data, "--db", other, "--out",
                         os.path.join(srv.tmp, "x.db"))
    assert rc == 1 and "another database" in err, (rc, err)
    # A directory with both a SQLite file and a URL is refused: whose keys are these?
    both = os.path.join(srv.tmp, "both")
    shutil.copytree(srv.data, both)
    open(os.path.join(both, "candor.db"), "w").close()
    rc, _, err = srv.cli("token", "list", "--data", both)
    assert rc == 1 and "both candor.db and database.url" in err, (rc, err)
    # A database.url that is not a PostgreSQL URL is refused, not opened as a file.
    os.unlink(os.path.join(both, "candor.db"))
    with open(os.path.join(both, DB_URL_FILE), "w") as f:
        f.write("/tmp/elsewhere.db\n")
    rc, _, err = srv.cli("token", "list", "--data", both)
    assert rc == 2 and "postgres://" in err, (rc, err)
    assert not os.path.exists("/tmp/elsewhere.db")
