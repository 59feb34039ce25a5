"""Business calendars are data (RULES/calendars/*.yaml): the server lists what it loaded, refuses
to start on a broken calendar (file and line named), and warns when a calendar's holidays end
before this year, since its deadlines would then count holidays as working days."""
import os
import shutil
import subprocess
import tempfile

from harness import BINARY, ROOT, Server, assert_problem


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def rules_copy():
    tmp = tempfile.mkdtemp(prefix="candor-cal-")
    rules = os.path.join(tmp, "rules")
    shutil.copytree(os.path.join(ROOT, "rules"), rules)
    return tmp, rules


def test_loaded_calendars_are_listed(srv):
    st, _, body = srv.req("GET", "/v1/calendars")
    assert st == 200, body
    ids = [c["id"] for c in body["items"]]
    assert ids == ["24x7", "de", "fr", "gb-eng", "ie", "us-ca", "us-federal"]
    fr = body["items"][2]
    assert fr["time_zone"] == "Europe/Paris"
    assert fr["hours"]["mon"] == ["09:00-12:30", "14:00-17:30"]
    assert fr["hours"]["sun"] == []
    assert {"date": "2026-07-14", "name": "Fête nationale"} in fr["holidays"]
    assert fr["holidays_until"] == 2027
    always = body["items"][0]
    assert always["time_zone"] == "UTC" and always["holidays"] == []
    assert always["hours"]["sat"] == ["00:00-24:00"]


def test_listing_needs_a_token_and_a_staff_role(srv):
    assert_problem(srv.req("GET", "/v1/calendars", token=None), 401, "unauthenticated")
    assert_problem(srv.req("POST", "/v1/calendars", {}), 405, "method-not-allowed")


def test_a_broken_calendar_stops_the_server_at_start(srv):
    tmp, rules = rules_copy()
    try:
        with open(os.path.join(rules, "calendars", "zz-broken.yaml"), "w") as f:
            f.write("id: broken\nname: Broken\ntime_zone: Europe/Berlin\nhours:\n"
                    "  mon: [\"09:00-13:00\", \"12:00-17:00\"]\n")
        p = subprocess.run([BINARY, "serve", "--data", srv.data, "--listen", "127.0.0.1:0",
                            "--rules", rules], capture_output=True, text=True, env=srv.env,
                           timeout=120)
        assert p.returncode != 0
        assert "zz-broken.yaml:5: working-hour ranges of one day overlap" in p.stderr, p.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_outdated_holidays_are_warned_about(_srv):
    tmp, rules = rules_copy()
    try:
        with open(os.path.join(rules, "calendars", "old.yaml"), "w") as f:
            f.write("id: old\nname: Old\ntime_zone: UTC\nhours: {weekdays: [\"09:00-17:00\"]}\n"
                    "holidays:\n  - {date: 2019-12-25, name: Christmas Day}\n")
        srv = Server(args=["--rules", rules])
        try:
            st, _, body = srv.req("GET", "/v1/calendars")
            assert st == 200 and "old" in [c["id"] for c in body["items"]]
        finally:
            srv.stop()
        assert '"msg":"calendar.holidays_outdated"' in srv.logs()
        assert '"calendar":"old","holidays_until":2019' in srv.logs()
        srv.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
