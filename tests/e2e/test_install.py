"""`make install` (DESTDIR and PREFIX) gives a candor that works from any directory: the
installed binary finds its rule packs, initialises, serves and checks messages; its manual pages
are generated from the option tables, render without groff warnings and list exactly the
options --help lists; `make uninstall` takes it all away again; --version names the commit, also
for sources exported without .git."""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile

from e2e_util import plain_req, plain_server
from harness import ROOT

PREFIX = "/usr/local"
PAGES = ["candor", "candor-audit", "candor-backup", "candor-cases", "candor-dsar",
         "candor-export", "candor-guard", "candor-import", "candor-init", "candor-retention",
         "candor-serve", "candor-staff", "candor-token", "candor-webhooks"]


def make(*args):
    p = subprocess.run(["make", "-s", "-C", ROOT, *args], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def setup_module():
    ctx = {"tmp": tempfile.mkdtemp(prefix="candor-install-")}
    ctx["dest"] = os.path.join(ctx["tmp"], "dest")
    ctx["elsewhere"] = os.path.join(ctx["tmp"], "elsewhere")
    os.mkdir(ctx["elsewhere"])
    make("install", "DESTDIR=" + ctx["dest"])
    ctx["bin"] = os.path.join(ctx["dest"] + PREFIX, "bin", "candor")
    env = {k: v for k, v in os.environ.items() if k != "CANDOR_SHARE_DIR"}
    env["CANDOR_CACHE_DIR"] = os.environ.get("CANDOR_CACHE_DIR",
                                             os.path.join(ctx["tmp"], "cache"))
    ctx["env"] = env
    return ctx


def teardown_module(ctx):
    shutil.rmtree(ctx["tmp"], ignore_errors=True)


def run(ctx, *args, binary=None, env=None, input=None):
    p = subprocess.run([binary or ctx["bin"], *args], capture_output=True, text=True,
                       cwd=ctx["elsewhere"], env=env or ctx["env"], input=input, timeout=600)
    return p.returncode, p.stdout, p.stderr


def installed(ctx):
    root = ctx["dest"]
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


def test_install_puts_each_file_in_its_place(ctx):
    files = installed(ctx)
    rules = sorted(f for f in os.listdir(os.path.join(ROOT, "rules")) if f.endswith(".yaml"))
    calendars = sorted(f for f in os.listdir(os.path.join(ROOT, "rules/calendars"))
                       if f.endswith(".yaml"))
    docs = sorted(f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    p = PREFIX.lstrip("/")
    want = sorted([f"{p}/bin/candor", f"{p}/share/candor/policy.yaml",
                   f"{p}/share/candor/rules/consent/jurisdictions.yaml",
                   f"{p}/share/candor/rules/dsar/regimes.yaml",
                   f"{p}/lib/systemd/system/candor.service", f"{p}/lib/sysusers.d/candor.conf",
                   f"{p}/share/doc/candor/README.md"] +
                  [f"{p}/share/candor/rules/{r}" for r in rules] +
                  [f"{p}/share/candor/rules/calendars/{c}" for c in calendars] +
                  [f"{p}/share/candor/rules/retention/rules.yaml"] +
                  [f"{p}/share/doc/candor/{d}" for d in docs] +
                  [f"{p}/share/man/man1/{m}.1" for m in PAGES])
    assert files == want, set(files) ^ set(want)
    assert stat.S_IMODE(os.stat(ctx["bin"]).st_mode) == 0o755
    for f in files[1:]:
        if not f.endswith("/candor"):
            assert stat.S_IMODE(os.stat(os.path.join(ctx["dest"], f)).st_mode) == 0o644, f
    with open(os.path.join(ctx["dest"] + PREFIX, "share/candor/policy.yaml")) as a, \
            open(os.path.join(ROOT, "config/policy.yaml")) as b:
        assert a.read() == b.read()


def test_version_names_the_commit(ctx):
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--tags"],
                            capture_output=True, text=True, check=True).stdout.strip()
    rc, out, _ = run(ctx, "--version")
    assert rc == 0 and re.fullmatch(rf"candor \d+\.\d+\.\d+ \(commit {re.escape(commit)}, "
                                    r"\d{4}-\d\d-\d\d\)\n", out), out
    rc, out, _ = run(ctx, "--version", "--verbose")
    share = ctx["dest"] + PREFIX + "/share/candor/rules"
    assert rc == 0 and f"rule packs: {share}" in out and "installed beside the executable" in out
    for lib in ("SQLite 3.", "libsodium ", "OpenSSL ", "Hyperscan ", "libmicrohttpd ",
                "jansson ", "utf8proc ", "libyaml "):
        assert lib in out, (lib, out)
    rc, _, err = run(ctx, "--version", "--bogus")
    assert rc == 2 and "--verbose" in err


def test_installed_binary_serves_from_another_directory(ctx):
    data = os.path.join(ctx["tmp"], "data")
    rc, out, err = run(ctx, "init", "--data", data)
    assert rc == 0, err
    with open(os.path.join(data, "admin.token")) as f:
        token = f.read().strip()
    log = open(os.path.join(ctx["tmp"], "serve.log"), "wb")
    proc, port = plain_server(ctx["bin"], data, ctx["env"], ctx["elsewhere"], log)
    try:
        def req(method, path, body=None, purpose=None):
            return plain_req(port, token, method, path, body, purpose)

        st, it = req("POST", "/v1/interactions", {
            "identity": {"type": "email", "value": "ana@example.com"}, "channel": "email",
            "direction": "inbound", "subject": "Hello", "body": "Where is my order?"})
        assert st == 201, it
        st, got = req("GET", "/v1/interactions/" + it["id"], purpose="service")
        assert st == 200 and got["body"] == "Where is my order?", got
        st, r = req("POST", "/v1/guard/check", {"text": "Only 2 left, buy now!"})
        assert st == 200 and r["verdict"] == "warn", r
        # Consent rules come from the same place (rules/consent/jurisdictions.yaml).
        st, c = req("POST", "/v1/consents/check", {"customer_id": it["customer_id"],
                                                   "purpose": "marketing", "channel": "email"})
        assert st == 200 and c["allow"] is False and c["reason"] == "no_consent", c
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, open(log.name).read()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    rc, out, err = run(ctx, "audit", "verify", "--data", data)
    assert rc == 0 and out.startswith("ok: "), (out, err)


def test_installed_guard_command_exit_codes(ctx):
    msg = os.path.join(ctx["tmp"], "msg.txt")
    for text, code, verdict in (("Thanks, your refund was sent today.", 0, "allow"),
                                ("Only 2 left, buy now!", 1, "warn"),
                                ("Card 4242 4242 4242 4242 is on file.", 2, "block")):
        with open(msg, "w") as f:
            f.write(text)
        rc, out, err = run(ctx, "guard", msg)
        summary = out.strip().splitlines()[-1]
        assert rc == code and f"1 message checked in 1 file" in summary, (text, rc, out, err)
        assert summary.count(f"1 {verdict}") == 1, summary
        rc, out, _ = run(ctx, "guard", "--format", "json", "-", input=text)
        assert rc == code and json.loads(out)["results"][0]["verdict"] == verdict, out
    rc, out, _ = run(ctx, "guard", "--help")
    assert rc == 0 and "Exit status: the worst verdict, 0 allow, 1 warn, 2 block" in out
    assert run(ctx, "guard")[0] == 3
    assert run(ctx, "guard", "--format", "xml", msg)[0] == 3
    assert run(ctx, "guard", "--bogus", msg)[0] == 3
    assert run(ctx, "guard", "-", "-")[0] == 3  # standard input named twice
    assert run(ctx, "guard", msg, msg)[0] == 2  # many files: the worst verdict (the card)
    rc, _, err = run(ctx, "guard", os.path.join(ctx["tmp"], "missing.txt"))
    assert rc == 4 and "missing.txt" in err
    rc, _, err = run(ctx, "guard", "--rules", os.path.join(ctx["tmp"], "norules"), msg)
    assert rc == 4 and "cannot open rules directory" in err, err


def test_rules_lookup_order(ctx):
    msg = os.path.join(ctx["tmp"], "plain.txt")
    with open(msg, "w") as f:
        f.write("Hello.")
    # 2. CANDOR_SHARE_DIR is used as given, never passed over for another place.
    env = dict(ctx["env"], CANDOR_SHARE_DIR=os.path.join(ctx["tmp"], "nowhere"))
    rc, _, err = run(ctx, "guard", msg, env=env)
    assert rc == 4 and os.path.join(ctx["tmp"], "nowhere", "rules") in err, err
    rc, out, _ = run(ctx, "--version", "--verbose", env=env)
    assert f"rule packs: {ctx['tmp']}/nowhere/rules (CANDOR_SHARE_DIR)" in out, out
    # 1. --rules wins over the environment.
    rc, _, err = run(ctx, "guard", "--rules", os.path.join(ROOT, "rules"), msg, env=env)
    assert rc == 0, err
    env["CANDOR_SHARE_DIR"] = ctx["dest"] + PREFIX + "/share/candor"
    assert run(ctx, "guard", msg, env=env)[0] == 0
    # 4. A binary still in its checkout's build/ directory uses the checkout's rules.
    rc, out, _ = run(ctx, "--version", "--verbose",
                     binary=os.path.join(ROOT, "build", "candor"))
    assert f"rule packs: {ROOT}/rules (the source tree)" in out, out
    # 5. Anywhere else, the compiled-in PREFIX/share/candor (a directory called build that is
    # not a checkout does not count).
    lonely = os.path.join(ctx["tmp"], "x", "build")
    os.makedirs(lonely)
    shutil.copy(ctx["bin"], lonely)
    rc, out, _ = run(ctx, "--version", "--verbose", binary=os.path.join(lonely, "candor"))
    if os.path.isdir(PREFIX + "/share/candor/rules"):
        assert f"rule packs: {PREFIX}/share/candor/rules (compiled in)" in out, out
    else:
        assert "rule packs: none found" in out and f"{PREFIX}/share/candor/rules" in out, out
        rc, _, err = run(ctx, "serve", "--data", ctx["tmp"],
                         binary=os.path.join(lonely, "candor"))
        assert rc == 1 and "no rules directory found" in err and "--rules" in err, err


def option_names(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


def test_man_pages_are_generated_clean_and_match_help(ctx):
    mandir = os.path.join(ctx["dest"] + PREFIX, "share/man/man1")
    env = dict(ctx["env"], MANWIDTH="80", MAN_KEEP_FORMATTING="0", PAGER="cat")
    for page in PAGES:
        path = os.path.join(mandir, page + ".1")
        p = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", path], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and p.stderr == "", (page, p.stderr)
        p = subprocess.run(["man", "-l", path], capture_output=True, text=True, env=env,
                           timeout=60)
        assert p.returncode == 0 and p.stderr == "", (page, p.stderr)
        text = re.sub(r".\x08", "", p.stdout)
        assert "NAME" in text and "SYNOPSIS" in text and "OPTIONS" in text, text[:500]
        # Indexable by mandb/apropos: the NAME line parses.
        p = subprocess.run(["lexgrog", path], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and f'"{page} - ' in p.stdout, p.stdout
        # The page is what the binary prints now (no stale copy), and its options are the
        # ones --help lists.
        cmd = page[len("candor-"):] if page != "candor" else None
        rc, gen, _ = run(ctx, "help", "--man", *([cmd] if cmd else []))
        assert rc == 0 and gen == open(path).read(), page
        if cmd:
            rc, help_text, _ = run(ctx, cmd, "--help")
            assert rc == 0
            options = text[text.index("OPTIONS"):text.index("EXIT STATUS")]
            assert option_names(options) == option_names(help_text.split("options:")[1]), page
    rc, _, err = run(ctx, "help", "--man", "frobnicate")
    assert rc == 2 and "unknown command" in err


def test_uninstall_removes_everything_it_installed(ctx):
    dest = os.path.join(ctx["tmp"], "dest2")
    make("install", "DESTDIR=" + dest)
    extra = os.path.join(dest + PREFIX, "share/candor/rules/local.yaml")
    with open(extra, "w") as f:
        f.write("# a pack of the operator's own\n")
    make("uninstall", "DESTDIR=" + dest)
    left = sorted(os.path.relpath(os.path.join(d, f), dest)
                  for d, _, fs in os.walk(dest) for f in fs)
    assert left == [PREFIX.lstrip("/") + "/share/candor/rules/local.yaml"], left


def test_version_outside_git(ctx):
    """Sources exported with `git archive` carry the commit in scripts/commit.txt; a plain copy
    without .git says it does not know."""
    arch = os.path.join(ctx["tmp"], "archive")
    os.mkdir(arch)
    tar = subprocess.run(["git", "-C", ROOT, "archive", "HEAD", "scripts/build-info.sh",
                          "scripts/commit.txt"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", arch], input=tar, check=True)
    short = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %cs"],
                           capture_output=True, text=True, check=True).stdout.split()
    out = os.path.join(arch, "info.h")
    subprocess.run(["bash", os.path.join(arch, "scripts", "build-info.sh"), out, "9.9.9",
                    "/opt/candor"], check=True, cwd=ctx["tmp"])
    text = open(out).read()
    assert f'#define CD_BUILD_COMMIT "{short[0]}"' in text, text
    assert f'#define CD_BUILD_DATE "{short[1]}"' in text, text
    assert '#define CD_BUILD_SHAREDIR "/opt/candor"' in text, text
    plain = os.path.join(ctx["tmp"], "plain", "scripts")
    os.makedirs(plain)
    for f in ("build-info.sh", "commit.txt"):
        shutil.copy(os.path.join(ROOT, "scripts", f), plain)
    subprocess.run(["bash", os.path.join(plain, "build-info.sh"), out, "9.9.9", "/opt/candor"],
                   check=True, cwd=ctx["tmp"])
    assert '#define CD_BUILD_COMMIT "unknown (built outside git)"' in open(out).read()
