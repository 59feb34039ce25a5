"""A webhook receiver for the tests (not a test module itself): a real HTTP server on a free
loopback port that records every delivery and answers as told — acknowledging, answering 500,
answering slowly, or not listening at all (down)."""
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import ROOT, free_port


class Receiver:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.got = []          # (headers dict, body bytes, monotonic time, status answered)
        self.fail_next = 0     # answer 500 to this many more requests
        self.status = 204      # then this
        self.delay = 0.0       # seconds before answering
        self.server = None

    def start(self):
        recv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if recv.server is None:
                    # Stopped: a connection kept alive from before gets no answer either.
                    self.close_connection = True
                    return
                with recv.lock:
                    delay = recv.delay
                    if recv.fail_next > 0:
                        recv.fail_next -= 1
                        status = 500
                    else:
                        status = recv.status
                if delay:
                    time.sleep(delay)
                with recv.lock:
                    recv.got.append(({k.lower(): v for k, v in self.headers.items()}, body,
                                     time.monotonic(), status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def acknowledged(self):
        """The deliveries answered 2xx, in the order they arrived: (headers, body)."""
        with self.lock:
            return [(h, b) for h, b, _, st in self.got if 200 <= st < 300]

    def wait_for(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.acknowledged()) >= n:
                return self.acknowledged()
            time.sleep(0.05)
        raise AssertionError(f"receiver got {len(self.acknowledged())} of {n} deliveries: "
                             f"{[(h.get('webhook-id'), st) for h, _, _, st in self.got]}")


def docs_verifier():
    """The example verifier of docs/webhooks.md, as written there: the code between the
    <!-- verifier --> markers, executed, its verify function and error class returned."""
    with open(f"{ROOT}/docs/webhooks.md") as f:
        text = f.read()
    block = re.search(r"<!-- verifier -->\s*```python\n(.*?)```\s*<!-- /verifier -->", text,
                      re.S)
    assert block, "docs/webhooks.md has no verifier block"
    scope = {}
    exec(compile(block.group(1), "docs/webhooks.md", "exec"), scope)
    return scope["verify"], scope["WebhookVerificationError"]


def closed_port():
    """A loopback port nothing listens on (a receiver that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
