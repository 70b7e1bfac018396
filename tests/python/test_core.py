"""The core Python API over kernex's C++ library: kernels (state, streaming,
timeout, interrupt from another thread, Ctrl-C, death, restart, completion,
inspection, attaching), executors, code extraction, errors."""

import os
import signal
import threading
import time

import pytest

import kernex
from conftest import none_left, unique_marker, wait_for


def test_state_survives_across_cells(kernel):
    first = kernel.execute("x = 41")
    assert first.status == "ok" and first.ok
    r = kernel.execute("print('hi'); x + 1", timeout=30)
    assert r.status == "ok"
    assert r.result == "42"
    assert r.text == "hi\n"
    assert r.error is None
    assert r.execution_count == first.execution_count + 1
    assert r.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "hi\n"},
        {"output_type": "execute_result", "execution_count": r.execution_count,
         "data": {"text/plain": "42"}, "metadata": {}},
    ]
    assert r.reply["status"] == "ok"


def test_outputs_stream_to_the_callback_while_the_cell_runs(kernel, tmp_path):
    # The cell waits for a file that only the callback creates, on seeing
    # the first line: it ends only if that line arrived while it ran.
    flag = tmp_path / "seen"
    seen = []

    def on_output(output):
        seen.append(output)
        if output.get("text") == "waiting\n":
            flag.touch()

    r = kernel.execute(
        f"import os, time\nprint('waiting', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\nprint('done')",
        timeout=60, on_output=on_output)
    assert r.status == "ok", r.note
    assert [o["text"] for o in seen] == ["waiting\n", "done\n"]
    assert seen == r.outputs


def test_timeout_keeps_partial_output_and_the_session(kernel):
    kernel.execute("y = 7")
    r = kernel.execute("import time\nprint('partial', flush=True)\ntime.sleep(120)", timeout=2)
    assert r.status == "timeout"
    assert "partial\n" in r.text
    after = kernel.execute("y", timeout=30)
    assert after.status == "ok" and after.result == "7"


def test_interrupt_from_another_thread(kernel):
    kernel.execute("z = 5")

    def on_output(output):
        if output.get("text") == "started\n":
            threading.Thread(target=kernel.interrupt).start()

    r = kernel.execute("import time\nprint('started', flush=True)\ntime.sleep(120)\nz = 6",
                       timeout=90, on_output=on_output)
    assert r.status == "error"
    assert r.error["ename"] == "KeyboardInterrupt"
    # Interrupted, not restarted: the session's state is intact.
    assert kernel.execute("z", timeout=30).result == "5"
    assert kernel.restart_count == 0


def test_ctrl_c_interrupts_the_cell_then_raises_keyboard_interrupt(kernel):
    kernel.execute("w = 1")

    def on_output(output):
        if output.get("text") == "started\n":
            # What a terminal's Ctrl-C does to this process.
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        kernel.execute("import time\nprint('started', flush=True)\ntime.sleep(120)\nw = 2",
                       timeout=90, on_output=on_output)
    # The cell was interrupted (w unchanged), the kernel kept (no restart).
    r = kernel.execute("w", timeout=30)
    assert r.result == "1"
    assert kernel.restart_count == 0


def test_kernel_death_is_a_result_and_the_kernel_comes_back(kernel):
    pid = kernel.pid
    r = kernel.execute("import os\nos._exit(3)", timeout=60)
    assert r.status == "kernel_died"
    after = kernel.execute("1 + 1", timeout=60)
    assert after.status == "ok" and after.result == "2"
    assert kernel.pid != pid
    assert kernel.restart_count >= 1


def test_restart_gives_a_fresh_session(kernel):
    kernel.execute("v = 1")
    kernel.restart()
    r = kernel.execute("v", timeout=30)
    assert r.status == "error"
    assert r.error["ename"] == "NameError"


def test_complete_and_inspect(kernel):
    kernel.execute("import os")
    completion = kernel.complete("os.pa")
    assert completion["status"] == "ok"
    # Completions replace code[cursor_start:cursor_end] (jedi: "pa", IPython's own: "os.pa").
    start, end = completion["cursor_start"], completion["cursor_end"]
    assert end == len("os.pa")
    assert "os.pa"[:start] + "path" in ["os.pa"[:start] + m for m in completion["matches"]] or \
        "os.path" in completion["matches"]
    inspection = kernel.inspect("len")
    assert inspection["found"] is True
    assert "text/plain" in inspection["data"]


def test_input_is_answered_by_on_input(kernel):
    prompts = []

    def on_input(prompt, password):
        prompts.append((prompt, password))
        return "Ada"

    r = kernel.execute("name = input('who? ')\nprint('hello', name)", on_input=on_input, timeout=30)
    assert r.status == "ok"
    assert prompts == [("who? ", False)]
    assert "hello Ada\n" in r.text


def test_a_callback_exception_is_raised_after_the_cell(kernel):
    def on_output(output):
        raise ValueError("from the callback")

    with pytest.raises(ValueError, match="from the callback"):
        kernel.execute("print('a'); print('b'); q = 3", timeout=30, on_output=on_output)
    # The cell ran to its end; the kernel is usable.
    assert kernel.execute("q", timeout=30).result == "3"


def test_the_gil_is_released_while_kernex_waits(kernel):
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    before = None
    counter = threading.Thread(target=count)
    counter.start()
    try:
        r = kernel.execute("import time\ntime.sleep(1)", timeout=30,
                           on_output=None)
        before = len(ticks)
    finally:
        stop.set()
        counter.join()
    assert r.status == "ok"
    # The other thread ran while the cell slept (it could not hold the GIL otherwise).
    assert before > 10


def test_connect_attaches_to_a_running_kernel(kernel):
    kernel.execute("shared = 'from the first client'")
    with kernex.connect(kernel.connection_file) as attached:
        r = attached.execute("shared", timeout=30)
        assert r.result == "'from the first client'"
        with pytest.raises(kernex.Error) as raised:
            attached.restart()
        assert raised.value.code == "unsupported"
    # Closing the attached client leaves the kernel running.
    assert kernel.alive
    assert kernel.execute("1", timeout=30).result == "1"


def test_shutdown_ends_the_kernel_process(tmp_path):
    k = kernex.start_kernel("python3", cwd=tmp_path)
    pid = k.pid
    connection_file = k.connection_file
    assert os.path.exists(connection_file)
    k.shutdown()
    k.shutdown()  # idempotent
    assert k.closed and not k.alive
    assert not os.path.exists(connection_file)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(kernex.Error):
        k.execute("1")


def test_errors_are_kernex_errors_with_a_code(tmp_path):
    with pytest.raises(kernex.Error) as raised:
        kernex.start_kernel("no-such-kernel-anywhere", cwd=tmp_path)
    assert raised.value.code == "not_found"
    assert "no-such-kernel-anywhere" in str(raised.value)
    assert isinstance(raised.value, Exception)
    with pytest.raises(kernex.Error) as raised:
        kernex.make_executor({"executor": "teleport"})
    assert raised.value.code == "invalid_argument"
    assert "local" in str(raised.value)
    with pytest.raises(kernex.Error) as raised:
        kernex.make_executor("local", colour="blue")
    assert "colour" in str(raised.value)


def test_extract_code_blocks():
    blocks = kernex.extract_code_blocks(
        "Try this:\n```python\nprint(1)\n```\nthen\n~~~bash\necho hi\n~~~\n```\n#!/bin/sh\necho sh\n```\n")
    assert blocks == [
        kernex.CodeBlock(code="print(1)\n", language="python"),
        kernex.CodeBlock(code="echo hi\n", language="bash"),
        kernex.CodeBlock(code="#!/bin/sh\necho sh\n", language="sh"),
    ]
    assert kernex.extract_code_blocks("```\nx\n```\n", default_language="bash")[0].language == "bash"
    assert kernex.extract_code_blocks("```python\nunclosed\n") == []


def test_executor_runs_blocks_and_streams(tmp_path):
    streamed = []
    with kernex.make_executor("local", work_dir=tmp_path, timeout=30) as ex:
        blocks = kernex.extract_code_blocks(
            "```python\nprint('from python')\n```\n```bash\necho from bash\n```\n")
        res = ex.execute(blocks, on_output=streamed.append)
        assert res.exit_code == 0
        assert res.output == "from python\nfrom bash\n"
        assert "".join(streamed) == res.output
        assert len(res.code_files) == 2
        assert all(os.path.dirname(f) == str(tmp_path) for f in res.code_files)
        failed = ex.execute([("bash", "echo before; exit 3"), ("bash", "echo never")])
        assert failed.exit_code == 3
        assert "before" in failed.output and "never" not in failed.output
        assert ex.execute("```sh\necho markdown\n```").output == "markdown\n"
    assert ex.closed


def test_executor_timeout_and_interrupt_from_another_thread(tmp_path):
    with kernex.make_executor({"executor": "local", "work_dir": str(tmp_path), "timeout": 2}) as ex:
        res = ex.execute([("bash", "echo partial; sleep 120")])
        assert res.exit_code == 124 and res.timed_out
        assert "partial" in res.output
    with kernex.make_executor("local", work_dir=tmp_path, timeout=90) as ex:
        def on_output(text):
            if "started" in text:
                threading.Thread(target=ex.interrupt).start()

        res = ex.execute([("bash", "echo started; sleep 120; echo never")], on_output=on_output)
        assert res.exit_code == 130
        assert "never" not in res.output


def test_ctrl_c_stops_an_executor_block_and_reaps_it(tmp_path):
    def on_output(text):
        if "started" in text:
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()

    marker = unique_marker()
    with kernex.make_executor("local", work_dir=tmp_path, timeout=90) as ex:
        with pytest.raises(KeyboardInterrupt):
            ex.execute([("bash", f"echo started; exec -a {marker} sleep 120")], on_output=on_output)
        assert none_left(marker)
        # Still usable after the interrupt.
        assert ex.execute([("bash", "echo again")]).output == "again\n"


def test_approve_hook_sees_each_block_exactly_and_decides_what_runs(tmp_path):
    import hashlib

    seen = []
    answers = iter(["run", "skip", True, "stop"])

    def approve(review):
        seen.append((review.index, review.count, review.language, review.code, review.sha256,
                     review.hidden_characters))
        return next(answers)

    blocks = [("bash", "echo one\n"), ("bash", "touch skipped\n"), ("python", "print('thr\\x1bee')\n"),
              ("bash", "touch refused\n"), ("bash", "touch after\n")]
    with kernex.make_executor("local", work_dir=tmp_path, timeout=30, approve=approve) as ex:
        res = ex.execute(blocks)
    assert [s[:3] for s in seen] == [(0, 5, "bash"), (1, 5, "bash"), (2, 5, "python"), (3, 5, "bash")]
    assert [s[3] for s in seen] == [code for _, code in blocks[:4]]
    assert [s[4] for s in seen] == [hashlib.sha256(code.encode()).hexdigest() for _, code in blocks[:4]]
    assert [s[5] for s in seen] == [0, 0, 0, 0]  # the escape is in the source as text, not a control byte
    assert res.output.startswith("one\n")
    assert "thr\x1bee" in res.output
    assert "block 2 of 5 (bash) skipped" in res.output
    assert "block 4 of 5 (bash) refused" in res.output
    assert res.exit_code == 1
    assert not (tmp_path / "skipped").exists()
    assert not (tmp_path / "refused").exists() and not (tmp_path / "after").exists()
    assert [(a["index"], a["verdict"]) for a in res.approvals] == [
        (0, "approved"), (1, "skipped"), (2, "approved"), (3, "refused"), (4, "refused")]
    assert res.approvals[4]["sha256"] == hashlib.sha256(b"touch after\n").hexdigest()


def test_approve_hook_hidden_characters_time_exceptions_and_removal(tmp_path):
    reviews = []

    def approve(review):
        reviews.append(review)
        time.sleep(1.5)  # a human reading: not charged to the 1 s timeout
        return True

    with kernex.make_executor("local", work_dir=tmp_path, timeout=1) as ex:
        ex.set_approve(approve)
        res = ex.execute([("bash", "echo 'a\u202eb'\x1b[1A\n")])
        assert res.exit_code == 0 and not res.timed_out
        assert reviews[0].hidden_characters == 2
        assert "\\u202e" in reviews[0].printable_code and "\\x1b" in reviews[0].printable_code

        def raises(review):
            raise ValueError("the reviewer went away")

        ex.set_approve(raises)
        with pytest.raises(ValueError, match="the reviewer went away"):
            ex.execute([("bash", "touch ran\n")])
        assert not (tmp_path / "ran").exists()

        ex.set_approve(lambda review: "maybe")
        with pytest.raises(kernex.Error, match="returned 'maybe'"):
            ex.execute([("bash", "touch ran\n")])
        assert not (tmp_path / "ran").exists()

        with pytest.raises(TypeError):
            ex.set_approve("not callable")

        ex.set_approve(None)
        res = ex.execute([("bash", "touch ran\n")])
        assert res.exit_code == 0 and res.approvals == []
        assert (tmp_path / "ran").exists()
