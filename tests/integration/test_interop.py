"""kernex and Debian's jupyter_client drive each other's kernels.

1. A kernel started by `kernex kernel start` is driven by jupyter_client from
   the connection file, and SIGTERM to kernex shuts it down cleanly.
2. kernex (`kernex run --existing`) drives a kernel started by jupyter_client,
   named by its path or, as `jupyter console --existing` takes it, by the
   bare kernel-ID.json (or ID) found in the Jupyter runtime dir.
3. A client's shutdown_request to a kernel from `kernex kernel start` (what
   `exit` in jupyter console sends) ends kernex cleanly; a client's restart
   restarts the kernel; only a death nobody asked for is called one; also
   with a kernel that does not broadcast its shutdown_reply.
4. IRkernel (it answers heartbeats only between requests): a cell longer than
   several heartbeat periods is not a death; a killed R kernel still is; a
   kernel taken for dead mid-cell gets an interrupt_request.
5. Text mode shows a rich bundle's text/plain, then where the rich form went.
6. `kernex kernel interrupt|shutdown`, `kernex complete|inspect` on a kernel
   jupyter_client started.
7. `kernex run --json` keeps the comm messages a cell sends.
8. jupyter console (Debian's 6.4, --simple-prompt fed through a pipe) on a
   kernel from `kernex kernel start`: code runs, `exit` ends kernex cleanly;
   on kernex-bash, `read -p` is answered from the console's stdin.
9. xeus-python under the CLI: cells, a client's shutdown ending kernel start,
   and an interrupt that kills it as it does under jupyter_client.
10. nbconvert converts the notebooks kernex writes.
"""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from jupyter_client import BlockingKernelClient, KernelManager

from process_state import alive

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")
PYTHON = "/usr/bin/python3"  # Debian's, with jupyter_console and nbconvert


def kernel_pid(kc, deadline):
    """The pid of the kernel answering kc's shell requests, asked until deadline
    (through the execute_reply: iopub may not be subscribed yet after a restart)."""
    while True:
        try:
            reply = kc.execute("", user_expressions={"pid": "__import__('os').getpid()"}, reply=True, timeout=5)
            return int(reply["content"]["user_expressions"]["pid"]["data"]["text/plain"])
        except (TimeoutError, KeyError):
            if time.monotonic() > deadline:
                raise


def new_kernel_pid(kc, old_pid, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        pid = kernel_pid(kc, deadline)
        if pid != old_pid:
            return pid
        if time.monotonic() > deadline:
            raise AssertionError(f"still kernel {old_pid} after {timeout} s")
        time.sleep(0.2)


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
            # What `kernex kernel start` prints without -f (a kernel-ID.json
            # in the runtime dir, next to its kernex-kernel-ID.json record),
            # given to --existing as a bare name or id.
            default = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "python3"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                printed = default.stdout.readline().strip()
                self.assertEqual(os.path.dirname(printed), self.tmp.name)
                name = os.path.basename(printed)
                self.assertTrue(name.startswith("kernel-") and name.endswith(".json"), name)
                for given in (name, name[len("kernel-"):-len(".json")]):
                    result = subprocess.run([KERNEX, "run", "--existing", given, "-"], input="print(6 * 7)\n",
                                            capture_output=True, text=True, timeout=60, cwd="/")
                    self.assertEqual((result.returncode, result.stdout), (0, "42\n"), (given, result.stderr))
            finally:
                default.send_signal(signal.SIGTERM)
                self.assertEqual(default.wait(timeout=30), 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(conn_file))
        self.assertFalse(alive(kernel_pid))

    def start_jupyter_client_kernel(self, kernel_name="python3"):
        """A kernel where and how `jupyter kernel` (jupyter_client's
        KernelApp) puts it, and a ready client of it."""
        km = KernelManager(kernel_name=kernel_name,
                           connection_file=os.path.join(self.tmp.name, f"kernel-{uuid.uuid4()}.json"))
        km.start_kernel()
        try:
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=90)
        except BaseException:
            km.shutdown_kernel(now=True)
            raise
        return km, kc

    def test_kernex_drives_a_kernel_started_by_jupyter_client(self):
        km, kc = self.start_jupyter_client_kernel()
        try:
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

    def test_kernel_requests_from_the_command_line(self):
        # kernex kernel interrupt / shutdown, kernex complete / inspect on a
        # kernel jupyter_client started, named as jupyter console names it.
        km, kc = self.start_jupyter_client_kernel()
        try:
            kc.execute_interactive("import time\nspeckled_variable = 1", timeout=30)
            name = os.path.basename(km.connection_file)

            def kernex(*args):
                return subprocess.run([KERNEX, *args], capture_output=True, text=True, timeout=60, cwd="/")

            r = kernex("complete", name, "speckled_v")
            self.assertEqual(r.returncode, 0, r.stderr)
            reply = json.loads(r.stdout)
            self.assertEqual(reply["status"], "ok")
            self.assertIn("speckled_variable", reply["matches"])
            self.assertEqual((reply["cursor_start"], reply["cursor_end"]), (0, 10))
            # The cursor counts characters, not bytes: after "é" it is at 2.
            r = kernex("complete", name, "é; speckled_v", "2")
            self.assertEqual(json.loads(r.stdout)["cursor_end"], 2, r.stderr)
            r = kernex("inspect", name, "len", "--detail", "0")
            self.assertEqual(r.returncode, 0, r.stderr)
            reply = json.loads(r.stdout)
            self.assertTrue(reply["found"])
            self.assertIn("Return the number of items", reply["data"]["text/plain"])
            r = kernex("complete", name, "x", "5")
            self.assertEqual(r.returncode, 2)
            self.assertIn("cursor position 5 is outside the code", r.stderr)

            # Interrupt a sleeping cell from the command line.
            msg_id = kc.execute("time.sleep(60)")
            time.sleep(1)
            started = time.monotonic()
            r = kernex("kernel", "interrupt", km.connection_file)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIsInstance(json.loads(r.stdout), dict)  # ipykernel's interrupt_reply: {}
            reply = kc.get_shell_msg(timeout=30)
            self.assertEqual(reply["parent_header"]["msg_id"], msg_id)
            self.assertEqual(reply["content"]["status"], "error")
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
            self.assertLess(time.monotonic() - started, 30)
            kc.stop_channels()

            r = kernex("kernel", "shutdown", name)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout), {"status": "ok", "restart": False})
            deadline = time.monotonic() + 30
            while km.is_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertFalse(km.is_alive())
            r = kernex("kernel", "interrupt", "kernel-no-such-id.json")
            self.assertEqual(r.returncode, 2)
            self.assertIn("runtime dir", r.stderr)
        finally:
            km.shutdown_kernel(now=True)

    def test_run_json_keeps_the_comm_messages_a_cell_sends(self):
        # ipywidgets-style traffic from a cell (open with a target, a message
        # with a binary buffer, close) is kept in the cell's --json record.
        code = ("from ipykernel.comm import Comm\n"
                "c = Comm(target_name='kx_front', data={'v': 1})\n"
                "c.send({'w': 2}, buffers=[b'\\x00bin'])\n"
                "c.close({'bye': 3})\n"
                "print('done')\n")
        r = subprocess.run([KERNEX, "run", "--json", "-k", "python3", "-"], input=code,
                           capture_output=True, text=True, timeout=120, cwd="/")
        self.assertEqual(r.returncode, 0, r.stderr)
        record = json.loads(r.stdout.splitlines()[0])
        self.assertEqual(record["status"], "ok")
        comms = record["comms"]
        self.assertEqual([c["msg_type"] for c in comms], ["comm_open", "comm_msg", "comm_close"])
        self.assertEqual(comms[0]["target_name"], "kx_front")
        self.assertEqual([c["data"] for c in comms], [{"v": 1}, {"w": 2}, {"bye": 3}])
        self.assertEqual(len({c["comm_id"] for c in comms}), 1)
        self.assertEqual(comms[1]["buffers"], ["AGJpbg=="])  # base64 of b"\x00bin"
        self.assertNotIn("buffers", comms[0])
        self.assertEqual(record["outputs"][0]["text"], "done\n")
        # Bounded like outputs: beyond --max-output-bytes they are counted, not kept.
        r = subprocess.run([KERNEX, "run", "--json", "--max-output-bytes", "40", "-k", "python3", "-"], input=code,
                           capture_output=True, text=True, timeout=120, cwd="/")
        record = json.loads(r.stdout.splitlines()[0])
        self.assertNotIn("comms", record)
        self.assertEqual(record["comms_dropped"], 3)

    def ensure_ended(self, proc, kc=None):
        """Cleanup: kc's channels stopped, and the kernex of proc ended by
        SIGTERM if it still runs (the test has failed then)."""
        if kc is not None:
            kc.stop_channels()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    def shut_down_by_client(self, proc, kc):
        """jupyter_client's shutdown() to the kernel of `kernex kernel start` proc:
        kernex's exit status, or a failure with its stderr when it runs on."""
        kc.shutdown()
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            self.fail("kernex kernel start did not end after the client's shutdown: " + proc.stderr.read())

    def test_a_clients_shutdown_request_ends_kernel_start(self):
        conn_file = os.path.join(self.tmp.name, "kernex-started.json")
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "python3", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kc = BlockingKernelClient()
        try:
            self.assertEqual(proc.stdout.readline().strip(), conn_file)
            kc.load_connection_file(conn_file)
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            first = kernel_pid(kc, time.monotonic() + 60)
            # A restart the client asks for: a new kernel, and kernex runs on.
            kc.shutdown(restart=True)
            second = new_kernel_pid(kc, first)
            self.assertFalse(alive(first))
            self.assertIsNone(proc.poll())
            # The same asked from the command line (item 6).
            r = subprocess.run([KERNEX, "kernel", "shutdown", "--restart", conn_file], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout), {"status": "ok", "restart": True})
            second = new_kernel_pid(kc, second)
            self.assertIsNone(proc.poll())
            # A death nobody asked for: restarted, and said to be a death.
            os.kill(second, signal.SIGKILL)
            third = new_kernel_pid(kc, second)
            self.assertIsNone(proc.poll())
            # `exit` in jupyter console: shutdown_request, restart false.
            rc = self.shut_down_by_client(proc, kc)
        finally:
            self.ensure_ended(proc, kc)
        stderr = proc.stderr.read()
        self.assertEqual(rc, 0, stderr)
        self.assertFalse(os.path.exists(conn_file))
        self.assertFalse(alive(third))
        self.assertIn("a client restarted the kernel", stderr)
        self.assertEqual(stderr.count("died"), 1, stderr)  # the SIGKILL's
        self.assertIn("the kernel died and was restarted", stderr)
        self.assertIn("a client shut the kernel down", stderr)
        # Nothing left in the runtime dir (the record `kernel list` reads included).
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_a_kernel_that_does_not_broadcast_its_shutdown_is_not_restarted(self):
        # Most kernels answer a shutdown_request only to the client that sent
        # it (the test kernel told so here). kernex kernel start still ends
        # cleanly when a client shuts such a kernel down, and still restarts
        # it after a crash (an exit with another status).
        conn_file = os.path.join(self.tmp.name, "quiet.json")
        with open(os.path.join(os.environ["KERNEX_BUILD_DIR"], "tests", "helpers", "share", "jupyter", "kernels",
                               "kernex-test", "kernel.json")) as f:
            spec = json.load(f)
        spec["argv"].append("--no-shutdown-broadcast")
        specs = tempfile.TemporaryDirectory()
        self.addCleanup(specs.cleanup)
        os.makedirs(os.path.join(specs.name, "kernels", "quiet"))
        with open(os.path.join(specs.name, "kernels", "quiet", "kernel.json"), "w") as f:
            json.dump(spec, f)
        env = dict(os.environ, JUPYTER_PATH=specs.name)
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "quiet", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        kc = BlockingKernelClient()

        def pid(deadline):
            while True:
                seen = []
                try:
                    kc.execute_interactive("pid", timeout=5, output_hook=seen.append)
                    return int("".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream"))
                except (TimeoutError, ValueError):
                    if time.monotonic() > deadline:
                        raise

        try:
            self.assertEqual(proc.stdout.readline().strip(), conn_file)
            kc.load_connection_file(conn_file)
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            first = pid(time.monotonic() + 30)
            kc.execute("crash 3")
            deadline = time.monotonic() + 60
            while (second := pid(deadline)) == first:
                time.sleep(0.2)
            self.assertIsNone(proc.poll())
            rc = self.shut_down_by_client(proc, kc)
            stderr = proc.stderr.read()
            self.assertEqual(rc, 0, stderr)
            self.assertIn("the kernel died and was restarted", stderr)
            self.assertIn("a client shut the kernel down", stderr)
            self.assertFalse(os.path.exists(conn_file))
            self.assertFalse(alive(second))
        finally:
            self.ensure_ended(proc, kc)

    def start_ir_kernel(self):
        self.assertTrue(os.path.exists("/usr/share/jupyter/kernels/ir"),
                        "IRkernel is missing: scripts/setup.sh installs r-cran-irkernel")
        conn_file = os.path.join(self.tmp.name, "ir.json")
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "ir", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(proc.stdout.readline().strip(), conn_file)
        return proc, conn_file

    def stop(self, proc):
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_an_irkernel_cell_longer_than_the_heartbeat_is_not_a_death(self):
        proc, conn_file = self.start_ir_kernel()
        try:
            # IRkernel echoes no heartbeat while Sys.sleep runs: 6 s is six
            # missed periods in a row, and the kernel is alive all along.
            cells = "Sys.sleep(6)\ncat('slept\\n')\n# %%\ncat(6 * 7)\n"
            result = subprocess.run([KERNEX, "run", "--existing", conn_file, "--json", "-"], input=cells,
                                    capture_output=True, text=True, timeout=120)
            lines = [json.loads(line) for line in result.stdout.splitlines()]
            self.assertEqual([c["status"] for c in lines], ["ok", "ok"], result.stdout + result.stderr)
            self.assertEqual(lines[0]["outputs"][0]["text"], "slept\n")
            self.assertEqual(lines[1]["outputs"][0]["text"], "42")
            self.assertEqual(result.returncode, 0, result.stderr)
        finally:
            self.stop(proc)
        self.assertNotIn("died", proc.stderr.read())

    def test_a_killed_irkernel_is_still_a_death(self):
        # Attached once R is up (a kernel whose ports are not bound yet is a
        # stale connection file to --existing after three heartbeat periods;
        # R starts slowly on a loaded machine) and killed once the cell runs:
        # the cell itself says so with a file.
        km, kc = self.start_jupyter_client_kernel("ir")
        kc.stop_channels()
        try:
            started_file = os.path.join(self.tmp.name, "started")
            run = subprocess.Popen([KERNEX, "run", "--existing", km.connection_file, "--json", "-"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            run.stdin.write(f"cat('started\\n'); writeLines('x', '{started_file}'); Sys.sleep(60)\n")
            run.stdin.close()
            run.stdin = None  # communicate() below only reads
            deadline = time.monotonic() + 90
            while not os.path.exists(started_file) and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if not os.path.exists(started_file):
                self.fail(f"the R cell did not start: {run.communicate(timeout=60)}")
            os.kill(km.provisioner.process.pid, signal.SIGKILL)
            started = time.monotonic()
            out, err = run.communicate(timeout=60)
            self.assertTrue(out, err)
            line = json.loads(out.splitlines()[0])
            self.assertEqual(line["status"], "kernel_died", out + err)
            self.assertLess(time.monotonic() - started, 30)  # no hang; not a timing claim
        finally:
            km.shutdown_kernel(now=True)

    def test_a_kernel_declared_dead_mid_cell_gets_an_interrupt(self):
        # Item 1: whatever made kernex take the kernel for dead (here its
        # heartbeat port, in the file kernex reads, is one nobody listens
        # on: three missed periods, then a refused connection), the cell is
        # not left running unattended: an interrupt_request goes out. The
        # test kernel still runs `sleep 30000`; jupyter_client's iopub sees
        # the cell end with KeyboardInterrupt right after kernex gives up.
        km, kc = self.start_jupyter_client_kernel("kernex-test")
        try:
            with open(km.connection_file) as f:
                info = json.load(f)
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            info["hb_port"] = s.getsockname()[1]
            s.close()
            no_heartbeat = os.path.join(self.tmp.name, "no-heartbeat.json")
            with open(no_heartbeat, "w") as f:
                json.dump(info, f)
            r = subprocess.run([KERNEX, "run", "--existing", no_heartbeat, "--json", "-"],
                               input="print started\nsleep 30000\n", capture_output=True, text=True,
                               timeout=120, cwd="/")
            record = json.loads(r.stdout.splitlines()[0])
            self.assertEqual(record["status"], "kernel_died", r.stdout + r.stderr)
            self.assertIn("an interrupt was sent", record["note"])
            ended = time.monotonic()
            interrupted = None
            while interrupted is None and time.monotonic() < ended + 15:
                try:
                    m = kc.get_iopub_msg(timeout=1)
                except queue.Empty:
                    continue
                if m["msg_type"] == "error" and m["parent_header"].get("session") != kc.session.session:
                    interrupted = m["content"]["ename"]
            self.assertEqual(interrupted, "KeyboardInterrupt")
            self.assertTrue(km.is_alive())
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    def test_text_mode_prints_a_rich_bundles_text_then_where_it_was_saved(self):
        out = os.path.join(self.tmp.name, "out")
        # ipykernel: an object with an HTML form and a repr.
        cell = "class T:\n    def _repr_html_(self): return '<b>t</b>'\n    def __repr__(self): return 'T(1)'\nT()\n"
        result = subprocess.run([KERNEX, "run", "--kernel", "python3", "--output-dir", out, "-"], input=cell,
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, f"T(1)\n[saved text/html to {os.path.join(out, 'stdin-cell1-1.html')}]\n")
        # ipykernel's update_display_data (a DisplayHandle's update): shown as a new line.
        cell = "from IPython.display import display\nh = display('first', display_id='d1')\nh.update('second')\n"
        result = subprocess.run([KERNEX, "run", "--kernel", "python3", "-"], input=cell,
                                capture_output=True, text=True, timeout=120)
        self.assertEqual((result.returncode, result.stdout), (0, "'first'\n[display d1 updated]\n'second'\n"),
                         result.stderr)
        # IRkernel: every R value is a bundle with HTML.
        proc, conn_file = self.start_ir_kernel()
        try:
            result = subprocess.run([KERNEX, "run", "--existing", conn_file, "--output-dir", out + "-r", "-"],
                                    input="data.frame(a = 1:2)\n", capture_output=True, text=True, timeout=120)
        finally:
            self.stop(proc)
        self.assertEqual(result.returncode, 0, result.stderr)
        html = os.path.join(out + "-r", "stdin-cell1-1.html")
        self.assertEqual(result.stdout, f"  a\n1 1\n2 2\n[saved text/html to {html}]\n")

    def jupyter_console(self, conn_file, typed, env=None):
        """Debian's jupyter console attached to conn_file, typed lines fed
        through a pipe (--simple-prompt reads them as a user's); its output."""
        result = subprocess.run([PYTHON, "-m", "jupyter_console", "--existing", conn_file, "--simple-prompt"],
                                input=typed, capture_output=True, text=True, timeout=120, env=env, cwd="/")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_jupyter_console_exit_ends_kernel_start(self):
        # Item 7 as a console user meets it: `exit` in jupyter console on a
        # kernel from `kernex kernel start` ends kernex with 0, files gone.
        conn_file = os.path.join(self.tmp.name, "console.json")
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "python3", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(proc.stdout.readline().strip(), conn_file)
            out = self.jupyter_console(conn_file, "x = 6 * 7\nprint(x)\nexit\n")
            self.assertIn("42", out)
            self.assertIn("Shutting down kernel", out)
            rc = proc.wait(timeout=60)
        finally:
            self.ensure_ended(proc)
        stderr = proc.stderr.read()
        self.assertEqual(rc, 0, stderr)
        self.assertIn("a client shut the kernel down", stderr)
        self.assertNotIn("died", stderr)
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_jupyter_console_answers_read_on_kernex_bash(self):
        # Item 12: `read -p` in kernex-bash sends input_request; the console
        # prompts with the shell's prompt and sends the line typed next.
        bash_path = os.environ.get("KERNEX_BASH_JUPYTER_PATH", "")
        if not bash_path and os.environ.get("KERNEX_BASH_KERNEL_OPTION") == "disabled":
            self.skipTest("configured with -Dbash_kernel=disabled")
        self.assertTrue(bash_path, "kernex-bash was not built: install xeus-dev")
        env = dict(os.environ, JUPYTER_PATH=bash_path)
        conn_file = os.path.join(self.tmp.name, "bash.json")
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "kernex-bash", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            self.assertEqual(proc.stdout.readline().strip(), conn_file)
            with open(conn_file) as f:
                self.assertEqual(json.load(f)["kernel_name"], "kernex-bash")  # item 8
            typed = "X=5\nread -p 'name? ' N; echo \"hello $N $X\"\nkernex\n"
            out = self.jupyter_console(conn_file, typed, env)
            self.assertIn("name? hello kernex 5", out)
            # End of input: the console leaves the kernel it did not start.
            self.assertIn("keeping kernel alive", out)
            self.assertIsNone(proc.poll())
            # The shell kept N for the next client.
            r = subprocess.run([KERNEX, "run", "--existing", conn_file, "-"], input="echo \"$N\"\n",
                               capture_output=True, text=True, timeout=60, cwd="/")
            self.assertEqual((r.returncode, r.stdout), (0, "kernex\n"), r.stderr)
            # Item 9: `kernex run --existing --timeout` (no pid: interrupt_request
            # on control) stops a running cell of kernex-bash; the shell and
            # its state stay, and the next cell runs at once.
            started = time.monotonic()
            r = subprocess.run([KERNEX, "run", "--existing", conn_file, "--timeout", "2", "--json", "-"],
                               input="echo $$; sleep 30; echo not-reached\n", capture_output=True, text=True,
                               timeout=60, cwd="/")
            record = json.loads(r.stdout.splitlines()[0])
            self.assertEqual((r.returncode, record["status"]), (124, "timeout"), r.stdout + r.stderr)
            self.assertNotIn("not-reached", r.stdout)
            self.assertLess(time.monotonic() - started, 20)  # no hang; not a timing claim
            shell_pid = record["outputs"][0]["text"]
            r = subprocess.run([KERNEX, "run", "--existing", conn_file, "--timeout", "20", "-"],
                               input="echo $$ \"$N\"\n", capture_output=True, text=True, timeout=60, cwd="/")
            self.assertEqual((r.returncode, r.stdout), (0, shell_pid.strip() + " kernex\n"), r.stderr)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
        self.assertEqual(rc, 0, proc.stderr.read())
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_xeus_python_under_the_cli(self):
        self.assertTrue(os.path.exists("/usr/share/jupyter/kernels/xpython"),
                        "xeus-python is missing: scripts/setup.sh installs xpython")
        cells = ("import sys\nx = 41\n# %%\nprint(x + 1)\nprint('e', file=sys.stderr)\n"
                 "# %%\n1/0\n# %%\nprint('not run')\n")
        r = subprocess.run([KERNEX, "run", "-k", "xpython", "--json", "-"], input=cells,
                           capture_output=True, text=True, timeout=120, cwd="/")
        self.assertEqual(r.returncode, 1, r.stderr)
        records = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([c["status"] for c in records], ["ok", "ok", "error", "not_run"])
        text = [(o["name"], o["text"]) for o in records[1]["outputs"]]
        self.assertEqual("".join(t for n, t in text if n == "stdout"), "42\n")
        self.assertEqual("".join(t for n, t in text if n == "stderr"), "e\n")
        self.assertEqual(records[2]["outputs"][0]["evalue"], "division by zero")

        # A client's shutdown ends `kernex kernel start` (xeus-python answers
        # only the asker: the exit with status 0 is the sign).
        conn_file = os.path.join(self.tmp.name, "xpython.json")
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "xpython", "-f", conn_file],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kc = BlockingKernelClient()
        try:
            self.assertEqual(proc.stdout.readline().strip(), conn_file)
            # Item 8: the kernelspec's name, as jupyter_client writes it
            # (xeus-python leaves the file as it is; ipykernel rewrites it).
            with open(conn_file) as f:
                self.assertEqual(json.load(f)["kernel_name"], "xpython")
            kc.load_connection_file(conn_file)
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            self.assertEqual(kc.execute_interactive("y = 1", timeout=30)["content"]["status"], "ok")
            rc = self.shut_down_by_client(proc, kc)
        finally:
            self.ensure_ended(proc, kc)
        stderr = proc.stderr.read()
        self.assertEqual(rc, 0, stderr)
        self.assertIn("a client shut the kernel down", stderr)
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_xeus_python_interrupt_as_under_jupyter_client(self):
        # xeus-python 0.14 (Debian 12) installs no SIGINT handler: an
        # interrupt (its spec's mode is signal) ends it. jupyter_client's
        # interrupt_kernel kills it; kernex's timeout does the same and says
        # so: kernel_died with the state lost, not a timeout on a live kernel.
        km, kc = self.start_jupyter_client_kernel("xpython")
        try:
            kc.execute("import time\ntime.sleep(60)")
            time.sleep(1)
            km.interrupt_kernel()
            deadline = time.monotonic() + 30
            while km.is_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            jupyter_client_killed_it = not km.is_alive()
            kc.stop_channels()
        finally:
            km.shutdown_kernel(now=True)
        r = subprocess.run([KERNEX, "run", "-k", "xpython", "--timeout", "2", "--json", "-"],
                           input="import time\nprint('before', flush=True)\ntime.sleep(60)\n",
                           capture_output=True, text=True, timeout=120, cwd="/")
        record = json.loads(r.stdout.splitlines()[0])
        kernex_says_died = record["status"] == "kernel_died"
        self.assertEqual(kernex_says_died, jupyter_client_killed_it, r.stdout + r.stderr)
        self.assertTrue(kernex_says_died, "xeus-python survives SIGINT now: update docs/kernels.md")
        self.assertTrue(record["state_lost"])
        self.assertEqual(record["outputs"][0]["text"], "before")
        self.assertNotEqual(r.returncode, 0)

    def test_nbconvert_converts_what_kernex_writes(self):
        nb = os.path.join(self.tmp.name, "n.ipynb")
        cells = [
            {"cell_type": "markdown", "metadata": {}, "source": "# Title"},
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
             "source": "print('streamed')\n6 * 7"},
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
             "source": "from IPython.display import HTML\nHTML('<b>bold</b>')"},
        ]
        for i, c in enumerate(cells):
            c["id"] = f"c{i}"
        with open(nb, "w") as f:
            json.dump({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                       "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}},
                      f)
        r = subprocess.run([KERNEX, "run", nb], capture_output=True, text=True, timeout=120, cwd="/")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = os.path.join(self.tmp.name, "n.out.ipynb")
        md = subprocess.run([PYTHON, "-m", "nbconvert", "--to", "markdown", "--stdout", out],
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(md.returncode, 0, md.stderr)
        self.assertIn("# Title", md.stdout)
        self.assertIn("streamed", md.stdout)
        self.assertIn("42", md.stdout)
        self.assertIn("<b>bold</b>", md.stdout)
        html = subprocess.run([PYTHON, "-m", "nbconvert", "--to", "html", "--stdout", out],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(html.returncode, 0, html.stderr)
        self.assertIn("<b>bold</b>", html.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
