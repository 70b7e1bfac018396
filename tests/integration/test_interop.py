"""kernex and Debian's jupyter_client drive each other's kernels.

1. A kernel started by `kernex kernel start` is driven by jupyter_client from
   the connection file, and SIGTERM to kernex shuts it down cleanly.
2. kernex (`kernex run --existing`) drives a kernel started by jupyter_client,
   named by its path or, as `jupyter console --existing` takes it, by the
   bare kernel-ID.json (or ID) found in the Jupyter runtime dir.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from jupyter_client import BlockingKernelClient, KernelManager

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists": look at its state.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


class InteropTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        os.environ["JUPYTER_RUNTIME_DIR"] = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_jupyter_client_drives_a_kernel_started_by_kernex(self):
        conn_file = os.path.join(self.tmp.name, "kernex-started.json")
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "python3", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            printed = proc.stdout.readline().strip()
            self.assertEqual(printed, conn_file)
            self.assertEqual(os.stat(conn_file).st_mode & 0o777, 0o600)

            kc = BlockingKernelClient()
            kc.load_connection_file(conn_file)
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            seen = []
            reply = kc.execute_interactive("x = 21\nprint(x * 2)", timeout=30,
                                           output_hook=lambda m: seen.append(m))
            self.assertEqual(reply["content"]["status"], "ok")
            streams = [m["content"]["text"] for m in seen if m["msg_type"] == "stream"]
            self.assertEqual("".join(streams), "42\n")
            reply = kc.execute_interactive("import os; print(os.getpid())", timeout=30,
                                           output_hook=lambda m: seen.append(m))
            kernel_pid = int([m["content"]["text"] for m in seen if m["msg_type"] == "stream"][-1])
            kc.stop_channels()
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(conn_file))
        self.assertFalse(process_exists(kernel_pid))

    def test_kernex_drives_a_kernel_started_by_jupyter_client(self):
        # Where and how `jupyter kernel` (jupyter_client's KernelApp) puts it.
        km = KernelManager(kernel_name="python3",
                           connection_file=os.path.join(self.tmp.name, f"kernel-{uuid.uuid4()}.json"))
        km.start_kernel()
        try:
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            kc.execute_interactive("shared = 'from jupyter_client'", timeout=30)
            kc.stop_channels()
            cells = "print(shared)\n# %%\nshared.upper()\n"
            result = subprocess.run([KERNEX, "run", "--existing", km.connection_file, "--json", "-"],
                                    input=cells, capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            lines = [json.loads(line) for line in result.stdout.splitlines()]
            self.assertEqual([c["status"] for c in lines], ["ok", "ok"])
            self.assertEqual(lines[0]["outputs"][0]["text"], "from jupyter_client\n")
            self.assertEqual(lines[1]["outputs"][0]["data"]["text/plain"], "'FROM JUPYTER_CLIENT'")
            # What `jupyter kernel` prints, resolved in the runtime dir as
            # `jupyter console --existing` does: the bare file name, or the id.
            self.assertEqual(os.path.dirname(km.connection_file), self.tmp.name)
            name = os.path.basename(km.connection_file)
            for given in (name, name[len("kernel-"):-len(".json")]):
                result = subprocess.run([KERNEX, "run", "--existing", given, "-"], input="print(shared)\n",
                                        capture_output=True, text=True, timeout=60, cwd="/")
                self.assertEqual((result.returncode, result.stdout), (0, "from jupyter_client\n"),
                                 (given, result.stderr))
            # kernex exec (the executors' connection_file) takes it too.
            result = subprocess.run([KERNEX, "exec", "--executor", "jupyter", "--existing", name, "-"],
                                    input="```python\nprint(shared.lower())\n```\n", capture_output=True,
                                    text=True, timeout=60, cwd="/")
            self.assertEqual((result.returncode, result.stdout), (0, "from jupyter_client\n"), result.stderr)
            # Two files match an ambiguous part: both are named, none is used.
            twin = os.path.join(self.tmp.name, name.replace("kernel-", "kernel-x"))
            with open(km.connection_file) as f, open(twin, "w") as g:
                g.write(f.read())
            result = subprocess.run([KERNEX, "run", "--existing", "kernel-", "-"], input="print(1)\n",
                                    capture_output=True, text=True, timeout=60, cwd="/")
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("several", result.stderr)
            self.assertIn(twin, result.stderr)
            self.assertEqual(result.stdout, "")
            result = subprocess.run([KERNEX, "run", "--existing", "kernel-no-such-id.json", "-"],
                                    input="print(1)\n", capture_output=True, text=True, timeout=60, cwd="/")
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("runtime dir", result.stderr)
        finally:
            km.shutdown_kernel(now=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
