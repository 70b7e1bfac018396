"""`kernex exec --confirm` on a real terminal (a pty that is kernex's
controlling terminal, the message on stdin through a pipe): the code is shown
with its hidden characters made visible, y / n / a / q do what they say, and
without a terminal nothing starts. `kernex exec --describe` prints the
library's text and runs nothing."""
import fcntl
import hashlib
import json
import os
import pty
import select
import subprocess
import sys
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from cli_test_support import KERNEX, cli_test_case, run_in_pty  # noqa: E402

PROMPT = b"Run it? [y]es, [n]o (skip it), [a]ll (this and the rest), [q]uit: "


def confirm_in_pty(args, message, answers, env, cwd):
    """Runs kernex ARGS with message on stdin (a pipe) and a pty as its
    controlling terminal; types the next of answers at each prompt. Returns
    (exit status, everything the terminal showed, how many prompts came)."""
    prompts = [0]

    def respond(seen):
        if seen.count(PROMPT) <= prompts[0]:
            return None
        prompts[0] += 1
        return answers.pop(0).encode() + b"\n" if answers else None

    rc, seen = run_in_pty(args, env, cwd, respond=respond, stdin_text=message)
    return rc, seen, prompts[0]


def blocks(*codes):
    return "".join(f"```bash\n{c}\n```\n" for c in codes)


class confirm_test(cli_test_case):
    def exec_confirm(self, message, answers, *extra):
        work = os.path.join(self.tmp.name, "work")
        os.makedirs(work, exist_ok=True)
        rc, seen, prompts = confirm_in_pty(["exec", "--confirm", "--work-dir", work, *extra], message,
                                           list(answers), self.env, self.tmp.name)
        return rc, seen.decode(errors="replace").replace("\r\n", "\n"), prompts, work

    def test_yes_runs_no_skips_quit_stops(self):
        rc, out, prompts, work = self.exec_confirm(
            blocks("touch one", "touch two", "touch three", "touch four"), ["y", "n", "y", "q"])
        self.assertEqual(prompts, 4)
        self.assertEqual(rc, 1, out)  # the quit refused block 4: not everything ran
        self.assertTrue(os.path.exists(os.path.join(work, "one")))
        self.assertFalse(os.path.exists(os.path.join(work, "two")))
        self.assertTrue(os.path.exists(os.path.join(work, "three")))
        self.assertFalse(os.path.exists(os.path.join(work, "four")))
        self.assertIn("block 2 of 4 (bash) skipped", out)
        self.assertIn("block 4 of 4 (bash) refused", out)
        # Each block shown with its SHA-256 and numbered code before it was asked about.
        self.assertIn("sha256 " + hashlib.sha256(b"touch one\n").hexdigest(), out)
        self.assertIn("   1 | touch three", out)

    def test_all_runs_the_rest_unasked_and_json_records_the_answers(self):
        rc, out, prompts, work = self.exec_confirm(blocks("echo a", "echo b", "echo c"), ["n", "a"], "--json")
        self.assertEqual(prompts, 2, out)  # nobody is asked after 'a'
        self.assertEqual(rc, 0, out)
        result = json.loads(out[out.index('{"approvals"'):].splitlines()[0])
        self.assertEqual([a["verdict"] for a in result["approvals"]], ["skipped", "approved", "approved"])
        self.assertEqual(result["approvals"][2]["sha256"], hashlib.sha256(b"echo c\n").hexdigest())
        self.assertEqual(result["output"].count("\n"), 3)  # the skip notice, b, c
        self.assertIn("b\nc\n", result["output"])

    def test_unclear_answers_ask_again_and_end_of_input_refuses(self):
        rc, out, prompts, work = self.exec_confirm(blocks("touch x"), ["maybe", "", "n"])
        self.assertEqual(prompts, 3)
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.exists(os.path.join(work, "x")))

    def test_hidden_characters_are_shown_not_obeyed(self):
        # An escape sequence that would erase the line and a bidi override
        # that would reorder it: shown as text, and warned about.
        code = "echo safe # \x1b[2K\x1b[1A\u202e dangerous"
        rc, out, prompts, work = self.exec_confirm(blocks(code), ["q"])
        self.assertEqual(rc, 1)
        self.assertIn("echo safe # \\x1b[2K\\x1b[1A\\u202e dangerous", out)
        self.assertNotIn("\x1b[2K", out)
        self.assertNotIn("\u202e", out)
        self.assertIn("WARNING: 3 control or bidirectional character(s)", out)

    def test_ctrl_c_at_the_prompt_answers_quit(self):
        # ^C typed on the terminal (SIGINT to kernex, its foreground process)
        # while it asks: nothing runs, kernex ends as a quit would.
        work = os.path.join(self.tmp.name, "work")
        os.makedirs(work)
        sent = []

        def respond(seen):
            if PROMPT not in seen or sent:
                return None
            sent.append(True)
            return b"\x03"

        rc, seen = run_in_pty(["exec", "--confirm", "--work-dir", work, "-"], self.env, self.tmp.name,
                              respond=respond, stdin_text=blocks("touch one", "touch two"))
        out = seen.decode(errors="replace").replace("\r\n", "\n")
        self.assertEqual(rc, 1, out)
        self.assertEqual(out.count(PROMPT.decode()), 1, out)
        self.assertIn("block 1 of 2 (bash) refused", out)
        self.assertEqual(os.listdir(work), [])

    def test_refused_without_a_terminal(self):
        marker = os.path.join(self.tmp.name, "ran")
        r = subprocess.run([KERNEX, "exec", "--confirm"], input=blocks(f"touch {marker}"), capture_output=True,
                           text=True, env=self.env, cwd=self.tmp.name, start_new_session=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--confirm asks before each block runs, on a terminal", r.stderr)
        self.assertFalse(os.path.exists(marker))

    def describe(self, *flags):
        r = subprocess.run([KERNEX, "exec", "--describe", *flags], capture_output=True, text=True, env=self.env,
                           cwd=self.tmp.name, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_describe(self):
        r = self.describe("--timeout", "7", "--work-dir", "/srv/w")
        self.assertIn("Languages: bash, sh (shell), python (py, python3)", r.stdout)
        self.assertIn("Work dir: /srv/w", r.stdout)
        self.assertIn("State does not persist", r.stdout)
        self.assertIn("Limits: 7 s per block (then", r.stdout)
        r = self.describe("--timeout", "7", "--total-timeout", "20")
        self.assertIn("Limits: 7 s per block, 20 s for all the blocks of one message together", r.stdout)
        self.assertFalse(os.path.exists("/srv/w"))  # nothing made, nothing run
        r = self.describe("--executor", "jupyter", "--kernel", "python3")
        self.assertIn("State persists", r.stdout)
        self.assertIn("Language: python", r.stdout)


    def kill_9_at_prompt(self, libexec_dir, prompt):
        """No --work-dir: kernex makes one under TMPDIR. Block 1 plants links
        to a dir outside; kernex is killed -9 at prompt 1 (no block ran yet)
        or 2 (block 1 ran; no block runs now): within 5 s the dir is gone,
        the outside untouched. Returns the programs (/proc/PID/exe) of
        kernex's children at the prompt: what holds the dir then."""
        tmpdir = os.path.join(self.tmp.name, f"tmpdir-{prompt}")
        outside = os.path.join(self.tmp.name, f"outside-{prompt}")
        os.makedirs(tmpdir)
        os.makedirs(outside)
        with open(os.path.join(outside, "canary"), "w") as f:
            f.write("precious")
        ready = os.path.join(self.tmp.name, f"ready-{prompt}")
        master, slave = pty.openpty()
        proc = subprocess.Popen([KERNEX, "exec", "--confirm", "-"], stdin=subprocess.PIPE, stdout=slave,
                                stderr=slave, env=dict(self.env, TMPDIR=tmpdir, KERNEX_LIBEXEC_DIR=libexec_dir),
                                cwd=self.tmp.name, start_new_session=True,
                                preexec_fn=lambda: fcntl.ioctl(1, termios.TIOCSCTTY, 0))
        os.close(slave)
        try:
            proc.stdin.write(blocks(f"mkdir -p d/e && echo x > d/e/f && ln -s {outside} link && "
                                    f"ln -s {outside}/canary canary-link && pwd > {ready}", "echo never").encode())
            proc.stdin.close()
            seen = b""
            answered = False
            deadline = time.monotonic() + 60
            while seen.count(PROMPT) < prompt and time.monotonic() < deadline:
                if select.select([master], [], [], 0.2)[0]:
                    chunk = os.read(master, 65536)
                    if not chunk:
                        break
                    seen += chunk
                    if seen.count(PROMPT) == 1 and prompt > 1 and not answered:
                        os.write(master, b"y\n")
                        answered = True
            self.assertEqual(seen.count(PROMPT), prompt, seen.decode(errors="replace"))
            made = os.listdir(tmpdir)
            self.assertEqual(len(made), 1, made)
            work = os.path.join(tmpdir, made[0])
            if prompt > 1:
                with open(ready) as f:
                    self.assertEqual(f.read().strip(), work)
                self.assertTrue(os.path.isfile(os.path.join(work, "d", "e", "f")))
            children = []
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                for pid in f.read().split():
                    try:
                        children.append(os.path.basename(os.readlink(f"/proc/{pid}/exe")))
                    except OSError:
                        pass
        finally:
            proc.kill()
            proc.wait()
            os.close(master)
        deadline = time.monotonic() + 5
        while os.path.exists(work) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(work), os.listdir(work) if os.path.exists(work) else None)
        self.assertEqual(os.listdir(tmpdir), [])
        with open(os.path.join(outside, "canary")) as f:
            self.assertEqual(f.read(), "precious")
        return children

    def test_kill_9_between_blocks_removes_the_temporary_work_dir(self):
        # Block 1's reaper (a fork of kernex) stays, idle, as the dir's
        # holder until the next block's reaper has it: no keeper then.
        children = self.kill_9_at_prompt(os.environ["KERNEX_LIBEXEC_DIR"], 2)
        self.assertEqual(children, ["kernex"])

    def test_kill_9_before_the_first_block_removes_the_temporary_work_dir(self):
        # At the first prompt no reaper holds the dir: kernex-keeper does, a
        # small program of its own (not a fork of kernex).
        children = self.kill_9_at_prompt(os.environ["KERNEX_LIBEXEC_DIR"], 1)
        self.assertEqual(children, ["kernex-keeper"])

    def test_a_relative_libexec_dir_still_finds_kernex_keeper(self):
        # kernex-keeper starts in /: a relative KERNEX_LIBEXEC_DIR is made
        # absolute first, or its exec fails and the forked keeper stands in.
        libexec = os.path.relpath(os.environ["KERNEX_LIBEXEC_DIR"], self.tmp.name)
        children = self.kill_9_at_prompt(libexec, 1)
        self.assertEqual(children, ["kernex-keeper"])

    def test_without_kernex_keeper_the_forked_keeper_removes_it(self):
        empty = os.path.join(self.tmp.name, "no-helpers")
        os.makedirs(empty)
        children = self.kill_9_at_prompt(empty, 1)
        self.assertEqual(children, ["kernex"])  # the fork of kernex that runs `sleep infinity` under it
        children = self.kill_9_at_prompt(empty, 2)
        self.assertEqual(children, ["kernex"])  # block 1's reaper


if __name__ == "__main__":
    unittest.main()
