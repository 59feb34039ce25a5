"""End-to-end harness: starts the real `candor` binary on a free loopback port with a fresh
data directory and speaks HTTP to it (Python standard library only).

    srv = Server()            # candor init + candor serve on a free port
    st, hdr, body = srv.req("GET", "/v1/customers", purpose="service")
    srv.stop()                # SIGTERM, waits, checks the exit status and sanitizer output

The backend is SQLite unless CANDOR_E2E_DB=postgres: then every new data directory gets a
fresh database in the cluster at $CANDOR_TEST_PG_DIR (tests/e2e/pgcluster.py; tests/e2e/run.py
starts one when it is not set), made with `candor init --db URL`. A test that only makes sense
on one backend raises Skip with the reason (`skip_unless_sqlite`).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("CANDOR_BIN", os.path.join(ROOT, "build", "asan", "candor"))
BACKEND = os.environ.get("CANDOR_E2E_DB", "sqlite")
assert BACKEND in ("sqlite", "postgres"), f"CANDOR_E2E_DB={BACKEND}: sqlite or postgres"
DB_URL_FILE = "database.url"


class Skip(Exception):
    """Raised by a test that does not apply to this run; the message says why."""


def skip_unless_sqlite(reason):
    """Skips the calling test on PostgreSQL, saying why (and what covers it there)."""
    if BACKEND != "sqlite":
        raise Skip(reason)


def skip_unless_postgres(reason):
    """Skips the calling test on SQLite, saying why."""
    if BACKEND != "postgres":
        raise Skip(reason)


_clusters = {}


def pg_cluster(url=None):
    """The PostgreSQL cluster a database URL names (its host= directory), or this run's
    ($CANDOR_TEST_PG_DIR)."""
    import pgcluster
    path = pgcluster.dir_of(url) if url else os.environ.get("CANDOR_TEST_PG_DIR")
    assert path, "CANDOR_E2E_DB=postgres needs CANDOR_TEST_PG_DIR (see tests/e2e/run.py)"
    if path not in _clusters:
        _clusters[path] = pgcluster.Cluster(path=path)
    return _clusters[path]


def init_args(data):
    """The arguments of `candor init` for this run's backend: on PostgreSQL a fresh database for
    each directory."""
    if BACKEND == "postgres":
        return ["init", "--data", data, "--db", pg_cluster().create_database()]
    return ["init", "--data", data]


def db_url_of(data):
    """The PostgreSQL URL a data directory belongs to, or None (SQLite)."""
    try:
        with open(os.path.join(data, DB_URL_FILE)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, demo=False, args=(), env=None, data=None, init=True):
        self.created = time.time()
        self.tmp = tempfile.mkdtemp(prefix="candor-e2e-")
        self.data = data or os.path.join(self.tmp, "data")
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        if env:
            self.env.update(env)
        if init and not os.path.exists(os.path.join(self.data, "candor.db")) and \
                not os.path.exists(os.path.join(self.data, DB_URL_FILE)):
            self.cli(*init_args(self.data), check=True)
        with open(os.path.join(self.data, "admin.token")) as f:
            self.admin = f.read().strip()
        self.args = list(args)
        self.demo = demo
        self.proc = None
        self.start()

    @property
    def db_url(self):
        """The PostgreSQL URL of this server's database, or None on SQLite."""
        return db_url_of(self.data)

    def cli(self, *args, check=False, input=None):
        """Runs `candor ARGS`; returns (exit code, stdout, stderr)."""
        p = subprocess.run([BINARY, *args], capture_output=True, text=True, env=self.env,
                           input=input, timeout=600)
        if check and p.returncode != 0:
            raise AssertionError(f"candor {' '.join(args)} failed: {p.stderr}")
        return p.returncode, p.stdout, p.stderr

    def start(self):
        self.port = free_port()
        self.log_path = os.path.join(self.tmp, f"server-{self.port}.log")
        self.log = open(self.log_path, "wb")
        cmd = [BINARY, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
               "--rules", os.path.join(ROOT, "rules"), *self.args]
        if self.demo:
            cmd.append("--demo")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited at start:\n" + self.logs())
            try:
                st, _, _ = self.req("GET", "/healthz", token=None)
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not start:\n" + self.logs())

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def req(self, method, path, body=None, token="admin", purpose=None, headers=None,
            raw=None, content_type="application/json", timeout=60):
        """One request on a new connection. Returns (status, headers dict lower-cased, body)
        where body is parsed JSON when the response is JSON, else bytes."""
        h = {}
        if token == "admin":
            token = self.admin
        if token:
            h["Authorization"] = "Bearer " + token
        if purpose:
            h["Candor-Purpose"] = purpose
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type:
            h["Content-Type"] = content_type
        if headers:
            h.update(headers)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()
        ctype = hdrs.get("content-type", "")
        if ctype.startswith(("application/json", "application/problem+json")) and payload:
            payload = json.loads(payload)
        return r.status, hdrs, payload

    def token(self, role, name=None):
        st, _, b = self.req("POST", "/v1/tokens", {"role": role, "name": name or role})
        assert st == 201, (st, b)
        return b["token"]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self, check=True):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("server did not stop on SIGTERM")
            self.log.close()
            logs = self.logs()
            if check:
                assert "ERROR: AddressSanitizer" not in logs, logs[-4000:]
                assert "runtime error:" not in logs, logs[-4000:]
                assert "LeakSanitizer" not in logs, logs[-4000:]
                assert rc == 0, f"exit status {rc}\n{logs[-3000:]}"

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def assert_problem(resp, status, slug):
    """Checks an RFC 9457 problem response: status, media type, stable type, fields."""
    st, hdr, body = resp
    assert st == status, f"expected {status}, got {st}: {body}"
    assert hdr.get("content-type", "").startswith("application/problem+json"), hdr
    assert body["type"] == f"/problems/{slug}", body
    assert body["status"] == status and body["title"] and body["request_id"], body
    return body
