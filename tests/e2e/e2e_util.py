"""Helpers shared by the e2e modules (not a test module itself): counting what is stored, so a
rejected request can be shown to have changed nothing."""
import http.client
import json
import os
import subprocess

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
