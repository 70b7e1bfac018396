"""What the CLI's end-to-end tests share: a temporary directory per test, a
Jupyter runtime dir inside it that must be empty at the end (no run may leave
a connection file behind), and the kernex binary of the build tree."""
import fcntl
import os
import pty
import select
import subprocess
import tempfile
import termios
import time
import unittest

from process_state import alive, wait_gone  # noqa: F401 (for the tests that import them from here)

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")


def run_in_pty(args, env, cwd, answer=None, respond=None, stdin_text=None):
    """Runs kernex ARGS with a terminal as stdin, stdout and stderr; returns
    (exit status, all it printed as bytes). answer is typed once the code asks
    for a password ("Password:" printed and echo turned off). respond(seen),
    called as output arrives, returns bytes to type or None. With stdin_text,
    stdin is a pipe carrying it and the terminal is kernex's controlling
    terminal (what /dev/tty opens)."""
    master, slave = pty.openpty()

    def take_terminal():
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)  # stdout is the pty's slave

    proc = subprocess.Popen([KERNEX, *args], stdin=slave if stdin_text is None else subprocess.PIPE, stdout=slave,
                            stderr=slave, env=env, cwd=cwd, start_new_session=True,
                            preexec_fn=None if stdin_text is None else take_terminal)
    os.close(slave)
    if stdin_text is not None:
        proc.stdin.write(stdin_text.encode())
        proc.stdin.close()
    seen = b""
    deadline = time.monotonic() + 60
    answered = answer is None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            typed = respond(seen) if respond else None
            if typed:
                os.write(master, typed)
        # kernex turns echo off after the prompt: answer once it did
        # (a terminal's settings read through the master are the slave's).
        if not answered and b"Password:" in seen and not termios.tcgetattr(master)[3] & termios.ECHO:
            os.write(master, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # a hang: fail, but leave nothing running
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, seen


class cli_test_case(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.env = dict(os.environ, JUPYTER_RUNTIME_DIR=os.path.join(self.tmp.name, "runtime"),
                        PYDEVD_DISABLE_FILE_VALIDATION="1")

    def tearDown(self):
        # No connection file may be left behind by any run.
        runtime = os.path.join(self.tmp.name, "runtime")
        self.assertEqual(os.listdir(runtime) if os.path.isdir(runtime) else [], [])
        self.tmp.cleanup()

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def kernex(self, *args, stdin=None, env=None):
        """Runs `kernex ARGS` in the test's directory; returns the CompletedProcess."""
        return subprocess.run([KERNEX, *args], capture_output=True, text=True, input=stdin,
                              env=env or self.env, timeout=120, cwd=self.tmp.name)
