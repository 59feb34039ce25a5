"""`candor export` and `candor import` through the CLI: a round trip between two deployments,
re-runs that store nothing twice, exports read for a named purpose and recorded, bad files
(malformed lines, wrong types, unknown purposes, a truncated last line) refused whole with their
line numbers, a record the deployment refuses named while the rest go on, CSV with a column
mapping and a Zendesk export."""
import json
import os
import shutil
import stat
import subprocess
import tempfile

from e2e_util import data_sql
from harness import BINARY, init_args

ADA = {"type": "customer", "id": "src-ada", "display_name": "Ada Lovelace",
       "identities": [{"type": "email", "value": "ada@example.com"}],
       "attributes": {"tier": "gold"}, "jurisdiction": "EU", "locale": "en-GB"}
GRACE = {"type": "customer", "id": "src-grace", "display_name": "Grace Hopper",
         "identities": [{"type": "phone", "value": "+1 202 555 0143"}], "restricted": True}


def interaction(i, customer, **kw):
    return {"type": "interaction", "id": f"src-int-{i}", "customer_id": customer,
            "channel": "email", "direction": "inbound",
            "occurred_at": f"2025-03-0{1 + i % 9}T10:00:00Z", "subject": f"Order {i}",
            "body": f"Where is my parcel number {i}?", **kw}


RECORDS = [ADA, interaction(1, "src-ada"), interaction(2, "src-ada", direction="outbound",
                                                       purpose="billing"),
           GRACE, interaction(3, "src-grace", metadata={"queue": "vip"}),
           {"type": "interaction", "id": "src-int-4", "channel": "sms", "direction": "inbound",
            "occurred_at": "2025-03-05T08:00:00Z", "body": "hello",
            "identity": {"type": "phone", "value": "+44 7700 900123"}}]


class Deployment:
    def __init__(self, tmp, name):
        self.data = os.path.join(tmp, name)
        self.run(*init_args(self.data), check=True)

    def run(self, *args, check=False):
        p = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"))
        if check:
            assert p.returncode == 0, (args, p.stderr)
        return p.returncode, p.stdout, p.stderr

    def imp(self, path, *args):
        return self.run("import", "--data", self.data, *args, path)

    def exp(self, *args):
        return self.run("export", "--data", self.data, *args)

    def count(self, table):
        return int(data_sql(self.data, f"SELECT count(*) FROM {table}"))

    def counts(self):
        return {t: self.count(t) for t in ("customers", "identities", "interactions")}

    def ledger(self):
        rc, out, err = self.run("audit", "export", "--data", self.data, check=True)
        return [json.loads(json.loads(line)["entry"]) for line in out.splitlines()
                if json.loads(line).get("type") == "entry"]


def setup_module():
    tmp = tempfile.mkdtemp(prefix="candor-e2e-transfer-")
    return {"tmp": tmp}


def teardown_module(ctx):
    shutil.rmtree(ctx["tmp"], ignore_errors=True)


def write(ctx, name, lines):
    path = os.path.join(ctx["tmp"], name)
    with open(path, "w") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def strip_ids(records):
    """Records as another deployment would hold them: without ids of either."""
    out = []
    for r in records:
        r = {k: v for k, v in r.items() if k not in ("id", "customer_id")}
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


def test_round_trip_between_deployments_and_reruns_store_nothing_twice(ctx):
    a = Deployment(ctx["tmp"], "a")
    src = write(ctx, "source.ndjson", RECORDS)
    rc, _, err = a.imp(src)
    assert rc == 0, err
    assert "6 records: 6 created, 0 already there, 0 refused" in err, err
    assert a.counts() == {"customers": 3, "identities": 3, "interactions": 4}
    # Again: every record is a replay.
    rc, _, err = a.imp(src)
    assert rc == 0 and "0 created, 6 already there" in err, err
    assert a.counts() == {"customers": 3, "identities": 3, "interactions": 4}

    # Grace's processing is restricted: service may not read her, and says so.
    rc, out, err = a.exp("--purpose", "service")
    assert rc == 0, err
    grace = data_sql(a.data, "SELECT id FROM customers WHERE restricted = 1")
    assert f"customer {grace}:" in err and "5 records" in err, err
    assert grace not in out
    # Moving a deployment is a legal obligation: it may read every customer and category.
    rc, out, err = a.exp("--purpose", "legal_obligation")
    assert rc == 0, err
    exported = [json.loads(line) for line in out.splitlines()]
    assert len(exported) == 7, exported  # three customers, four interactions
    assert "7 records" in err
    by_name = {c.get("display_name"): c for c in exported if c["type"] == "customer"}
    assert by_name["Ada Lovelace"]["identities"] == [{"type": "email",
                                                      "value": "ada@example.com"}]
    assert by_name["Ada Lovelace"]["attributes"] == {"tier": "gold"}
    assert by_name["Grace Hopper"]["restricted"] is True
    bodies = {i["body"] for i in exported if i["type"] == "interaction"}
    assert "Where is my parcel number 2?" in bodies
    # Every customer's read is in the ledger, with the purpose.
    reads = [e for e in a.ledger() if e["action"] in ("customer.read", "customer.export")]
    assert {e["customer_id"] for e in reads} == {c["id"] for c in exported
                                                 if c["type"] == "customer"}
    assert all(e.get("purpose") == "legal_obligation" for e in reads[-6:]), reads

    b = Deployment(ctx["tmp"], "b")
    dump = write(ctx, "a.ndjson", exported)
    rc, _, err = b.imp(dump)
    assert rc == 0 and "7 created" in err, err
    rc, _, err = b.imp(dump)
    assert rc == 0 and "0 created, 7 already there" in err, err
    assert b.counts() == a.counts()
    rc, out, err = b.exp("--purpose", "legal_obligation")
    assert rc == 0, err
    assert strip_ids(json.loads(line) for line in out.splitlines()) == strip_ids(exported)
    # Sealed per customer and recorded: the ledger and every sealed value verify.
    rc, out, err = b.run("audit", "verify", "--data", b.data)
    assert rc == 0, (out, err)
    assert "3 identities and 3 customers open under their rows" in out, out


def test_export_is_read_for_a_named_purpose(ctx):
    a = Deployment(ctx["tmp"], "purpose")
    assert a.imp(write(ctx, "p.ndjson", RECORDS[:3]))[0] == 0
    rc, out, err = a.exp()
    assert rc != 0 and out == "" and "--purpose is required" in err, err
    rc, out, err = a.exp("--purpose", "gossip")
    assert rc != 0 and out == "" and "unknown purpose" in err, err
    # Marketing needs the customer's consent, which none gave: nobody is exported, each
    # refusal is named and recorded.
    before = len(a.ledger())
    rc, out, err = a.exp("--purpose", "marketing")
    assert rc == 0 and out == "", (out, err)
    assert "consent" in err, err
    denied = [e for e in a.ledger()[before:] if e.get("outcome") == "denied"]
    assert len(denied) == 1 and denied[0]["purpose"] == "marketing", denied
    # A named customer only, into a file made 0600 that is never replaced.
    cid = data_sql(a.data, "SELECT id FROM customers")
    path = os.path.join(ctx["tmp"], "one.ndjson")
    rc, out, err = a.exp("--purpose", "service", "--customer", cid, "--out", path)
    assert rc == 0 and out == "", err
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        assert [json.loads(line)["type"] for line in f] == ["customer", "interaction",
                                                            "interaction"]
    rc, _, err = a.exp("--purpose", "service", "--out", path)
    assert rc != 0 and "exists" in err, err


def test_a_bad_file_is_refused_whole_with_its_line_numbers(ctx):
    a = Deployment(ctx["tmp"], "bad")
    lines = [json.dumps(ADA),
             '{"type": "customer", "id": 42}',                                    # line 2
             '{"type": "customer", "id": "x", "display_name": "Eve"',             # line 3
             json.dumps(interaction(1, "src-ada", purpose="gossip")),             # line 4
             json.dumps(interaction(2, "src-ada", occurred_at=17)),               # line 5
             "",
             json.dumps(GRACE).replace("Grace", "Gr\0ace"),                       # line 7
             json.dumps(GRACE)[:40]]                                              # line 8
    path = write(ctx, "bad.ndjson", lines)
    with open(path, "rb+") as f:  # truncated: the last line has no line break either
        f.truncate(os.path.getsize(path) - 1)
    rc, out, err = a.imp(path)
    assert rc != 0, err
    said = {int(line.split("line ")[1].split(":")[0]): line for line in err.splitlines()
            if ": line " in line}
    assert sorted(said) == [2, 3, 4, 5, 7, 8], err
    for n, why in [(2, "'id'"), (3, "malformed JSON"), (4, "'purpose' is not a purpose"),
                   (5, "'occurred_at'"), (7, "malformed JSON"), (8, "malformed JSON")]:
        assert why in said[n], (n, err)
    assert "6 malformed records" in err and "nothing imported" in err, err
    assert a.counts() == {"customers": 0, "identities": 0, "interactions": 0}
    # Values never appear in what is reported.
    assert "Eve" not in err and "Lovelace" not in err
    rc, _, err = a.imp(path, "--check")
    assert rc != 0 and "line 4" in err
    rc, _, err = a.imp(os.path.join(ctx["tmp"], "missing.ndjson"))
    assert rc != 0 and "cannot open" in err


def test_a_refused_record_is_named_and_the_rest_go_on(ctx):
    a = Deployment(ctx["tmp"], "refused")
    twin = dict(GRACE, id="src-twin", restricted=False)  # Grace's phone, another customer
    lines = [GRACE, interaction(1, "src-grace"), twin, interaction(2, "src-twin"),
             interaction(3, "cus_00000000000000000000000000")]
    path = write(ctx, "refused.ndjson", lines)
    rc, _, err = a.imp(path)
    assert rc != 0, err
    assert "line 3:" in err and "line 4:" in err and "line 5:" in err, err
    assert "line 1:" not in err and "line 2:" not in err, err
    assert "5 records: 2 created, 0 already there, 3 refused" in err, err
    assert a.counts() == {"customers": 1, "identities": 1, "interactions": 1}
    rc, _, err = a.imp(path)
    assert "0 created, 2 already there, 3 refused" in err, err
    assert a.counts() == {"customers": 1, "identities": 1, "interactions": 1}


def test_csv_with_a_column_mapping(ctx):
    a = Deployment(ctx["tmp"], "csv")
    mapping = write(ctx, "map.json", [json.dumps({
        "columns": {"Ticket": "id", "From": "identity.value", "Sent": "occurred_at",
                    "Message": "body", "Queue": "metadata.queue"},
        "values": {"identity.type": "email", "channel": "email", "direction": "inbound"}})])
    csv = write(ctx, "in.csv", [
        "Sent,Ticket,From,Message,Queue",
        '2025-03-01T10:00:00Z,T-1,ada@example.com,"Hello, ""world""",billing',
        '2025-03-02T10:00:00Z,T-2,ada@example.com,"two\nlines",',
        "2025-03-03T10:00:00Z,T-3,bob@example.com,plain,support"])
    rc, _, err = a.imp(csv, "--format", "csv", "--map", mapping)
    assert rc == 0, err
    assert "3 created" in err, err
    assert a.counts() == {"customers": 2, "identities": 2, "interactions": 3}
    rc, _, err = a.imp(csv, "--format", "csv", "--map", mapping)
    assert "0 created, 3 already there" in err, err
    rc, out, _ = a.exp("--purpose", "service")
    bodies = {json.loads(line).get("body") for line in out.splitlines()}
    assert 'Hello, "world"' in bodies and "two\nlines" in bodies
    bad = write(ctx, "bad.csv", ["Sent,Ticket,From,Message,Queue",
                                 "2025-03-01T10:00:00Z,T-9,ada@example.com,fine,q",
                                 "soon,T-10,ada@example.com,late,q",
                                 '2025-03-01T10:00:00Z,T-11,ada@example.com,"open'])
    rc, _, err = a.imp(bad, "--format", "csv", "--map", mapping)
    assert rc != 0 and "line 3: 'occurred_at'" in err and "line 4:" in err, err
    assert a.count("interactions") == 3
    rc, _, err = a.imp(csv, "--format", "csv")
    assert rc != 0 and "--map" in err


def test_zendesk_export(ctx):
    a = Deployment(ctx["tmp"], "zendesk")
    ticket = {"id": 35436, "subject": "Help, my printer is on fire!", "requester_id": 20978392,
              "via": {"channel": "email"}, "status": "open", "comments": [
                  {"id": 1, "author_id": 20978392, "public": True, "plain_body": "It burns",
                   "created_at": "2025-01-02T03:04:05Z"},
                  {"id": 2, "author_id": 555, "public": False, "plain_body": "internal note",
                   "created_at": "2025-01-02T04:04:05Z"},
                  {"id": 3, "author_id": 555, "public": True, "plain_body": "Unplug it",
                   "created_at": "2025-01-02T05:04:05Z"}]}
    path = write(ctx, "tickets.json", [ticket, dict(ticket, id=35437, comments=[])])
    rc, _, err = a.imp(path, "--format", "zendesk")
    assert rc == 0 and "2 created" in err, err
    assert a.counts() == {"customers": 1, "identities": 1, "interactions": 2}
    rc, out, _ = a.exp("--purpose", "service")
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["direction"] for r in recs if r["type"] == "interaction"] == ["outbound",
                                                                            "inbound"]
    assert "internal note" not in out
    rc, _, err = a.imp(path, "--format", "zendesk")
    assert "0 created, 2 already there" in err, err
