"""`kernex run` as users meet it: cells split at '# %%', one session, outputs
streamed, images saved, exit statuses 0 / 1 / 124 / 130 / 2, Ctrl-C, --continue, --json, stdin.
Uses the native test kernel (kernex-test) for speed, and python3 once."""
import json
import os
import signal
import subprocess
import time
import unittest

from cli_test_support import KERNEX, cli_test_case


class RunTests(cli_test_case):
    def run_kernex(self, *args, stdin=None):
        return self.kernex("run", *args, stdin=stdin)

    def test_cells_share_one_session_and_outputs_stream_in_order(self):
        a = self.write("a.txt", "set k v1\n# %% second cell\nget k\nprint done-a\n")
        b = self.write("b.txt", "get k\nresult 42\n")
        r = self.run_kernex("--kernel", "kernex-test", a, b)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "v1\ndone-a\nv1\n42\n")

    def test_error_stops_unless_continue(self):
        f = self.write("e.txt", "print one\n# %%\nerror ValueError bad\n# %%\nprint three\n")
        r = self.run_kernex("--kernel", "kernex-test", f)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "one\n")
        self.assertIn("ValueError", r.stderr)
        r = self.run_kernex("--kernel", "kernex-test", "--continue", f)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "one\nthree\n")

    def test_timeout_is_124_and_keeps_partial_output(self):
        f = self.write("t.txt", "print before\nsleep 30000\n")
        r = self.run_kernex("--kernel", "kernex-test", "--timeout", "1", f)
        self.assertEqual(r.returncode, 124)
        self.assertEqual(r.stdout, "before\n")
        self.assertIn("Timeout: the code ran longer than 1 s and was stopped", r.stderr)

    def test_signals_interrupt_the_cell_and_end_the_run_cleanly(self):
        f = self.write("s.txt", "pid\nprint before\nsleep 30000\n# %%\nprint after\n")
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(signal=sig.name):
                proc = subprocess.Popen([KERNEX, "run", "--kernel", "kernex-test", "--continue", f],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=self.env, cwd=self.tmp.name)
                kernel_pid = int(proc.stdout.readline())
                self.assertEqual(proc.stdout.readline(), "before\n")
                started = time.monotonic()
                proc.send_signal(sig)
                out, err = proc.communicate(timeout=30)
                # The sleeping cell was interrupted (not waited for), the next
                # cell did not run even with --continue, and the kernel is gone.
                self.assertLess(time.monotonic() - started, 10)
                self.assertEqual(proc.returncode, 130, err)
                self.assertEqual(out, "")
                if sig == signal.SIGINT:  # SIGTERM abandons the cell at once
                    self.assertIn("KeyboardInterrupt", err)
                with self.assertRaises(ProcessLookupError):
                    os.kill(kernel_pid, 0)

    def test_images_are_saved_to_the_output_dir(self):
        f = self.write("img.txt", "display_png\n")
        out = os.path.join(self.tmp.name, "out")
        r = self.run_kernex("--kernel", "kernex-test", "--output-dir", out, f)
        self.assertEqual(r.returncode, 0, r.stderr)
        saved = os.listdir(out)
        self.assertEqual(len(saved), 1)
        self.assertTrue(saved[0].endswith(".png"))
        with open(os.path.join(out, saved[0]), "rb") as png:
            self.assertEqual(png.read(8), b"\x89PNG\r\n\x1a\n")
        # Text mode: the bundle's text/plain, then where its rich form went.
        self.assertEqual(saved, ["img-cell1-1.png"])
        self.assertEqual(r.stdout, f"<4x4 test image>\n[saved image/png to {os.path.join(out, saved[0])}]\n")

    def test_display_updates_are_shown_in_text_mode(self):
        f = self.write("upd.txt", "display d1 first\nupdate_display d1 second\n")
        r = self.run_kernex("--kernel", "kernex-test", f)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "first\n[display d1 updated]\nsecond\n")

    def test_json_lines_and_stdin(self):
        r = self.run_kernex("--kernel", "kernex-test", "--json", "-", stdin="print a\n# %%\nerror E v\n")
        self.assertEqual(r.returncode, 1)
        cells = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([c["status"] for c in cells], ["ok", "error"])
        self.assertEqual(cells[0]["outputs"], [{"output_type": "stream", "name": "stdout", "text": "a\n"}])
        self.assertEqual(cells[1]["outputs"][0]["ename"], "E")

    def test_output_bounds_end_with_a_notice(self):
        # --json keeps the first and the last outputs within --max-output-bytes,
        # and says between them what it dropped.
        r = self.run_kernex("--kernel", "kernex-test", "--json", "--max-output-bytes", "1000", "-",
                            stdin="flood 2000\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        outputs = json.loads(r.stdout)["outputs"]
        notices = [i for i, o in enumerate(outputs) if o["name"] == "stderr"]
        self.assertEqual(len(notices), 1, outputs)
        kept = [o["text"] for o in outputs if o["name"] == "stdout"]
        self.assertEqual(sum(len(t) for t in kept), 1000)
        self.assertTrue(kept[0].startswith("line 1\n"))
        self.assertTrue(kept[-1].endswith("line 2000\n"))
        self.assertRegex(outputs[notices[0]]["text"], r"^\[\u2026 \d+ bytes dropped \u2026\]\n$")
        # Text mode prints everything as it arrives: nothing is dropped.
        r = self.run_kernex("--kernel", "kernex-test", "-", stdin="flood 2000\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("\n"), 2000)
        self.assertNotIn("dropped", r.stdout + r.stderr)
        # kernex exec's jupyter executor caps its text output with a notice.
        r = subprocess.run([KERNEX, "exec", "--executor", "jupyter", "--kernel", "kernex-test", "--max-output", "1000",
                            "--json", "-"], input="```test\nflood 2000\n```\n", capture_output=True, text=True,
                           env=self.env, timeout=120)
        result = json.loads(r.stdout)
        self.assertEqual(result["exit_code"], 0, r.stderr)
        self.assertTrue(result["output"].startswith("line 1\n"))
        self.assertRegex(result["output"], r"\n\[\u2026 \d+ bytes dropped \u2026\]\n")
        self.assertTrue(result["output"].endswith("line 2000\n"), result["output"][-100:])

    def test_usage_and_setup_errors_are_2(self):
        self.assertEqual(self.run_kernex().returncode, 2)
        r = self.run_kernex("--kernel", "no-such-kernel", self.write("x.txt", "print x\n"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("no kernelspec named 'no-such-kernel'", r.stderr)
        r = self.run_kernex("--kernel", "kernex-test", os.path.join(self.tmp.name, "missing.py"))
        self.assertEqual(r.returncode, 2)

    def test_exec_with_the_jupyter_executor(self):
        message = "Run this:\n```test\nset k 7\ndisplay_png\n```\nthen\n```test\nget k\nerror Stop here\n```\n"
        out = os.path.join(self.tmp.name, "images")
        r = subprocess.run([KERNEX, "exec", "--executor", "jupyter", "--kernel", "kernex-test", "--output-dir", out,
                            "--json", "-"], input=message, capture_output=True, text=True, env=self.env, timeout=120)
        result = json.loads(r.stdout)
        # State carries from block to block; the error is exit status 1.
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(result["exit_code"], 1)
        self.assertEqual(len(result["output_files"]), 1)
        self.assertTrue(result["output_files"][0].startswith(out))
        self.assertIn("7\n", result["output"])
        self.assertIn("Stop", result["output"])

    def test_python_kernel(self):
        f = self.write("p.py", "x = 20\n# %%\nprint(x + 22)\n")
        r = self.run_kernex(f)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "42\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
