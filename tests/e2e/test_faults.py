"""Faults on a request path: fail the Nth allocation (Candor-Fault: alloc=N) and the Nth SQL
statement of the write (Candor-Fault: store=N). Every failure is a clean problem+json, the
server keeps serving, nothing is half-written, and it exits without a sanitizer report."""
import http.client

from e2e_util import counts
from harness import Server

MAX_ALLOC = 300


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()  # checks exit status 0 and no ASan/UBSan/LSan report in the log
    srv.cleanup()


def body(n, tag):
    # A new identity each time, so a success creates one customer and one interaction.
    return {"identity": {"type": "email", "value": f"fault-{tag}-{n}@example.com"},
            "channel": "email", "direction": "inbound", "subject": "Fault",
            "body": f"fault injection {tag} {n}", "metadata": {"n": n, "tag": tag}}


def attempt(srv, n, fault, tag):
    """One faulted request. Returns (status, type) or ('crash', log tail) after restarting."""
    try:
        st, hdr, b = srv.req("POST", "/v1/interactions", body(n, tag),
                             headers={"Candor-Fault": f"{fault}={n}"})
    except (OSError, http.client.HTTPException):
        srv.proc.wait(timeout=30)
        tail = srv.logs()[-1500:]
        srv.log.close()
        srv.start()
        return "crash", tail
    if st >= 400:
        assert hdr.get("content-type", "").startswith("application/problem+json"), (n, st, hdr)
        assert b["status"] == st and b["request_id"], b
        return st, b["type"]
    # An allocation that fails after the write is durable still answers 201, with the id and
    # Location only (the full representation needed memory that was not there).
    assert st == 201 and hdr["location"] == "/v1/interactions/" + b["id"], (n, st, hdr, b)
    return st, b["id"], "channel" in b


def run_loop(srv, fault, tag, limit, stop_on_success):
    before = counts(srv)
    results = {}
    for n in range(1, limit + 1):
        results[n] = attempt(srv, n, fault, tag)
        assert srv.req("GET", "/healthz", token=None)[0] == 200
        if stop_on_success and results[n][0] == 201 and results[n][2]:
            break  # the first request that met no failure at all
    after = counts(srv)
    ok = [n for n, r in results.items() if r[0] == 201]
    return before, after, results, ok


def test_every_failed_allocation_is_a_clean_503(srv):
    before, after, results, ok = run_loop(srv, "alloc", "a", MAX_ALLOC, True)
    assert ok, f"no request succeeded within {MAX_ALLOC} failed allocations"
    crashes = {n: r[1] for n, r in results.items() if r[0] == "crash"}
    assert not crashes, (f"server crashed at alloc={sorted(crashes)}:\n"
                         + crashes[min(crashes)])
    wrong = {n: r for n, r in results.items()
             if r[0] != 201 and r != (503, "/problems/out-of-memory")}
    assert not wrong, f"failed allocations not reported as 503 out-of-memory: {wrong}"
    # Nothing half-written: exactly the successful requests are stored.
    assert after["interactions"] - before["interactions"] == len(ok), (before, after, ok)
    assert after["customers"] - before["customers"] == len(ok), (before, after, ok)
    assert after["identities"] - before["identities"] == len(ok), (before, after, ok)
    partial = [n for n in ok if not results[n][2]]
    print(f"    {len(results) - 1} allocation failures ({len(partial)} after the commit, answered "
          f"201 with the id), full success at alloc={ok[-1]}")


def test_failed_allocations_by_customer_id_with_idempotency_key(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Fault target"})
    assert st == 201
    before = counts(srv)
    results = {}
    for n in range(1, MAX_ALLOC + 1):
        try:
            st, hdr, b = srv.req("POST", "/v1/interactions",
                                 {"customer_id": c["id"], "channel": "sms",
                                  "direction": "outbound", "body": f"idem {n}"},
                                 headers={"Candor-Fault": f"alloc={n}",
                                          "Idempotency-Key": f"fault-key-{n}"})
        except (OSError, http.client.HTTPException):
            srv.proc.wait(timeout=30)
            tail = srv.logs()[-1500:]
            srv.log.close()
            srv.start()
            raise AssertionError(f"server crashed at alloc={n}:\n{tail}")
        results[n] = (st, b["type"] if st >= 400 else b["id"])
        assert srv.req("GET", "/healthz", token=None)[0] == 200
        if st == 201 and "channel" in b:
            break  # no failure at all: every allocation of the request was tried
    wrong = {n: r for n, r in results.items()
             if r[0] != 201 and r != (503, "/problems/out-of-memory")}
    assert not wrong, f"failed allocations not reported as 503 out-of-memory: {wrong}"
    created = sum(1 for r in results.values() if r[0] == 201)
    after = counts(srv)
    assert after["interactions"] - before["interactions"] == created, (before, after, created)
    assert after["idempotency"] - before["idempotency"] == created, (before, after, created)
    # A key whose request failed was not burnt: retrying it without the fault succeeds.
    st, _, b = srv.req("POST", "/v1/interactions",
                       {"customer_id": c["id"], "channel": "sms", "direction": "outbound",
                        "body": "idem 1"}, headers={"Idempotency-Key": "fault-key-1"})
    assert st == 201, (st, b)


def test_store_errors_are_503_and_store_nothing(srv):
    before, after, results, ok = run_loop(srv, "store", "s", 10, False)
    failed = {n: r for n, r in results.items() if r[0] != 201}
    assert failed, "no store fault took effect"
    wrong = {n: r for n, r in failed.items() if r != (503, "/problems/store-unavailable")}
    assert not wrong, f"store faults not reported as 503 store-unavailable: {wrong}"
    # A statement number beyond the write's last statement fails nothing: those succeed.
    assert after["interactions"] - before["interactions"] == len(ok), (before, after, ok)
    assert after["customers"] - before["customers"] == len(ok), (before, after, ok)
    assert min(failed) == 1 and all(n < min(ok) for n in failed) if ok else True, results
    print(f"    store faults at statements {sorted(failed)}; {len(ok)} beyond the write succeeded")


def test_server_keeps_serving_after_faults(srv):
    st, _, it = srv.req("POST", "/v1/interactions", body(0, "after"))
    assert st == 201, it
    st, _, got = srv.req("GET", "/v1/interactions/" + it["id"], purpose="service")
    assert st == 200 and got["body"] == "fault injection after 0"
    st, _, r = srv.req("GET", "/readyz", token=None)
    assert st == 200 and r["status"] == "ready"
