"""What the CLI's end-to-end tests share: a temporary directory per test, a
Jupyter runtime dir inside it that must be empty at the end (no run may leave
a connection file behind), and the kernex binary of the build tree."""
import os
import subprocess
import tempfile
import unittest

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")


def alive(pid):
    """True while pid exists and is not a zombie (its parent reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


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
