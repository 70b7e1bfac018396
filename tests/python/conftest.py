"""Shared fixtures of the python suite: Debian's python3 imports kernex from
the build tree (PYTHONPATH=<build>/python, set by meson)."""

import os
import sys

import pytest

os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


@pytest.fixture
def kernel(tmp_path):
    import kernex

    with kernex.start_kernel("python3", cwd=tmp_path) as k:
        yield k


def wait_for(predicate, seconds=60.0):
    """Polls predicate until true; fails the test after seconds (a bound against hangs, not a timing)."""
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helpers"))
from process_walk import eventually_none, kill_leftovers, unique_marker  # noqa: E402,F401


def none_left(marker, seconds=5.0):
    """True once no process holds marker; SIGKILLs what is left after seconds and says False."""
    left = eventually_none(marker, seconds)
    kill_leftovers(marker)
    return not left


class _UnixHTTPConnection:
    """Just enough HTTP over a unix socket for the Engine API calls below."""

    def __init__(self, socket_path):
        import http.client
        import socket

        class Connection(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(60)
                self.sock.connect(socket_path)

        self.connection = Connection("localhost")

    def request(self, method, path, body=None, headers=None):
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.read()


BUSYBOX_IMAGE = "kernex-test/busybox:latest"


@pytest.fixture(scope="session")
def dockerd():
    """A dockerd of the suite's own (no bridge, no iptables, own data and
    exec roots) with a busybox image imported from busybox-static; yields
    its host (unix://...). Stopped by pid and its dirs removed at the end."""
    import shutil
    import signal
    import subprocess
    import tarfile
    import tempfile
    import time

    if os.geteuid() != 0:
        pytest.fail("the docker drop-in tests start their own dockerd and need root (CI runs as root)")
    root = tempfile.mkdtemp(prefix="kxp-", dir="/tmp")
    sock = os.path.join(root, "docker.sock")
    log = open(os.path.join(root, "dockerd.log"), "wb")
    daemon = subprocess.Popen(
        ["/usr/sbin/dockerd", "--host", "unix://" + sock, "--data-root", os.path.join(root, "data"),
         "--exec-root", os.path.join(root, "exec"), "--pidfile", os.path.join(root, "docker.pid"),
         "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false",
         "--containerd-namespace=kernex-pytest", "--containerd-plugins-namespace=kernex-pytest-plugins"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def log_tail():
        with open(os.path.join(root, "dockerd.log"), "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    try:
        deadline = time.monotonic() + 90
        while True:
            if daemon.poll() is not None:
                pytest.fail("dockerd exited at start:\n" + log_tail())
            try:
                if _UnixHTTPConnection(sock).request("GET", "/_ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("dockerd did not answer /_ping in 90 s:\n" + log_tail())
            time.sleep(0.1)
        # busybox-static as an image: /bin/busybox and a link per applet.
        rootfs = os.path.join(root, "rootfs")
        os.makedirs(os.path.join(rootfs, "bin"))
        os.makedirs(os.path.join(rootfs, "tmp"))
        shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                os.symlink("busybox", os.path.join(rootfs, "bin", applet))
        tar_path = os.path.join(root, "busybox.tar")
        with tarfile.open(tar_path, "w") as tar:
            tar.add(rootfs, arcname=".")
        with open(tar_path, "rb") as f:
            status, body = _UnixHTTPConnection(sock).request(
                "POST", "/images/create?fromSrc=-&repo=kernex-test/busybox&tag=latest", body=f.read(),
                headers={"Content-Type": "application/x-tar"})
        if status != 200:
            pytest.fail(f"importing the busybox image: {status} {body[:500]!r}")
        yield "unix://" + sock
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        # Anything dockerd left mounted under its dirs, deepest first.
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(root)]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(root, ignore_errors=True)


def containers(host):
    """Names of the containers dockerd has, running or not."""
    import json

    status, body = _UnixHTTPConnection(host[len("unix://"):]).request("GET", "/containers/json?all=1")
    assert status == 200, body
    return [name.lstrip("/") for c in json.loads(body) for name in c["Names"]]
