"""Helpers shared by the e2e modules (not a test module itself): counting what is stored, so a
rejected request can be shown to have changed nothing."""
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import time

from harness import free_port

TABLES = ("customers", "identities", "interactions", "idempotency", "merges", "tokens")


def sql(srv, query):
    """Runs one query with the sqlite3 CLI on the server's database (WAL allows a concurrent
    reader) and returns stdout stripped."""
    p = subprocess.run(["sqlite3", os.path.join(srv.data, "candor.db"), query],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


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
    """Edits the database file of a stopped server directly, as someone with access to the file
    would: the sqlite3 shell, or Python's sqlite3 module when the shell is missing."""
    db = os.path.join(data, "candor.db")
    if shutil.which("sqlite3"):
        p = subprocess.run(["sqlite3", db], input=";\n".join(stmts) + ";\n", text=True,
                           capture_output=True)
        assert p.returncode == 0, p.stderr
    else:
        c = sqlite3.connect(db)
        for s in stmts:
            c.execute(s)
        c.commit()
        c.close()
