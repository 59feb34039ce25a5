"""Rule packs are data that users extend: a broken pack is refused with the file, line and rule
named while the previous rules stay in force; SIGHUP and the admin endpoint reload; checks keep
answering while the rules are swapped."""
import os
import shutil
import signal
import threading
import time

from harness import ROOT, Server, assert_problem

EXTRA = """pack: house
rules:
  - id: HOUSE.FLURBWIDGET
    category: jargon
    severity: warn
    kind: existence
    message: Say what you mean.
    suggestion: Use plain words.
    references: [house style]
    patterns: ['\\bflurbwidget\\b']
"""


def setup_module():
    tmp_rules = os.path.join(os.path.dirname(__file__), "..", "..", "build", "e2e-rules")
    shutil.rmtree(tmp_rules, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "rules"), tmp_rules)
    srv = Server(args=["--rules", tmp_rules])
    srv.rules = tmp_rules
    return srv


def teardown_module(srv):
    srv.stop()
    srv.cleanup()
    shutil.rmtree(srv.rules, ignore_errors=True)


def verdict(srv, text):
    st, _, r = srv.req("POST", "/v1/guard/check", {"text": text})
    assert st == 200, r
    return r


def test_broken_pack_is_refused_and_old_rules_stay(srv):
    with open(os.path.join(srv.rules, "zz-broken.yaml"), "w") as f:
        f.write("pack: broken\nrules:\n  - id: BROKEN.ONE\n    category: pressure\n"
                "    severity: loud\n    kind: existence\n    patterns: ['x']\n")
    body = assert_problem(srv.req("POST", "/v1/guard/reload"), 400, "invalid-request")
    assert "zz-broken.yaml:" in body["detail"] and "BROKEN.ONE" in body["detail"], body
    assert verdict(srv, "card 4242 4242 4242 4242")["verdict"] == "block"
    os.remove(os.path.join(srv.rules, "zz-broken.yaml"))


def test_sighup_loads_a_new_pack_while_checks_continue(srv):
    assert verdict(srv, "Let's find flurbwidget.")["findings"] == []
    with open(os.path.join(srv.rules, "house.yaml"), "w") as f:
        f.write(EXTRA)
    errors, done = [], threading.Event()

    def checker():
        while not done.is_set():
            try:
                st, _, r = srv.req("POST", "/v1/guard/check", {"text": "Only 2 left, buy now!"})
                if st != 200 or r["verdict"] != "warn":
                    errors.append((st, r))
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(e)
            time.sleep(0.02)  # steady load, leaving CPU for the recompile

    threads = [threading.Thread(target=checker) for _ in range(4)]
    for t in threads:
        t.start()
    srv.proc.send_signal(signal.SIGHUP)
    # A reload compiles the new pack's database and the first pass again (the rest comes from
    # the cache); on a loaded shared machine under ASan that can take minutes of wall clock.
    deadline = time.time() + 300
    while time.time() < deadline:
        if any(f["rule"] == "HOUSE.FLURBWIDGET" for f in verdict(srv, "Let's find flurbwidget.")["findings"]):
            break
        time.sleep(0.2)
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert any(f["rule"] == "HOUSE.FLURBWIDGET" for f in verdict(srv, "Let's find flurbwidget.")["findings"])
    # The line is logged just after the new pack is in force, so a check may see the pack first.
    while "guard.reloaded" not in srv.logs() and time.time() < deadline:
        time.sleep(0.05)
    assert "guard.reloaded" in srv.logs()
