"""`kernex kernelspec list` against the reference listing.

Debian's jupyter_client (`python3 -m jupyter_client.kernelspecapp list`) is
the reference: under the same environment, kernex must print the same table
(names, directories, order and column alignment) and, with --json, the same
data. The environment points JUPYTER_PATH, the user data dir and the IPython
dir into a temporary tree holding kernelspecs that exercise the rules:
mixed-case names, a name shadowed further down the path, a broken
kernel.json, a directory without one, a name outside Jupyter's rule.

Run by meson (suite integration) with KERNEX_BUILD_DIR set.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")
PYTHON = "/usr/bin/python3"


def write_spec(base, name, spec):
    directory = os.path.join(base, "kernels", name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "kernel.json"), "w", encoding="utf-8") as f:
        f.write(spec if isinstance(spec, str) else json.dumps(spec))


class kernelspec_list_test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="kernex-kernelspec-list-")
        first = os.path.join(cls.root, "first")
        second = os.path.join(cls.root, "second")
        data = os.path.join(cls.root, "user-data")
        ipython = os.path.join(cls.root, "ipython")
        write_spec(first, "MixedCase", {"argv": ["first", "{connection_file}"], "display_name": "First"})
        write_spec(second, "mixedcase", {"argv": ["shadowed"], "display_name": "Shadowed"})
        write_spec(second, "Other.Kernel_2", {
            "argv": ["other", "-f", "{connection_file}", "{resource_dir}"],
            "display_name": "Other \u00e9",
            "language": "other",
            "interrupt_mode": "message",
            "env": {"OTHER": "1"},
            "metadata": {"debugger": False, "nested": {"list": [1, "two"]}},
            "ignored_field": True,
        })
        write_spec(second, "broken", "{ not json")
        os.makedirs(os.path.join(second, "kernels", "no-kernel-json"))
        write_spec(second, "Bad Name", {"argv": ["bad"], "display_name": "Bad"})
        write_spec(data, "User-Kernel", {"argv": ["user"], "display_name": "User"})
        write_spec(ipython, "legacy", {"argv": ["legacy"], "display_name": "Legacy"})

        cls.env = dict(os.environ)
        cls.env.update({
            "JUPYTER_PATH": first + os.pathsep + second + "/",
            "JUPYTER_DATA_DIR": data,
            # Also keeps IPython from creating ~/.ipython during the reference run.
            "IPYTHONDIR": ipython,
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def run_both(self, *args):
        reference = subprocess.run([PYTHON, "-m", "jupyter_client.kernelspecapp", "list", *args],
                                   env=self.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(reference.returncode, 0, reference.stderr)
        ours = subprocess.run([KERNEX, "kernelspec", "list", *args],
                              env=self.env, capture_output=True, text=True, timeout=60)
        self.assertEqual(ours.returncode, 0, ours.stderr)
        return reference, ours

    def test_table_matches_jupyter_client(self):
        reference, ours = self.run_both()
        sys.stderr.write("\njupyter_client:\n" + reference.stdout + "kernex:\n" + ours.stdout)
        self.assertEqual(ours.stdout, reference.stdout)
        # The sandbox's kernels are really in it, so the comparison covers them.
        for name in ("mixedcase", "other.kernel_2", "user-kernel", "legacy", "broken", "bad name"):
            self.assertIn("  " + name + " ", ours.stdout)
        self.assertIn(os.path.join(self.root, "first", "kernels", "MixedCase"), ours.stdout)
        self.assertNotIn("no-kernel-json", ours.stdout)
        # A broken kernel.json is listed but warned about.
        self.assertIn("broken", ours.stderr)

    def test_json_matches_jupyter_client(self):
        reference, ours = self.run_both("--json")
        expected = json.loads(reference.stdout)
        got = json.loads(ours.stdout)
        self.assertEqual(got, expected)
        specs = got["kernelspecs"]
        self.assertNotIn("broken", specs)
        self.assertEqual(specs["mixedcase"]["spec"]["display_name"], "First")
        self.assertEqual(specs["other.kernel_2"]["spec"]["interrupt_mode"], "message")
        # The same field order as KernelSpec.to_dict().
        self.assertEqual(list(specs["other.kernel_2"]["spec"]),
                         ["argv", "env", "display_name", "language", "interrupt_mode", "metadata"])

    def test_help_describes_the_command_and_its_flag(self):
        for args in (["kernelspec", "--help"], ["kernelspec", "list", "--help"]):
            result = subprocess.run([KERNEX, *args], capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("list", result.stdout)
        self.assertIn("--json", result.stdout)

    def test_unknown_flag_is_a_usage_error(self):
        result = subprocess.run([KERNEX, "kernelspec", "list", "--no-such-flag"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
