"""`meson install` puts kernex-bash where Jupyter and kernex find it.

Installs the build into a temporary DESTDIR, points JUPYTER_PATH at the
installed <prefix>/<datadir>/jupyter (inside the DESTDIR), and checks that
`kernex kernelspec list` and Debian's jupyter_client listing both show
kernex-bash there, and that the installed kernel.json starts the installed
binary (<prefix>/<bindir>/kernex-bash, which inside the DESTDIR is
<destdir>/<prefix>/<bindir>/kernex-bash).

    test_install.py MESON BUILD_DIR PREFIX BINDIR DATADIR LIBEXECDIR LIBDIR

Run by meson (suite integration) with the values of its own configuration.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

PYTHON = "/usr/bin/python3"


def in_destdir(destdir, path):
    """Where an absolute install path lands inside destdir."""
    return os.path.join(destdir, os.path.relpath(path, "/"))


class install_test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.meson, cls.build, prefix, bindir, datadir, libexecdir, libdir = sys.argv[1:8]
        cls.bindir = os.path.join(prefix, bindir)      # bindir may be absolute already
        cls.datadir = os.path.join(prefix, datadir)
        cls.libexecdir = os.path.join(prefix, libexecdir)
        cls.libdir = os.path.join(prefix, libdir)
        cls.root = tempfile.mkdtemp(prefix="kernex-install-")
        cls.destdir = os.path.join(cls.root, "dest")
        # --no-rebuild: meson test has built the targets this test depends on.
        done = subprocess.run(
            [cls.meson, "install", "-C", cls.build, "--destdir", cls.destdir, "--no-rebuild", "--quiet"],
            capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            shutil.rmtree(cls.root, ignore_errors=True)
            raise AssertionError(f"meson install failed:\n{done.stdout}\n{done.stderr}")
        cls.jupyter_data = in_destdir(cls.destdir, os.path.join(cls.datadir, "jupyter"))
        cls.spec_dir = os.path.join(cls.jupyter_data, "kernels", "kernex-bash")
        user_data = os.path.join(cls.root, "user-data")
        os.makedirs(user_data)
        cls.env = dict(os.environ)
        cls.env.update({
            "JUPYTER_PATH": cls.jupyter_data,
            "JUPYTER_DATA_DIR": user_data,
            "IPYTHONDIR": os.path.join(cls.root, "ipython"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def run_ok(self, argv):
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout

    def listed_dir(self, listing):
        """The directory a plain `kernelspec list` shows for kernex-bash."""
        for line in listing.splitlines():
            fields = line.split(None, 1)
            if fields and fields[0] == "kernex-bash":
                return fields[1].strip()
        self.fail(f"kernex-bash is not listed:\n{listing}")

    def test_kernex_reaper_is_where_the_installed_library_looks(self):
        # The library execs it (a daemon over TLS, kill -9 of kernex) from
        # <libexecdir>/kernex when KERNEX_LIBEXEC_DIR is not set.
        where = os.path.join(self.libexecdir, "kernex", "kernex-reaper")
        installed = in_destdir(self.destdir, where)
        self.assertTrue(os.access(installed, os.X_OK), installed)
        with open(in_destdir(self.destdir, os.path.join(self.libdir, "libkernex.so.0")), "rb") as f:
            self.assertIn(os.path.dirname(where).encode() + b"\0", f.read())
        done = subprocess.run([installed], capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 2)
        self.assertIn("started by kernex", done.stderr)

    def test_installed_kernel_json_names_the_installed_binary(self):
        with open(os.path.join(self.spec_dir, "kernel.json"), encoding="utf-8") as f:
            spec = json.load(f)
        binary = os.path.join(self.bindir, "kernex-bash")
        self.assertEqual(spec["argv"], [binary, "-f", "{connection_file}"])
        self.assertEqual(spec["language"], "bash")
        self.assertEqual(spec["interrupt_mode"], "signal")
        installed = in_destdir(self.destdir, binary)
        self.assertTrue(os.access(installed, os.X_OK), installed)
        # The installed program runs (it links xeus, not the kernex library).
        self.assertIn("kernex-bash", self.run_ok([installed, "--version"]))

    def test_kernex_lists_it_at_the_installed_location(self):
        kernex = os.path.join(self.build, "src", "cli", "kernex")
        self.assertEqual(self.listed_dir(self.run_ok([kernex, "kernelspec", "list"])), self.spec_dir)
        listed = json.loads(self.run_ok([kernex, "kernelspec", "list", "--json"]))["kernelspecs"]["kernex-bash"]
        self.assertEqual(listed["resource_dir"], self.spec_dir)
        self.assertEqual(listed["spec"]["argv"][0], os.path.join(self.bindir, "kernex-bash"))
        self.assertEqual(listed["spec"]["display_name"], "Bash (kernex)")

    def test_jupyter_lists_it_at_the_installed_location(self):
        app = [PYTHON, "-m", "jupyter_client.kernelspecapp", "list"]
        self.assertEqual(self.listed_dir(self.run_ok(app)), self.spec_dir)
        listed = json.loads(self.run_ok(app + ["--json"]))["kernelspecs"]["kernex-bash"]
        self.assertEqual(listed["resource_dir"], self.spec_dir)
        self.assertEqual(listed["spec"]["argv"][0], os.path.join(self.bindir, "kernex-bash"))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
