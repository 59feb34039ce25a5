"""Helpers shared by the e2e modules (not a test module itself): counting what is stored, so a
rejected request can be shown to have changed nothing, and reaching a server's database behind
its back on either backend (the sqlite3 shell, or psql)."""
import glob
import http.client
import json
import os
import shutil
import subprocess
import time

from harness import DB_URL_FILE, db_url_of, free_port, pg_cluster

TABLES = ("customers", "identities", "interactions", "idempotency", "merges", "tokens")


def data_sql(data, query):
    """Runs SQL (one or more statements, one session) on the database of a data directory and
    returns stdout stripped, rows as a|b lines: the sqlite3 shell on DIR/candor.db (WAL allows a
    concurrent reader), or psql on the PostgreSQL database in DIR/database.url."""
    url = db_url_of(data)
    if url:
        import pgcluster
        return pg_cluster(url).psql(query, db=pgcluster.db_of(url))
    p = subprocess.run(["sqlite3", os.path.join(data, "candor.db")], input=query + ";\n",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def sql(srv, query):
    """data_sql on a server's data directory."""
    return data_sql(srv.data, query)


def integrity(srv):
    """The database's own consistency check: "ok", or what it reported. SQLite: PRAGMA
    integrity_check. PostgreSQL: amcheck's bt_index_check of every B-tree index of the schema
    (PostgreSQL checks heap pages as it reads them)."""
    url = srv.db_url
    if url is None:
        return sql(srv, "PRAGMA integrity_check")
    import pgcluster
    p = pg_cluster(url).psql(
        "CREATE EXTENSION IF NOT EXISTS amcheck; "
        "SELECT count(bt_index_check(c.oid)) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE a.amname = 'btree' AND c.relnamespace = 'public'::regnamespace",
        db=pgcluster.db_of(url), check=False)
    return "ok" if p.returncode == 0 and int(p.stdout.strip() or 0) > 0 else p.stderr


def copy_data(src, dst):
    """A copy of a stopped server's data directory and of its database (on PostgreSQL a new
    database made from the old one as a template), for tests that tamper with a copy."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    url = db_url_of(src)
    if url:
        import pgcluster
        c = pg_cluster(url)
        name = f"copy_{os.getpid()}_{int(time.time() * 1000) % 100000000}"
        c.psql(f'CREATE DATABASE "{name}" TEMPLATE "{pgcluster.db_of(url)}"')
        os.chmod(os.path.join(dst, DB_URL_FILE), 0o600)
        with open(os.path.join(dst, DB_URL_FILE), "w") as f:
            f.write(c.url(name) + "\n")
    return dst


def stored_bytes(srv):
    """Every byte the database has put in files: candor.db and its WAL, or on PostgreSQL (after a
    CHECKPOINT, so the tables are written out too) the database's own files and the WAL
    segments written since the server was created."""
    url = srv.db_url
    out = b""
    if url is None:
        for suffix in ("", "-wal", "-shm"):
            path = os.path.join(srv.data, "candor.db" + suffix)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out += f.read()
        return out
    import pgcluster
    c = pg_cluster(url)
    db = pgcluster.db_of(url)
    c.psql("CHECKPOINT")
    oid = c.psql(f"SELECT oid FROM pg_database WHERE datname = '{db}'")
    files = glob.glob(os.path.join(c.data, "base", oid, "*"))
    files += [p for p in glob.glob(os.path.join(c.data, "pg_wal", "0*"))
              if os.path.getmtime(p) >= srv.created - 1]
    for path in files:
        try:
            with open(path, "rb") as f:
                out += f.read()
        except FileNotFoundError:
            pass  # the server removed it meanwhile (a recycled WAL segment, a cache file)
    assert out
    return out


def counts(srv):
    """Row counts of every domain table: equal before and after means nothing was stored."""
    out = sql(srv, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES))
    return dict((l.split("|")[0], int(l.split("|")[1])) for l in out.splitlines())


def timeline(srv, cid, **q):
    """Every item of a customer's timeline, walking all pages."""
    items, cursor = [], None
    while True:
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        path = f"/v1/customers/{cid}/timeline?limit=200" + (f"&{qs}" if qs else "")
        if cursor:
            path += "&cursor=" + cursor
        st, _, b = srv.req("GET", path, purpose="service")
        assert st == 200, (st, b)
        items += b["items"]
        cursor = b["next_cursor"]
        if not cursor:
            return items


def interaction(cid, **kw):
    body = {"customer_id": cid, "channel": "chat", "direction": "inbound", "body": "hello"}
    body.update(kw)
    return body


def ndjson(srv, body):
    """POST /v1/consents/check/bulk; returns (status, content type, parsed lines)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        c.request("POST", "/v1/consents/check/bulk", body=json.dumps(body).encode(),
                  headers={"Authorization": "Bearer " + srv.admin,
                           "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read().decode()
        return r.status, r.getheader("Content-Type"), [json.loads(x) for x in data.splitlines()]
    finally:
        c.close()


def plain_server(binary, data, env, cwd, log, preexec_fn=None):
    """Starts `binary serve --data data` on a free port from cwd, without --rules (it finds
    them itself), and waits for /healthz. Returns (process, port)."""
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--data", data, "--listen", f"127.0.0.1:{port}"],
                            cwd=cwd, env=env, stdout=log, stderr=log, preexec_fn=preexec_fn)
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, open(log.name).read()
        try:
            if plain_req(port, None, "GET", "/healthz")[0] == 200:
                return proc, port
        except OSError:
            assert time.time() < deadline, open(log.name).read()
            time.sleep(0.05)


def plain_req(port, token, method, path, body=None, purpose=None):
    """One JSON request; returns (status, parsed body or None)."""
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    if purpose:
        h["Candor-Purpose"] = purpose
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        payload = r.read()
    finally:
        c.close()
    return r.status, json.loads(payload) if payload else None


def edit_db(data, *stmts):
    """Edits the database of a stopped server directly, as someone with access to it would:
    the sqlite3 shell on the file, or psql on the PostgreSQL database."""
    data_sql(data, ";\n".join(stmts))


def query_db(data, q):
    """The rows of a query on a data directory's database, as tuples of strings."""
    return [tuple(line.split("|")) for line in data_sql(data, q).splitlines()]


def blob_replace(data, col, old, new):
    """SQL for the bytes of column col with the text old replaced by new, in the dialect of the
    data directory's database."""
    if db_url_of(data):
        return f"convert_to(replace(convert_from({col}, 'UTF8'), '{old}', '{new}'), 'UTF8')"
    return f"CAST(replace(CAST({col} AS TEXT), '{old}', '{new}') AS BLOB)"
