"""`candor serve --demo`: at least 1,000 customers and 20,000 interactions over every channel and
several months, deterministic from one run to the next."""
import collections
import time

from e2e_util import sql
from harness import Server

CHANNELS = {"email", "sms", "phone", "chat", "social", "app", "push", "post", "in_person"}


def setup_module():
    return Server(demo=True)


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def all_customers(srv):
    items, cursor = [], None
    while True:
        path = "/v1/customers?limit=200" + (f"&cursor={cursor}" if cursor else "")
        st, _, page = srv.req("GET", path, purpose="service")
        assert st == 200 and len(page["items"]) <= 200, page
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def wait_loaded(srv):
    deadline = time.time() + 120
    while time.time() < deadline:
        if int(sql(srv, "SELECT count(*) FROM interactions")) >= 20000:
            return
        time.sleep(0.5)


def test_at_least_1000_customers_through_the_api(srv):
    wait_loaded(srv)
    cs = all_customers(srv)
    assert len(cs) >= 1000, len(cs)
    assert len({c["id"] for c in cs}) == len(cs)
    assert all(c["status"] == "active" and c["identities"] for c in cs[:50]), cs[0]
    assert len({c["display_name"] for c in cs}) > 500  # realistic, not one name repeated


def test_interactions_cover_channels_and_months(srv):
    wait_loaded(srv)
    total = int(sql(srv, "SELECT count(*) FROM interactions"))
    assert total >= 20000, total
    per_channel = dict(l.split("|") for l in sql(
        srv, "SELECT channel, count(*) FROM interactions GROUP BY channel").splitlines())
    assert set(per_channel) == CHANNELS, per_channel
    dirs = sql(srv, "SELECT DISTINCT direction FROM interactions ORDER BY 1").split()
    assert dirs == ["inbound", "outbound"], dirs
    span_days = float(sql(srv, "SELECT (max(occurred_at) - min(occurred_at)) / 86400000.0"
                               " FROM interactions"))
    assert span_days >= 60, span_days


def test_a_demo_timeline_spans_several_channels(srv):
    wait_loaded(srv)
    busiest = sql(srv, "SELECT customer_id FROM interactions GROUP BY customer_id"
                       " ORDER BY count(*) DESC, customer_id LIMIT 1")
    st, _, tl = srv.req("GET", f"/v1/customers/{busiest}/timeline?limit=200", purpose="service")
    assert st == 200 and len(tl["items"]) >= 10, tl
    chans = collections.Counter(i["channel"] for i in tl["items"])
    assert len(chans) >= 3, chans
    times = [i["occurred_at"] for i in tl["items"]]
    assert times == sorted(times, reverse=True)
    assert any(i["body"] for i in tl["items"])


def test_demo_is_deterministic_and_loads_once(srv):
    wait_loaded(srv)
    q = "SELECT count(*), count(DISTINCT channel) FROM interactions"
    first = sql(srv, q)
    other = Server(demo=True)
    try:
        wait_loaded(other)
        assert sql(other, q) == first
        a = sorted(c["display_name"] or "" for c in all_customers(srv))
        b = sorted(c["display_name"] or "" for c in all_customers(other))
        assert a == b
    finally:
        other.stop()
        other.cleanup()
    # Restarting with --demo on a loaded database adds nothing.
    srv.stop()
    srv.start()
    assert sql(srv, q) == first
