"""The notebook suite: `kernex run NOTEBOOK.ipynb` against Debian's nbclient.

Each notebook of tests/notebook/notebooks is executed by kernex and, in the
same test, by nbclient (0.7.2, Debian 12) with the same options; the two
written notebooks are compared output by output: identical, except
timestamps (metadata.execution's values; its keys must match) and what the
rule under test says kernex adds (an error output for a dead kernel or a
timeout). nbclient 0.7.2 writes every stream message as its own output;
kernex merges consecutive streams of one name (what nbclient's newer
coalesce_streams and nbconvert's coalesce_streams preprocessor do for
consecutive ones), so nbclient's outputs are merged the same way before
comparing. Every file kernex writes is checked with nbformat's validator.
Kernels: Debian's ipykernel (python3), kernex-bash and the native test
kernel (kernex-test), all real."""
import base64
import copy
import datetime
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

KERNEX = os.path.join(os.environ["KERNEX_BUILD_DIR"], "src", "cli", "kernex")
NO_BASH = os.environ.get("KERNEX_NOTEBOOK_NO_BASH") == "1"  # -Dbash_kernel=disabled
NOTEBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notebooks")


def merge_streams(outputs):
    merged = []
    for out in outputs:
        if (out["output_type"] == "stream" and merged and merged[-1]["output_type"] == "stream"
                and merged[-1]["name"] == out["name"]):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(copy.deepcopy(out))
    return merged


NBCLIENT_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")  # '%Y-%m-%dT%H:%M:%S.%fZ'


def comparable(nb, merge=False):
    """The notebook as a plain dict with timestamps' values and widgets' comm ids dropped."""
    nb = json.loads(json.dumps(nb))
    widgets = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if widgets:  # comm ids are the kernel's, new in each run
        widgets["state"] = sorted(widgets["state"].values(), key=lambda w: json.dumps(w, sort_keys=True))
    for cell in nb["cells"]:
        ex = cell.get("metadata", {}).get("execution")
        if ex is not None:
            cell["metadata"]["execution"] = sorted(ex)
        if cell["cell_type"] == "code" and merge:
            cell["outputs"] = merge_streams(cell["outputs"])
    return nb


class NotebookTests(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.env = dict(os.environ, JUPYTER_RUNTIME_DIR=os.path.join(self.dir, "runtime"))

    def tearDown(self):
        runtime = os.path.join(self.dir, "runtime")
        self.assertEqual(os.listdir(runtime) if os.path.isdir(runtime) else [], [],
                         "a connection file was left behind")
        self.tmp.cleanup()

    def copy_in(self, name, new_name=None):
        with open(os.path.join(NOTEBOOKS, name), encoding="utf-8") as f:
            text = f.read()
        path = os.path.join(self.dir, new_name or name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def kernex(self, *args, timeout=180):
        return subprocess.run([KERNEX, "run", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, cwd=self.dir)

    def read_valid(self, path):
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        nbformat.validate(raw)  # nbformat's own validator, on the file as written
        with open(path, encoding="utf-8") as f:
            return nbformat.read(f, as_version=4)

    def nbclient(self, path, **options):
        """Runs nbclient on path as `jupyter nbconvert --execute` would; returns
        the notebook and the exception that stopped it (None when none)."""
        with open(path, encoding="utf-8") as f:
            nb = nbformat.read(f, as_version=4)
        options.setdefault("kernel_name", nb.metadata.get("kernelspec", {}).get("name", "python3"))
        client = NotebookClient(nb, resources={"metadata": {"path": os.path.dirname(path)}}, **options)
        stopped = None
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
            stopped = e
        return nb, stopped

    def assert_kernex_lines(self, stderr):
        """Every line kernex prints on stderr is its own: it starts with 'kernex:'."""
        for line in stderr.splitlines():
            self.assertTrue(line.startswith("kernex:"), repr(line) + " in\n" + stderr)

    def run_both(self, name, *kernex_args, nbclient_options=None, expect_status=0, kernel=None):
        path = os.path.join(self.dir, name)  # a test may have prepared it
        if not os.path.exists(path):
            path = self.copy_in(name)
        out = os.path.join(self.dir, "kernex-" + name)
        args = ["-o", out, *kernex_args, path]
        if kernel:
            args = ["--kernel", kernel, *args]
        r = self.kernex(*args)
        self.assertEqual(r.returncode, expect_status, r.stderr)
        self.assert_kernex_lines(r.stderr)
        ours = self.read_valid(out)
        for cell in ours.cells:  # the kernel's message dates, written as nbclient writes them
            for key, value in cell.metadata.get("execution", {}).items():
                self.assertRegex(value, NBCLIENT_DATE, key)
        theirs, stopped = self.nbclient(path, **(nbclient_options or {}))
        return ours, theirs, stopped, r

    def assert_same(self, ours, theirs, cells=None):
        a, b = comparable(ours), comparable(theirs, merge=True)
        if cells is not None:
            a["cells"] = [a["cells"][i] for i in cells]
            b["cells"] = [b["cells"][i] for i in cells]
        self.assertEqual(a, b)

    # -- every rule, compared with nbclient --------------------------------

    def test_streams_merged(self):
        ours, theirs, _, _ = self.run_both("streams.ipynb")
        self.assert_same(ours, theirs)
        # one output per stream name run, as the rule says
        self.assertEqual([o["output_type"] + ":" + o.get("name", "") for o in ours.cells[2].outputs],
                         ["stream:stdout", "stream:stderr", "stream:stdout", "stream:stderr", "execute_result:"])
        self.assertEqual(ours.cells[1].outputs[0].text, "".join(f"line {i}\n" for i in range(5)))
        self.assertEqual(ours.cells[5].outputs, [])  # the blank cell was not run
        self.assertEqual(ours.metadata.language_info.name, "python")

    def test_display_clear_output_update_display_data(self):
        ours, theirs, _, _ = self.run_both("display.ipynb")
        self.assert_same(ours, theirs)
        # update_display_data reached back into cell 0; the later display in
        # cell 2 (same id) updated cell 0 too; clear_output(wait) kept only the last
        self.assertEqual(ours.cells[0].outputs[0].data["text/html"], "<p>shown again</p>")
        self.assertIn("image/png", ours.cells[0].outputs[1].data)
        self.assertEqual(ours.cells[3].outputs[0].text, "after clear\n")
        # the two waiting clears left only the display (and the handle, the cell's value)
        self.assertEqual([o.output_type for o in ours.cells[4].outputs], ["display_data", "execute_result"])
        self.assertEqual(ours.cells[4].outputs[0].data["text/plain"], "'updated later'")
        self.assertEqual(ours.cells[2].outputs[1].data["text/plain"], "'updated later'")
        self.assertEqual(ours.cells[0].outputs[2].execution_count, 1)

    def test_error_stops_the_run_and_the_notebook_is_written(self):
        ours, theirs, stopped, r = self.run_both("errors.ipynb", expect_status=1)
        self.assertIsInstance(stopped, CellExecutionError)
        self.assert_same(ours, theirs)
        self.assertEqual(ours.cells[1].outputs[-1].ename, "ZeroDivisionError")
        self.assertEqual(ours.cells[2].outputs, [])  # not reached
        self.assertIsNone(ours.cells[2].execution_count)
        # the traceback, then where and what, in kernex's lines
        self.assertIn("ZeroDivisionError", r.stderr)
        where = os.path.join(self.dir, "errors.ipynb") + ", cell 2 (code cell 2)"
        self.assertIn(f"kernex: {where}: ZeroDivisionError: division by zero\n", r.stderr)

    def test_continue_is_allow_errors(self):
        ours, theirs, stopped, _ = self.run_both("errors.ipynb", "--continue", expect_status=1,
                                                 nbclient_options={"allow_errors": True})
        self.assertIsNone(stopped)
        self.assert_same(ours, theirs)
        self.assertEqual(ours.cells[2].outputs[0].text, "after the error\n")
        self.assertEqual(ours.cells[2].execution_count, 3)

    def test_tags_raises_exception_and_skip_execution(self):
        path = self.copy_in("tags.ipynb")
        # an old output on the skipped cell must survive
        nb = nbformat.read(path, as_version=4)
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
        nb.cells[1].execution_count = 7
        nbformat.write(nb, path)
        ours, theirs, stopped, _ = self.run_both("tags.ipynb")
        self.assertIsNone(stopped)
        self.assert_same(ours, theirs)
        self.assertEqual(ours.cells[0].outputs[0].ename, "ValueError")
        self.assertEqual(ours.cells[1].outputs[0].text, "old output\n")
        self.assertEqual(ours.cells[2].outputs[0].text, "runs after an allowed failure\n")

    def test_nbformat_44_and_45_keep_minor_ids_and_metadata(self):
        ours, theirs, _, _ = self.run_both("minor44.ipynb")
        self.assert_same(ours, theirs)
        self.assertEqual(ours.nbformat_minor, 4)
        self.assertNotIn("id", ours.cells[0])
        self.assertEqual(ours.cells[0].metadata.custom, {"k": "v"})
        self.assertEqual(ours.metadata.authors, [{"name": "kernex"}])
        ours, theirs, _, _ = self.run_both("errors.ipynb", "--continue", expect_status=1,
                                           nbclient_options={"allow_errors": True})
        with open(os.path.join(NOTEBOOKS, "errors.ipynb"), encoding="utf-8") as f:
            original = nbformat.read(f, as_version=4)
        self.assertEqual(ours.nbformat_minor, 5)
        self.assertEqual([c.id for c in ours.cells], [c.id for c in original.cells])

    @unittest.skipIf(NO_BASH, "kernex-bash disabled at configure time")
    def test_bash_kernel(self):
        ours, theirs, stopped, _ = self.run_both("bash.ipynb", "--continue", expect_status=1,
                                                 nbclient_options={"allow_errors": True})
        self.assert_same(ours, theirs)
        self.assertEqual(ours.cells[1].outputs, [{"output_type": "stream", "name": "stderr", "text": "two\n"}])
        self.assertEqual(ours.cells[2].outputs[0].text, "n=1\nn=2\nn=3\n")
        self.assertEqual(ours.cells[3].outputs[0].text, "héllo\n")

    def test_native_test_kernel(self):
        ours, theirs, stopped, _ = self.run_both("test_kernel.ipynb")
        self.assertIsNone(stopped)
        self.assert_same(ours, theirs)
        self.assertEqual(ours.cells[1].outputs[0].data["text/plain"], "fourth")  # updated from cell 4
        self.assertEqual(len(ours.cells[4].outputs), 1)  # 50 stream messages, one output

    def test_unicode_round_trip(self):
        ours, theirs, _, _ = self.run_both("display.ipynb")
        self.assertEqual(ours.cells[1].outputs[0].data["text/markdown"], "*second* — ünïcödé 🙂")
        self.assertEqual(ours.cells[0].outputs[2].data["text/plain"], "'result ✓'")

    def test_execution_timestamps_are_the_kernels_message_dates(self):
        started = datetime.datetime.utcnow()
        ours, theirs, _, _ = self.run_both("dates.ipynb")
        ended = datetime.datetime.utcnow()
        self.assert_same(ours, theirs)
        # the kernel dated its messages 2001-02-03T04:05:06.7+01:00: both
        # clients write that date (zone dropped, fraction to 6 digits)
        dated = "2001-02-03T04:05:06.700000Z"
        keys = ["iopub.execute_input", "iopub.status.busy", "iopub.status.idle", "shell.execute_reply"]
        self.assertEqual(ours.cells[1].metadata.execution, dict.fromkeys(keys, dated))
        self.assertEqual(theirs.cells[1].metadata.execution, ours.cells[1].metadata.execution)
        # cell 3 changed the date to one that is not ISO 8601 after its busy
        # and execute_input: those keep the kernel's, the rest are the clock's
        for cell in (2, 3):
            for key, value in ours.cells[cell].metadata.execution.items():
                if cell == 2 and key in ("iopub.status.busy", "iopub.execute_input"):
                    self.assertEqual(value, dated, key)
                else:
                    when = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
                    self.assertTrue(started <= when <= ended, (key, value))

    def test_widget_state_saved_as_nbclient_saves_it(self):
        ours, theirs, _, _ = self.run_both("widgets.ipynb")
        self.assert_same(ours, theirs)  # metadata.widgets included
        state = ours.metadata.widgets["application/vnd.jupyter.widget-state+json"]
        self.assertEqual((state.version_major, state.version_minor), (2, 0))
        # the models that named _model_name, whatever their comm target
        self.assertEqual(sorted(w.model_name for w in state.state.values()), ["IntSliderModel", "X"])
        slider = next(w for w in state.state.values() if w.model_name == "IntSliderModel")
        self.assertEqual(slider.model_module, "@jupyter-widgets/controls")
        self.assertEqual(slider.state.value, 7)  # the update merged into the opening state
        self.assertEqual(slider.state.description, "n ✓")
        self.assertEqual(slider.buffers, [
            {"data": base64.b64encode(b"new").decode(), "encoding": "base64", "path": ["data"]},
            {"data": base64.b64encode(b"ab").decode(), "encoding": "base64", "path": ["more", 0]}])
        # a notebook whose cells open no comm gets no widget metadata
        ours, _, _, _ = self.run_both("errors.ipynb", "--continue", expect_status=1,
                                      nbclient_options={"allow_errors": True})
        self.assertNotIn("widgets", ours.metadata)

    # -- what kernex adds to nbclient's behaviour ---------------------------

    def test_kernel_death_error_output_written_notebook_exit_status(self):
        ours, theirs, stopped, r = self.run_both("kernel_dies.ipynb", expect_status=3)
        self.assertIsInstance(stopped, DeadKernelError)
        self.assert_same(ours, theirs, cells=[0, 2])
        # the dead cell's dates: those of the messages that came (no reply, no idle), as nbclient's
        self.assertEqual(sorted(ours.cells[1].metadata.execution), sorted(theirs.cells[1].metadata.execution))
        outs = ours.cells[1].outputs
        self.assertEqual(outs[0].text, "dying\n")
        self.assertEqual(outs[-1].output_type, "error")
        self.assertEqual(outs[-1].ename, "DeadKernelError")
        # kernel_client's words, as kernex run says them for a script
        where = os.path.join(self.dir, "kernel_dies.ipynb") + ", cell 2 (code cell 2)"
        self.assertIn(f"kernex: {where}: the kernel died while running the cell", r.stderr)
        self.assertEqual(outs[-1].evalue, r.stderr.split(where + ": ")[1].splitlines()[0])

    def test_timeout_interrupts_and_notebook_is_written(self):
        started = time.monotonic()
        ours, theirs, stopped, r = self.run_both("timeout.ipynb", "--timeout", "2", expect_status=124,
                                                 nbclient_options={"timeout": 2})
        self.assertIsInstance(stopped, CellTimeoutError)
        self.assert_same(ours, theirs, cells=[0, 2])
        # nbclient gives up on the cell (no interrupt); kernex interrupts it,
        # so the reply and the idle status come, and their dates are recorded
        self.assertEqual(sorted(ours.cells[1].metadata.execution),
                         ["iopub.execute_input", "iopub.status.busy", "iopub.status.idle", "shell.execute_reply"])
        outs = ours.cells[1].outputs
        self.assertEqual(outs[0].text, "slow\n")
        self.assertEqual(outs[-1].ename, "CellTimeoutError")
        self.assertIn("KeyboardInterrupt", [o.get("ename") for o in outs])  # interrupted, not waited for
        # the words of kernex run (and exec) for a script's cell
        said = "Timeout: the code ran longer than 2 s and was stopped"
        self.assertEqual(outs[-1].evalue, said)
        where = os.path.join(self.dir, "timeout.ipynb") + ", cell 2 (code cell 2)"
        self.assertIn(f"kernex: {where}: {said}\n", r.stderr)
        self.assertLess(time.monotonic() - started, 100)

    def test_ctrl_c_writes_the_partial_notebook(self):
        nb = nbformat.v4.new_notebook()
        nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("print('quick')"),
                    nbformat.v4.new_code_cell("import time\nprint('slow', flush=True)\n"
                                              "open('started', 'w').close()\ntime.sleep(60)"),
                    nbformat.v4.new_code_cell("print('not reached')")]
        path = os.path.join(self.dir, "slow.ipynb")
        nbformat.write(nb, path)
        out = os.path.join(self.dir, "partial.ipynb")
        proc = subprocess.Popen([KERNEX, "run", "-o", out, path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not os.path.exists(os.path.join(self.dir, "started")):
            time.sleep(0.1)
        time.sleep(0.3)  # the 'slow' stream is on its way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn(f"kernex: {path}, cell 2 (code cell 2): Interrupted\n", err)  # as kernex run says it
        self.assert_kernex_lines(err)
        nb = self.read_valid(out)
        self.assertEqual(nb.cells[0].outputs[0].text, "quick\n")
        self.assertEqual(nb.cells[1].outputs[0].text, "slow\n")
        self.assertEqual(nb.cells[1].outputs[-1].ename, "KeyboardInterrupt")
        self.assertEqual(nb.cells[2].outputs, [])

    def test_a_cell_that_ignores_the_interrupt_cannot_hold_the_run(self):
        # As for scripts: a second Ctrl-C, or the cell still running 3 s
        # after the first, abandons it; SIGTERM does at once. The partial
        # notebook is written and the kernel shut down (tearDown: no
        # connection file left).
        for sig in (signal.SIGINT, signal.SIGTERM):
            with self.subTest(signal=sig.name):
                started = os.path.join(self.dir, f"started-{sig.name}")
                nb = nbformat.v4.new_notebook()
                nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
                nb.cells = [nbformat.v4.new_code_cell("print('quick')"),
                            nbformat.v4.new_code_cell("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                      f"print('stubborn', flush=True)\nopen({started!r}, 'w').close()\n"
                                                      "time.sleep(600)"),
                            nbformat.v4.new_code_cell("print('not reached')")]
                path = os.path.join(self.dir, f"stubborn-{sig.name}.ipynb")
                nbformat.write(nb, path)
                out = os.path.join(self.dir, f"stubborn-{sig.name}.out.ipynb")
                proc = subprocess.Popen([KERNEX, "run", "-o", out, path], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.dir)
                self.addCleanup(lambda p=proc: p.poll() is not None or (p.kill(), p.wait()))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not os.path.exists(started):
                    time.sleep(0.1)
                time.sleep(0.3)  # the 'stubborn' stream is on its way
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=90)
                self.assertEqual(proc.returncode, 130, err)
                self.assertIn(f"kernex: {path}, cell 2 (code cell 2): Interrupted: the cell did not stop and was "
                              "abandoned\n", err)
                self.assert_kernex_lines(err)
                cells = self.read_valid(out).cells
                self.assertEqual(cells[0].outputs[0].text, "quick\n")
                self.assertEqual(cells[1].outputs[0].text, "stubborn\n")
                self.assertEqual(cells[2].outputs, [])
                self.assertEqual(os.listdir(os.path.join(self.dir, "runtime")), [])

    def test_parameters_python(self):
        path = self.copy_in("parameters.ipynb")
        out = os.path.join(self.dir, "params.out.ipynb")
        tricky = "it's \"quoted\"\n$HOME \\ ünï 🙂"
        r = self.kernex("-o", out, "-p", "alpha", "2.5", "-p", "name", tricky, "-p", "items", "[1, \"two\", null]",
                        "--parameters-file", self._write_json("p.json", {"opts": {"k": True}}), path)
        self.assertEqual(r.returncode, 0, r.stderr)
        nb = self.read_valid(out)
        self.assertEqual(nb.cells[2].metadata.tags, ["injected-parameters"])
        self.assertTrue(nb.cells[2].source.startswith("# Parameters\n"))
        self.assertEqual(json.loads(nb.cells[3].outputs[0].text),
                         {"alpha": 2.5, "name": tricky, "items": [1, "two", None], "opts": {"k": True}})
        # nbclient on the injected notebook computes the same
        theirs, _ = self.nbclient(out)
        self.assert_same(nb, theirs)
        # running the output again replaces the injected cell instead of adding one
        r = self.kernex("--inplace", "-p", "alpha", "3", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        again = self.read_valid(out)
        self.assertEqual(len(again.cells), len(nb.cells))
        self.assertEqual(json.loads(again.cells[3].outputs[0].text)["alpha"], 3)

    def test_parameters_r(self):
        # IRkernel (r-cran-irkernel): the injected cell is R, and nbclient
        # computes the same from the injected notebook.
        nb = nbformat.v4.new_notebook()
        nb.metadata.kernelspec = {"name": "ir", "display_name": "R", "language": "R"}
        nb.cells = [nbformat.v4.new_code_cell("alpha <- 1\nname <- 'default'", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell("cat(alpha * 2, name, length(items), items[[2]], is.null(none), flag, '\\n')")]
        path = os.path.join(self.dir, "r.ipynb")
        nbformat.write(nb, path)
        out = os.path.join(self.dir, "r.out.ipynb")
        r = self.kernex("-o", out, "-p", "alpha", "2.5", "-p", "name", "it's \"q\" \\ $x 🙂", "-p", "items",
                        "[1, \"two\"]", "-p", "none", "null", "-p", "flag", "true", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        ours = self.read_valid(out)
        self.assertEqual(ours.cells[1].metadata.tags, ["injected-parameters"])
        self.assertEqual(ours.cells[2].outputs[0].text, "5 it's \"q\" \\ $x 🙂 2 two TRUE TRUE \n")
        theirs, _ = self.nbclient(out)
        self.assert_same(ours, theirs)

    def test_timeout_restarts_a_kernel_that_will_not_stop(self):
        # SIGINT ignored: interrupted, then restarted; said so in the notebook and on stderr
        nb = nbformat.v4.new_notebook()
        nb.metadata.kernelspec = {"name": "kernex-test", "display_name": "test", "language": "test"}
        nb.cells = [nbformat.v4.new_code_cell("print before"), nbformat.v4.new_code_cell("print hanging\nhang"),
                    nbformat.v4.new_code_cell("print never")]
        path = os.path.join(self.dir, "hang.ipynb")
        nbformat.write(nb, path)
        r = self.kernex("--timeout", "1", path, timeout=120)
        self.assertEqual(r.returncode, 124, r.stderr)
        said = "Timeout: the code ran longer than 1 s and was stopped (the kernel was restarted: its state is lost)"
        self.assertIn(f"kernex: {path}, cell 2 (code cell 2): {said}\n", r.stderr)
        self.assert_kernex_lines(r.stderr)
        cells = self.read_valid(os.path.join(self.dir, "hang.out.ipynb")).cells
        self.assertEqual(cells[1].outputs[0].text, "hanging\n")
        self.assertEqual((cells[1].outputs[-1].ename, cells[1].outputs[-1].evalue), ("CellTimeoutError", said))
        self.assertEqual(cells[2].outputs, [])

    @unittest.skipIf(NO_BASH, "kernex-bash disabled at configure time")
    def test_parameters_bash_and_unsupported_language(self):
        path = self.copy_in("parameters_bash.ipynb")
        out = os.path.join(self.dir, "pb.out.ipynb")
        r = self.kernex("-o", out, "-p", "name", "it's $(echo pwned) `x`", "-p", "items", "[\"a b\", \"c\"]", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        nb = self.read_valid(out)
        self.assertEqual(nb.cells[1].metadata.tags, ["injected-parameters"])
        self.assertEqual(nb.cells[2].outputs[0].text, "1|it's $(echo pwned) `x`|c\n")
        path = self.copy_in("test_kernel.ipynb")
        r = self.kernex("-o", os.path.join(self.dir, "x.ipynb"), "-p", "a", "1", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("'test'", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "x.ipynb")))

    def _write_json(self, name, value):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(value, f)
        return path

    def test_percent_script_to_notebook(self):
        script = os.path.join(self.dir, "analysis.py")
        with open(script, "w") as f:
            f.write("x = 20\n\n# %% [markdown]\n# # Title\n# some *text*\n\n# %%\nprint(x + 1)\n# %% second\nx * 2\n")
        out = os.path.join(self.dir, "analysis.ipynb")
        r = self.kernex(script, "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        nb = self.read_valid(out)
        self.assertEqual([c.cell_type for c in nb.cells], ["code", "markdown", "code", "code"])
        self.assertEqual(nb.cells[1].source, "# Title\nsome *text*")
        self.assertEqual(nb.cells[2].outputs[0].text, "21\n")
        self.assertEqual(nb.cells[3].outputs[0].data["text/plain"], "40")
        self.assertEqual(nb.metadata.kernelspec.name, "python3")
        theirs, _ = self.nbclient(out)
        self.assert_same(nb, theirs)

    # -- the command line ---------------------------------------------------

    def test_default_output_name_and_inplace(self):
        path = self.copy_in("minor44.ipynb", "analysis.ipynb")
        r = self.kernex("analysis.ipynb")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read_valid(os.path.join(self.dir, "analysis.out.ipynb")).cells[0].outputs[0].text,
                         "four point four\n")
        r = self.kernex("--inplace", "analysis.ipynb")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read_valid(path).cells[2].outputs[0].data["text/plain"], "'ok'")
        self.assertEqual(sorted(os.listdir(self.dir)), ["analysis.ipynb", "analysis.out.ipynb", "runtime"]
                         if os.path.isdir(os.path.join(self.dir, "runtime")) else
                         ["analysis.ipynb", "analysis.out.ipynb"])  # no temporary file left

    def test_missing_kernel_lists_the_installed_ones(self):
        path = self.copy_in("minor44.ipynb")
        nb = nbformat.read(path, as_version=4)
        nb.metadata.kernelspec.name = "no-such-kernel"
        nbformat.write(nb, path)
        r = self.kernex(path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no-such-kernel", r.stderr)
        # the installed ones, as jupyter_client finds them
        from jupyter_client.kernelspec import KernelSpecManager
        installed = ", ".join(sorted(KernelSpecManager().find_kernel_specs()))
        self.assertIn(f"Available: {installed}.", r.stderr)
        r = self.kernex("--kernel", "python3", "-o", os.path.join(self.dir, "o.ipynb"), path)
        self.assertEqual(r.returncode, 0, r.stderr)

    def stderr_in_pty(self, *args):
        """Runs kernex run with stderr a terminal; returns its status and what it printed there."""
        master, slave = pty.openpty()
        proc = subprocess.Popen([KERNEX, "run", *args],
                                stdout=subprocess.DEVNULL, stderr=slave, env=self.env, cwd=self.dir)
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(timeout=60)
        os.close(master)
        return proc.returncode, seen

    def test_progress_line_on_a_terminal_only(self):
        path = self.copy_in("test_kernel.ipynb")
        status, seen = self.stderr_in_pty("-o", os.path.join(self.dir, "p.ipynb"), path)
        self.assertEqual(status, 0, seen)
        self.assertIn("cell 7/7 \xb7 00:0".encode(), seen)
        self.assertIn(b"\r\x1b[K", seen)
        r = self.kernex("-o", os.path.join(self.dir, "q.ipynb"), path)  # stderr is a pipe here
        self.assertNotIn("cell 1/", r.stderr)
        # --quiet on a terminal: nothing at all
        status, seen = self.stderr_in_pty("--quiet", "-o", os.path.join(self.dir, "p.ipynb"), path)
        self.assertEqual((status, seen), (0, b""))

    def test_sandbox_applies_to_notebooks(self):
        # --sandbox is not silently dropped for a notebook: the kernel runs in
        # bubblewrap's pid namespace (small pids), writes the notebook's dir.
        nb = nbformat.v4.new_notebook()
        nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells.append(nbformat.v4.new_code_cell(
            "import os\nopen('written-inside', 'w').close()\nprint(os.getpid() < 100)"))
        path = os.path.join(self.dir, "boxed.ipynb")
        nbformat.write(nb, path)
        r = self.kernex("--sandbox", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.read_valid(os.path.join(self.dir, "boxed.out.ipynb")).cells[0].outputs[0].text, "True\n")
        self.assertTrue(os.path.exists(os.path.join(self.dir, "written-inside")))
        r = self.kernex(path)
        self.assertEqual(self.read_valid(os.path.join(self.dir, "boxed.out.ipynb")).cells[0].outputs[0].text, "False\n")

    def test_kernel_flags_of_scripts_apply_to_notebooks(self):
        path = self.copy_in("minor44.ipynb")
        # The container flags: --docker-host is the daemon asked, not $DOCKER_HOST
        # (no daemon at either: the error names the one asked).
        env = dict(self.env, DOCKER_HOST="unix://" + os.path.join(self.dir, "from-env.sock"))
        flag_sock = "unix://" + os.path.join(self.dir, "from-flag.sock")
        for f in (path, self._write("s.py", "print(1)\n")):
            r = subprocess.run([KERNEX, "run", "--docker-image", "kernex-none", "--docker-host", flag_sock,
                                "--memory", "2g", "--pids-limit", "64", "-o", os.path.join(self.dir, "d.ipynb"), f],
                               capture_output=True, text=True, env=env, timeout=60, cwd=self.dir)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("Docker daemon at " + flag_sock, r.stderr)
            self.assert_kernex_lines(r.stderr)
        # --token-file is read for a notebook as for a script (the same
        # run_gateway: cli_misuse shows a script's server gets the token):
        # an empty one is refused before any server is asked.
        for f in (path, self._write("t.py", "print(1)\n")):
            r = self.kernex("--gateway", "http://127.0.0.1:9", "--token-file", self._write("token", "\n"),
                            "-o", os.path.join(self.dir, "g.ipynb"), f, timeout=60)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("the token file " + os.path.join(self.dir, "token") + " is empty", r.stderr)

    def test_max_output_bytes_keeps_head_and_tail(self):
        # A flood, then the traceback: the cell keeps its first 60 % and its
        # last 40 % of the bytes, the notice between, as kernex run --json.
        nb = nbformat.v4.new_notebook()
        nb.metadata.kernelspec = {"name": "kernex-test", "display_name": "test", "language": "test"}
        nb.cells = [nbformat.v4.new_code_cell("lines 2000\nerror ValueError the end"),
                    nbformat.v4.new_code_cell("print small")]
        path = os.path.join(self.dir, "flood.ipynb")
        nbformat.write(nb, path)
        out = os.path.join(self.dir, "flood.out.ipynb")
        r = self.kernex("--max-output-bytes", "2000", "--continue", "-o", out, path)
        self.assertEqual(r.returncode, 1, r.stderr)
        outs = self.read_valid(out).cells[0].outputs
        self.assertEqual([o.output_type + ":" + o.get("name", "") for o in outs],
                         ["stream:stdout", "stream:stderr", "stream:stdout", "error:"])
        self.assertEqual(len(outs[0].text.encode()), 1200)
        self.assertTrue(outs[0].text.startswith("line 1\nline 2\n"), outs[0].text[:40])
        full = "".join(f"line {i}\n" for i in range(1, 2001))
        dropped = len(full) - 1200 - len(outs[2].text)
        self.assertEqual(outs[1].text, f"[\u2026 {dropped} bytes dropped \u2026]\n")
        self.assertTrue(full.endswith(outs[2].text), outs[2].text[:40])
        self.assertEqual(outs[3].ename, "ValueError")  # the traceback survived the flood
        self.assertLessEqual(len(outs[2].text) + len(outs[3].evalue) + sum(map(len, outs[3].traceback))
                             + len(outs[3].ename), 800)
        # --max-output-head moves the split; the default cap keeps everything
        r = self.kernex("--max-output-bytes", "2000", "--max-output-head", "100", "--continue", "-o", out, path)
        self.assertEqual(len(self.read_valid(out).cells[0].outputs[0].text), 100)
        r = self.kernex("--continue", "-o", out, path)
        kept = self.read_valid(out).cells[0].outputs
        self.assertEqual([o.output_type for o in kept], ["stream", "error"])
        self.assertEqual(kept[0].text, full)
        r = self.kernex("--max-output-bytes", "10", "--max-output-head", "20", "-o", out, path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--max-output-head 20 is larger than --max-output-bytes 10", r.stderr)

    def _write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_symlink_planted_at_the_output_is_replaced_not_followed(self):
        # The notebook's own code plants a symlink where kernex will write the
        # result, pointing at a file it wants overwritten.
        victim = os.path.join(self.dir, "victim.txt")
        with open(victim, "w") as f:
            f.write("precious\n")
        nb = nbformat.v4.new_notebook()
        nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells.append(nbformat.v4.new_code_cell(
            "import os\nos.symlink(%r, 'attack.out.ipynb')\nprint('planted')" % victim))
        path = os.path.join(self.dir, "attack.ipynb")
        nbformat.write(nb, path)
        r = self.kernex(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        out = os.path.join(self.dir, "attack.out.ipynb")
        self.assertFalse(os.path.islink(out))
        self.assertEqual(self.read_valid(out).cells[0].outputs[0].text, "planted\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
