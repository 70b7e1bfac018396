"""kernex against a real JupyterHub (tests/gateway/jupyterhub.py): a user's
server at /user/NAME/ through the hub's proxy, as a team on a shared hub
uses it. kernex run, exec --executor jupyter and kernelspec list; what a
user is told when the server is not running or the URL is not a user's
server (the hub answers 302 to /hub/..., then 424); a server stopped mid-cell;
redirects followed once and only on the same origin (the token is never sent
elsewhere); kernex mcp's sessions on the user's server through the official
MCP SDK client; nothing left on the hub.

Usage: test_jupyterhub.py KERNEX"""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jupyterhub import Hub  # noqa: E402

KERNEX = sys.argv[1]
failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
        if detail:
            print("     " + detail.replace("\n", "\n     "))


def kernex(*args, timeout=120, **kw):
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("KERNEX_GATEWAY_URL", None)
    env.pop("KERNEX_GATEWAY_TOKEN", None)
    return subprocess.run([KERNEX, *args], capture_output=True, text=True, timeout=timeout, env=env, **kw)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ")
    except OSError:
        return ""


def mcp_sessions(url, token):
    """kernex mcp with its sessions on the user's server through the hub's
    proxy, driven by the official MCP SDK client (tests/mcp/session_backend.mjs:
    state, tracebacks, progress, cancel, a figure, a second session, restart,
    close). The probe proves the kernels run under the hub's user server."""
    source = os.environ.get("KERNEX_SOURCE_DIR")
    if not source or not os.environ.get("KERNEX_BUILD_DIR"):
        check(False, "MCP sessions through the hub (KERNEX_SOURCE_DIR and KERNEX_BUILD_DIR are set by meson test)")
        return
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1",
               KERNEX_MCP_SESSION_ARGS=json.dumps(["--gateway", url, "--gateway-token", token]),
               KERNEX_MCP_PROBE=json.dumps({"code": "import os; print(os.environ.get('JUPYTERHUB_USER'))",
                                            "expect": "alice"}),
               KERNEX_MCP_IMAGES="1", KERNEX_GATEWAY_URL="", KERNEX_GATEWAY_TOKEN="")
    r = subprocess.run(["/bin/sh", os.path.join(source, "tests", "mcp", "run_test.sh"), "session_backend.mjs"],
                       capture_output=True, text=True, timeout=600, env=env)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "fail 0" in out, "kernex mcp sessions on /user/NAME/ through the MCP SDK client",
          out[-4000:])


def redirect_cases():
    """A server that redirects: same origin followed once, another origin never."""
    seen = {"other": []}

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["other"].append(dict(self.headers))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"default": "x", "kernelspecs": {}}')

        def log_message(self, *a):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Other)
    other_port = other.server_address[1]

    class Redirector(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/away/"):
                target = f"http://127.0.0.1:{other_port}/api/kernelspecs"
            elif self.path.startswith("/loop/"):
                target = "/loop" + self.path  # same origin, again and again
            else:
                target = "/nowhere"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    here = http.server.HTTPServer(("127.0.0.1", 0), Redirector)
    here_port = here.server_address[1]
    for s in (other, here):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        r = kernex("kernelspec", "list", "--gateway", f"http://127.0.0.1:{here_port}/away/", "--token", "secret-token")
        check(r.returncode != 0, "a redirect to another origin is not followed")
        check(seen["other"] == [], "the token never reaches another origin", str(seen["other"]))
        check(f"sending it to http://127.0.0.1:{other_port}/api/kernelspecs" in r.stderr,
              "the error says where the server sent the request", r.stderr)
        r = kernex("kernelspec", "list", "--gateway", f"http://127.0.0.1:{here_port}/loop/", "--token", "t")
        check(r.returncode != 0 and "after a redirect to /loop/loop/api/kernelspecs" in r.stderr,
              "a same-origin redirect is followed once, not twice", r.stderr)
    finally:
        here.shutdown()
        other.shutdown()


def main():
    redirect_cases()
    with Hub() as hub:
        hub.start_server("alice")
        token = hub.user_token("alice")
        url = hub.user_url("alice")
        work = tempfile.mkdtemp(prefix="kernex-hub-test-")

        r = kernex("kernelspec", "list", "--gateway", url, "--token", token)
        check(r.returncode == 0 and "python3" in r.stdout, "kernelspec list through the hub", r.stdout + r.stderr)

        script = os.path.join(work, "a.py")
        with open(script, "w") as f:
            f.write("x = 41\n# %%\nprint(x + 1)\n")
        r = kernex("run", "--gateway", url, "--token", token, script)
        check(r.returncode == 0 and r.stdout.strip().endswith("42"), "kernex run keeps state across cells",
              r.stdout + r.stderr)

        reply = os.path.join(work, "reply.md")
        with open(reply, "w") as f:
            f.write("```python\ny = 6 * 7\nprint(y)\n```\n")
        r = kernex("exec", "--executor", "jupyter", "--gateway", url, "--token", token, reply)
        check(r.returncode == 0 and "42" in r.stdout, "kernex exec --executor jupyter", r.stdout + r.stderr)

        r = kernex("run", "--gateway", url, "--token", "wrong-token", script)
        check(r.returncode != 0 and "token" in r.stderr, "a wrong token is said", r.stderr)

        mcp_sessions(url, token)

        kernels = hub.api("GET", "/user/alice/api/kernels", token=token)
        check(kernels == [], "no kernel left on the user's server", str(kernels))

        # bob's server was never started: the hub answers 302, then 424.
        r = kernex("kernelspec", "list", "--gateway", hub.user_url("bob"), "--token", hub.service_token)
        check(r.returncode != 0, "a user server that is not running is an error")
        check("/user/bob/ is not running" in r.stderr and "POST /hub/api/users/bob/server" in r.stderr,
              "... that says it is not running and how to start it", r.stderr)
        check("Restart the server at" in r.stderr, "... with the hub's own message (one redirect followed)",
              r.stderr)
        check("Traceback" not in r.stderr, "... and no traceback", r.stderr)

        # The user's server stopped while a cell runs: the cell ends, saying so.
        slow = os.path.join(work, "slow.py")
        with open(slow, "w") as f:
            f.write("import time\ntime.sleep(60)\n")
        start = time.monotonic()
        proc = subprocess.Popen([KERNEX, "run", "--gateway", url, "--token", token, slow],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        hub.stop_server("alice")
        try:
            out, err = proc.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        elapsed = time.monotonic() - start
        check(proc.returncode not in (0, None) and elapsed < 50, f"a stopped server ends the cell ({elapsed:.1f} s)",
              err)
        check("not running" in err or "stopped" in err, "... saying the server stopped", err)
        check("HTTP 302 Found" not in err.split("\n")[-2] if err.strip() else False,
              "... not only 'HTTP 302 Found'", err)

        hub_pids = {p: cmdline(p) for p in hub.pids_below()}
    def running(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    deadline = time.monotonic() + 5  # SIGKILLed by Hub.stop: give the kernel a moment to end them
    while any(running(p) for p in hub_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {p: c for p, c in hub_pids.items() if running(p)}
    check(not left, "nothing of the hub left running", str(left))
    if failures:
        print(f"{len(failures)} failed: " + "; ".join(failures))
        sys.exit(1)
    print("all passed")


main()
