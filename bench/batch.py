#!/usr/bin/env python3
"""Batch ingestion against single ingestion, in one run, each mode on a fresh SQLite
data directory: the same interactions (bench/ingest.lua's shape: identities from a
pool, ~560-byte bodies) sent by the same number of client threads over keep-alive connections,
once as POST /v1/interactions each and once as POST /v1/interactions:batch of 100.

    python3 bench/batch.py [--bin build/candor] [--items 20000] [--threads 8]

Prints one line per mode: BATCH mode=single|batch items=N secs=S rate=R per second."""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ("Thanks for your message about the late parcel; we have asked the courier for an "
        "update and will write again within two working days. " * 4)[:560]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def item(i):
    return {"identity": {"type": "external", "network": "bench", "value": f"c{i % 2000}"},
            "channel": "chat", "direction": "inbound", "body": TEXT}


def run(port, token, mode, items, threads):
    per = items // threads
    errors = []

    def client(t):
        try:
            send(t)
        except (OSError, http.client.HTTPException) as e:
            errors.append(("connection", str(e)))

    def send(t):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        base = t * per
        step = 1 if mode == "single" else 100
        for i in range(base, base + per, step):
            if mode == "single":
                c.request("POST", "/v1/interactions", json.dumps(item(i)), hdr)
            else:
                body = {"items": [item(j) for j in range(i, min(i + 100, base + per))]}
                c.request("POST", "/v1/interactions:batch", json.dumps(body), hdr)
            r = c.getresponse()
            data = r.read()
            if r.status not in (200, 201) or (mode == "batch" and
                                              json.loads(data)["failed"] != 0):
                errors.append((r.status, data[:200]))
        c.close()
    ts = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    t0 = time.time()
    [t.start() for t in ts]
    [t.join() for t in ts]
    secs = time.time() - t0
    if errors:
        sys.exit(f"{mode}: {len(errors)} failed, e.g. {errors[0]}")
    print(f"BATCH mode={mode} items={per * threads} secs={secs:.2f} "
          f"rate={per * threads / secs:.0f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "candor"))
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=8)
    a = ap.parse_args()
    for mode in ("single", "batch"):
        tmp = tempfile.mkdtemp(prefix="candor-batch-")
        data = os.path.join(tmp, "data")
        subprocess.run([a.bin, "init", "--data", data], check=True, capture_output=True)
        port = free_port()
        log = open(os.path.join(tmp, "server.log"), "wb")
        srv = subprocess.Popen([a.bin, "serve", "--data", data, "--listen", f"127.0.0.1:{port}",
                                "--rules", os.path.join(ROOT, "rules")], stdout=log, stderr=log)
        try:
            for _ in range(1200):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                sys.exit("the server did not start")
            with open(os.path.join(data, "admin.token")) as f:
                token = f.read().strip()
            run(port, token, mode, a.items, a.threads)
        finally:
            srv.terminate()
            srv.wait()
            log.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
