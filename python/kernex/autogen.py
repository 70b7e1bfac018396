"""Drop-in code executors for AutoGen 0.4 (autogen_core / autogen_ext), on kernex.

    from kernex.autogen import DockerCommandLineCodeExecutor
    async with DockerCommandLineCodeExecutor(image="python:3-slim", work_dir="coding") as executor:
        agent = CodeExecutorAgent("runner", code_executor=executor)

AutoGen 0.4's async shape: await execute_code_blocks(code_blocks,
cancellation_token), start(), stop(), restart(), async context manager. The
blocking kernex call runs in a worker thread, so the event loop keeps
running. A cancelled token (or a cancelled task) interrupts the running
block: its output so far is kept; the command-line executors return
exit_code 125 as AutoGen's do, the Jupyter one raises
asyncio.CancelledError once the kernel is idle again. A block over its
timeout is stopped, its output kept, and exit_code is 124 (AutoGen's
Jupyter executor raised asyncio.TimeoutError and lost the output). Results
are AutoGen's own classes when autogen_ext is importable, look-alikes with
the same fields otherwise.
"""

from __future__ import annotations

import asyncio
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Union

import kernex

from . import _dropin

__all__ = [
    "CodeBlock",
    "CodeResult",
    "CommandLineCodeResult",
    "DockerCommandLineCodeExecutor",
    "JupyterCodeExecutor",
    "JupyterCodeResult",
    "LocalCommandLineCodeExecutor",
    "extract_markdown_code_blocks",
]

try:  # AutoGen's own classes, when it is installed
    from autogen_core.code_executor import CodeBlock, CodeResult  # type: ignore
except ImportError:
    from kernex import CodeBlock  # type: ignore[assignment]

    from ._dropin import CodeResult  # type: ignore[assignment]

try:
    from autogen_ext.code_executors._common import CommandLineCodeResult  # type: ignore
except ImportError:
    from ._dropin import CommandLineCodeResult  # type: ignore[assignment]

try:
    from autogen_ext.code_executors.jupyter import JupyterCodeResult  # type: ignore
except ImportError:
    from ._dropin import FilesCodeResult as JupyterCodeResult  # type: ignore[assignment]


# AutoGen returns this exit code for a cancelled command-line block.
CANCELLED_EXIT_CODE = 125


def extract_markdown_code_blocks(markdown_text: str) -> List[CodeBlock]:
    """The fenced blocks of markdown_text, through kernex.extract_code_blocks."""
    return _dropin.extract_blocks(markdown_text, CodeBlock)


async def _run_in_thread(executor: "kernex.Executor", cancellation_token: Any, job: Callable[[], Any]):
    """Runs job in a thread; a cancelled token or task interrupts executor.
    Returns (job's value, whether it was cancelled)."""
    cancelled = False

    def on_cancel(*_: Any) -> None:
        nonlocal cancelled
        cancelled = True
        executor.interrupt()

    if cancellation_token is not None:
        cancellation_token.add_callback(on_cancel)
    future = asyncio.get_running_loop().run_in_executor(None, job)
    try:
        value = await asyncio.shield(future)
    except asyncio.CancelledError:
        # The task was cancelled: stop the code and wait for it to end, so
        # nothing keeps running behind the caller's back.
        on_cancel()
        await asyncio.wait([future])
        raise
    return value, cancelled


class _CommandLineExecutor:
    SUPPORTED_LANGUAGES: ClassVar[List[str]] = ["bash", "shell", "sh", "pwsh", "powershell", "ps1", "python"]
    _ALIASES: ClassVar[Dict[str, str]] = {"py": "python", "python3": "python"}

    _executor: Optional["kernex.Executor"] = None

    @property
    def timeout(self) -> int:
        return self._timeout

    def _run(self, code_blocks: List[Any]):
        assert self._executor is not None
        return _dropin.run_blocks(
            self._executor, code_blocks,
            normalize=lambda lang: self._ALIASES.get(lang, lang),
            known=lambda lang: lang in self.SUPPORTED_LANGUAGES,
            runs=lambda lang: True,
            work_dir=None)

    async def execute_code_blocks(self, code_blocks: List[Any], cancellation_token: Any) -> CommandLineCodeResult:
        """Runs the blocks in order (each with the whole timeout), stopping at the first failure."""
        executor = await self._ready()
        run, cancelled = await _run_in_thread(executor, cancellation_token, lambda: self._run(code_blocks))
        exit_code = run.exit_code
        if cancelled and exit_code != 0:
            exit_code = CANCELLED_EXIT_CODE
        return CommandLineCodeResult(exit_code=exit_code, output=run.output,
                                     code_file=run.code_files[0] if run.code_files else None)

    async def _ready(self) -> "kernex.Executor":
        raise NotImplementedError

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()


class LocalCommandLineCodeExecutor(_CommandLineExecutor):
    """AutoGen's LocalCommandLineCodeExecutor on kernex's local executor.
    work_dir None: a temporary dir made by start() and removed by stop()."""

    def __init__(
        self,
        timeout: int = 60,
        work_dir: Optional[Union[Path, str]] = None,
        functions: List[Any] = [],  # noqa: B006 - the reference's signature
        functions_module: str = "functions",
        virtual_env_context: Optional[Any] = None,
    ):
        _dropin.check_timeout(timeout)
        _dropin.no_functions(functions)
        self._timeout = timeout
        self._user_work_dir = Path(work_dir) if work_dir is not None else None
        if self._user_work_dir is not None:
            self._user_work_dir.mkdir(exist_ok=True)
        self._venv = _dropin.virtual_env_options(virtual_env_context)
        self._temp_dir: Optional[tempfile.TemporaryDirectory] = None
        self._started = False

    @property
    def work_dir(self) -> Path:
        if self._user_work_dir is not None:
            return self._user_work_dir
        if self._temp_dir is not None:
            return Path(self._temp_dir.name)
        warnings.warn("Using current directory as work_dir is deprecated. Please call start() to use a "
                      "temporary directory.", DeprecationWarning, stacklevel=2)
        return Path(".")

    async def _ready(self) -> "kernex.Executor":
        if self._executor is None:
            config = {"executor": "local", "work_dir": str(self.work_dir), "timeout": self._timeout}
            config.update(self._venv)
            self._executor = kernex.make_executor(config)
        return self._executor

    async def start(self) -> None:
        if self._user_work_dir is None and self._temp_dir is None:
            self._temp_dir = tempfile.TemporaryDirectory()
        self._started = True

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None
        self._started = False

    async def restart(self) -> None:
        warnings.warn("Restarting local command line code executor is not supported. No action is taken.",
                      stacklevel=2)


class DockerCommandLineCodeExecutor(_CommandLineExecutor):
    """AutoGen's DockerCommandLineCodeExecutor on kernex's docker executor:
    start() makes and starts the container (work_dir bound at /workspace,
    network none unless kernex_options says otherwise); the image must be in
    the daemon (kernex never pulls)."""

    def __init__(
        self,
        image: str = "python:3-slim",
        container_name: Optional[str] = None,
        *,
        timeout: int = 60,
        work_dir: Union[Path, str] = Path("."),
        bind_dir: Optional[Union[Path, str]] = None,
        auto_remove: bool = True,
        stop_container: bool = True,
        functions: List[Any] = [],  # noqa: B006 - the reference's signature
        functions_module: str = "functions",
        kernex_options: Optional[Dict[str, Any]] = None,
    ):
        _dropin.check_timeout(timeout)
        _dropin.no_functions(functions)
        work_dir = Path(work_dir)
        work_dir.mkdir(exist_ok=True)
        if bind_dir is not None and Path(bind_dir).resolve() != work_dir.resolve():
            raise ValueError("bind_dir other than work_dir is not supported: kernex binds work_dir itself")
        self._timeout = timeout
        self._work_dir = work_dir
        self._bind_dir = work_dir
        self.container_name = container_name
        self._config = {"executor": "docker", "image": image, "work_dir": str(work_dir), "timeout": timeout,
                        "auto_remove": auto_remove, "stop_container": stop_container}
        if container_name is not None:
            self._config["container_name"] = container_name
        self._config.update(kernex_options or {})

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    @property
    def bind_dir(self) -> Path:
        return self._bind_dir

    async def _ready(self) -> "kernex.Executor":
        if self._executor is None:
            raise ValueError("Container is not running. Must first be started with either start or a context "
                             "manager.")
        return self._executor

    async def start(self) -> None:
        if self._executor is None:
            config = dict(self._config)
            self._executor = await asyncio.get_running_loop().run_in_executor(None, kernex.make_executor, config)

    async def stop(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.close)

    async def restart(self) -> None:
        executor = await self._ready()
        await asyncio.get_running_loop().run_in_executor(None, executor.restart)


class JupyterCodeExecutor:
    """AutoGen's JupyterCodeExecutor on kernex's jupyter executor: start()
    starts the kernel; the blocks run as cells of its session. Images and
    HTML are saved to output_dir (None: a temporary dir that stop() removes)."""

    def __init__(
        self,
        kernel_name: str = "python3",
        timeout: int = 60,
        output_dir: Optional[Union[Path, str]] = None,
        *,
        kernex_options: Optional[Dict[str, Any]] = None,
    ):
        _dropin.check_timeout(timeout)
        if output_dir is None:
            self._temp_dir: Optional[tempfile.TemporaryDirectory] = tempfile.TemporaryDirectory()
            self._output_dir = Path(self._temp_dir.name)
        else:
            self._temp_dir = None
            self._output_dir = Path(output_dir)
        self._output_dir.mkdir(exist_ok=True, parents=True)
        self._kernel_name = kernel_name
        self._timeout = timeout
        self._kernex_options = dict(kernex_options or {})
        self._executor: Optional["kernex.Executor"] = None

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    @property
    def timeout(self) -> int:
        return self._timeout

    async def start(self) -> None:
        if self._executor is not None:
            return
        config = {"executor": "jupyter", "kernel_name": self._kernel_name, "timeout": self._timeout,
                  "output_dir": str(self._output_dir.resolve())}
        config.update(self._kernex_options)
        self._executor = await asyncio.get_running_loop().run_in_executor(None, kernex.make_executor, config)

    async def stop(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.close)
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    async def restart(self) -> None:
        """A fresh kernel: the session's state is gone."""
        if self._executor is None:
            await self.start()
            return
        await asyncio.get_running_loop().run_in_executor(None, self._executor.restart)

    async def execute_code_blocks(self, code_blocks: List[Any], cancellation_token: Any) -> JupyterCodeResult:
        """Runs the blocks as cells (each with the whole timeout), stopping at the first failure."""
        if self._executor is None:
            raise RuntimeError("Executor must be started before executing cells")
        executor = self._executor

        def job():
            return _dropin.run_blocks(executor, code_blocks, normalize=lambda lang: lang,
                                      known=lambda lang: True, runs=lambda lang: True, work_dir=None)

        run, cancelled = await _run_in_thread(executor, cancellation_token, job)
        if cancelled:
            raise asyncio.CancelledError()
        return JupyterCodeResult(exit_code=run.exit_code, output=run.output,
                                 output_files=[Path(p) for p in run.output_files])

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()
