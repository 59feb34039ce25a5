"""Recipients told (GDPR Art. 19) through the API: a webhook recipient is told by its delivery, a
processor by a person who confirms it; a rectification reaches the recipients of the categories
that changed; who was told what and when is listed per customer, as a purpose-gated read."""
import time

from harness import Server, assert_problem
from webhook_receiver import Receiver

ARGS = ["--webhook-timeout", "2", "--webhook-backoff", "100", "--webhook-backoff-max", "1",
        "--retention-every", "0"]


def setup_module():
    srv = Server(args=ARGS)
    srv.receiver = Receiver().start()
    return srv


def teardown_module(srv):
    srv.receiver.stop()
    srv.stop()
    srv.cleanup()


def notices(srv, cid, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    st, _, b = srv.req("GET", f"/v1/customers/{cid}/recipient-notices?{qs}",
                       purpose="legal_obligation")
    assert st == 200, b
    return b["items"]


def test_register_and_refuse_bad_input(srv):
    st, _, s = srv.req("POST", "/v1/webhooks", {"url": srv.receiver.url, "purpose": "service",
                                                "events": ["consent.changed"]})
    assert st == 201
    srv.sub = s["id"]
    ok = {"name": "Helpdesk", "kind": "webhook", "subscription_id": s["id"],
          "purposes": ["service"], "categories": ["contact", "profile"], "scope": "all"}
    for bad in ({**ok, "kind": "email"}, {**ok, "scope": "some"}, {**ok, "purposes": []},
                {**ok, "purposes": ["gossip"]}, {**ok, "categories": ["secrets"]},
                {**ok, "subscription_id": "whs_00000000000000000000000000"},
                {**ok, "contact": "x@y.z"}, {**ok, "name": ""}, {**ok, "extra": 1},
                {**ok, "kind": "processor", "subscription_id": None}):
        assert_problem(srv.req("POST", "/v1/recipients", bad), 400, "invalid-request")
    assert_problem(srv.req("POST", "/v1/recipients", ok, token=srv.token("agent")), 403,
                   "forbidden")
    st, hdr, hook = srv.req("POST", "/v1/recipients", ok, token=srv.token("compliance"))
    assert st == 201 and hdr["location"] == "/v1/recipients/" + hook["id"], hook
    st, _, proc = srv.req("POST", "/v1/recipients", {
        "name": "Mailer Ltd", "kind": "processor", "contact": "privacy@mailer.example",
        "purposes": ["marketing"], "categories": ["contact"], "scope": "listed"})
    assert st == 201, proc
    srv.hook_id, srv.processor = hook["id"], proc["id"]
    st, _, page = srv.req("GET", "/v1/recipients")
    assert {r["id"] for r in page["items"]} == {hook["id"], proc["id"]}
    assert_problem(srv.req("POST", f"/v1/recipients/{proc['id']}/customers",
                           {"customer_id": "cus_00000000000000000000000000"}), 404, "not-found")


def test_restriction_and_rectification_are_told(srv):
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Ana Silva"})
    cid = c["id"]
    st, _, _ = srv.req("POST", f"/v1/recipients/{srv.processor}/customers", {"customer_id": cid})
    assert st == 200
    st, _, recips = srv.req("GET", f"/v1/customers/{cid}/recipients", purpose="legal_obligation")
    assert {r["id"] for r in recips["items"]} == {srv.hook_id, srv.processor}
    t0 = time.time()
    st, _, _ = srv.req("POST", f"/v1/customers/{cid}/restriction", {"restricted": True})
    assert st == 200
    got = srv.receiver.wait_for(1)
    assert b"customer.restricted" in got[0][1]  # made for the recipient's subscription
    deadline = time.time() + 20
    while time.time() < deadline:
        n = {x["kind"]: x for x in notices(srv, cid)}
        if n.get("webhook", {}).get("status") == "told":
            break
        time.sleep(0.1)
    assert n["webhook"]["status"] == "told" and n["webhook"]["told_by"] == "webhook"
    assert n["webhook"]["told_at"] and n["webhook"]["event_type"] == "customer.restricted"
    assert n["processor"]["status"] == "pending" and n["processor"]["told_at"] is None
    assert n["processor"]["contact"] == "privacy@mailer.example"
    # The processor is told by a person, who confirms it.
    st, _, pend = srv.req("GET", "/v1/recipient-notices?status=pending")
    assert n["processor"]["id"] in [x["id"] for x in pend["items"]]
    assert_problem(srv.req("POST", f"/v1/recipient-notices/{n['webhook']['id']}/confirm", {}),
                   409, "conflict")
    st, _, ok = srv.req("POST", f"/v1/recipient-notices/{n['processor']['id']}/confirm",
                        {"note": "emailed privacy@ on Monday"})
    assert st == 200 and ok["status"] == "told" and ok["note"] == "emailed privacy@ on Monday"
    assert_problem(srv.req("POST", f"/v1/recipient-notices/{n['processor']['id']}/confirm", {}),
                   409, "conflict")
    assert_problem(srv.req("POST", "/v1/recipient-notices/rnt_00000000000000000000000000/"
                                   "confirm", {}), 404, "not-found")
    # A change of the locale (coarse) concerns neither recipient; one of the name, both.
    st, _, b = srv.req("PATCH", f"/v1/customers/{cid}", {"locale": "pt-PT"}, purpose="service")
    assert st == 200, b
    assert len(notices(srv, cid)) == 2
    st, _, b = srv.req("PATCH", f"/v1/customers/{cid}", {"display_name": "Ana S."},
                       purpose="service")
    assert st == 200, b
    rect = [x for x in notices(srv, cid) if x["event_type"] == "customer.rectified"]
    assert {x["kind"] for x in rect} == {"webhook", "processor"}
    # The listing is a read about the customer: recorded, and refused without a purpose.
    assert_problem(srv.req("GET", f"/v1/customers/{cid}/recipient-notices"), 400,
                   "purpose-required")
    st, _, log = srv.req("GET", f"/v1/customers/{cid}/access-log", purpose="legal_obligation")
    actions = {e["action"] for e in log["items"]}
    assert {"recipient_notices.read", "recipients.read"} <= actions, actions
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 3600))
    assert notices(srv, cid, since=since) == []
    assert_problem(srv.req("GET", f"/v1/customers/{cid}/recipient-notices?since=yesterday",
                           purpose="legal_obligation"), 400, "invalid-request")
    assert_problem(srv.req("GET", "/v1/customers/cus_00000000000000000000000000/"
                                  "recipient-notices", purpose="legal_obligation"), 404,
                   "not-found")


def test_a_removed_recipient_is_told_nothing_more(srv):
    st, _, _ = srv.req("DELETE", f"/v1/recipients/{srv.processor}")
    assert st == 204
    assert_problem(srv.req("DELETE", f"/v1/recipients/{srv.processor}"), 404, "not-found")
    st, _, c = srv.req("POST", "/v1/customers", {"display_name": "Bo"})
    st, _, _ = srv.req("POST", f"/v1/customers/{c['id']}/restriction", {"restricted": True})
    assert [x["kind"] for x in notices(srv, c["id"])] == ["webhook"]
