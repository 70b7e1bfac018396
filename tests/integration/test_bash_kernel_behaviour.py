"""kernex-bash as a user meets it, driven by Debian's jupyter_client.

State across cells, output that streams while a cell runs, interrupts that
keep the shell, `exit`, `display`, and no process left behind. The kernel is
found through JUPYTER_PATH (set by meson to the build tree's kernelspec).
Run: JUPYTER_PATH=<build>/kernelspecs/kernex-bash/jupyter python3 -m unittest <this file>
"""

import base64
import os
import queue
import signal
import struct
import tempfile
import time
import unittest
import zlib

from jupyter_client.manager import KernelManager

from process_state import wait_gone

KERNEL = "kernex-bash"
TIMEOUT = 30


def start_kernel():
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
    except BaseException:
        stop_kernel(km, kc)
        raise
    return km, kc


def stop_kernel(km, kc):
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=False)


def group_members(pgid):
    """Pids of the running (not zombie) processes in process group pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def group_gone(pgid, within=10.0):
    deadline = time.monotonic() + within
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class run_result:
    def __init__(self):
        self.reply = None
        self.messages = []  # (seconds since the request, iopub message)

    def stream(self, name="stdout"):
        return "".join(m["content"]["text"] for _, m in self.messages
                       if m["msg_type"] == "stream" and m["content"]["name"] == name)

    def of_type(self, msg_type):
        return [m for _, m in self.messages if m["msg_type"] == msg_type]


def run(kc, code, timeout=TIMEOUT, on_start=None, allow_stdin=False, on_input=None):
    """Executes code; collects this request's iopub messages until idle and its reply.
    on_input(input_request) returns the answer; None sends none."""
    result = run_result()
    result.input_requests = []
    start = time.monotonic()
    msg_id = kc.execute(code, allow_stdin=allow_stdin or on_input is not None)
    deadline = start + timeout
    idle = False
    started = False
    while not idle:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no idle status within {timeout}s for {code!r}")
        if on_input is not None:
            try:
                request = kc.get_stdin_msg(timeout=0.01)
                result.input_requests.append(request["content"])
                answer = on_input(request["content"])
                if answer is not None:
                    kc.input(answer)
            except queue.Empty:
                pass
        try:
            msg = kc.get_iopub_msg(timeout=min(left, 0.05) if on_input is not None else left)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "busy" and on_start and not started:
                started = True
                on_start(result)
            idle = msg["content"]["execution_state"] == "idle"
            continue
        if msg["msg_type"] == "execute_input":
            continue
        result.messages.append((time.monotonic() - start, msg))
    while result.reply is None:
        reply = kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 1))
        if reply["parent_header"].get("msg_id") == msg_id:
            result.reply = reply["content"]
    return result


def png_bytes():
    """A 2x2 RGB PNG, made here so the test needs no image tools."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class kernel_test_case(unittest.TestCase):
    """One kernel for the class, shut down even when a test fails."""

    @classmethod
    def setUpClass(cls):
        cls.km, cls.kc = start_kernel()
        cls.addClassCleanup(stop_kernel, cls.km, cls.kc)

    def run_ok(self, code, **kwargs):
        result = run(self.kc, code, **kwargs)
        self.assertEqual(result.reply["status"], "ok", (code, result.reply, result.messages))
        return result


class state_and_output(kernel_test_case):
    def test_state_persists_between_cells(self):
        self.run_ok("x=41; export E=exported; cd /tmp; f() { echo \"f$1\"; }\n"
                    "alias hi='echo alias-hi'; declare -A m=([k]=v)")
        result = self.run_ok('echo "$((x + 1)) $PWD $(f 1) $E ${m[k]}"; hi')
        self.assertEqual(result.stream(), "42 /tmp f1 exported v\nalias-hi\n")

    def test_exit_status_is_carried_to_the_next_cell(self):
        result = run(self.kc, "false")
        self.assertEqual(result.reply["status"], "error")
        self.assertEqual(self.run_ok("echo $?").stream(), "1\n")

    def test_failing_cell_reports_its_status(self):
        result = run(self.kc, "echo before; (exit 7)")
        self.assertEqual(result.reply["status"], "error")
        self.assertEqual((result.reply["ename"], result.reply["evalue"]), ("ExitStatus", "7"))
        errors = result.of_type("error")
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["content"]["evalue"], "7")
        self.assertEqual(result.stream(), "before\n")

    def test_blank_or_comment_cell_after_a_failure_is_ok(self):
        self.assertEqual(run(self.kc, "false").reply["status"], "error")
        self.run_ok("")
        self.run_ok("  # just a comment\n\n")

    def test_user_expressions_are_evaluated_in_the_session(self):
        self.run_ok("ue=value")
        msg_id = self.kc.execute("true", user_expressions={"v": "echo $ue", "d": "pwd"})
        while True:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        expressions = reply["content"]["user_expressions"]
        self.assertEqual(expressions["v"]["data"]["text/plain"], "value")
        self.assertEqual(expressions["v"]["status"], "ok")

    def test_only_the_last_command_decides(self):
        self.run_ok("false; true")

    def test_stdout_and_stderr_are_separate_streams(self):
        result = self.run_ok("echo out; echo err >&2; nosuchcommand_kx || true")
        self.assertEqual(result.stream("stdout"), "out\n")
        self.assertIn("err\n", result.stream("stderr"))
        self.assertIn("bash: line 1: nosuchcommand_kx: command not found", result.stream("stderr"))

    def test_stdout_and_stderr_keep_the_order_they_were_written_in(self):
        # Alternating writes from the shell's builtins, from a program that
        # inherits the fds, through a reopened /dev/stderr, and a write larger
        # than a pipe page between them: each line must come back on its own
        # stream, in the order it was written (issue 18 item 11).
        code = ("for i in $(seq 1 200); do echo o$i; echo e$i >&2; done\n"
                "/usr/bin/python3 -u -c 'import sys\n"
                "for i in range(50): print(\"po%d\" % i); print(\"pe%d\" % i, file=sys.stderr)'\n"
                "head -c 20000 /dev/zero | tr '\\0' x; echo\n"
                "echo after-big >&2; echo last-out; echo via-dev >/dev/stderr; echo end")
        expected = []
        for i in range(1, 201):
            expected += [("stdout", f"o{i}"), ("stderr", f"e{i}")]
        for i in range(50):
            expected += [("stdout", f"po{i}"), ("stderr", f"pe{i}")]
        expected += [("stdout", "x" * 20000), ("stderr", "after-big"), ("stdout", "last-out"),
                     ("stderr", "via-dev"), ("stdout", "end")]
        for attempt in range(3):
            result = self.run_ok(code)
            lines, partial = [], {"stdout": "", "stderr": ""}
            for _, m in result.messages:
                if m["msg_type"] != "stream":
                    continue
                name = m["content"]["name"]
                text = partial[name] + m["content"]["text"]
                *complete, partial[name] = text.split("\n")
                lines += [(name, line) for line in complete]
            self.assertEqual(partial, {"stdout": "", "stderr": ""})
            if lines != expected:
                first = next(n for n, (a, b) in enumerate(zip(lines, expected)) if a != b)
                self.fail(f"attempt {attempt}: line {first}: {lines[first]!r:.80} where "
                          f"{expected[first]!r:.80} was written")

    def test_output_streams_while_the_cell_runs(self):
        result = self.run_ok("for i in 1 2 3; do echo $i; sleep 1; done")
        self.assertEqual(result.stream(), "1\n2\n3\n")
        first = next(t for t, m in result.messages if m["msg_type"] == "stream")
        last = max(t for t, _ in result.messages)
        # The loop takes 2 s after its first line; all-at-the-end would make these equal.
        self.assertGreater(last - first, 1.5, result.messages)
        self.assertLess(first, 1.0, result.messages)

    def test_stdin_is_not_the_command_channel(self):
        self.assertEqual(self.run_ok("cat; read -r line || echo eof; echo after").stream(),
                         "eof\nafter\n")

    def test_read_asks_the_client_when_stdin_is_allowed(self):
        result = self.run_ok("read -p 'name? ' N; echo \"hello $N\"; read -rs P; echo ${#P}",
                             on_input=lambda q: "secret" if q["password"] else "kx")
        self.assertEqual(result.stream(), "hello kx\n6\n")
        self.assertEqual(result.input_requests, [{"prompt": "name? ", "password": False},
                                                 {"prompt": "", "password": True}])
        # Redirected or piped reads are the shell's own.
        result = self.run_ok("echo piped | { read v; echo $v; }; read w <<<here; echo $w",
                             on_input=lambda q: "asked")
        self.assertEqual(result.stream(), "piped\nhere\n")
        self.assertEqual(result.input_requests, [])

    def test_interrupt_while_read_waits_for_the_client(self):
        def interrupt(_):
            time.sleep(0.5)
            self.km.interrupt_kernel()
        started = time.monotonic()
        result = run(self.kc, "read x; echo not-reached", on_input=lambda q: None, on_start=interrupt)
        self.assertLess(time.monotonic() - started, 15.0)
        self.assertEqual(result.reply["ename"], "Interrupted")
        self.assertEqual(len(result.input_requests), 1)
        # Nothing stale is left for the next read or display.
        result = self.run_ok("read y; echo got-$y", on_input=lambda q: "z")
        self.assertEqual(result.stream(), "got-z\n")

    def test_background_job_does_not_hold_the_cell(self):
        started = time.monotonic()
        self.run_ok("sleep 5 & echo started")
        self.assertLess(time.monotonic() - started, 4.0)
        self.run_ok("kill %1 2>/dev/null; wait; true")

    def test_large_output_arrives_complete_and_in_order(self):
        result = self.run_ok("seq 1 200000")
        self.assertEqual(result.stream(), "".join(f"{i}\n" for i in range(1, 200001)))

    def test_multibyte_output_is_not_mangled(self):
        result = self.run_ok("printf 'h\\xc3'; sleep 0.3; printf '\\xa9llo \\xe2\\x82\\xac\\n'")
        self.assertEqual(result.stream(), "héllo €\n")

    def test_set_e_and_x_do_not_leak_into_the_protocol(self):
        self.run_ok("set -x")
        result = self.run_ok("echo traced")
        self.assertEqual(result.stream(), "traced\n")
        self.assertIn("+ echo traced", result.stream("stderr"))
        self.run_ok("set +x")
        self.assertEqual(self.run_ok("echo quiet").stream("stderr"), "")


class history(kernel_test_case):
    def history(self, **request):
        msg_id = self.kc.history(**request)
        while True:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                self.assertEqual(reply["content"]["status"], "ok", reply)
                return reply["content"]["history"]

    def test_history_follows_the_spec(self):
        counts = {}
        for code in ["echo kx-h-a", "echo kx-h-b", "echo kx-h-a", "echo kx-h-c"]:
            msg_id = self.kc.execute(code)
            while True:
                reply = self.kc.get_shell_msg(timeout=TIMEOUT)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            counts.setdefault(code, []).append(reply["content"]["execution_count"])
        # Not stored: silent, or store_history false.
        self.kc.execute("echo kx-h-silent", silent=True)
        self.kc.execute("echo kx-h-unstored", store_history=False)
        self.run_ok("true")

        tail = self.history(hist_access_type="tail", n=5, raw=True, output=False)
        self.assertEqual(len(tail), 5)
        for session, line, _ in tail:
            self.assertIsInstance(session, int)
            self.assertIsInstance(line, int)
        self.assertEqual([row[2] for row in tail],
                         ["echo kx-h-a", "echo kx-h-b", "echo kx-h-a", "echo kx-h-c", "true"])
        # Line numbers are the cells' execution counts, rising.
        self.assertEqual([row[1] for row in tail[:4]],
                         [counts["echo kx-h-a"][0], counts["echo kx-h-b"][0],
                          counts["echo kx-h-a"][1], counts["echo kx-h-c"][0]])
        session, first = tail[0][0], tail[0][1]

        with_output = self.history(hist_access_type="tail", n=2, raw=True, output=True)
        self.assertEqual(len(with_output), 2)
        for row in with_output:
            self.assertEqual(len(row), 3)
            self.assertEqual(len(row[2]), 2)
        self.assertEqual(with_output[1][2][0], "true")

        ranged = self.history(hist_access_type="range", session=session, start=first,
                              stop=first + 2, raw=True, output=False)
        self.assertEqual(ranged, tail[:2])
        current = self.history(hist_access_type="range", session=0, start=first,
                               stop=first + 1, raw=True, output=False)
        self.assertEqual(current, tail[:1])

        found = self.history(hist_access_type="search", pattern="echo kx-h-*", raw=True,
                             output=False, n=100)
        self.assertEqual([row[2] for row in found],
                         ["echo kx-h-a", "echo kx-h-b", "echo kx-h-a", "echo kx-h-c"])
        unique = self.history(hist_access_type="search", pattern="echo kx-h-*", raw=True,
                              output=False, n=100, unique=True)
        self.assertEqual([row[2] for row in unique], ["echo kx-h-b", "echo kx-h-a", "echo kx-h-c"])
        latest = self.history(hist_access_type="search", pattern="echo kx-h-?", raw=True,
                              output=False, n=2)
        self.assertEqual(latest, tail[2:4])


class interrupts(kernel_test_case):
    def interrupt_after_start(self, code):
        def interrupt_soon(_):
            time.sleep(0.5)
            self.km.interrupt_kernel()
        started = time.monotonic()
        result = run(self.kc, code, on_start=interrupt_soon)
        self.assertLess(time.monotonic() - started, 10.0)
        return result

    def test_interrupt_stops_the_cell_and_keeps_the_shell(self):
        self.run_ok("keep=still-here; cd /tmp")
        result = self.interrupt_after_start("sleep 100; echo not-reached")
        self.assertEqual(result.reply["status"], "error")
        self.assertEqual(result.reply["ename"], "Interrupted")
        self.assertNotIn("not-reached", result.stream())
        self.assertEqual(self.run_ok('echo "$keep $PWD"').stream(), "still-here /tmp\n")

    def test_interrupt_unwinds_functions_and_loops(self):
        result = self.interrupt_after_start(
            "g() { sleep 100; echo in-g; }\nf() { g; echo in-f; }\n"
            "for i in 1 2; do f; echo in-loop; done\necho after")
        self.assertEqual(result.reply["status"], "error")
        self.assertEqual(result.stream(), "")
        self.assertEqual(self.run_ok("echo next").stream(), "next\n")

    def control_request(self, msg_type, content=None, timeout=10.0):
        """Sends a request on the control channel; its reply, or None when none came in time."""
        msg = self.kc.session.msg(msg_type, content or {})
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_control_msg(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return None
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply
        return None

    def test_interrupt_request_on_control_stops_the_running_cell(self):
        # What a client without the kernel's pid sends (--existing, a gateway).
        replies = {}
        def interrupt_by_message(_):
            time.sleep(0.5)
            info = self.control_request("kernel_info_request")
            replies["kernel_info"] = info and info["content"]["implementation"]
            replies["interrupt"] = self.control_request("interrupt_request")
        self.run_ok("keep=still-here")
        started = time.monotonic()
        result = run(self.kc, "sleep 30; echo not-reached", on_start=interrupt_by_message)
        # Answered while the cell ran, not after the 30 s sleep.
        self.assertLess(time.monotonic() - started, 15.0)
        self.assertEqual(replies["kernel_info"], "kernex-bash")
        self.assertIsNotNone(replies["interrupt"])
        self.assertEqual(replies["interrupt"]["content"].get("status", "ok"), "ok")
        self.assertEqual(result.reply["ename"], "Interrupted")
        self.assertNotIn("not-reached", result.stream())
        self.assertEqual(self.run_ok('echo "$keep"').stream(), "still-here\n")

    def test_interrupt_stops_a_busy_builtin_loop(self):
        result = self.interrupt_after_start("while :; do :; done")
        self.assertEqual(result.reply["ename"], "Interrupted")
        self.run_ok("true")


class exit_and_display(kernel_test_case):
    def test_exit_starts_a_fresh_shell(self):
        self.run_ok("lost=yes")
        first_pid = self.run_ok("echo $$").stream().strip()
        result = run(self.kc, "exit 3")
        self.assertEqual(result.reply["status"], "error")
        self.assertEqual(result.reply["evalue"], "3")
        self.assertIn("shell ended", result.stream("stderr"))
        self.assertTrue(wait_gone(int(first_pid), 10))
        result = self.run_ok('echo "[${lost-}] $$"')
        lost, pid = result.stream().split()
        self.assertEqual(lost, "[]")
        self.assertNotEqual(pid, first_pid)

    def test_plain_exit_is_not_an_error(self):
        result = self.run_ok("exit")
        self.assertIn("a new shell is ready", result.stream("stderr"))
        self.assertEqual(self.run_ok("echo ok").stream(), "ok\n")

    def test_display_png(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = png_bytes()
            with open(os.path.join(tmp, "plot.png"), "wb") as f:
                f.write(data)
            # Relative path, and the file is deleted right after: display waits for the kernel.
            result = self.run_ok(f"cd {tmp} && display plot.png && rm plot.png && echo shown")
            shown = result.of_type("display_data")
            self.assertEqual(len(shown), 1)
            self.assertEqual(shown[0]["content"]["data"]["image/png"],
                             base64.b64encode(data).decode())
            self.assertEqual(result.stream(), "shown\n")

    def test_display_svg_and_html(self):
        with tempfile.TemporaryDirectory() as tmp:
            svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
            with open(os.path.join(tmp, "a.svg"), "w") as f:
                f.write(svg)
            with open(os.path.join(tmp, "b.html"), "w") as f:
                f.write("<b>bold</b>")
            result = self.run_ok(f"display {tmp}/a.svg {tmp}/b.html")
            shown = [m["content"]["data"] for m in result.of_type("display_data")]
            self.assertEqual([d.get("image/svg+xml") for d in shown[:1]], [svg])
            self.assertEqual([d.get("text/html") for d in shown[1:]], ["<b>bold</b>"])

    def test_display_refuses_what_it_cannot_show(self):
        result = run(self.kc, "display /nonexistent.png")
        self.assertEqual(result.reply["status"], "error")
        self.assertIn("not a readable file", result.stream("stderr"))
        with tempfile.NamedTemporaryFile(suffix=".txt") as f:
            f.write(b"plain text")
            f.flush()
            result = run(self.kc, f"display {f.name}")
            self.assertEqual(result.reply["status"], "error")
            self.assertIn("not a PNG, JPEG, GIF, SVG or HTML file", result.stream("stderr"))


class nothing_left_behind(unittest.TestCase):
    def start_with_processes(self):
        km, kc = start_kernel()
        self.addCleanup(stop_kernel, km, kc)
        result = run(kc, "echo $$; sleep 1000 & echo $!")
        self.assertEqual(result.reply["status"], "ok", result.messages)
        shell, job = (int(p) for p in result.stream().split())
        # The shell leads its own process group; the job and the watchdog are in it.
        self.assertIn(job, group_members(shell))
        return km, kc, shell, job

    def test_shutdown_ends_the_shell_and_its_jobs(self):
        km, kc, shell, job = self.start_with_processes()
        stop_kernel(km, kc)
        self.assertTrue(group_gone(shell), group_members(shell))

    def test_sigterm_to_the_kernel_ends_the_shell(self):
        km, kc, shell, job = self.start_with_processes()
        km.signal_kernel(signal.SIGTERM)
        self.assertTrue(group_gone(shell), group_members(shell))
        km.provisioner.process.wait(timeout=10)

    def test_sigkill_of_the_kernel_ends_the_shell(self):
        km, kc, shell, job = self.start_with_processes()
        km.signal_kernel(signal.SIGKILL)
        self.assertTrue(group_gone(shell), group_members(shell))
        km.provisioner.process.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
