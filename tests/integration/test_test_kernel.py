"""The native test kernel, driven by Debian's jupyter_client.

jupyter_client is the reference client: if it can start, run, interrupt and
shut down the kernex test kernel, the kernel speaks the protocol, and the
C++ tests that use it test kernex rather than the kernel's quirks.

Run by meson (suite integration) with JUPYTER_PATH pointing at the build's
kernelspecs (kernex-test, kernex-test-message).
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import tempfile
import time
import unittest

# Connection files and ipc sockets go to a private directory that is removed
# at the end, so a run leaves nothing in the user's runtime dir.
WORK_DIR = tempfile.mkdtemp(prefix="kernex-test-kernel-")
os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(WORK_DIR, "runtime")
os.chdir(WORK_DIR)

import zmq  # noqa: E402  (after the environment is set)
from jupyter_client.manager import KernelManager  # noqa: E402

TIMEOUT = 10


class kernel:
    """A started kernel and a client; always shut down, even when a test fails."""

    def __init__(self, kernel_name="kernex-test", env=None, **manager_args):
        self.km = KernelManager(kernel_name=kernel_name, **manager_args)
        self.env = env
        self.kc = None

    def __enter__(self):
        if self.env is None:
            self.km.start_kernel()
        else:
            self.km.start_kernel(env=dict(os.environ, **self.env))
        self.process = self.km.provisioner.process
        self.kc = self.km.client()
        self.kc.start_channels()
        return self

    def __exit__(self, *exc):
        try:
            self.kc.stop_channels()
        finally:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
            self.km.cleanup_resources()


def collect(kc, msg_id, timeout=TIMEOUT):
    """Returns (execute reply, iopub messages for msg_id other than its status)."""
    deadline = time.monotonic() + timeout
    outputs = []
    while True:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.01))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] != "status":
            outputs.append(msg)
    while True:
        reply = kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply, outputs


def run(kc, code, **kwargs):
    return collect(kc, kc.execute(code, **kwargs))


def stdout_of(outputs):
    return "".join(m["content"]["text"] for m in outputs
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def wait_for_stream(kc, msg_id, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.01))
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                and text in msg["content"]["text"]):
            return


class test_kernel_protocol(unittest.TestCase):
    def test_kernel_info_and_iopub_status(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.kernel_info()
            reply = k.kc.get_shell_msg(timeout=TIMEOUT)
            self.assertEqual(reply["parent_header"]["msg_id"], msg_id)
            content = reply["content"]
            self.assertEqual(content["status"], "ok")
            self.assertEqual(content["protocol_version"], "5.3")
            self.assertEqual(content["implementation"], "kernex-test")
            self.assertEqual(content["language_info"]["name"], "test")
            states = []
            while len(states) < 2:
                msg = k.kc.get_iopub_msg(timeout=TIMEOUT)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status":
                    states.append(msg["content"]["execution_state"])
            self.assertEqual(states, ["busy", "idle"])

    def test_execute_outputs_and_errors(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            reply, outputs = run(k.kc, "print hello\neprint oops\nresult 42\n# a comment\n1+2*3\ndisplay_png")
            self.assertEqual(reply["content"]["status"], "ok")
            count = reply["content"]["execution_count"]
            types = [m["msg_type"] for m in outputs]
            self.assertEqual(types, ["execute_input", "stream", "stream", "execute_result",
                                     "execute_result", "display_data"])
            self.assertEqual(outputs[0]["content"]["execution_count"], count)
            self.assertEqual(outputs[1]["content"], {"name": "stdout", "text": "hello\n"})
            self.assertEqual(outputs[2]["content"], {"name": "stderr", "text": "oops\n"})
            self.assertEqual(outputs[3]["content"]["data"], {"text/plain": "42"})
            self.assertEqual(outputs[4]["content"]["data"], {"text/plain": "7"})
            png = outputs[5]["content"]["data"]["image/png"]
            import base64
            self.assertTrue(base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n"))

            reply, outputs = run(k.kc, "set x 41\nerror ValueError bad value\nprint unreachable")
            self.assertEqual(reply["content"]["status"], "error")
            self.assertEqual(reply["content"]["ename"], "ValueError")
            self.assertEqual(reply["content"]["evalue"], "bad value")
            self.assertEqual(reply["content"]["execution_count"], count + 1)
            errors = [m for m in outputs if m["msg_type"] == "error"]
            self.assertEqual(len(errors), 1)
            self.assertEqual(len(errors[0]["content"]["traceback"]), 2)
            self.assertIn("\x1b[", errors[0]["content"]["traceback"][1])
            self.assertNotIn("unreachable", stdout_of(outputs))

            # State persists; silent cells do not count.
            reply, outputs = run(k.kc, "get x", silent=True)
            self.assertEqual(stdout_of(outputs), "41\n")
            self.assertEqual(reply["content"]["execution_count"], count + 1)
            reply, _ = run(k.kc, "get nope")
            self.assertEqual(reply["content"]["ename"], "KeyError")
            reply, _ = run(k.kc, "frobnicate")
            self.assertEqual(reply["content"]["ename"], "UnknownCommand")

    def test_streaming_commands(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            _, outputs = run(k.kc, "flood 500")
            streams = [m for m in outputs if m["msg_type"] == "stream"]
            self.assertEqual(len(streams), 500)
            self.assertEqual(streams[-1]["content"]["text"], "line 500\n")
            _, outputs = run(k.kc, "lines 100000")
            streams = [m for m in outputs if m["msg_type"] == "stream"]
            text = "".join(m["content"]["text"] for m in streams)
            self.assertEqual(text, "".join(f"line {i}\n" for i in range(1, 100001)))
            self.assertTrue(all(len(m["content"]["text"]) <= 64 * 1024 for m in streams))
            _, outputs = run(k.kc, "big 1m")
            self.assertEqual(stdout_of(outputs), "x" * (1 << 20))

    def test_stdin_round_trip(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            for command, password in (("input", False), ("password", True)):
                msg_id = k.kc.execute(f"{command} your name?", allow_stdin=True)
                request = k.kc.get_stdin_msg(timeout=TIMEOUT)
                self.assertEqual(request["msg_type"], "input_request")
                self.assertEqual(request["content"], {"prompt": "your name?", "password": password})
                k.kc.input("ada")
                reply, outputs = collect(k.kc, msg_id)
                self.assertEqual(reply["content"]["status"], "ok")
                self.assertEqual(stdout_of(outputs), "got: ada\n")
            reply, _ = run(k.kc, "input nobody answers", allow_stdin=False)
            self.assertEqual(reply["content"]["ename"], "StdinNotImplementedError")

    def check_interrupt(self, kernel_name):
        with kernel(kernel_name) as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.execute("print before\nsleep 60000\nprint after")
            wait_for_stream(k.kc, msg_id, "before")
            started = time.monotonic()
            k.km.interrupt_kernel()
            reply, outputs = collect(k.kc, msg_id)
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(reply["content"]["status"], "error")
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
            self.assertNotIn("after", stdout_of(outputs))
            reply, outputs = run(k.kc, "print still alive")
            self.assertEqual(reply["content"]["status"], "ok")
            self.assertEqual(stdout_of(outputs), "still alive\n")

    def test_interrupt_by_signal(self):
        self.check_interrupt("kernex-test")

    def test_interrupt_by_message(self):
        self.check_interrupt("kernex-test-message")

    def test_noreply_until_interrupted(self):
        with kernel("kernex-test-message") as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.execute("print waiting\nnoreply")
            wait_for_stream(k.kc, msg_id, "waiting")
            with self.assertRaises(Exception):  # queue.Empty: no reply
                k.kc.get_shell_msg(timeout=0.5)
            self.assertTrue(k.kc.is_alive())  # the heartbeat still answers
            k.km.interrupt_kernel()
            reply, _ = collect(k.kc, msg_id)
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")

    def test_displays_and_stop_on_error(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            _, outputs = run(k.kc, "display d1 first\nupdate_display d1 second\nclear wait\ndisplay_html <b>hi</b>")
            self.assertEqual([m["msg_type"] for m in outputs[1:]],
                             ["display_data", "update_display_data", "clear_output", "display_data"])
            self.assertEqual(outputs[1]["content"]["transient"], {"display_id": "d1"})
            self.assertEqual(outputs[2]["content"]["data"], {"text/plain": "second"})
            self.assertEqual(outputs[3]["content"], {"wait": True})
            self.assertEqual(outputs[4]["content"]["data"], {"text/html": "<b>hi</b>"})
            # Requests queued behind a failing cell are aborted, as ipykernel does.
            first = k.kc.execute("sleep 300\nerror Boom queued")
            second = k.kc.execute("print never")
            reply, _ = collect(k.kc, first)
            self.assertEqual(reply["content"]["status"], "error")
            reply, outputs = collect(k.kc, second)
            self.assertEqual(reply["content"]["status"], "aborted")
            self.assertEqual(stdout_of(outputs), "")
            reply, _ = run(k.kc, "print runs again")
            self.assertEqual(reply["content"]["status"], "ok")

    def test_control_served_during_a_cell(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.execute("print sleeping\nsleep 60000")
            wait_for_stream(k.kc, msg_id, "sleeping")
            started = time.monotonic()
            k.km.shutdown_kernel(now=False)  # shutdown_request on control
            self.assertLess(time.monotonic() - started, 3)
            self.assertEqual(k.process.wait(timeout=TIMEOUT), 0)

    def test_hang_ignores_sigint_but_not_sigterm(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.execute("print hanging\nhang")
            wait_for_stream(k.kc, msg_id, "hanging")
            k.km.interrupt_kernel()
            with self.assertRaises(Exception):  # queue.Empty: no reply
                k.kc.get_shell_msg(timeout=1)
            self.assertIsNone(k.process.poll())
            os.kill(k.process.pid, signal.SIGTERM)
            self.assertEqual(k.process.wait(timeout=TIMEOUT), 0)

    def test_crash_keeps_outputs_and_exit_code(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.execute("print last words\ncrash 3")
            wait_for_stream(k.kc, msg_id, "last words")
            self.assertEqual(k.process.wait(timeout=TIMEOUT), 3)

    def test_exit_at_start(self):
        with kernel(env={"KERNEX_TEST_KERNEL_EXIT_AT_START": "7"}) as k:
            with self.assertRaises(RuntimeError):
                k.kc.wait_for_ready(timeout=TIMEOUT)
            self.assertEqual(k.process.wait(timeout=TIMEOUT), 7)

    def test_introspection(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            k.kc.complete("print x\npr", 10)
            reply = k.kc.get_shell_msg(timeout=TIMEOUT)["content"]
            self.assertEqual(reply["matches"], ["print"])
            self.assertEqual((reply["cursor_start"], reply["cursor_end"]), (8, 10))
            k.kc.inspect("sleep 10", 2)
            reply = k.kc.get_shell_msg(timeout=TIMEOUT)["content"]
            self.assertTrue(reply["found"])
            self.assertIn("sleep MS", reply["data"]["text/plain"])
            k.kc.is_complete("print a\\")
            self.assertEqual(k.kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"], "incomplete")
            k.kc.is_complete("print a")
            self.assertEqual(k.kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"], "complete")
            k.kc.history()
            self.assertEqual(k.kc.get_shell_msg(timeout=TIMEOUT)["content"]["history"], [])
            k.kc.comm_info()
            self.assertEqual(k.kc.get_shell_msg(timeout=TIMEOUT)["content"]["comms"], {})

    def test_forged_unsigned_and_replayed_messages(self):
        # jupyter_client's own channels raise on such messages, so this reads
        # iopub raw and checks each signature itself.
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            info = k.km.get_connection_info()
            key = info["key"]
            context = zmq.Context.instance()
            sub = context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")
            try:
                # Prove the subscription as a client would: a status arrives.
                while True:
                    k.kc.kernel_info()
                    if sub.poll(200):
                        break
                while sub.poll(100):
                    sub.recv_multipart()
                msg_id = k.kc.execute("print first\nforge\nprint second")
                frames_seen = []
                while True:
                    self.assertTrue(sub.poll(TIMEOUT * 1000))
                    frames = sub.recv_multipart()
                    frames_seen.append(frames)
                    i = frames.index(b"<IDS|MSG>")
                    header, parent = json.loads(frames[i + 2]), json.loads(frames[i + 3])
                    content = json.loads(frames[i + 5])
                    if (parent.get("msg_id") == msg_id and header["msg_type"] == "status"
                            and content["execution_state"] == "idle"):
                        break
            finally:
                sub.close()
            verdicts = []
            seen = set()
            texts = []
            for n, frames in enumerate(frames_seen):
                i = frames.index(b"<IDS|MSG>")
                signature = frames[i + 1]
                expected = hmac.new(key, b"".join(frames[i + 2:i + 6]), hashlib.sha256).hexdigest().encode()
                if not signature:
                    verdicts.append("unsigned")
                elif not hmac.compare_digest(signature, expected):
                    verdicts.append("forged")
                elif signature in seen:
                    verdicts.append("replayed")
                    self.assertIn(frames, frames_seen[:n])  # byte-exact
                else:
                    verdicts.append("ok")
                    content = json.loads(frames[i + 5])
                    if json.loads(frames[i + 2])["msg_type"] == "stream":
                        texts.append(content["text"])
                seen.add(signature)
            self.assertEqual(sorted(v for v in verdicts if v != "ok"), ["forged", "replayed", "unsigned"])
            self.assertEqual(texts, ["first\n", "second\n"])
            reply = k.kc.get_shell_msg(timeout=TIMEOUT)
            self.assertEqual(reply["content"]["status"], "ok")

    def test_ipc_transport(self):
        with kernel(transport="ipc") as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            _, outputs = run(k.kc, "print over ipc")
            self.assertEqual(stdout_of(outputs), "over ipc\n")

    def test_shutdown(self):
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            msg_id = k.kc.shutdown(restart=True)
            reply = k.kc.get_control_msg(timeout=TIMEOUT)
            self.assertEqual(reply["parent_header"]["msg_id"], msg_id)
            self.assertEqual(reply["content"], {"status": "ok", "restart": True})
            self.assertEqual(k.process.wait(timeout=TIMEOUT), 0)
        with kernel() as k:
            k.kc.wait_for_ready(timeout=TIMEOUT)
            connection_file = k.km.connection_file
            started = time.monotonic()
            k.km.shutdown_kernel(now=False)
            self.assertLess(time.monotonic() - started, 3)  # exited on request, not killed late
            self.assertEqual(k.process.wait(timeout=TIMEOUT), 0)
            self.assertFalse(os.path.exists(connection_file))


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(WORK_DIR, ignore_errors=True)
