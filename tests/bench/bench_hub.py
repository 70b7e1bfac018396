"""Per-cell round trip through JupyterHub's proxy against the same user's
server reached directly, for kernex and for Python's tornado websocket
client (what jupyter_server's own gateway client uses), side by side in one
run. A real hub (tests/gateway/jupyterhub.py) on 127.0.0.1, one user server,
a trivial cell ('pass') on a python3 kernel; each client runs CELLS cells per
path per round, ROUNDS rounds alternating the paths.

Usage: bench_hub.py KERNEX [CELLS=100] [ROUNDS=3]"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
from jupyterhub import Hub  # noqa: E402

from tornado.httpclient import HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402
import urllib.request  # noqa: E402

KERNEX = sys.argv[1]
CELLS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3


def kernex_cells(url, token, script):
    r = subprocess.run([KERNEX, "run", "--json", "--gateway", url, "--token", token, script],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"kernex run exited {r.returncode}: {r.stderr}{r.stdout[-2000:]}")
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return [rec["elapsed_ms"] for rec in records[1:]]  # the first cell warms up


def rest(url, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                 headers={"Authorization": "token " + token})
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read()
    return json.loads(text) if text else None


async def tornado_cells(url, token, n):
    kernel = rest(url, "POST", "/api/kernels", token, {"name": "python3"})
    try:
        ws_url = url.replace("http://", "ws://").rstrip("/") + f"/api/kernels/{kernel['id']}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": "token " + token}))
        session = uuid.uuid4().hex
        times = []
        for i in range(n + 1):
            msg_id = uuid.uuid4().hex
            msg = {"header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                              "username": "bench", "version": "5.3", "date": ""},
                   "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                   "content": {"code": "pass", "silent": False, "store_history": True,
                               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}
            start = asyncio.get_running_loop().time()
            await conn.write_message(json.dumps(msg))
            replied = idle = False
            while not (replied and idle):
                m = json.loads(await conn.read_message())
                if m.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if m["msg_type"] == "execute_reply":
                    replied = True
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
            if i:  # the first cell warms up
                times.append((asyncio.get_running_loop().time() - start) * 1000)
        conn.close()
        return times
    finally:
        rest(url, "DELETE", f"/api/kernels/{kernel['id']}", token)


def main():
    # bob's server turns Nagle off on its sockets (TCP_NODELAY): the row that
    # shows whether the proxy's 40 ms are the server's Nagle on the proxy's
    # connection, which no client can reach.
    with Hub(nodelay_users=("bob",)) as hub, tempfile.TemporaryDirectory() as work:
        hub.start_server("alice")
        hub.start_server("bob")
        token = hub.user_token("alice")
        bob_token = hub.user_token("bob")
        script = os.path.join(work, "cells.py")
        with open(script, "w") as f:
            f.write("\n# %%\n".join(["pass"] * (CELLS + 1)) + "\n")
        paths = {"hub proxy": (hub.user_url("alice"), token), "direct": (hub.direct_url("alice"), token),
                 "proxy, server nodelay": (hub.user_url("bob"), bob_token)}
        results = {(c, p): [] for c in ("kernex", "tornado") for p in paths}
        for _ in range(ROUNDS):
            for p, (url, tok) in paths.items():
                results[("kernex", p)] += kernex_cells(url, tok, script)
                results[("tornado", p)] += asyncio.run(tornado_cells(url, tok, CELLS))
        print(f"trivial cell round trip (python3 'pass'), {CELLS} cells x {ROUNDS} rounds per row")
        print(f"{'client':<9} {'path':<22} {'median ms':>10} {'p90 ms':>8}")
        for (c, p), t in results.items():
            t = sorted(t)
            print(f"{c:<9} {p:<22} {statistics.median(t):>10.2f} {t[int(len(t) * 0.9)]:>8.2f}")
        for c in ("kernex", "tornado"):
            ratio = statistics.median(results[(c, "hub proxy")]) / statistics.median(results[(c, "direct")])
            print(f"{c}: proxy / direct = {ratio:.2f}x")


main()
