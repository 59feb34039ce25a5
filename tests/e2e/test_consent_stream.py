"""The bulk consent check streams its NDJSON: an audience larger than the server's stream buffer
arrives complete, in order, with a closing summary line; a client that reads a little and hangs
up does not hurt the server (it keeps serving and stops cleanly, without leaks)."""
import json
import socket

from harness import Server

N = 25000


def setup_module():
    srv = Server()
    # Ids the projection does not know: each gets a line (only_allowed false) with its reason.
    srv.body = json.dumps({"purpose": "marketing", "channel": "email", "only_allowed": False,
                           "customer_ids": [f"cus_{i:026d}" for i in range(N)]}).encode()
    return srv


def teardown_module(srv):
    srv.stop()  # checks a clean exit: no sanitizer report, no leak
    srv.cleanup()


def test_large_audience_arrives_whole(srv):
    st, hdr, body = srv.req("POST", "/v1/consents/check/bulk", raw=srv.body)
    assert st == 200, body
    assert hdr.get("transfer-encoding") == "chunked", hdr
    assert hdr["content-type"].startswith("application/x-ndjson")
    lines = body.decode().splitlines()
    assert len(lines) == N + 1
    assert json.loads(lines[0])["customer_id"] == f"cus_{0:026d}"
    assert json.loads(lines[N - 1])["customer_id"] == f"cus_{N - 1:026d}"
    assert all(json.loads(l)["allow"] is False for l in lines[:100])
    assert json.loads(lines[-1]) == {"summary": {"checked": N, "allowed": 0}}


def test_client_hanging_up_mid_stream(srv):
    head = (f"POST /v1/consents/check/bulk HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {srv.admin}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(srv.body)}\r\n\r\n").encode()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(head + srv.body)
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        s.close()
        assert srv.req("GET", "/healthz", token=None)[0] == 200
    # And a full read still works afterwards.
    st, _, body = srv.req("POST", "/v1/consents/check/bulk", raw=srv.body)
    assert st == 200 and len(body.decode().splitlines()) == N + 1
