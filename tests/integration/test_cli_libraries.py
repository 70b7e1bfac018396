"""Which shared libraries the kernex CLI loads (issue 17 item 7): libzmq,
libssl and libcrypto only when a command uses them (src/dlopen loads them on
first use), never for --version, --help or `exec` with the local executor;
a command that needs ZeroMQ loads it and works; one whose library cannot be
loaded says which, what for, and what to install. What the dynamic loader
loaded is read from its own trace (LD_DEBUG=files)."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from cli_test_support import cli_test_case  # noqa: E402

OPTIONAL = ("libzmq", "libssl", "libcrypto")


class libraries_test(cli_test_case):
    def traced(self, *args, stdin=None, env=None):
        """Runs kernex ARGS with the loader's trace on; returns the
        CompletedProcess and the names of the libraries kernex's own process
        loaded (at start and by dlopen)."""
        trace = os.path.join(self.tmp.name, "ld-trace")
        r = self.kernex(*args, stdin=stdin,
                        env=dict(env or self.env, LD_DEBUG="files", LD_DEBUG_OUTPUT=trace))
        names = set()
        for entry in os.listdir(self.tmp.name):
            if entry.startswith("ld-trace."):
                with open(os.path.join(self.tmp.name, entry), errors="replace") as f:
                    names.update(re.findall(r"file=(\S+)", f.read()))
                os.unlink(os.path.join(self.tmp.name, entry))
        self.assertIn("libc.so.6", names)  # the trace works
        return r, names

    def optional_in(self, names):
        return sorted(n for n in names if n.startswith(OPTIONAL))

    def test_version_help_and_local_exec_load_none_of_them(self):
        for args, stdin in [(["--version"], None), (["--help"], None), (["exec", "--help"], None),
                            (["exec", "-"], "```bash\necho ran\n```\n"),
                            (["exec", "--json", "-"], "```python\nprint('py')\n```\n")]:
            with self.subTest(args=args):
                r, names = self.traced(*args, stdin=stdin)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(self.optional_in(names), [])
        self.assertIn("ran", self.traced("exec", "-", stdin="```bash\necho ran\n```\n")[0].stdout)

    def test_a_kernel_loads_zeromq_and_works(self):
        r, names = self.traced("run", "--kernel", "kernex-test", self.write("cell.txt", "result 42\n"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "42\n")
        self.assertIn("libzmq.so.5", names)
        self.assertIn("libcrypto.so.3", names)  # the messages' HMAC

    def test_zeromq_that_cannot_be_loaded_is_said_and_nothing_is_left(self):
        # A libzmq.so.5 that is not a library comes first on the search path.
        broken = os.path.join(self.tmp.name, "broken-libs")
        os.makedirs(broken)
        with open(os.path.join(broken, "libzmq.so.5"), "w") as f:
            f.write("not a shared library\n")
        r = self.kernex("run", "--kernel", "kernex-test", self.write("cell.txt", "result 42\n"),
                        env=dict(self.env, LD_LIBRARY_PATH=broken))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot load libzmq.so.5 (ZeroMQ, which Jupyter kernels' wire protocol needs "
                      "(Debian: apt-get install libzmq5)): ", r.stderr)
        self.assertNotIn("42", r.stdout)
        # tearDown: no connection file left in the runtime dir.


if __name__ == "__main__":
    unittest.main()
