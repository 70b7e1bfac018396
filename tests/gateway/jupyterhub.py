"""A real JupyterHub (Debian's jupyterhub 3.0 with configurable-http-proxy)
for the hub tests and benchmark: started on 127.0.0.1 with free ports, the
dummy authenticator and the local process spawner, its database, cookie
secret and the users' home in a temporary dir; a service token with the
admin scopes drives its REST API. Stopped by pid (SIGTERM, which makes the
hub stop the proxy and the users' servers, then SIGKILL of what is left).

The NodeSource node on these machines does not look in /usr/share/nodejs,
where Debian's node-configurable-http-proxy keeps its modules: NODE_PATH
points there."""

import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A single-user server's config that turns Nagle off on every socket its
# tornado server accepts (the benchmark's "nodelay" path).
NODELAY_CONFIG = """
import socket
import tornado.iostream
_init = tornado.iostream.IOStream.__init__
def _nodelay_init(self, sock, *args, **kwargs):
    _init(self, sock, *args, **kwargs)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
tornado.iostream.IOStream.__init__ = _nodelay_init
"""


class Hub:
    def __init__(self, users=("alice", "bob"), nodelay_users=()):
        """nodelay_users: users whose single-user server sets TCP_NODELAY on
        its sockets (Jupyter Server leaves Nagle on for its websockets), for
        the benchmark that shows where the proxy's 40 ms go."""
        self.dir = tempfile.mkdtemp(prefix="kernex-hub-")
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service_token = secrets.token_hex(16)
        self.server_ports = {u: free_port() for u in users}
        config = f"""
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'
c.ConfigurableHTTPProxy.pid_file = '{self.dir}/proxy.pid'
c.JupyterHub.authenticator_class = 'dummy'
c.JupyterHub.spawner_class = 'simple'
c.Spawner.args = ['--allow-root']
c.Spawner.ip = '127.0.0.1'
c.Spawner.notebook_dir = '{self.dir}'
c.Spawner.env_keep = ['PATH', 'LANG', 'JUPYTER_PATH', 'PYDEVD_DISABLE_FILE_VALIDATION']
c.JupyterHub.db_url = 'sqlite:///{self.dir}/hub.sqlite'
c.JupyterHub.cookie_secret_file = '{self.dir}/cookie_secret'
c.JupyterHub.services = [{{'name': 'kernex-test', 'api_token': '{self.service_token}'}}]
c.JupyterHub.load_roles = [{{'name': 'kernex-test-admin',
    'scopes': ['admin:users', 'admin:servers', 'tokens', 'access:servers', 'read:users'],
    'services': ['kernex-test']}}]
c.Authenticator.allowed_users = {set(users)!r}
ports = {self.server_ports!r}
c.Spawner.port = 0
nodelay_users = {set(nodelay_users)!r}
def pre_spawn(spawner):
    spawner.port = ports[spawner.user.name]
    if spawner.user.name in nodelay_users:
        spawner.environment = dict(spawner.environment, JUPYTER_CONFIG_DIR='{self.dir}/nodelay-config')
c.Spawner.pre_spawn_hook = pre_spawn
"""
        nodelay = os.path.join(self.dir, "nodelay-config")
        os.makedirs(nodelay)
        for name in ("jupyter_server_config.py", "jupyter_notebook_config.py"):
            with open(os.path.join(nodelay, name), "w") as f:
                f.write(NODELAY_CONFIG)
        with open(os.path.join(self.dir, "jupyterhub_config.py"), "w") as f:
            f.write(config)
        env = dict(os.environ, NODE_PATH="/usr/share/nodejs", PYDEVD_DISABLE_FILE_VALIDATION="1")
        self.log = open(os.path.join(self.dir, "hub.log"), "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/jupyterhub", "-f", os.path.join(self.dir, "jupyterhub_config.py")],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("GET", "/hub/api/")
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("JupyterHub did not start (apt-get install jupyterhub "
                                       "node-configurable-http-proxy); its log:\n" + self.read_log())
                time.sleep(0.2)

    def read_log(self):
        with open(os.path.join(self.dir, "hub.log")) as f:
            return f.read()[-4000:]

    def api(self, method, path, body=None, token=None):
        """The hub's REST API with the service token; returns the parsed JSON (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": "token " + (token or self.service_token)})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
        return json.loads(text) if text else None

    def start_server(self, user, timeout=60):
        """Starts user's single-user server and waits until it is ready."""
        try:
            self.api("POST", f"/hub/api/users/{user}/server")
        except urllib.error.HTTPError as e:
            if e.code not in (201, 202, 400):  # 400: already running
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/hub/api/users/{user}")
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{user}'s server did not become ready:\n" + self.read_log())

    def stop_server(self, user):
        try:
            self.api("DELETE", f"/hub/api/users/{user}/server")
        except urllib.error.HTTPError as e:
            if e.code not in (202, 204):
                raise

    def user_token(self, user):
        return self.api("POST", f"/hub/api/users/{user}/tokens", {"note": "kernex test"})["token"]

    def user_url(self, user):
        return f"{self.url}/user/{user}/"

    def direct_url(self, user):
        """The single-user server itself, not through the hub's proxy."""
        return f"http://127.0.0.1:{self.server_ports[user]}/user/{user}/"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the hub left: the proxy, the users' servers (their own sessions).
        for pid in self.pids_below():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir])

    def pids_below(self):
        """Processes whose command line or cwd points into the hub's dir or ports."""
        found = []
        marks = [self.dir, str(self.api_port)] + [str(p) for p in self.server_ports.values()]
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if any(m in cmd for m in marks) or cwd.startswith(self.dir):
                found.append(int(entry))
        return found

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
