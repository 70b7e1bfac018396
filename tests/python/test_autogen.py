"""kernex.autogen's executors driven the way AutoGen 0.4's CodeExecutorAgent
drives a code executor (markdown in, its reply text out, awaited with a
CancellationToken), with stand-ins for AutoGen's CodeBlock and
CancellationToken (AutoGen itself is not installed: it is not in Debian)."""

import asyncio
import os
import re
import threading
from pathlib import Path

import pytest

from kernex import autogen

from conftest import none_left, unique_marker


class StandInCodeBlock:
    """Shaped like autogen_core.code_executor.CodeBlock (a dataclass: code, language)."""

    def __init__(self, code: str, language: str):
        self.code = code
        self.language = language


class StandInCancellationToken:
    """Shaped like autogen_core.CancellationToken: cancel(), is_cancelled(),
    add_callback() (called at once when already cancelled), link_future()."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks = []

    def cancel(self):
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def is_cancelled(self):
        return self._cancelled

    def add_callback(self, callback):
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()

    def link_future(self, future):
        self.add_callback(future.cancel)
        return future


NO_CODE = "No code blocks found in the thread."
FENCE = re.compile(r"```[ \t]*([\w+\-]*)[ \t]*\n(.*?)```", re.DOTALL)


async def agent_reply(executor, texts, token):
    """What CodeExecutorAgent (without a model client) does with TextMessages:
    its own markdown extraction, one execute_code_blocks call, its reply."""
    blocks = [StandInCodeBlock(code=m.group(2), language=m.group(1)) for text in texts for m in FENCE.finditer(text)]
    if not blocks:
        return NO_CODE
    result = await executor.execute_code_blocks(blocks, cancellation_token=token)
    if result.output.strip() == "":
        return f"The script ran but produced no output to console. The POSIX exit code was: {result.exit_code}."
    if result.exit_code != 0:
        return f"The script ran, then exited with an error (POSIX exit code: {result.exit_code})\n" \
               f"Its output was:\n{result.output}"
    return result.output


def test_local_executor_in_a_code_executor_agent():
    async def main():
        async with autogen.LocalCommandLineCodeExecutor(timeout=30) as executor:
            work_dir = executor.work_dir
            assert work_dir.is_dir()
            reply = await agent_reply(executor, ["Run:\n```python\nprint(6 * 7)\n```\n```sh\necho from sh\n```\n"],
                                      StandInCancellationToken())
            assert reply == "42\nfrom sh\n"
            failed = await agent_reply(executor, ["```sh\necho oops; exit 4\n```"], StandInCancellationToken())
            assert failed == "The script ran, then exited with an error (POSIX exit code: 4)\nIts output was:\noops\n"
            assert await agent_reply(executor, ["no code"], StandInCancellationToken()) == NO_CODE
            result = await executor.execute_code_blocks([StandInCodeBlock("print(1)", "python")],
                                                        StandInCancellationToken())
            assert result.code_file.startswith(str(work_dir.resolve()))
        assert not work_dir.exists()  # stop() removed the temporary work dir

    asyncio.run(main())


def test_the_event_loop_runs_while_a_block_runs(tmp_path):
    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async with autogen.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=30) as executor:
            ticker = asyncio.create_task(tick())
            result = await executor.execute_code_blocks([StandInCodeBlock("sleep 1; echo done", "sh")],
                                                        StandInCancellationToken())
            ticker.cancel()
            assert result.exit_code == 0 and result.output == "done\n"
            assert ticks > 10

    asyncio.run(main())


async def _wait_for_file(path: Path):
    for _ in range(6000):
        if path.exists() and path.read_text().strip():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def test_cancellation_interrupts_the_block_and_keeps_its_output(tmp_path):
    marker = unique_marker()

    async def main():
        async with autogen.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=90) as executor:
            token = StandInCancellationToken()
            run = asyncio.create_task(executor.execute_code_blocks(
                [StandInCodeBlock(f"echo partial; echo started > pid; (exec -a {marker} sleep 120); echo never", "bash")],
                token))
            await _wait_for_file(tmp_path / "pid")
            token.cancel()
            result = await run
            assert result.exit_code == autogen.CANCELLED_EXIT_CODE == 125
            assert "partial" in result.output and "never" not in result.output
            assert none_left(marker)

    asyncio.run(main())


def test_a_cancelled_task_stops_the_block(tmp_path):
    marker = unique_marker()

    async def main():
        async with autogen.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=90) as executor:
            run = asyncio.create_task(executor.execute_code_blocks(
                [StandInCodeBlock(f"echo started > pid; exec -a {marker} sleep 120", "bash")], StandInCancellationToken()))
            await _wait_for_file(tmp_path / "pid")
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            assert none_left(marker)

    asyncio.run(main())


def test_timeout_keeps_partial_output(tmp_path):
    async def main():
        async with autogen.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=2) as executor:
            result = await executor.execute_code_blocks([StandInCodeBlock("echo partial; sleep 120", "sh")],
                                                        StandInCancellationToken())
            assert result.exit_code == 124
            assert "partial" in result.output

    asyncio.run(main())


def test_jupyter_executor_session_cancellation_and_restart():
    async def main():
        executor = autogen.JupyterCodeExecutor(timeout=60)
        output_dir = executor.output_dir
        with pytest.raises(RuntimeError):
            await executor.execute_code_blocks([StandInCodeBlock("1", "python")], StandInCancellationToken())
        async with executor:
            reply = await agent_reply(executor, ["```python\nx = 41\nprint('set')\n```"], StandInCancellationToken())
            assert reply == "set\n"
            result = await executor.execute_code_blocks([StandInCodeBlock("print(x + 1)", "python")],
                                                        StandInCancellationToken())
            assert result.exit_code == 0 and result.output == "42\n"
            assert result.output_files == []

            token = StandInCancellationToken()
            marker = output_dir / "started"
            run = asyncio.create_task(executor.execute_code_blocks([StandInCodeBlock(
                f"import time\nopen({str(marker)!r}, 'w').write('1')\ntime.sleep(120)\nx = 0", "python")], token))
            await _wait_for_file(marker)
            token.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            # Interrupted, not restarted: the session is idle and its state kept.
            after = await executor.execute_code_blocks([StandInCodeBlock("print(x)", "python")],
                                                       StandInCancellationToken())
            assert after.exit_code == 0 and after.output == "41\n"

            await executor.restart()
            gone = await executor.execute_code_blocks([StandInCodeBlock("x", "python")], StandInCancellationToken())
            assert gone.exit_code == 1 and "NameError" in gone.output
        assert not output_dir.exists()

    asyncio.run(main())


def test_docker_executor_in_a_code_executor_agent(tmp_path, dockerd):
    from conftest import BUSYBOX_IMAGE, containers

    async def main():
        executor = autogen.DockerCommandLineCodeExecutor(BUSYBOX_IMAGE, "kernex-autogen-test", timeout=30,
                                                         work_dir=tmp_path, kernex_options={"docker_host": dockerd})
        with pytest.raises(ValueError, match="not running"):
            await executor.execute_code_blocks([StandInCodeBlock("echo x", "sh")], StandInCancellationToken())
        async with executor:
            assert "kernex-autogen-test" in containers(dockerd)
            reply = await agent_reply(executor, ["```sh\necho hello from busybox\n```"], StandInCancellationToken())
            assert reply == "hello from busybox\n"
            token = StandInCancellationToken()
            run = asyncio.create_task(executor.execute_code_blocks(
                [StandInCodeBlock("echo partial; echo $$ > pid; sleep 120; echo never", "sh")], token))
            await _wait_for_file(tmp_path / "pid")
            # "partial" was printed before the pid file was made, but it
            # travels through the daemon's exec stream: let it arrive.
            await asyncio.sleep(1)
            token.cancel()
            result = await run
            assert result.exit_code == 125
            assert "partial" in result.output and "never" not in result.output
            after = await executor.execute_code_blocks([StandInCodeBlock("echo still here", "sh")],
                                                       StandInCancellationToken())
            assert after.output == "still here\n"
        assert "kernex-autogen-test" not in containers(dockerd)

    asyncio.run(main())
