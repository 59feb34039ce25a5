"""A throwaway PostgreSQL cluster for the tests, made from Debian's binaries (postgresql-15;
no containers, nothing installed or configured outside a temporary directory).

    c = Cluster(); c.start()          # initdb into a temporary directory, start, wait
    url = c.create_database()         # a fresh database; its postgresql:// URL
    c.restart(); c.stop()             # stop also removes the directory

From a shell (tests/run.sh, one cluster for a whole `make test`):

    eval "$(python3 tests/e2e/pgcluster.py start)"   # exports CANDOR_TEST_PG_DIR
    python3 tests/e2e/pgcluster.py stop "$CANDOR_TEST_PG_DIR"

The server listens on a Unix socket in the directory only (no TCP port, so clusters of
concurrent runs never meet), trusts local connections from the superuser "candor", and keeps
fsync and synchronous_commit on: durability is what the tests check. initdb refuses to run as
root, so as root the cluster belongs to the "postgres" user (Debian's package creates it), or
to "nobody" where there is none; any other user runs it as themselves.
"""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

SUPERUSER = "candor"


def bindir():
    """The newest PostgreSQL 15+ binaries: $CANDOR_PG_BIN, else /usr/lib/postgresql/N/bin."""
    env = os.environ.get("CANDOR_PG_BIN")
    if env:
        return env
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        try:
            v = int(d.split("/")[-2])
        except ValueError:
            continue
        if v >= 15 and os.path.exists(os.path.join(d, "initdb")):
            found.append((v, d))
    if not found:
        raise RuntimeError("no PostgreSQL 15 or newer in /usr/lib/postgresql (apt-get install "
                           "postgresql, or set CANDOR_PG_BIN)")
    return max(found)[1]


def _run_as():
    """The user the server runs as when we are root (initdb refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


class Cluster:
    def __init__(self, path=None, server_env=None, conf=None):
        """path: an existing cluster directory to attach to (made by start()); server_env:
        environment variables of the server (e.g. LD_PRELOAD); conf: postgresql.conf lines."""
        self.bin = bindir()
        self.user = _run_as()
        self.server_env = server_env or {}
        self.conf = conf or []
        self.dir = path
        self.counter = 0

    # -- paths and commands --------------------------------------------------------------

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def log(self):
        return os.path.join(self.dir, "server.log")

    def _cmd(self, args, env=None, check=True, timeout=120):
        if self.user:
            # setpriv, not runuser or su: no PAM session, the environment passes unchanged.
            args = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                    "--clear-groups", "--"] + args
        full = dict(os.environ)
        full.pop("LD_PRELOAD", None)
        full["LC_ALL"] = "C"
        if env:
            full.update(env)
        p = subprocess.run(args, capture_output=True, text=True, env=full, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}"
                               + self.tail())
        return p

    def tail(self, n=3000):
        try:
            with open(self.log, errors="replace") as f:
                return "\n--- server log ---\n" + f.read()[-n:]
        except OSError:
            return ""

    # -- life cycle ----------------------------------------------------------------------

    def start(self):
        if self.dir is None:
            # Short, so the socket path stays under the 107 bytes a Unix socket allows.
            base = "/tmp" if len(tempfile.gettempdir()) > 40 else None
            self.dir = tempfile.mkdtemp(prefix="candor-pg-", dir=base)
            if self.user:
                os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            self._cmd([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", SUPERUSER,
                       "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync",
                       "--no-instructions"])
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.write("\n".join([
                    "listen_addresses = ''",
                    f"unix_socket_directories = '{self.dir}'",
                    "port = 5432",
                    "max_connections = 400",
                    "shared_buffers = 64MB",
                    "fsync = on",
                    "synchronous_commit = on",
                    "full_page_writes = on",
                    "log_min_messages = warning",
                    "log_line_prefix = '%m [%p] '",
                    *self.conf,
                ]) + "\n")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action, mode=None):
        args = [os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                "-t", "120"]
        if mode:
            args += ["-m", mode]
        self._cmd(args + [action], env=self.server_env if action != "stop" else None)

    def restart(self, mode="fast"):
        self._pg_ctl("restart", mode)

    def stop(self, remove=True):
        if self.dir and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._pg_ctl("stop", "fast")
        if remove and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self):
        """SIGKILL to the postmaster: its children follow; the next start recovers."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            pid = int(f.readline())
        os.kill(pid, 9)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                return

    # -- databases -----------------------------------------------------------------------

    def url(self, db):
        host = urllib.parse.quote(self.dir, safe="/")
        return f"postgresql:///{db}?host={host}&user={SUPERUSER}"

    def psql(self, sql, db="postgres", check=True, timeout=120):
        """Runs sql with psql; returns stdout, rows as a|b lines (as the sqlite3 shell)."""
        p = subprocess.run([os.path.join(self.bin, "psql"), "-h", self.dir, "-U", SUPERUSER,
                            "-d", db, "-X", "-A", "-t", "-q", "-F", "|", "-v",
                            "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "LC_ALL": "C"})
        if check and p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}")
        return p.stdout.strip() if check else p

    def create_database(self, name=None):
        """Creates an empty database (from template0: nothing a test left in template1) and
        returns its URL."""
        if name is None:
            self.counter += 1
            name = f"t{os.getpid()}_{self.counter}_{int(time.time() * 1000) % 100000000}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def db_of(url):
    """The database name in one of our URLs."""
    return urllib.parse.urlparse(url).path.lstrip("/")


def dir_of(url):
    """The cluster directory (socket directory) in one of our URLs."""
    return urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["host"][0]


def main(argv):
    if len(argv) >= 2 and argv[1] == "start":
        c = Cluster().start()
        print(f"export CANDOR_TEST_PG_DIR={c.dir}")
        return 0
    if len(argv) == 3 and argv[1] == "stop":
        Cluster(path=argv[2]).stop()
        return 0
    print("usage: pgcluster.py start | stop DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
