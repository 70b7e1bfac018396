"""Issue 19 through the real binary: `kernex run` and `kernex exec` speak one
language. Percent-format cell markers as VS Code, Spyder and Jupytext write
them; --json records for every cell; every block checked before any runs.
Uses the native test kernel (kernex-test) and python3 where ANSI tracebacks matter."""
import json
import os
import re
import signal
import subprocess
import time
import unittest

from cli_test_support import KERNEX, alive, cli_test_case, run_in_pty, wait_gone


# A kernel that binds its ports and echoes heartbeats but answers nothing.
SILENT_KERNEL = """
import json, sys, zmq
ctx = zmq.Context()
socks = {name: ctx.socket(kind) for name, kind in (("shell", zmq.ROUTER), ("control", zmq.ROUTER),
         ("stdin", zmq.ROUTER), ("iopub", zmq.PUB), ("hb", zmq.REP))}
info = {name + "_port": s.bind_to_random_port("tcp://127.0.0.1") for name, s in socks.items()}
info.update(ip="127.0.0.1", transport="tcp", key="k" * 32, signature_scheme="hmac-sha256", kernel_name="silent")
with open(sys.argv[1], "w") as f:
    json.dump(info, f)
print(sys.argv[1], flush=True)
while True:
    socks["hb"].send(socks["hb"].recv())
"""


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


class CoherenceTests(cli_test_case):
    def test_percent_markers_as_editors_write_them(self):
        # '#%%' (Spyder, VS Code), a titled '# %% title', and markdown cells
        # ('# %% [markdown]', '#%% [md]') whose text must never reach the kernel.
        script = ("print one\n"               # 1
                  "#%%\n"                     # 2
                  "print two\n"               # 3
                  "# %% [markdown]\n"         # 4
                  "# A heading\n"             # 5
                  "error MarkdownRan this is prose\n"  # 6
                  "#%% Intro [md]\n"          # 7
                  "error MarkdownRan too\n"   # 8
                  "# %%   titled cell\n"      # 9
                  "print three\n"             # 10
                  "# %%timeit is code, not a marker\n"  # 11 (a comment to the test kernel)
                  "print four\n")             # 12
        f = self.write("m.txt", script)
        r = self.kernex("run", "--kernel", "kernex-test", f)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "one\ntwo\nthree\nfour\n")
        r = self.kernex("run", "--kernel", "kernex-test", "--json", f)
        self.assertEqual(r.returncode, 0, r.stderr)
        cells = [json.loads(line) for line in r.stdout.splitlines()]
        # Code cells only, numbered in order, each with the line it starts on.
        self.assertEqual([(c["cell"], c["line"]) for c in cells], [(1, 1), (2, 3), (3, 10)])
        # A script made into a notebook has the same cells, markdown included.
        nb_path = os.path.join(self.tmp.name, "m.ipynb")
        r = self.kernex("run", "--kernel", "kernex-test", f, "-o", nb_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(nb_path) as nb:
            kinds = [c["cell_type"] for c in json.load(nb)["cells"]]
        self.assertEqual(kinds, ["code", "code", "markdown", "markdown", "code"])

    def test_json_has_a_record_for_every_cell(self):
        # The run stops at the failing cell; the cells after it, in this file
        # and the next, are still reported: "not_run".
        a = self.write("a.txt", "print a\n# %%\nerror Boom v\n# %%\nprint c\n")
        b = self.write("b.txt", "print d\n")
        r = self.kernex("run", "--kernel", "kernex-test", "--json", a, b)
        self.assertEqual(r.returncode, 1, r.stderr)
        cells = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([(os.path.basename(c["file"]), c["cell"], c["line"], c["status"]) for c in cells],
                         [("a.txt", 1, 1, "ok"), ("a.txt", 2, 3, "error"), ("a.txt", 3, 5, "not_run"),
                          ("b.txt", 1, 1, "not_run")])
        self.assertNotIn("outputs", cells[2])
        # With --continue every cell runs: no not_run.
        r = self.kernex("run", "--kernel", "kernex-test", "--json", "--continue", a, b)
        self.assertEqual([json.loads(line)["status"] for line in r.stdout.splitlines()], ["ok", "error", "ok", "ok"])

    def test_json_tracebacks_have_no_colours(self):
        # ipykernel colours its tracebacks; --json is read by programs.
        f = self.write("z.py", "x = 1\n# %%\n1 / 0\n")
        r = self.kernex("run", "--json", f)
        self.assertEqual(r.returncode, 1, r.stderr)
        error = json.loads(r.stdout.splitlines()[1])["outputs"][-1]
        self.assertEqual(error["ename"], "ZeroDivisionError")
        self.assertTrue(any("1 / 0" in line for line in error["traceback"]), error)
        self.assertFalse(any("\x1b" in line for line in error["traceback"]), error)
        r = self.kernex("exec", "--executor", "jupyter", "--json", "-", stdin="```python\n1 / 0\n```\n")
        result = json.loads(r.stdout)
        self.assertIn("ZeroDivisionError", result["output"])
        self.assertNotIn("\x1b", result["output"])

    def test_every_block_is_checked_before_any_runs(self):
        # jupyter: the first block would run on this kernel, the second cannot:
        # none runs (the kernel's state is not left half changed).
        message = "```test\nprint ran-first\n```\n```python\nx = 1\n```\n"
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--json", "-", stdin=message)
        result = json.loads(r.stdout)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("ran-first", result["output"])
        self.assertIn("python block cannot run on this test kernel", result["output"])
        self.assertIn("no block was run", result["output"])
        # local: an unknown language, or a file name outside the work dir, in
        # the last block: nothing is written or run.
        work = os.path.join(self.tmp.name, "work")
        for last in ("```cobol\nDISPLAY 'x'\n```\n", "```python\n# filename: ../escape.py\nprint(1)\n```\n"):
            with self.subTest(last=last.split("\n")[0]):
                r = self.kernex("exec", "--executor", "local", "--work-dir", work, "--json", "-",
                                stdin="```python\nprint('ran-first')\n```\n" + last)
                result = json.loads(r.stdout)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertNotIn("ran-first", result["output"])
                self.assertEqual(os.listdir(work), [])
                self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "escape.py")))

    def test_cwd_is_the_local_kernels_working_directory(self):
        there = os.path.join(self.tmp.name, "there")
        os.mkdir(there)
        f = self.write("cwd.py", "import os\nprint(os.getcwd())\nopen('made-here', 'w').close()\n")
        r = self.kernex("run", "--cwd", there, f)  # the file's path stays relative to kernex's cwd
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, os.path.realpath(there) + "\n")
        self.assertTrue(os.path.exists(os.path.join(there, "made-here")))
        # A notebook made from the script honours it too.
        r = self.kernex("run", "--cwd", there, f, "-o", os.path.join(self.tmp.name, "cwd.ipynb"))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.tmp.name, "cwd.ipynb")) as nb:
            self.assertEqual("".join(json.load(nb)["cells"][0]["outputs"][0]["text"]), os.path.realpath(there) + "\n")
        # Checked before anything starts; meaningless with --existing.
        r = self.kernex("run", "--cwd", os.path.join(self.tmp.name, "missing"), f)
        self.assertEqual(r.returncode, 2)
        self.assertIn("kernex: --cwd", r.stderr)
        self.assertIn("is not a directory", r.stderr)
        r = self.kernex("run", "--cwd", there, "--existing", "conn.json", f)
        self.assertEqual(r.returncode, 2)
        self.assertIn("excludes", r.stderr)

    def test_ready_timeout(self):
        # The test kernel sleeps 5 s before it binds: 1 s is not enough, 60 s is.
        env = dict(self.env, KERNEX_TEST_KERNEL_SLOW_START="5000")
        f = self.write("r.txt", "print ready\n")
        r = self.kernex("run", "--kernel", "kernex-test", "--inherit-env", "--ready-timeout", "1", f, env=env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn("kernex:", r.stderr)
        r = self.kernex("run", "--kernel", "kernex-test", "--inherit-env", "--ready-timeout", "60", f, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "ready\n")
        for bad in ("0", "-1", "nan", "1e99"):
            with self.subTest(bad=bad):
                r = self.kernex("run", "--kernel", "kernex-test", "--ready-timeout", bad, f)
                self.assertEqual(r.returncode, 2)
                self.assertIn("--ready-timeout", r.stderr)

    def start_kernel(self):
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "kernex-test"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=self.env, cwd=self.tmp.name)
        self.addCleanup(lambda: proc.poll() is not None or (proc.kill(), proc.wait()))
        return proc, proc.stdout.readline().strip()

    def kernels(self, *flags):
        r = self.kernex("kernel", "list", "--json", *flags)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["kernels"]

    def test_kernel_list_and_stop(self):
        self.assertEqual(self.kernels(), [])
        first, first_file = self.start_kernel()
        second, second_file = self.start_kernel()
        listed = {k["connection_file"]: k for k in self.kernels()}
        self.assertEqual(set(listed), {first_file, second_file})
        for proc, path in ((first, first_file), (second, second_file)):
            k = listed[path]
            self.assertEqual((k["kernel_name"], k["kernex_pid"], k["alive"]), ("kernex-test", proc.pid, True))
            os.kill(k["pid"], 0)  # the kernel's own pid
        table = self.kernex("kernel", "list").stdout.splitlines()
        self.assertEqual(table[0].split(), ["ID", "KERNEL", "PID", "ALIVE", "CONNECTION", "FILE"])
        self.assertIn(f"{listed[first_file]['pid']}", table[1] + table[2])
        # The file a listed kernel has works for a client.
        r = self.kernex("run", "--existing", first_file, "-", stdin="print attached\n")
        self.assertEqual(r.stdout, "attached\n", r.stderr)
        # Stopped by id (a unique start of it is enough) and by connection file:
        # each `kernel start` shuts its kernel down cleanly, and stop waits for it.
        r = self.kernex("kernel", "stop", listed[first_file]["id"][:6])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(first.poll(), 0)  # already exited when stop returned
        self.assertTrue(wait_gone(listed[first_file]["pid"]))
        self.assertEqual([k["connection_file"] for k in self.kernels()], [second_file])
        r = self.kernex("kernel", "stop", os.path.relpath(second_file, self.tmp.name))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(second.poll(), 0)
        self.assertEqual(self.kernels(), [])
        r = self.kernex("kernel", "stop", "nosuchkernel")
        self.assertEqual(r.returncode, 2)
        self.assertIn("kernex kernel list", r.stderr)

    def test_a_killed_start_leaves_no_record_and_prune_removes_stale_ones(self):
        proc, path = self.start_kernel()
        [k] = self.kernels()
        proc.kill()  # no shutdown: kernex's reapers end the kernel and remove its files and record
        proc.wait()
        self.assertTrue(wait_gone(k["pid"]))
        deadline = time.monotonic() + 5
        while self.kernels() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.kernels(), [])
        self.assertFalse(os.path.exists(path))
        # A record left where no reaper ran (the machine went down): stale,
        # refused by stop, removed by --prune with its connection file.
        gone = subprocess.Popen(["true"])
        gone.wait()
        runtime = os.path.join(self.tmp.name, "runtime")
        os.makedirs(runtime, exist_ok=True)
        conn = os.path.join(runtime, "kernel-stale.json")
        with open(conn, "w") as f:
            f.write("{}")
        with open(os.path.join(runtime, "kernex-kernel-stale.json"), "w") as f:
            json.dump({"connection_file": conn, "kernel_name": "kernex-test", "kernel_pid": gone.pid,
                       "kernex_pid": gone.pid, "kernex_started": 1}, f)
        [stale] = self.kernels()
        self.assertEqual((stale["id"], stale["alive"]), ("stale", False))
        r = self.kernex("kernel", "stop", "stale")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--prune", r.stderr)
        self.assertEqual(self.kernels("--prune"), [])
        self.assertFalse(os.path.exists(conn))  # tearDown: nothing left in the runtime dir

    def test_a_record_never_signals_a_process_that_is_not_its_kernel_start(self):
        # A record written by hand (or left while its pid was reused) names
        # another process of ours, with the right start time: never signalled.
        victim = subprocess.Popen(["sleep", "300"])
        self.addCleanup(lambda: (victim.kill(), victim.wait()))
        runtime = os.path.join(self.tmp.name, "runtime")
        os.makedirs(runtime, exist_ok=True)
        other = self.write("other-kernel.json", "{}")
        with open(os.path.join(runtime, "kernex-kernel-forged.json"), "w") as f:
            json.dump({"connection_file": other, "kernel_name": "python3", "kernel_pid": victim.pid,
                       "kernex_pid": victim.pid, "kernex_started": start_time(victim.pid)}, f)
        [k] = self.kernels()
        self.assertEqual((k["id"], k["alive"]), ("forged", False))
        r = self.kernex("kernel", "stop", "forged")
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not running", r.stderr)
        time.sleep(0.2)
        self.assertIsNone(victim.poll())
        # Pruned; the connection file stays while its kernel pid runs.
        self.assertEqual(self.kernels("--prune"), [])
        self.assertTrue(os.path.exists(other))
        self.assertIsNone(victim.poll())

    def assert_all_kernex_lines(self, stderr):
        lines = stderr.splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertTrue(line.startswith("kernex: "), f"{line!r} in {stderr!r}")

    def test_a_mistyped_command_gets_a_suggestion(self):
        for argv, meant in ((["kernelspec", "lst"], "list"), (["rn", "x.py"], "run"), (["kernel", "strat"], "start"),
                            (["kernel", "lsit"], "list")):
            with self.subTest(argv=argv):
                r = self.kernex(*argv)
                self.assertEqual(r.returncode, 2)
                self.assertIn(f"'{argv[-1] if argv[-1] != 'x.py' else argv[0]}' is not a", r.stderr)
                self.assertIn(f"did you mean '{meant}'?", r.stderr)
                self.assertNotIn("A subcommand is required", r.stderr)  # CLI11's words would mislead
                self.assert_all_kernex_lines(r.stderr)

    def test_every_stderr_line_of_a_usage_error_starts_with_kernex(self):
        x = self.write("x.txt", "print x\n")
        for argv in (["run", "--timeout", "-1", x], ["exec", "--timeout", "abc"], ["run", "missing.py"],
                     ["run", "--no-such-flag", x], ["kernel", "stop", "nosuch"], ["run"], [],
                     # a message of several lines (the dirs searched for a kernelspec): each line kernex's
                     ["run", "--kernel", "nosuch", x], ["exec", "--executor", "jupyter", "--kernel", "nosuch", x]):
            with self.subTest(argv=argv):
                r = self.kernex(*argv)
                self.assertEqual(r.returncode, 2)
                self.assert_all_kernex_lines(r.stderr)

    def test_every_command_has_an_example_in_its_help(self):
        seen = []

        def walk(path):
            r = self.kernex(*path, "--help")
            self.assertEqual(r.returncode, 0, r.stderr)
            examples = [line for line in r.stdout.splitlines() if line.startswith("Example: kernex ")]
            self.assertEqual(len(examples), 1, f"kernex {' '.join(path)} --help:\n{r.stdout}")
            seen.append(" ".join(path))
            if "Subcommands:" in r.stdout:
                for line in r.stdout.split("Subcommands:", 1)[1].splitlines():
                    if line.startswith("  ") and not line.startswith("   "):
                        walk(path + [line.split()[0]])

        walk([])
        for command in ("run", "exec", "mcp", "kernel", "kernel start", "kernel list", "kernel stop",
                        "kernelspec", "kernelspec list"):
            self.assertIn(command, seen)

    def in_pty(self, *args, env=None):
        """kernex ARGS in a pseudo-terminal: (status, all it printed)."""
        status, seen = run_in_pty(args, env or self.env, self.tmp.name)
        return status, seen.decode()

    def test_colours_follow_the_terminal_no_color_and_color_flag(self):
        red = "\x1b[31mred\x1b[0m"
        f = self.write("c.txt", f"print {red}\n")
        message = f"```test\nprint {red}\n```\n"
        msg = self.write("c.md", message)
        no_color = dict(self.env, NO_COLOR="1")
        for command in (["run", "-q", "--kernel", "kernex-test", f], ["exec", "--executor", "jupyter", "--kernel", "kernex-test", msg]):
            with self.subTest(command=command[0]):
                # A terminal: colours on, unless NO_COLOR or --color never.
                self.assertEqual(self.in_pty(*command), (0, red + "\r\n"))
                self.assertEqual(self.in_pty(*command, env=no_color), (0, "red\r\n"))
                self.assertEqual(self.in_pty(*command[:1], "--color", "never", *command[1:]), (0, "red\r\n"))
                self.assertEqual(self.in_pty(*command[:1], "--color", "always", *command[1:], env=no_color),
                                 (0, red + "\r\n"))
                # A pipe: the code's bytes as they are, unless --color never.
                self.assertEqual(self.kernex(*command).stdout, red + "\n")
                self.assertEqual(self.kernex(*command[:1], "--color", "never", *command[1:]).stdout, "red\n")
        # The kernel's traceback colours: on a terminal, or with --color always.
        z = self.write("z.py", "1 / 0\n")
        status, printed = self.in_pty("run", z)
        self.assertEqual(status, 1)
        self.assertIn("ZeroDivisionError", printed)
        self.assertIn("\x1b[", printed)
        status, printed = self.in_pty("run", z, env=no_color)
        self.assertIn("ZeroDivisionError", printed)
        self.assertNotIn("\x1b", printed)
        r = self.kernex("run", z)
        self.assertNotIn("\x1b", r.stderr)
        r = self.kernex("run", "--color", "always", z)
        self.assertIn("\x1b[", r.stderr)
        r = self.kernex("run", "--color", "sometimes", z)
        self.assertEqual(r.returncode, 2)
        self.assertIn("kernex: --color", r.stderr)

    def test_timeout_means_per_cell_and_per_block_in_both_commands(self):
        # Three steps of 2.5 s each: --timeout 6 lets each finish (7.5 s in
        # all, more than 6), --timeout 1 stops the first. Margins of 3.5 s: a
        # busy machine starts python3 slowly.
        step = {"test": "sleep 2500\nprint {}\n", "python": "import time\ntime.sleep(2.5)\nprint('{}')\n"}
        names = ("one", "two", "three")
        cells = self.write("three.txt", "# %%\n".join(step["test"].format(n) for n in names))

        def message(language, texts):
            return "".join(f"```{language}\n{text}```\n" for text in texts)

        runs = {
            "run": lambda *t: self.kernex("run", "--kernel", "kernex-test", *t, cells),
            "exec jupyter": lambda *t, m=None: self.kernex(
                "exec", "--executor", "jupyter", "--kernel", "kernex-test", *t, "-",
                stdin=m or message("test", [step["test"].format(n) for n in names])),
            "exec local": lambda *t, m=None: self.kernex(
                "exec", "--executor", "local", *t, "-",
                stdin=m or message("python", [step["python"].format(n) for n in names])),
        }
        for name, run in runs.items():
            with self.subTest(command=name):
                r = run("--timeout", "6")
                self.assertEqual((r.returncode, r.stdout), (0, "one\ntwo\nthree\n"), r.stderr)
                r = run("--timeout", "1")
                self.assertEqual(r.returncode, 124, r.stdout + r.stderr)
                self.assertNotIn("one", r.stdout)
                for bad in ("-1", "inf", "nan", "1e17"):
                    r = run("--timeout", bad)
                    self.assertEqual(r.returncode, 2)
                    self.assertIn(f"--timeout {bad if bad != '1e17' else '1e+17'}: give a number of seconds from 0 "
                                  "(no limit) to 31536000", r.stderr)
        # exec --total-timeout bounds the message: a quick block, then one of
        # 60 s that no per-block limit stops (--timeout 0).
        for language, quick, slow in (("test", "print one\n", "sleep 60000\n"),
                                      ("python", "print('one')\n", "import time\ntime.sleep(60)\n")):
            with self.subTest(total=language):
                run = runs["exec jupyter" if language == "test" else "exec local"]
                r = run("--timeout", "0", "--total-timeout", "5", m=message(language, [quick, slow]))
                self.assertEqual(r.returncode, 124, r.stdout + r.stderr)
                self.assertTrue(r.stdout.startswith("one\n"), r.stdout)

    def test_where_am_i_headers_and_summary(self):
        f = self.write("w.txt", "print one\n# %%\nerror Boom here\n# %%\nprint three\n")
        # A terminal: a dim header per cell, a summary at the end.
        status, printed = self.in_pty("run", "--kernel", "kernex-test", "--continue", f)
        self.assertEqual(status, 1, printed)
        lines = printed.replace("\x1b[2m", "").replace("\x1b[0m", "").splitlines()
        self.assertEqual([line for line in lines if line.startswith("\u2500\u2500")],
                         [f"\u2500\u2500 {f} \u00b7 cell {n} of 3 \u00b7 line {line} \u2500\u2500"
                          for n, line in ((1, 1), (2, 3), (3, 5))])
        self.assertIn("\x1b[2m\u2500\u2500 ", printed)  # dim
        self.assertRegex(lines[-1], r"^kernex: 3 cells: 2 ok, 1 error \(" + f + r" cell 2\); \d+\.\d\d s$")
        # Without --continue: the cell not run is counted.
        status, printed = self.in_pty("run", "--kernel", "kernex-test", f)
        self.assertRegex(printed.splitlines()[-1], r"^kernex: 3 cells: 1 ok, 1 error \(.* cell 2\), 1 not run; ")
        # --quiet: neither; NO_COLOR: not dim.
        status, printed = self.in_pty("run", "--quiet", "--kernel", "kernex-test", "--continue", f)
        self.assertNotIn("\u2500", printed)
        self.assertNotIn("cells:", printed)
        status, printed = self.in_pty("run", "--kernel", "kernex-test", f, env=dict(self.env, NO_COLOR="1"))
        self.assertIn("\u2500\u2500 ", printed)
        self.assertNotIn("\x1b", printed)
        # Not a terminal: no headers; a summary only when not all went well.
        r = self.kernex("run", "--kernel", "kernex-test", f)
        self.assertNotIn("\u2500", r.stderr)
        self.assertRegex(r.stderr.splitlines()[-1], r"^kernex: 3 cells: 1 ok, 1 error \(.* cell 2\), 1 not run; ")
        ok = self.write("ok.txt", "print fine\n")
        r = self.kernex("run", "--kernel", "kernex-test", ok)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "fine\n", ""))

    def test_exec_path_prefix_and_interpreter(self):
        # A fake python3 first on PATH (--path-prefix), and one named outright (--interpreter).
        bin_dir = os.path.join(self.tmp.name, "venv-bin")
        os.mkdir(bin_dir)
        for name, says in (("python3", "from the prefix"), ("other-python", "from the interpreter flag")):
            path = os.path.join(bin_dir, name)
            with open(path, "w") as script:
                script.write(f"#!/bin/sh\necho {says}: $(basename $1 .py | cut -c1-8)\n")
            os.chmod(path, 0o755)
        block = "```python\nprint('real python')\n```\n"
        r = self.kernex("exec", "--executor", "local", "--path-prefix", bin_dir, "--env", "X=1", "-", stdin=block)
        self.assertEqual((r.returncode, r.stdout), (0, "from the prefix: tmp_code\n"), r.stderr)
        r = self.kernex("exec", "--executor", "local", "--interpreter",
                        "python=" + os.path.join(bin_dir, "other-python"), "-", stdin=block)
        self.assertEqual((r.returncode, r.stdout), (0, "from the interpreter flag: tmp_code\n"), r.stderr)
        r = self.kernex("exec", "--executor", "local", "--env", "A=1", "--env", "B=2", "-",
                        stdin="```python\nimport os\nprint('real python', os.environ['A'], os.environ['B'])\n```\n")
        self.assertEqual(r.stdout, "real python 1 2\n", r.stderr)
        r = self.kernex("exec", "--executor", "local", "--interpreter", "python", "-", stdin=block)
        self.assertEqual(r.returncode, 2)
        self.assertIn("LANG=PROGRAM", r.stderr)

    def test_output_caps_keep_the_head_and_the_tail(self):
        # A flood, then a traceback: the traceback an agent needs survives the
        # cap in exec (local and jupyter) and in run --json.
        flood = "for i in range(10000):\n    print('x' * 99)\n"
        message = f"```python\n{flood}1 / 0\n```\n"
        for executor in ("local", "jupyter"):
            with self.subTest(executor=executor):
                r = self.kernex("exec", "--executor", executor, "--max-output", "10000", "--json", "-", stdin=message)
                self.assertEqual(r.returncode, 1, r.stderr)
                result = json.loads(r.stdout)
                self.assertTrue(result["truncated"])
                head, notice, tail = result["output"].partition("\n[\u2026 ")
                self.assertEqual(head + "\n", ("x" * 99 + "\n") * 60)  # 6000 bytes: 60 % of the cap
                _, _, tail = notice and tail.partition(" bytes dropped \u2026]\n")
                self.assertEqual(len(tail), 4000)
                self.assertRegex(tail, r"ZeroDivisionError.*\n$")
                self.assertNotIn("\x1b", tail)
        # --max-output-head sets the split.
        r = self.kernex("exec", "--max-output", "10000", "--max-output-head", "100", "-", stdin=message)
        self.assertRegex(r.stdout, "^" + "x" * 99 + "\n\\[\u2026 \\d+ bytes dropped \u2026\\]\n")
        self.assertEqual(len(r.stdout.split(" bytes dropped \u2026]\n", 1)[1]), 9900)
        r = self.kernex("exec", "--max-output", "100", "--max-output-head", "101", "-", stdin=message)
        self.assertEqual(r.returncode, 2)
        # --save-full-output: all of it, in a new file of the work dir (a
        # symlink planted at the name is not written through).
        work = os.path.join(self.tmp.name, "work")
        os.mkdir(work)
        target = self.write("target", "untouched")
        os.symlink(target, os.path.join(work, "kernex-output.txt"))
        r = self.kernex("exec", "--work-dir", work, "--max-output", "10000", "--save-full-output", "--json", "-",
                        stdin=message)
        result = json.loads(r.stdout)
        saved = result["full_output_file"]
        self.assertEqual(saved, os.path.join(os.path.realpath(work), "kernex-output-2.txt"))
        self.assertIn(f"[saved the full output to {saved}]\n", result["output"])
        with open(saved) as f:
            full = f.read()
        self.assertTrue(full.startswith(("x" * 99 + "\n") * 10000), full[:200])
        # What was dropped is exactly what is missing.
        dropped = int(result["output"].split("[\u2026 ")[1].split(" ")[0])
        self.assertEqual(len(full), 6000 + dropped + 4000)
        self.assertIn("ZeroDivisionError", full)
        with open(target) as f:
            self.assertEqual(f.read(), "untouched")
        r = self.kernex("exec", "--save-full-output", "-", stdin=message)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--save-full-output needs --work-dir", r.stderr)
        # In a kernel (the jupyter executor): the file goes to --output-dir.
        out = os.path.join(self.tmp.name, "kernel-out")
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--output-dir", out,
                        "--max-output", "10000", "--save-full-output", "--json", "-",
                        stdin="```test\nlines 10000\nerror Boom at-the-end\n```\n")
        result = json.loads(r.stdout)
        saved = result["full_output_file"]
        self.assertEqual(os.path.dirname(saved), os.path.realpath(out))
        self.assertIn(f"[saved the full output to {saved}]\n", result["output"])
        with open(saved) as f:
            full = f.read()
        self.assertTrue(full.startswith("".join(f"line {i}\n" for i in range(1, 10001))), full[:200])
        self.assertIn("at-the-end", full)
        self.assertIn("at-the-end", result["output"])  # the tail kept the error
        # kernex run --json: the cell's first outputs, the notice, the last
        # ones (the error among them).
        f = self.write("flood.py", flood + "1 / 0\n")
        r = self.kernex("run", "--json", "--max-output-bytes", "10000", f)
        self.assertEqual(r.returncode, 1, r.stderr)
        outputs = json.loads(r.stdout)["outputs"]
        text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")
        notices = [o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr"]
        self.assertEqual(len(notices), 1, outputs)
        self.assertRegex(notices[0], r"^\[\u2026 \d+ bytes dropped \u2026\]\n$")
        self.assertEqual(outputs[-1]["output_type"], "error")
        self.assertEqual(outputs[-1]["ename"], "ZeroDivisionError")
        self.assertTrue(text.startswith(("x" * 99 + "\n") * 60), text[:200])
        self.assertLess(len(text), 10000)

    def test_run_saves_the_full_output(self):
        # As exec --save-full-output: all of it in a new kernex-output.txt of
        # --output-dir (a symlink planted at the name is not written through),
        # the path said; with --json the cap drops nothing from the file.
        out = os.path.join(self.tmp.name, "out")
        os.mkdir(out)
        target = self.write("target", "untouched")
        os.symlink(target, os.path.join(out, "kernex-output.txt"))
        f = self.write("s.txt", "print one\n# %%\nerror Boom two\n# %%\nprint three\n")
        r = self.kernex("run", "--kernel", "kernex-test", "--continue", "--save-full-output", "-o", out, f)
        self.assertEqual(r.returncode, 1, r.stderr)
        saved = os.path.join(out, "kernex-output-2.txt")
        self.assertTrue(r.stdout.endswith(f"[saved the full output to {saved}]\n"), r.stdout)
        with open(target) as t:
            self.assertEqual(t.read(), "untouched")
        with open(saved) as s:
            full = s.read()
        self.assertNotIn("\x1b", full)
        # Each cell under its header, its output as text mode shows it.
        self.assertTrue(full.startswith(f"\u2500\u2500 {f} \u00b7 cell 1 of 3 \u00b7 line 1 \u2500\u2500\none\n"
                                        f"\u2500\u2500 {f} \u00b7 cell 2 of 3 \u00b7 line 3 \u2500\u2500\n"), full)
        self.assertIn("Boom", full)
        self.assertTrue(full.endswith(f"\u2500\u2500 {f} \u00b7 cell 3 of 3 \u00b7 line 5 \u2500\u2500\nthree\n"), full)
        # --json: the flood the cap cuts is whole in the file; each record names it.
        flood = "for i in range(10000):\n    print('x' * 99)\n"
        g = self.write("flood.py", flood + "1 / 0\n")
        r = self.kernex("run", "--json", "--max-output-bytes", "10000", "--save-full-output", "-o", out, g)
        self.assertEqual(r.returncode, 1, r.stderr)
        record = json.loads(r.stdout)
        saved = os.path.join(out, "kernex-output-3.txt")
        self.assertEqual(record["full_output_file"], saved)
        notices = [o["text"] for o in record["outputs"] if o["output_type"] == "stream" and o["name"] == "stderr"]
        self.assertEqual(len(notices), 2, record["outputs"])
        self.assertRegex(notices[0], r"^\[\u2026 \d+ bytes dropped \u2026\]\n$")
        self.assertEqual(notices[1], f"[saved the full output to {saved}]\n")
        with open(saved) as s:
            full = s.read()
        self.assertIn(("x" * 99 + "\n") * 10000, full)
        self.assertIn("ZeroDivisionError", full)
        self.assertNotIn("\x1b", full)
        # A notebook keeps its outputs itself.
        r = self.kernex("run", "--save-full-output", "x.ipynb")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--save-full-output is for scripts", r.stderr)

    def test_run_keeps_the_head_and_tail_of_one_output_over_the_cap(self):
        # One stream message larger than --max-output-bytes is cut, not
        # dropped whole: its first 60 %, the notice, its last 40 %.
        f = self.write("big.py", "print('y' * 19999)\n")
        r = self.kernex("run", "--json", "--max-output-bytes", "10000", f)
        self.assertEqual(r.returncode, 0, r.stderr)
        outputs = json.loads(r.stdout)["outputs"]
        self.assertEqual([(o["name"], len(o["text"])) for o in outputs][0], ("stdout", 6000), outputs)
        self.assertEqual(outputs[1], {"output_type": "stream", "name": "stderr",
                                      "text": "[\u2026 10000 bytes dropped \u2026]\n"})
        self.assertEqual(outputs[2]["text"], "y" * 3999 + "\n")

    def test_saved_outputs_have_one_naming_scheme_and_one_message(self):
        # run: <file>-cell<N>-<n>; exec: <file>-block<N>-<n>; both print
        # "[saved MIME to PATH]"; two inputs with one stem never collide.
        os.mkdir(os.path.join(self.tmp.name, "a"))
        os.mkdir(os.path.join(self.tmp.name, "b"))
        a = self.write("a/x.txt", "display_png\ndisplay_html <p>one</p>\n# %%\ndisplay_png\n")
        b = self.write("b/x.txt", "display_png\n")
        out = os.path.join(self.tmp.name, "out")
        r = self.kernex("run", "--kernel", "kernex-test", "--output-dir", out, a, b)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(out)),
                         ["x-2-cell1-1.png", "x-cell1-1.png", "x-cell1-2.html", "x-cell2-1.png"])
        saved = [line for line in r.stdout.splitlines() if line.startswith("[saved")]
        self.assertEqual(saved, [f"[saved image/png to {os.path.join(out, 'x-cell1-1.png')}]",
                                 f"[saved text/html to {os.path.join(out, 'x-cell1-2.html')}]",
                                 f"[saved image/png to {os.path.join(out, 'x-cell2-1.png')}]",
                                 f"[saved image/png to {os.path.join(out, 'x-2-cell1-1.png')}]"])
        message = self.write("msg.md", "```test\ndisplay_png\n```\n```test\ndisplay_html <p>two</p>\n```\n")
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--output-dir", out, message)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([line for line in r.stdout.splitlines() if line.startswith("[saved")],
                         [f"[saved image/png to {os.path.join(out, 'msg-block1-1.png')}]",
                          f"[saved text/html to {os.path.join(out, 'msg-block2-1.html')}]"])
        # Again: the names are taken, so new ones; nothing is overwritten.
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--output-dir", out, "-",
                        stdin="```test\ndisplay_png\n```\n")
        self.assertIn(f"[saved image/png to {os.path.join(out, 'stdin-block1-1.png')}]", r.stdout)
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--output-dir", out, message)
        self.assertIn(f"[saved image/png to {os.path.join(out, 'msg-block1-1-2.png')}]", r.stdout)

    def test_option_errors_name_the_flag(self):
        # The library names its JSON keys; the user typed flags.
        env = {k: v for k, v in self.env.items() if not k.startswith("KERNEX_GATEWAY")}
        block = "```python\nprint(1)\n```\n"
        cases = [
            (("--executor", "jupyter", "--kernel-id", "abc"), "kernex: --kernel-id needs --gateway", "kernel_id"),
            (("--executor", "local", "--image", "busybox"), "kernex: --image is not for --executor local; its flags: "
             "--work-dir, --total-timeout, --timeout, --max-output, --max-output-head, --save-full-output, --env, "
             "--path-prefix, --interpreter, --inherit-env, --sandbox, --resident-runner, --rlimit-cpu", "'image'"),
            (("--executor", "docker", "--memory", "lots"), "kernex: --memory must be a number of bytes or a size like",
             "option 'memory'"),
            (("--max-output", "10", "--max-output-head", "20"),
             "kernex: --max-output-head (20) is larger than --max-output (10)", "max_output"),
        ]
        for flags, said, not_said in cases:
            with self.subTest(flags=flags):
                r = self.kernex("exec", *flags, "-", stdin=block, env=env)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr.startswith(said), r.stderr)
                self.assertNotIn(not_said, r.stderr)

    def test_mcp_option_errors_name_the_flag(self):
        # As exec's: the flag the user typed, checked before serving; a key
        # from --config keeps its name and says where it came from.
        cases = [
            (("--image", "busybox"), "kernex: --image is not for --executor local; its flags: --work-dir, "
             "--timeout, --block-timeout, --max-output, --max-output-head, --save-full-output, --env, --path-prefix, "
             "--interpreter, --inherit-env, --sandbox, --resident-runner, --rlimit-cpu", "'image'"),
            (("--rlimit-cpu", "5"), "kernex: --rlimit-cpu needs --sandbox\n", "rlimit_cpu"),
            (("--executor", "docker", "--memory", "lots"), "kernex: --memory must be a number of bytes or a size like",
             "option 'memory'"),
            (("--executor", "docker", "--cpus", "-1"), "kernex: --cpus must be a positive number", "'cpus'"),
        ]
        for flags, said, not_said in cases:
            with self.subTest(flags=flags):
                r = self.kernex("mcp", *flags, stdin="")
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertTrue(r.stderr.startswith(said), r.stderr)
                self.assertNotIn(not_said, r.stderr)
                self.assertEqual(r.stdout, "")
        config = self.write("config.json", json.dumps({"image": "busybox"}))
        r = self.kernex("mcp", "--config", config, stdin="")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertTrue(r.stderr.startswith(f"kernex: --config {config}: option 'image' is not for --executor local"),
                        r.stderr)

    def test_an_exec_error_says_which_block_and_line_of_the_message(self):
        # As run's "a.py cell 3, line 41": the block and the message's line
        # of the innermost frame in one of its blocks, in text and --json.
        message = ("Some prose.\n"          # 1
                   "```python\n"            # 2
                   "def f():\n"             # 3
                   "    return 1 / 0\n"     # 4
                   "```\n"                  # 5
                   "More prose.\n"          # 6
                   "```python\n"            # 7
                   "x = 2\n"                # 8
                   "f()\n"                  # 9
                   "```\n")
        m = self.write("m.md", message)
        # jupyter: f is in block 1 (its kernel state); local: each block is
        # its own process, so block 2's f() fails at once (NameError, line 9).
        for executor, where in (("jupyter", (1, 4)), ("local", (2, 9))):
            with self.subTest(executor=executor):
                r = self.kernex("exec", "--executor", executor, m)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertTrue(r.stderr.endswith(f"kernex: {m} block {where[0]}, line {where[1]}\n"), r.stderr)
                r = self.kernex("exec", "--executor", executor, "--json", m)
                self.assertEqual(json.loads(r.stdout)["error_at"], {"file": m, "block": where[0], "line": where[1]})
        # The local executor's files: the innermost frame of its traceback.
        local = ("```python\nx = 1\n```\n"
                 "```python\ndef g():\n    raise ValueError('v')\n\ng()\n```\n")
        r = self.kernex("exec", "--json", "-", stdin=local)
        self.assertEqual(json.loads(r.stdout)["error_at"], {"file": "-", "block": 2, "line": 6})
        r = self.kernex("exec", "-", stdin=local)
        self.assertTrue(r.stderr.endswith("kernex: stdin block 2, line 6\n"), r.stderr)
        # bash's "tmp_code_X.sh: line 2:", a SyntaxError in a kernel (no
        # traceback header), a failure that names no line: the block's first.
        cases = [("local", "```bash\necho hi\nno_such_command_x\nexit 3\n```\n", 3, (1, 3), True),
                 ("jupyter", "```python\nx = 1\n```\n```python\ny = (\n```\n", 1, (2, 5), True),
                 ("local", "text\n```bash\nexit 4\n```\n", 4, (1, 3), False)]
        for executor, text, status, (block, line), exact in cases:
            with self.subTest(text=text):
                r = self.kernex("exec", "--executor", executor, "-", stdin=text)
                self.assertEqual(r.returncode, status, r.stderr)
                said = f"stdin block {block}, line {line}" if exact else f"stdin, block {block} (line {line})"
                self.assertTrue(r.stderr.endswith(f"kernex: {said}\n"), r.stderr)
                r = self.kernex("exec", "--executor", executor, "--json", "-", stdin=text)
                self.assertEqual(json.loads(r.stdout)["error_at"], {"file": "-", "block": block, "line": line})
        # Nothing failed, or a timeout: no error_at.
        r = self.kernex("exec", "--json", "-", stdin="```python\nprint(1)\n```\n")
        self.assertNotIn("error_at", json.loads(r.stdout))
        r = self.kernex("exec", "--timeout", "1", "--json", "-", stdin="```python\nimport time\ntime.sleep(30)\n```\n")
        self.assertEqual(r.returncode, 124, r.stderr)
        self.assertNotIn("error_at", json.loads(r.stdout))

    def test_every_executor_option_has_an_exec_flag(self):
        # A flag of another executor makes exec (and mcp) list this one's
        # options: all of them as flags, none "without a flag".
        env = {k: v for k, v in self.env.items() if not k.startswith("KERNEX_GATEWAY")}
        for executor, other in (("local", ("--image", "x")), ("docker", ("--kernel", "x")),
                                ("jupyter", ("--image", "x"))):
            with self.subTest(executor=executor):
                r = self.kernex("exec", "--executor", executor, *other, "-", stdin="```python\nprint(1)\n```\n", env=env)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(f"is not for --executor {executor}; its flags: --", r.stderr)
                self.assertNotIn("without a flag", r.stderr)
        r = self.kernex("mcp", "--image", "x", stdin="")
        self.assertIn("is not for --executor local; its flags: --", r.stderr)
        self.assertNotIn("without a flag", r.stderr)
        self.assertIn("--block-timeout", r.stderr)
        # The new flags reach the executor's config, named in its errors (in a
        # container: the docker suite's "kernex exec in a container" case).
        r = self.kernex("exec", "--executor", "docker", "--image", "busybox", "--request-timeout", "0", "-",
                        stdin="```sh\necho hi\n```\n")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("kernex: --request-timeout must be a positive number of seconds", r.stderr)
        r = self.kernex("exec", "--executor", "jupyter", "--gateway-header", "X-A: 1", "-", stdin="", env=env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--gateway-header needs --gateway", r.stderr)
        r = self.kernex("exec", "--no-resident-runner", "-", stdin="")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--resident-runner needs --sandbox", r.stderr)

    def test_results_count_blocks_and_code_files_are_absolute(self):
        # No blocks is said distinctly, in the result and in the text.
        for executor in ("local", "jupyter"):
            with self.subTest(executor=executor):
                extra = ("--kernel", "kernex-test") if executor == "jupyter" else ()
                r = self.kernex("exec", "--executor", executor, *extra, "--json", "-", stdin="Just prose.\n")
                self.assertEqual(r.returncode, 0, r.stderr)
                result = json.loads(r.stdout)
                self.assertEqual(result["blocks"], 0)
                self.assertEqual(result["output"], "kernex: no code blocks in the message\n")
                r = self.kernex("exec", "--executor", executor, *extra, "-", stdin="Just prose.\n")
                self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", "kernex: no code blocks in the message\n"))
        two = "```python\nprint(1)\n```\n```python\nprint(2)\n```\n"
        self.assertEqual(json.loads(self.kernex("exec", "--json", "-", stdin=two).stdout)["blocks"], 2)
        failing = "```python\n1 / 0\n```\n```python\nprint(2)\n```\n"
        self.assertEqual(json.loads(self.kernex("exec", "--json", "-", stdin=failing).stdout)["blocks"], 1)
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--json", "-",
                        stdin="```test\nprint a\n```\n")
        self.assertEqual(json.loads(r.stdout)["blocks"], 1)
        # code_files: absolute, from a relative --work-dir too; with a
        # temporary work dir the result says they are gone.
        r = self.kernex("exec", "--work-dir", "rel", "--json", "-", stdin=two)
        result = json.loads(r.stdout)
        self.assertEqual(len(result["code_files"]), 2)
        for path in result["code_files"]:
            self.assertTrue(os.path.isabs(path), path)
            self.assertTrue(path.startswith(os.path.realpath(os.path.join(self.tmp.name, "rel")) + "/"), path)
            self.assertTrue(os.path.exists(path), path)
        self.assertNotIn("code_files_removed", result)
        result = json.loads(self.kernex("exec", "--json", "-", stdin=two).stdout)
        self.assertTrue(result["code_files_removed"])
        self.assertTrue(result["temporary_work_dir"])
        for path in result["code_files"]:
            self.assertTrue(os.path.isabs(path), path)
            self.assertFalse(os.path.exists(path), path)

    def interrupt_once_started(self, *args):
        """kernex ARGS, sent SIGINT once its code has printed 'started': (exit status, stdout, stderr)."""
        proc = subprocess.Popen([KERNEX, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, cwd=self.tmp.name)
        try:
            self.assertEqual(proc.stdout.readline(), "started\n")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, out, err

    def test_same_words_for_the_same_events(self):
        # A timeout: one sentence in run and in exec (jupyter and local).
        said = "Timeout: the code ran longer than 1 s and was stopped"
        f = self.write("t.txt", "sleep 30000\n")
        r = self.kernex("run", "--kernel", "kernex-test", "--timeout", "1", f)
        self.assertEqual(r.returncode, 124, r.stderr)
        self.assertIn(f"kernex: {f}, cell 1 (line 1): {said}\n", r.stderr)
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "--timeout", "1", "-",
                        stdin="```test\nsleep 30000\n```\n")
        self.assertEqual(r.returncode, 124, r.stderr)
        self.assertIn(said + "\n", r.stdout)
        r = self.kernex("exec", "--timeout", "1", "-", stdin="```python\nimport time\ntime.sleep(30)\n```\n")
        self.assertEqual(r.returncode, 124, r.stderr)
        self.assertIn(said + "\n", r.stdout)
        # An interrupt: "Interrupted", as exec says it.
        f = self.write("i.txt", "print started\nsleep 30000\n")
        status, _, err = self.interrupt_once_started("run", "--kernel", "kernex-test", f)
        self.assertEqual(status, 130, err)
        self.assertIn(f"kernex: {f}, cell 1 (line 1): Interrupted\n", err)
        # exec, in a kernel and in a local process: the same word, ending its output.
        for executor, block in (("jupyter", "```test\nprint started\nsleep 30000\n```\n"),
                                ("local", "```python\nimport time\nprint('started', flush=True)\ntime.sleep(30)\n```\n")):
            with self.subTest(executor=executor):
                args = ["exec", "--executor", executor, self.write(f"{executor}.md", block)]
                args += ["--kernel", "kernex-test"] if executor == "jupyter" else []
                status, out, err = self.interrupt_once_started(*args)
                self.assertEqual(status, 130, err)
                self.assertTrue(out.endswith("Interrupted\n"), out)
                self.assertEqual([line for line in err.splitlines() if not line.startswith("kernex:")], [])
        # A notebook run's progress line on a terminal is kernex's too.
        nb = os.path.join(self.tmp.name, "p.ipynb")
        self.assertEqual(self.kernex("run", "--kernel", "kernex-test", self.write("p.txt", "print x\n"), "-o", nb)
                         .returncode, 0)
        status, printed = self.in_pty("run", "--kernel", "kernex-test", nb, "-o", nb)
        self.assertEqual(status, 0, printed)
        shown = [part for line in printed.splitlines() for part in line.split("\r")
                 if part.replace("\x1b[K", "").strip()]
        self.assertTrue(shown, printed)
        for part in shown:
            self.assertTrue(part.replace("\x1b[K", "").startswith(("kernex: ", "x")), repr(part))

    def test_a_cells_error_says_where_in_the_file(self):
        # ipykernel's "Cell In[N], line L" becomes the file's cell and line.
        f = self.write("e.py", "x = 1\n# %%\ndef f():\n    return 1 / 0\n# %%\ny = 2\n\nf()\n")
        r = self.kernex("run", f)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("ZeroDivisionError", r.stderr)
        # The innermost frame in a cell: f, defined in cell 2 at file line 4.
        self.assertIn(f"kernex: {f} cell 2, line 4\n", r.stderr)
        r = self.kernex("run", "--json", f)
        self.assertEqual(json.loads(r.stdout.splitlines()[2])["error_at"], {"file": f, "cell": 2, "line": 4})

    def test_a_repeatable_flag_takes_one_value_each_time_in_exec_and_mcp(self):
        # One config_option for both commands: `--env A=1 WORD` leaves WORD
        # alone (exec: the file; mcp: no positional, so a usage error).
        msg = self.write("env.md", "```python\nimport os\nprint(os.environ['A'])\n```\n")
        r = self.kernex("exec", "--env", "A=1", msg)
        self.assertEqual((r.returncode, r.stdout), (0, "1\n"), r.stderr)
        r = self.kernex("mcp", "--env", "A=1", "stray", stdin="")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("stray", r.stderr)

    def test_markdown_latex_and_json_displays_print_their_source(self):
        code = ("from IPython.display import display, Markdown, Latex, JSON\n"
                "display(Markdown('# Title *here*'))\n"
                "display(Latex(r'$x^2$'))\n"
                "display(JSON({'a': 1}))\n"
                "class T:\n    pass\n"
                "display(T())\n")
        expected = "# Title *here*\n$x^2$\n{\n  \"a\": 1\n}\n"
        r = self.kernex("run", self.write("d.py", code))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(expected), r.stdout)
        self.assertNotIn("display.Markdown object", r.stdout)
        r = self.kernex("exec", "--executor", "jupyter", "-", stdin=f"```python\n{code}```\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(expected), r.stdout)
        # A repr with nothing better stays as it is.
        self.assertIn("<__main__.T", r.stdout)

    def test_the_flag_table_in_the_docs_is_the_clis_own(self):
        r = self.kernex("flag-table")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| `kernex exec` | `--max-output-head` |", r.stdout)
        self.assertIn("| `kernex kernel list` | `--prune` |", r.stdout)
        with open(os.path.join(os.environ["KERNEX_SOURCE_DIR"], "docs", "cli.md")) as f:
            doc = f.read()
        start = ("<!-- flag-table: generated by `kernex flag-table` (scripts/update_flag_table.sh); "
                 "cli_coherence checks it -->\n")
        table = doc.split(start, 1)[1].split("<!-- end of flag-table -->", 1)[0]
        self.assertEqual(table, r.stdout, "docs/cli.md's flag table is out of date: run scripts/update_flag_table.sh")

    def test_kernel_commands_say_events_in_run_and_execs_words(self):
        # kernel start: a death costs the state (run's note), Ctrl-C is
        # "Interrupted"; every line on stderr is kernex's.
        proc = subprocess.Popen([KERNEX, "kernel", "start", "--kernel", "kernex-test", "--ready-timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
                                cwd=self.tmp.name)
        self.addCleanup(lambda: proc.poll() is not None or (proc.kill(), proc.wait()))
        path = proc.stdout.readline().strip()
        os.kill(self.kernels()[0]["pid"], signal.SIGKILL)
        said = "kernex: the kernel died and was restarted: its state (variables, imports) was lost\n"
        seen = ""
        while said not in seen:
            line = proc.stderr.readline()
            self.assertTrue(line, seen)
            seen += line
        r = self.kernex("run", "--existing", path, "-", stdin="print back\n")
        self.assertEqual(r.stdout, "back\n", r.stderr)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        seen += err
        self.assertTrue(seen.endswith("kernex: Interrupted: shutting the kernel down\n"), seen)
        self.assert_all_kernex_lines(seen)
        # Requests a kernel leaves unanswered: "Timeout: ... within N s", as
        # run and exec say a timeout. A kernel that keeps its heartbeat but
        # never answers: ports bound, nothing read.
        fake = subprocess.Popen(["/usr/bin/python3", "-c", SILENT_KERNEL, os.path.join(self.tmp.name, "silent.json")],
                                stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: fake.poll() is not None or (fake.kill(), fake.wait()))
        silent = fake.stdout.readline().strip()
        for args, what in ((("kernel", "interrupt"), "interrupt_request"), (("kernel", "shutdown"), "shutdown_request"),
                           (("complete",), "complete_request")):
            with self.subTest(what=what):
                extra = ("x",) if what == "complete_request" else ()
                r = self.kernex(*args, silent, *extra, "--timeout", "1")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr.startswith(f"kernex: Timeout: the kernel did not answer {what} within 1 s"),
                                r.stderr)
                self.assert_all_kernex_lines(r.stderr)
        # kernel start --ready-timeout: the kernel not ready in time, in run's words.
        said = "kernex: kernel 'kernex-test' was not ready in time: the kernel was not ready within 0.001 s\n"
        r = self.kernex("kernel", "start", "--kernel", "kernex-test", "--ready-timeout", "0.001")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (2, "", said))
        r = self.kernex("run", "--kernel", "kernex-test", "--ready-timeout", "0.001", "-", stdin="print 1\n")
        self.assertEqual((r.returncode, r.stderr), (2, said))
        r = self.kernex("kernel", "start", "--kernel", "kernex-test", "--ready-timeout", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("kernex: --ready-timeout 0: give a number of seconds from above 0", r.stderr)

    def test_a_death_has_the_same_words_in_run_and_exec(self):
        said = "the kernel died while running the cell: its state (variables, imports) was lost"
        f = self.write("c.txt", "print before\ncrash\n")
        r = self.kernex("run", "--kernel", "kernex-test", f)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"kernex: {f}, cell 1 (line 1): {said}", r.stderr)
        self.assert_all_kernex_lines(r.stderr)
        r = self.kernex("exec", "--executor", "jupyter", "--kernel", "kernex-test", "-",
                        stdin="```test\nprint before\ncrash\n```\n")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"kernex: {said}", r.stdout)

    def test_kernel_list_shows_the_restarted_kernels_pid(self):
        proc, path = self.start_kernel()
        old = self.kernels()[0]["pid"]
        os.kill(old, signal.SIGKILL)  # the restarter starts a new one
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = self.kernels()
            if listed and listed[0]["pid"] != old and listed[0]["alive"]:
                break
            time.sleep(0.1)
        self.assertNotEqual(listed[0]["pid"], old, listed)
        self.assertTrue(listed[0]["alive"], listed)
        self.assertEqual(listed[0]["connection_file"], path)
        r = self.kernex("run", "--existing", path, "-", stdin="print again\n")
        self.assertEqual(r.stdout, "again\n", r.stderr)
        self.assertEqual(self.kernex("kernel", "stop", path).returncode, 0)
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertTrue(wait_gone(listed[0]["pid"]))
        self.assertEqual(self.kernels(), [])

    def test_a_recorded_terminal_session_is_as_documented(self):
        # docs/cli.md shows a session on a terminal; this records it in a
        # pseudo-terminal and compares: headers, colours, summary.
        with open(os.path.join(os.environ["KERNEX_SOURCE_DIR"], "docs", "cli.md")) as f:
            doc = f.read()
        block = doc.split("<!-- recorded session: cli_coherence checks it -->\n```text\n", 1)[1]
        block = block.split("```\n<!-- end of recorded session -->", 1)[0]
        lines = block.splitlines(True)
        self.assertTrue(lines[0].startswith("$ printf 'print one"), lines[0])
        self.write("w.txt", "print one\n# %%\nerror Boom here\n# %%\nprint three\n")
        self.assertEqual(lines[1], "$ kernex run --kernel kernex-test --continue w.txt\n")
        status, printed = self.in_pty("run", "--kernel", "kernex-test", "--continue", "w.txt")
        self.assertEqual(status, 1, printed)
        shown = re.sub(r"; \d+\.\d\d s\n$", "; 0.84 s\n", printed.replace("\r\n", "\n").replace("\x1b", "\\e"))
        self.assertEqual(shown, "".join(lines[2:]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
