"""Customers and identities as an integrator meets them: identities normalised on the way in,
one customer per identity, lookup, profile changes, and merge (identities and interactions move,
the merged id points to the survivor, the merge is audited)."""
from e2e_util import counts, interaction, timeline
from harness import Server, assert_problem


def setup_module():
    return Server()


def teardown_module(srv):
    srv.stop()
    srv.cleanup()


def create(srv, **body):
    # Under a purpose, the answer of a write is a read: trimmed to it, checked and recorded.
    st, hdr, c = srv.req("POST", "/v1/customers", body, purpose="service")
    assert st == 201, (st, c)
    assert hdr["location"] == "/v1/customers/" + c["id"]
    return c


def idents(c):
    return sorted((i["type"], i.get("network"), i["value"]) for i in c["identities"])


def test_create_normalises_every_identity_kind(srv):
    c = create(srv, display_name="Ann Smith", identities=[
        {"type": "email", "value": "  Ann.Smith@Example.COM "},
        {"type": "phone", "value": "+44 20 7946 0958"},
        {"type": "social", "network": "Instagram", "value": "@AnnSmith"},
        {"type": "external", "network": "shopify", "value": "Cust-42"}])
    assert c["status"] == "active" and c["display_name"] == "Ann Smith"
    assert c["id"].startswith("cus_") and len(c["id"]) == 30
    got = idents(c)
    assert ("email", None, "ann.smith@example.com") in got, got
    assert ("phone", None, "+442079460958") in got, got
    assert ("social", "instagram", "annsmith") in got, got
    assert ("external", "shopify", "Cust-42") in got, got  # external ids stay exact


def test_phone_with_00_prefix_is_the_same_e164_number(srv):
    c = create(srv, identities=[{"type": "phone", "value": "0044 (20) 7946-0959"}])
    assert idents(c) == [("phone", None, "+442079460959")]
    # The same number written the other way is the same identity: a second customer conflicts.
    assert_problem(srv.req("POST", "/v1/customers",
                           {"identities": [{"type": "phone", "value": "+44 20 7946 0959"}]}),
                   409, "conflict")


def test_invalid_identities_are_400_naming_the_member(srv):
    before = counts(srv)
    cases = [
        ({"type": "email", "value": "not-an-email"}, "email"),
        ({"type": "email", "value": "a@b"}, "domain"),
        ({"type": "phone", "value": "+999 1234 5678"}, "country code"),
        ({"type": "phone", "value": "+44 20 79x6 0958"}, "phone"),
        ({"type": "phone", "value": "12345"}, "phone"),
        ({"type": "social", "network": "myspace2", "value": "x"}, "myspace2"),
        ({"type": "social", "value": "@x"}, "network"),
        ({"type": "fax", "value": "x"}, "type"),
        ({"type": "email"}, "value"),
    ]
    for ident, word in cases:
        b = assert_problem(srv.req("POST", "/v1/customers", {"identities": [ident]}), 400,
                           "invalid-request")
        assert b["detail"].startswith("identities[0]: "), b
        assert word in b["detail"], (ident, b["detail"])
        # One message, not a garbled copy of itself.
        assert b["detail"].count("identities[0]") == 1, b["detail"]
    assert counts(srv) == before


def test_same_identity_on_two_customers_is_409(srv):
    create(srv, identities=[{"type": "email", "value": "taken@example.org"}])
    before = counts(srv)
    b = assert_problem(srv.req("POST", "/v1/customers", {
        "display_name": "Other", "identities": [{"type": "email", "value": "TAKEN@example.org"}]}),
        409, "conflict")
    assert "already belongs" in b["detail"], b
    assert counts(srv) == before


def test_lookup_by_identity_in_any_spelling(srv):
    c = create(srv, identities=[{"type": "email", "value": "look.up@example.net"},
                                {"type": "phone", "value": "+33 1 23 45 67 89"},
                                {"type": "social", "network": "x", "value": "@LookUp"}])
    for ident in ({"type": "email", "value": "LOOK.UP@EXAMPLE.NET"},
                  {"type": "phone", "value": "0033123456789"},
                  {"type": "social", "network": "X", "value": "lookup"}):
        st, _, found = srv.req("POST", "/v1/customers/lookup", ident, purpose="service")
        assert st == 200 and found["id"] == c["id"], (ident, st, found)
    assert_problem(srv.req("POST", "/v1/customers/lookup",
                           {"type": "email", "value": "nobody@example.net"}, purpose="service"),
                   404, "not-found")
    assert_problem(srv.req("POST", "/v1/customers/lookup",
                           {"type": "email", "value": "look.up@example.net"}), 400,
                   "purpose-required")


def test_patch_sets_and_null_removes(srv):
    c = create(srv, display_name="Bob", locale="en-GB", attributes={"tier": "silver"})
    st, _, u = srv.req("PATCH", "/v1/customers/" + c["id"],
                       {"display_name": None, "locale": "fr-FR", "attributes": {"tier": "gold"},
                        "time_zone": "Europe/Paris"}, purpose="service")
    assert st == 200, u
    assert u["display_name"] is None and u["locale"] == "fr-FR", u
    assert u["attributes"] == {"tier": "gold"} and u["time_zone"] == "Europe/Paris", u
    st, _, g = srv.req("GET", "/v1/customers/" + c["id"], purpose="service")
    assert st == 200 and g["display_name"] is None and g["locale"] == "fr-FR", g
    assert g["attributes"] == {"tier": "gold"}, g
    st, _, u = srv.req("PATCH", "/v1/customers/" + c["id"], {"attributes": None, "locale": None},
                       purpose="service")
    assert st == 200 and u["attributes"] in ({}, None) and u["locale"] is None, u
    assert u["time_zone"] == "Europe/Paris", u  # untouched members stay
    assert_problem(srv.req("PATCH", "/v1/customers/" + c["id"], {"email": "x@example.com"},
                           purpose="service"), 400, "invalid-request")


def test_add_identity(srv):
    c = create(srv, display_name="Cy")
    st, _, u = srv.req("POST", f"/v1/customers/{c['id']}/identities",
                       {"type": "email", "value": "Cy@Example.ORG"}, purpose="service")
    assert st == 201 and idents(u) == [("email", None, "cy@example.org")], (st, u)
    st, _, f = srv.req("POST", "/v1/customers/lookup", {"type": "email", "value": "cy@example.org"},
                       purpose="service")
    assert st == 200 and f["id"] == c["id"]
    other = create(srv)
    assert_problem(srv.req("POST", f"/v1/customers/{other['id']}/identities",
                           {"type": "email", "value": "cy@example.org"}, purpose="service"), 409, "conflict")
    assert_problem(srv.req("POST", "/v1/customers/cus_00000000000000000000000000/identities",
                           {"type": "email", "value": "z@example.org"}, purpose="service"), 404,
                   "not-found")


def test_merge_moves_identities_and_interactions(srv):
    survivor = create(srv, display_name="Dee", identities=[
        {"type": "email", "value": "dee@example.com"}])
    merged = create(srv, display_name="D.", identities=[
        {"type": "email", "value": "dee.work@example.com"},
        {"type": "phone", "value": "+1 415 555 0100"}])
    ids = []
    for i, cid in enumerate([survivor["id"], merged["id"], merged["id"]]):
        st, _, it = srv.req("POST", "/v1/interactions", interaction(cid, body=f"m{i}"))
        assert st == 201, it
        ids.append(it["id"])
    st, _, s = srv.req("POST", f"/v1/customers/{survivor['id']}/merge", {"merge": merged["id"]},
                       purpose="service")
    assert st == 200 and s["id"] == survivor["id"] and s["status"] == "active", s
    assert idents(s) == [("email", None, "dee.work@example.com"),
                         ("email", None, "dee@example.com"),
                         ("phone", None, "+14155550100")], idents(s)
    # The merged id answers with a pointer to the survivor.
    st, _, m = srv.req("GET", f"/v1/customers/{merged['id']}", purpose="service")
    assert st == 200 and m["status"] == "merged" and m["merged_into"] == survivor["id"], m
    assert "display_name" not in m and "identities" not in m, m
    # The survivor's timeline holds all three; the merged id's timeline follows to it.
    tl = timeline(srv, survivor["id"])
    assert sorted(i["id"] for i in tl) == sorted(ids), tl
    assert all(i["customer_id"] == survivor["id"] for i in tl)
    assert sorted(i["id"] for i in timeline(srv, merged["id"])) == sorted(ids)
    st, _, it = srv.req("GET", "/v1/interactions/" + ids[2], purpose="service")
    assert st == 200 and it["customer_id"] == survivor["id"] and it["body"] == "m2", it
    # A moved identity now finds the survivor, and new interactions land there.
    st, _, f = srv.req("POST", "/v1/customers/lookup", {"type": "phone", "value": "+14155550100"},
                       purpose="service")
    assert st == 200 and f["id"] == survivor["id"], f
    st, _, it = srv.req("POST", "/v1/interactions", {
        "identity": {"type": "email", "value": "DEE.WORK@example.com"}, "channel": "email",
        "direction": "inbound"})
    assert st == 201 and it["customer_id"] == survivor["id"] and not it["customer_created"], it
    # The merge is recorded in the audit ledger.
    st, _, a = srv.req("GET", "/v1/audit?action=customer.merge")
    assert st == 200, a
    ev = [e for e in a["items"] if e.get("resource_id") == merged["id"]]
    assert len(ev) == 1 and ev[0]["customer_id"] == survivor["id"], a
    assert ev[0]["action"] == "customer.merge" and ev[0]["actor_role"] == "admin", ev


def test_merge_errors(srv):
    a, b = create(srv), create(srv)
    assert_problem(srv.req("POST", f"/v1/customers/{a['id']}/merge", {"merge": a["id"]},
                           purpose="service"), 400, "invalid-request")
    assert_problem(srv.req("POST", f"/v1/customers/{a['id']}/merge",
                           {"merge": "cus_00000000000000000000000000"}, purpose="service"), 404, "not-found")
    assert srv.req("POST", f"/v1/customers/{a['id']}/merge", {"merge": b["id"]},
                   purpose="service")[0] == 200
    before = counts(srv)
    # b is already merged: merging it again, or into it, or patching it, is a conflict.
    for path, body in ((f"/v1/customers/{a['id']}/merge", {"merge": b["id"]}),
                       (f"/v1/customers/{b['id']}/merge", {"merge": a["id"]})):
        p = assert_problem(srv.req("POST", path, body, purpose="service"), 409, "conflict")
        assert "merged into" in p["detail"], p
    assert_problem(srv.req("PATCH", f"/v1/customers/{b['id']}", {"locale": "de"},
                           purpose="service"), 409, "conflict")
    assert counts(srv) == before
    st, _, m = srv.req("GET", f"/v1/customers/{b['id']}", purpose="service")
    assert m["status"] == "merged" and m["merged_into"] == a["id"], m


def test_list_customers_pages_without_merged(srv):
    seen, cursor = [], None
    while True:
        path = "/v1/customers?limit=3" + (f"&cursor={cursor}" if cursor else "")
        st, _, p = srv.req("GET", path, purpose="service")
        assert st == 200 and len(p["items"]) <= 3, p
        seen += [c["id"] for c in p["items"]]
        cursor = p["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen))
    active = counts(srv)["customers"] - counts(srv)["merges"]
    assert len(seen) == active, (len(seen), active)
    assert all(srv.req("GET", f"/v1/customers/{c}", purpose="service")[2]["status"] == "active"
               for c in seen[:5])
