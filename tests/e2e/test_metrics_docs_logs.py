"""Operations and documentation: /metrics in Prometheus text, the OpenAPI document agrees with
the routes the server answers, problem types are documented, and the server log never carries
personal data or secrets."""
import json
import os
import re
import subprocess
import tempfile
import time

from harness import ROOT, Server, assert_problem

METHODS = ("get", "post", "patch", "put", "delete")
VALIDATOR = os.path.join(ROOT, "tests", "openapi")
OPENAPI = os.environ.get("CANDOR_OPENAPI", os.path.join(ROOT, "docs", "openapi.yaml"))


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def documented():
    """(path, METHOD) pairs from docs/openapi.yaml (a small reader for its fixed layout)."""
    pairs, path, in_paths = [], None, False
    with open(OPENAPI) as f:
        for line in f:
            if re.match(r"^\S", line):
                in_paths = line.startswith("paths:")
                continue
            if not in_paths:
                continue
            m = re.match(r"^  (/\S*):\s*$", line)
            if m:
                path = m.group(1)
                continue
            m = re.match(r"^    (\w+):", line)
            if m and m.group(1) in METHODS:
                pairs.append((path, m.group(1).upper()))
    assert len(pairs) > 15, pairs
    return pairs


def metrics(srv):
    st, hdr, body = srv.req("GET", "/metrics", token=None)
    assert st == 200 and hdr["content-type"].startswith("text/plain"), hdr
    return body.decode()


def test_openapi_json_is_the_documented_api(srv):
    st, hdr, doc = srv.req("GET", "/v1/openapi.json", token=None)
    assert st == 200 and hdr["content-type"].startswith("application/json"), hdr
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"], doc.get("info")
    served = sorted((p, m.upper()) for p, item in doc["paths"].items() for m in item
                    if m in METHODS)
    listed = sorted(documented())
    assert served == listed, ("served /v1/openapi.json differs from docs/openapi.yaml "
                              f"(rebuild?): only served {sorted(set(served) - set(listed))}, "
                              f"only in the file {sorted(set(listed) - set(served))}")
    # The served JSON is a valid OpenAPI 3.1 document and equals the YAML file as a YAML 1.2
    # parser reads it: the server's own conversion drops, adds or retypes nothing.
    assert os.path.isdir(os.path.join(VALIDATOR, "node_modules")), \
        "the OpenAPI validator is not installed: bash tests/openapi/setup.sh"
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(doc, f)
        f.flush()
        p = subprocess.run(["node", os.path.join(VALIDATOR, "validate.mjs"), "--served", f.name,
                            OPENAPI], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_documented_operation_is_routed(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Docs"})
    st, _, it = srv.req("POST", "/v1/interactions", {"customer_id": c["id"], "channel": "chat",
                                                     "direction": "inbound"})
    ids = {"id": None, "slug": "not-found", "token": "not-a-real-token", "file": "workspace",
           "hold_id": "hold_00000000000000000000000000"}
    answered = {}
    for path, method in documented():
        if path.startswith("/v1/tokens/"):
            st, _, t = srv.req("POST", "/v1/tokens", {"role": "agent", "name": "doomed"})
            ids["id"] = t["id"]
        elif path.startswith("/v1/interactions/"):
            ids["id"] = it["id"]
        else:
            ids["id"] = c["id"]
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
        body = {} if method in ("POST", "PATCH", "PUT") else None
        st, _, b = srv.req(method, url, body, purpose="service")
        answered[(path, method)] = st
        # A domain 404 ("no tree head yet", "no such event") still proves the route exists;
        # only the router's own answers mean the operation is not served.
        unrouted = st == 405 or (st == 404 and isinstance(b, dict)
                                 and b.get("detail") == "no such endpoint")
        assert not unrouted, (method, url, st, b)
    # Every documented operation now shows in the metrics under its route pattern (a request
    # is counted just after its answer left, so the last one may take a moment).
    deadline = time.time() + 10
    while True:
        m = metrics(srv)
        missing = [(method, path) for path, method in documented()
                   if f'route="{method} {path}"' not in m]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.05)
    assert not missing, missing


def test_undocumented_paths_and_methods(srv):
    doc = set(documented())
    for path in ("/v1/customer", "/v1/interactions/x/y", "/admin", "/v1/consents/nope",
                 "/.env", "/v1/openapi.yaml"):
        assert_problem(srv.req("GET", path, purpose="service"), 404, "not-found")
    for path in {p for p, _ in doc if "{" not in p}:
        for method in ("PUT", "DELETE", "PATCH"):
            # /v1/customers/lookup is also /v1/customers/{id} in shape: PATCH goes there.
            shaped = any(re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", p), path) and m == method
                         for p, m in doc)
            if not shaped:
                r = srv.req(method, path, {} if method != "DELETE" else None)
                assert_problem(r, 405, "method-not-allowed")


def test_problem_types_are_documented(srv):
    for slug, status in (("not-found", 404), ("invalid-request", 400), ("malformed-json", 400),
                         ("purpose-required", 400), ("unauthenticated", 401),
                         ("payload-too-large", 413), ("idempotency-key-reused", 422),
                         ("out-of-memory", 503), ("store-unavailable", 503),
                         ("method-not-allowed", 405)):
        st, _, b = srv.req("GET", "/problems/" + slug, token=None)
        assert st == 200 and b["type"] == "/problems/" + slug and b["status"] == status, b
        assert b["title"], b
    assert_problem(srv.req("GET", "/problems/no-such-problem", token=None), 404, "not-found")


def test_metrics_prometheus_text(srv):
    for _ in range(3):
        srv.req("POST", "/v1/interactions", {"identity": {"type": "email",
                                                          "value": "metrics@example.com"},
                                             "channel": "chat", "direction": "inbound"})
    srv.req("GET", "/v1/customers", purpose="nope")
    # A request is counted when its connection is done with it, just after the answer left.
    deadline = time.time() + 10
    while True:
        m = metrics(srv)
        if 'route="GET /v1/customers",status="400"' in m or time.time() > deadline:
            break
        time.sleep(0.05)
    # Every sample line is NAME{labels} VALUE, and every family has HELP and TYPE.
    for line in m.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-z_:][a-z0-9_:]*(\{([a-z_]+="[^"]*",?)*\})? '
                            r'([-+]?[0-9.eE+-]+|[+-]Inf|NaN)$', line), line
    for fam in ("candor_http_requests_total", "candor_http_request_duration_seconds",
                "candor_store_commit_duration_seconds", "candor_store_batch_size"):
        assert f"# TYPE {fam} " in m and f"# HELP {fam} " in m, fam
    assert "# TYPE candor_http_request_duration_seconds histogram" in m
    n = re.search(r'candor_http_requests_total\{route="POST /v1/interactions",status="201"\} '
                  r'(\d+)', m)
    assert n and int(n.group(1)) >= 3, m[:2000]
    assert re.search(r'candor_http_requests_total\{route="GET /v1/customers",status="400"\} '
                     r'[1-9]', m)
    assert re.search(r'candor_http_request_duration_seconds_bucket\{route="POST '
                     r'/v1/interactions",le="\+Inf"\} [1-9]', m), m[:3000]
    assert re.search(r'candor_store_commit_duration_seconds_count [1-9]', m)
    assert re.search(r'candor_store_batch_size_(count|sum) [1-9]', m)
    assert re.search(r'candor_store_batch_size_bucket\{le="\+Inf"\} [1-9]', m)


def test_no_personal_data_or_secrets_in_the_log(srv):
    pii = {"email": "Zelda.Quux-7731@Personal-Example.org",
           "phone": "+44 20 7946 0123", "handle": "@zeldaquux7731",
           "name": "Zelda Quuxington", "body": "my card was declined at Quuxmart yesterday",
           "subject": "Refund for order ZQ-99812", "thread": "thread-zq-55"}
    st, _, c = srv.req("POST", "/v1/customers", {
        "display_name": pii["name"], "attributes": {"note": "prefers Quuxmart"},
        "identities": [{"type": "email", "value": pii["email"]},
                       {"type": "phone", "value": pii["phone"]},
                       {"type": "social", "network": "instagram", "value": pii["handle"]}]})
    assert st == 201, c
    st, _, it = srv.req("POST", "/v1/interactions", {
        "identity": {"type": "email", "value": pii["email"]}, "channel": "email",
        "direction": "inbound", "subject": pii["subject"], "body": pii["body"],
        "thread_id": pii["thread"], "metadata": {"ip_note": "Quuxmart"}})
    assert st == 201, it
    # Reads, lookups and failures must not log what they carry either.
    srv.req("POST", "/v1/customers/lookup", {"type": "email", "value": pii["email"]},
            purpose="service")
    srv.req("GET", f"/v1/customers/{c['id']}/timeline", purpose="service")
    srv.req("POST", "/v1/customers", {"identities": [{"type": "email",
                                                      "value": pii["email"]}]})  # 409
    srv.req("POST", "/v1/customers", {"identities": [{"type": "email",
                                                      "value": "bad Zelda@@x"}]})  # 400
    srv.req("POST", "/v1/interactions", raw=b'{"body":"Zelda Quuxington\xff"}')
    agent = srv.token("agent", "log check")
    srv.req("GET", "/v1/customers", token="cnd_notarealtokenZeldaQuux", purpose="service")
    logs = srv.logs()
    assert "http.request" in logs  # the log is being written
    needles = [pii["email"], pii["email"].lower(), "+442079460123", "7946 0123",
               "zeldaquux7731", "Zelda", "Quux", "declined", "ZQ-99812", "thread-zq-55",
               srv.admin, agent, srv.admin[4:20], agent[4:20]]
    for n in needles:
        assert n.lower() not in logs.lower(), f"{n!r} appears in the server log"
    for line in logs.splitlines():
        if line.startswith("{"):
            assert '"level"' in line and '"msg"' in line, line
