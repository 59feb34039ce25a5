"""Running as a server: SIGHUP reloads the rule packs and the policy file and the next request
sees the change; SIGTERM drains (no new connections, requests in flight answered, every
acknowledged write durable, a last signed tree head, exit 0); `candor backup` while ingestion
runs gives a copy that restores and verifies (on PostgreSQL: pg_dump and pg_restore, as the
README says); the systemd unit passes systemd's own checks; the release binary serves with
writable-and-executable memory forbidden."""
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

from e2e_util import data_sql, integrity, plain_req, plain_server, sql
from harness import (DB_URL_FILE, ROOT, Server, assert_problem, pg_cluster,
                     skip_unless_postgres, skip_unless_sqlite)
from test_guard_reload import EXTRA as HOUSE

RELEASE = os.path.join(ROOT, "build", "candor")

def wait_log(srv, needle, count=1, timeout=60):
    """Waits until needle appears count times in the server's log; returns the log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = srv.logs()
        if logs.count(needle) >= count:
            return logs
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not logged {count} time(s):\n{srv.logs()[-3000:]}")


def wait_exit(srv, timeout=60):
    """Waits for the server to exit by itself and checks a clean exit: status 0, no sanitizer
    report. Returns the log."""
    try:
        rc = srv.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        raise AssertionError("server did not exit:\n" + srv.logs()[-3000:])
    srv.log.close()
    logs = srv.logs()
    assert "Sanitizer" not in logs and "runtime error:" not in logs, logs[-4000:]
    assert rc == 0, f"exit status {rc}\n{logs[-3000:]}"
    return logs


def ingest_body(tag):
    return json.dumps({"identity": {"type": "external", "network": "load", "value": tag},
                       "channel": "chat", "direction": "inbound", "body": "message " + tag})


def writer(srv, n, stop, acked, statuses):
    """Posts interactions on one keep-alive connection until stop is set or the server refuses
    connections; records every answer."""
    conn, i = None, 0
    while not stop.is_set():
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            conn.request("POST", "/v1/interactions", body=ingest_body(f"w{n}-{i}"),
                         headers={"Authorization": "Bearer " + srv.admin,
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            payload = r.read()
            statuses.append(r.status)
            if r.status == 201:
                acked.append(json.loads(payload)["id"])
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except ConnectionRefusedError:
            return  # the server stopped accepting: nothing more to send
        except (OSError, http.client.HTTPException):
            conn = None  # never acknowledged
            time.sleep(0.01)


def start_writers(srv, n, acked, statuses):
    stop = threading.Event()
    ts = [threading.Thread(target=writer, args=(srv, k, stop, acked, statuses), daemon=True)
          for k in range(n)]
    for t in ts:
        t.start()
    return stop, ts


def test_sighup_reloads_rules_and_the_next_check_sees_them():
    # One small pack and the rules serve needs: compiling the full packs again under the
    # sanitizers would take most of a minute, and the reload path is the same.
    rules = tempfile.mkdtemp(prefix="candor-rules-")
    for d in ("consent", "dsar", "calendars"):  # the files serve needs to start at all
        shutil.copytree(os.path.join(ROOT, "rules", d), os.path.join(rules, d))
    shutil.copy(os.path.join(ROOT, "rules", "pricing.yaml"), rules)
    srv = Server(args=["--rules", rules])
    try:
        def findings():
            st, _, r = srv.req("POST", "/v1/guard/check", {"text": "Use the flurbwidget."})
            assert st == 200, r
            return {f["rule"] for f in r["findings"]}

        assert "HOUSE.FLURBWIDGET" not in findings()
        with open(os.path.join(rules, "house.yaml"), "w") as f:
            f.write(HOUSE)
        srv.proc.send_signal(signal.SIGHUP)
        wait_log(srv, '"msg":"guard.reloaded"')
        assert "HOUSE.FLURBWIDGET" in findings()  # the very next check
        # A broken pack: refused with file and line, the rules in force stay.
        with open(os.path.join(rules, "zz.yaml"), "w") as f:
            f.write("pack: zz\nrules:\n  - id: ZZ.ONE\n    severity: loud\n")
        srv.proc.send_signal(signal.SIGHUP)
        logs = wait_log(srv, "guard rules not reloaded")
        assert "zz.yaml:" in logs, logs[-2000:]
        assert "HOUSE.FLURBWIDGET" in findings()
        assert srv.req("GET", "/healthz", token=None)[0] == 200
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(rules, ignore_errors=True)


def test_sighup_reloads_the_policy_file():
    tmp = tempfile.mkdtemp(prefix="candor-policy-")
    policy = os.path.join(tmp, "policy.yaml")
    with open(os.path.join(ROOT, "config", "policy.yaml")) as f:
        original = f.read()
    with open(policy, "w") as f:
        f.write(original)
    srv = Server(args=["--policy", policy])
    try:
        st, _, it = srv.req("POST", "/v1/interactions", json.loads(ingest_body("policy")))
        assert st == 201, it
        agent = srv.token("agent")
        path = "/v1/customers/" + it["customer_id"]
        assert_problem(srv.req("GET", path, token=agent, purpose="security"), 403,
                       "purpose-not-permitted")
        # The agent role may now declare security.
        changed = original.replace("  security:\n    roles: [admin, compliance]",
                                   "  security:\n    roles: [admin, compliance, agent]")
        assert changed != original
        with open(policy, "w") as f:
            f.write(changed)
        srv.proc.send_signal(signal.SIGHUP)
        wait_log(srv, '"msg":"policy.reloaded","changed":true')
        st, _, c = srv.req("GET", path, token=agent, purpose="security")
        assert st == 200 and c["id"] == it["customer_id"], c
        # A broken policy is refused with its line; the one in force stays.
        with open(policy, "w") as f:
            f.write(changed.replace("version: 1", "version: 7"))
        srv.proc.send_signal(signal.SIGHUP)
        logs = wait_log(srv, "policy not reloaded")
        assert "policy.yaml:" in logs and "version 1" in logs, logs[-2000:]
        assert srv.req("GET", path, token=agent, purpose="security")[0] == 200
        # Back to the original: the agent is refused again.
        with open(policy, "w") as f:
            f.write(original)
        srv.proc.send_signal(signal.SIGHUP)
        wait_log(srv, '"msg":"policy.reloaded","changed":true', count=2)
        assert_problem(srv.req("GET", path, token=agent, purpose="security"), 403,
                       "purpose-not-permitted")
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def partial_request(port, token, tag):
    """Sends the headers and half the body of an ingestion; returns the socket and the rest."""
    body = ingest_body(tag).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              token.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    return s, body[10:]


def read_response(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    return int(lines[0].split()[1]), headers, payload


def test_sigterm_drains_under_load():
    srv = Server()
    try:
        acked, statuses = [], []
        stop, ts = start_writers(srv, 8, acked, statuses)
        time.sleep(1.5)
        slow, rest = partial_request(srv.port, srv.admin, "in-flight")
        time.sleep(0.3)  # its headers are read: it is in flight
        srv.proc.send_signal(signal.SIGTERM)
        wait_log(srv, '"msg":"serve.draining"')
        # No new connections; the server waits for the request in flight.
        try:
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
            raise AssertionError("a new connection was accepted while draining")
        except ConnectionRefusedError:
            pass
        time.sleep(0.5)
        assert srv.proc.poll() is None, "the server left a request in flight unanswered"
        slow.sendall(rest)
        st, hdr, payload = read_response(slow)
        slow.close()
        assert st == 201, (st, payload)
        assert hdr.get("connection", "").lower() == "close", hdr
        slow_id = json.loads(payload)["id"]
        logs = wait_exit(srv)
        stop.set()
        for t in ts:
            t.join(timeout=30)
        assert '"msg":"serve.drained"' in logs and '"msg":"serve.stopped"' in logs, logs[-2000:]
        assert len(acked) > 20, len(acked)
        # Every answer was a success: nothing in flight was refused or failed.
        assert set(statuses) == {201}, sorted(set(statuses))
        # Every acknowledged write is there, and the last tree head covers the whole ledger.
        assert integrity(srv) == "ok"
        ids = set(sql(srv, "SELECT id FROM interactions").split())
        missing = [i for i in acked + [slow_id] if i not in ids]
        assert not missing, f"{len(missing)} of {len(acked) + 1} acknowledged writes lost"
        assert sql(srv, "SELECT max(tree_size) FROM audit_tree_heads") == \
            sql(srv, "SELECT max(seq) FROM audit_events")
        rc, out, err = srv.cli("audit", "verify", "--data", srv.data)
        assert rc == 0, (out, err)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
        srv.cleanup()


def test_drain_ends_at_its_timeout_and_a_second_signal_ends_it_at_once():
    srv = Server(args=["--drain-timeout", "1"])
    try:
        slow, _ = partial_request(srv.port, srv.admin, "never-finished")
        time.sleep(0.3)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        logs = wait_exit(srv, timeout=30)
        assert time.time() - t0 < 15
        assert '"msg":"serve.drain_timeout","in_flight":1' in logs, logs[-2000:]
        slow.close()
        srv.start()
        slow, _ = partial_request(srv.port, srv.admin, "cut-short")
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        wait_log(srv, '"msg":"serve.draining"')  # a new log file for the new port
        srv.proc.send_signal(signal.SIGTERM)
        logs = wait_exit(srv, timeout=30)
        assert '"msg":"serve.drain_cut"' in logs, logs[-2000:]
        slow.close()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
        srv.cleanup()


def copy_keys(src, dst):
    for k in ("master.key", "signing.key", "receipts.key", "unsubscribe.key"):
        shutil.copy2(os.path.join(src, k), os.path.join(dst, k))
        os.chmod(os.path.join(dst, k), 0o600)


def check_restored(srv, restored, before, acked):
    """A restored data directory: its ledger verifies offline, it holds every write
    acknowledged before the copy began and none of the last ones, it serves, and the sealed
    data decrypts with the restored keys (admin.token is only the test's way in: the token
    itself is in the database)."""
    rc, vout, verr = srv.cli("audit", "verify", "--data", restored)
    assert rc == 0 and vout.startswith("ok: "), (vout, verr)
    ids = set(data_sql(restored, "SELECT id FROM interactions").split())
    assert all(i in ids for i in before), "a write acknowledged before the copy is missing"
    assert len(ids) < len(acked), "writes after the copy cannot be in it"
    shutil.copy2(os.path.join(srv.data, "admin.token"), restored)
    copy = Server(data=restored, init=False)
    try:
        st, _, it = copy.req("GET", "/v1/interactions/" + before[0], purpose="service")
        assert st == 200 and it["body"].startswith("message "), (st, it)
        st, _, it = copy.req("POST", "/v1/interactions", {
            "identity": {"type": "email", "value": "after-restore@example.com"},
            "channel": "email", "direction": "inbound", "body": "after the restore"})
        assert st == 201, it
    finally:
        copy.stop()
        copy.cleanup()


def test_backup_while_ingesting_restores_and_verifies():
    skip_unless_sqlite("candor backup copies SQLite databases; on PostgreSQL pg_dump does "
                       "(test_pg_dump_while_ingesting_restores_and_verifies)")
    srv = Server()
    tmp = tempfile.mkdtemp(prefix="candor-backup-")
    try:
        acked, statuses = [], []
        stop, ts = start_writers(srv, 6, acked, statuses)
        time.sleep(1.0)
        before = list(acked)  # acknowledged before the backup starts
        out = os.path.join(tmp, "candor-backup.db")
        rc, stdout, err = srv.cli("backup", "--data", srv.data, "--out", out)
        during = len(acked)
        time.sleep(0.5)
        stop.set()
        for t in ts:
            t.join(timeout=30)
        assert rc == 0, (stdout, err)
        assert len(acked) > during > len(before) > 0, (len(before), during, len(acked))
        assert "master.key" in stdout and "signing.key" in stdout and "CANDOR_MASTER_KEY" in stdout
        st = os.stat(out)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert sorted(os.listdir(tmp)) == ["candor-backup.db"], os.listdir(tmp)
        # One self-contained file, consistent by SQLite's check.
        check = subprocess.run(["sqlite3", out, "PRAGMA journal_mode; PRAGMA integrity_check"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert check == ["delete", "ok"], check
        # Restore: an empty directory, the copy as candor.db, the keys beside it.
        restored = os.path.join(tmp, "restored")
        os.mkdir(restored, 0o700)
        shutil.copy2(out, os.path.join(restored, "candor.db"))
        copy_keys(srv.data, restored)
        check_restored(srv, restored, before, acked)
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_pg_dump_while_ingesting_restores_and_verifies():
    """The README's procedure on PostgreSQL: candor backup names pg_dump and writes nothing;
    pg_dump while ingestion runs, pg_restore into an empty database, a data directory with the
    keys and that database's URL: the ledger verifies, every write acknowledged before the dump
    is there, and the sealed data decrypts."""
    skip_unless_postgres("pg_dump is PostgreSQL's; candor backup covers SQLite")
    srv = Server()
    c = pg_cluster(srv.db_url)
    tmp = tempfile.mkdtemp(prefix="candor-dump-")
    try:
        acked, statuses = [], []
        stop, ts = start_writers(srv, 6, acked, statuses)
        time.sleep(1.0)
        out = os.path.join(tmp, "candor-backup.db")
        rc, _, err = srv.cli("backup", "--data", srv.data, "--out", out)
        assert rc == 1 and "pg_dump" in err and "README" in err, (rc, err)
        assert os.listdir(tmp) == [], os.listdir(tmp)
        before = list(acked)  # acknowledged before the dump starts
        dump = os.path.join(tmp, "candor.dump")
        p = subprocess.run([os.path.join(c.bin, "pg_dump"), "--format=custom", "--file", dump,
                            "--dbname", srv.db_url], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        during = len(acked)
        time.sleep(0.5)
        stop.set()
        for t in ts:
            t.join(timeout=30)
        assert len(acked) > during > len(before) > 0, (len(before), during, len(acked))
        url = c.create_database()
        p = subprocess.run([os.path.join(c.bin, "pg_restore"), "--no-owner", "--exit-on-error",
                            "--dbname", url, dump], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        restored = os.path.join(tmp, "restored")
        os.mkdir(restored, 0o700)
        copy_keys(srv.data, restored)
        with open(os.open(os.path.join(restored, DB_URL_FILE), os.O_WRONLY | os.O_CREAT, 0o600),
                  "w") as f:
            f.write(url + "\n")
        check_restored(srv, restored, before, acked)
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_backup_bad_input_changes_nothing():
    skip_unless_sqlite("on PostgreSQL candor backup refuses every request and names pg_dump "
                       "(test_pg_dump_while_ingesting_restores_and_verifies)")
    srv = Server()
    tmp = tempfile.mkdtemp(prefix="candor-backup-")
    try:
        existing = os.path.join(tmp, "existing.db")
        with open(existing, "w") as f:
            f.write("keep me")
        rc, _, err = srv.cli("backup", "--data", srv.data, "--out", existing)
        assert rc == 1 and "exists" in err, (rc, err)
        assert open(existing).read() == "keep me"
        rc, _, err = srv.cli("backup", "--data", srv.data)
        assert rc == 2 and "--out FILE is required" in err, (rc, err)
        rc, _, err = srv.cli("backup", "--data", srv.data, "--out", "-")
        assert rc == 2, (rc, err)
        rc, _, err = srv.cli("backup", "--data", os.path.join(tmp, "nowhere"), "--out",
                             os.path.join(tmp, "x.db"))
        assert rc == 1 and "not an initialised data directory" in err, (rc, err)
        rc, _, err = srv.cli("backup", "--data", srv.data, "--out",
                             os.path.join(tmp, "no-such-dir", "x.db"))
        assert rc == 1 and "cannot create" in err, (rc, err)
        # An interrupted backup's leftover is named, not overwritten.
        with open(os.path.join(tmp, "b.db.partial"), "w") as f:
            f.write("half")
        rc, _, err = srv.cli("backup", "--data", srv.data, "--out", os.path.join(tmp, "b.db"))
        assert rc == 1 and "b.db.partial exists" in err, (rc, err)
        rc, _, err = srv.cli("backup", "--data", srv.data, "--bogus")
        assert rc == 2 and "unknown option" in err, (rc, err)
        assert sorted(os.listdir(tmp)) == ["b.db.partial", "existing.db"], os.listdir(tmp)
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_serve_refuses_a_directory_that_was_never_initialised():
    """What the unit relies on when a data volume is not mounted: no new keys, no empty
    database, a clear message."""
    srv = Server()
    try:
        empty = os.path.join(srv.tmp, "empty")
        os.mkdir(empty, 0o700)
        rc, _, err = srv.cli("serve", "--data", empty, "--listen", "127.0.0.1:0")
        assert rc == 1 and "not an initialised data directory" in err and "candor init" in err, err
        assert os.listdir(empty) == []
    finally:
        srv.stop()
        srv.cleanup()


def installed_unit(tmp):
    """The unit as `make install DESTDIR=tmp` writes it, with its ExecStart pointed into tmp
    (systemd-analyze checks that the binary exists)."""
    subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + tmp], check=True,
                   capture_output=True, timeout=600)
    with open(os.path.join(tmp, "usr/local/lib/systemd/system/candor.service")) as f:
        unit = f.read()
    assert "ExecStart=/usr/local/bin/candor serve --data /var/lib/candor" in unit
    path = os.path.join(tmp, "candor.service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/local/bin/candor", tmp + "/usr/local/bin/candor"))
    return path


def test_systemd_unit_passes_systemd_checks():
    tmp = tempfile.mkdtemp(prefix="candor-unit-")
    try:
        unit = installed_unit(tmp)
        env = dict(os.environ, MANPATH=os.path.join(tmp, "usr/local/share/man"))
        p = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
        # systemd's own exposure score (0 = fully sandboxed, 10 = not at all): at most 2.0.
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20",
                            unit], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        for needed in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                       "StateDirectory=candor", "MemoryDenyWriteExecute=yes",
                       "SystemCallFilter=@system-service", "CapabilityBoundingSet=\n"):
            assert needed in open(unit).read(), needed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def deny_write_execute():
    """In the child before exec: the kernel's MemoryDenyWriteExecute (inherited across exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")


def test_release_binary_serves_with_write_execute_memory_denied():
    """What MemoryDenyWriteExecute=yes in the unit relies on: the guard's Hyperscan databases
    compile, load from the cache, reload and scan without a page both writable and executable."""
    tmp = tempfile.mkdtemp(prefix="candor-mdwe-")
    data, cache = os.path.join(tmp, "data"), os.path.join(tmp, "cache")
    env = dict(os.environ, CANDOR_CACHE_DIR=cache)
    subprocess.run([RELEASE, "init", "--data", data], check=True, capture_output=True, env=env)
    with open(os.path.join(data, "admin.token")) as f:
        token = f.read().strip()
    log = open(os.path.join(tmp, "log"), "wb")
    proc, port = plain_server(RELEASE, data, env, tmp, log, preexec_fn=deny_write_execute)
    try:
        def req(method, path, body=None):
            return plain_req(port, token, method, path, body)

        st, r = req("POST", "/v1/guard/check", {"text": "Card 4242 4242 4242 4242, act now!"})
        assert st == 200 and r["verdict"] == "block", r
        st, r = req("POST", "/v1/interactions", json.loads(ingest_body("mdwe")))
        assert st == 201, r
        st, r = req("POST", "/v1/guard/reload")
        assert st == 200 and r["status"] == "reloaded", r
        with open(f"/proc/{proc.pid}/maps") as f:
            rwx = [l for l in f if l.split()[1].startswith("rwx")]
        assert not rwx, rwx
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, open(os.path.join(tmp, "log")).read()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
