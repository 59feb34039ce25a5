"""The basics a user relies on first: the server starts, answers health checks, and stores and
returns an interaction."""
from harness import Server, assert_problem


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def test_health_and_ready(srv):
    assert srv.req("GET", "/healthz", token=None)[0] == 200
    st, _, body = srv.req("GET", "/readyz", token=None)
    assert st == 200 and body["status"] == "ready"


def test_ingest_then_read_timeline(srv):
    st, hdr, it = srv.req("POST", "/v1/interactions", {
        "identity": {"type": "email", "value": "Smoke@Example.com"},
        "channel": "chat", "direction": "inbound", "body": "hello"})
    assert st == 201, it
    assert hdr["location"] == "/v1/interactions/" + it["id"]
    st, _, tl = srv.req("GET", f"/v1/customers/{it['customer_id']}/timeline", purpose="service")
    assert st == 200 and tl["items"][0]["body"] == "hello"


def test_missing_token_is_401(srv):
    assert_problem(srv.req("GET", "/v1/customers", token=None, purpose="service"), 401,
                   "unauthenticated")
