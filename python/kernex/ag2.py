"""Drop-in code executors for AG2 (autogen.coding), on kernex.

    from kernex.ag2 import LocalCommandLineCodeExecutor
    agent = ConversableAgent("runner", llm_config=False,
                             code_execution_config={"executor": LocalCommandLineCodeExecutor(work_dir="coding")})

Each class takes the reference constructor's parameters that matter and
implements AG2's CodeExecutor protocol: code_extractor (with
extract_code_blocks(message)), execute_code_blocks(code_blocks) and
restart(); stop() and the context manager release what it holds. Results
are AG2's own classes (CommandLineCodeResult, IPythonCodeResult) when
autogen is importable, look-alikes with the same fields otherwise.

kernex's behaviour behind the reference's interface: a block over its
timeout is stopped with its process group (no orphans) and its output so
far is kept; a dead kernel is reported at once; output is capped; stdout
and stderr come interleaved as they were written. Not taken: functions
(put them in a module in the work dir), AG2's regex "sanitizer" of shell
commands, pulling missing Docker images (the error says how to get one).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Union

import kernex

from . import _dropin

__all__ = [
    "CodeBlock",
    "CommandLineCodeResult",
    "DockerCommandLineCodeExecutor",
    "IPythonCodeResult",
    "JupyterCodeExecutor",
    "LocalCommandLineCodeExecutor",
    "MarkdownCodeExtractor",
]

try:  # AG2's own classes, when it is installed
    from autogen.coding.base import CodeBlock, CommandLineCodeResult, IPythonCodeResult  # type: ignore
except ImportError:
    from kernex import CodeBlock  # type: ignore[assignment]

    from ._dropin import CommandLineCodeResult  # type: ignore[assignment]
    from ._dropin import FilesCodeResult as IPythonCodeResult  # type: ignore[assignment]


class MarkdownCodeExtractor:
    """AG2's CodeExtractor: the fenced blocks of a message (a str, None, or a
    list of content parts), through kernex.extract_code_blocks."""

    def extract_code_blocks(self, message: Any) -> list:
        return _dropin.extract_blocks(message, CodeBlock)


# The languages and execution policies of AG2's command-line executors:
# True runs the block, False writes it to the work dir and says where.
_POLICY: Dict[str, bool] = {
    "bash": True,
    "shell": True,
    "sh": True,
    "pwsh": True,
    "powershell": True,
    "ps1": True,
    "python": True,
    "javascript": False,
    "html": False,
    "css": False,
}
_ALIASES = {"py": "python", "python3": "python", "js": "javascript"}


class _Executor:
    """What AG2's protocol asks of all three, and their lifetime."""

    _executor: "kernex.Executor"
    _timeout: int

    @property
    def timeout(self) -> int:
        return self._timeout

    @property
    def code_extractor(self) -> MarkdownCodeExtractor:
        return MarkdownCodeExtractor()

    def stop(self) -> None:
        """Releases what the executor holds (a kernel, a container, a temporary dir)."""
        self._executor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class _CommandLineExecutor(_Executor):
    SUPPORTED_LANGUAGES: ClassVar[List[str]] = list(_POLICY)
    DEFAULT_EXECUTION_POLICY: ClassVar[Dict[str, bool]] = dict(_POLICY)
    LANGUAGE_ALIASES: ClassVar[Dict[str, str]] = dict(_ALIASES)

    def _setup(self, timeout: int, work_dir: Path, execution_policies: Optional[Dict[str, bool]],
               config: dict) -> None:
        _dropin.check_timeout(timeout)
        self._timeout = timeout
        self._work_dir = work_dir
        self.execution_policies = dict(self.DEFAULT_EXECUTION_POLICY)
        if execution_policies is not None:
            self.execution_policies.update(execution_policies)
        self._executor = kernex.make_executor(config)

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    def execute_code_blocks(self, code_blocks: List[Any]) -> CommandLineCodeResult:
        """Runs the blocks in order (each with the whole timeout), stopping at
        the first failure; languages whose policy is False are saved, not run."""
        run = _dropin.run_blocks(
            self._executor, code_blocks,
            normalize=lambda lang: self.LANGUAGE_ALIASES.get(lang, lang),
            known=lambda lang: lang in self.SUPPORTED_LANGUAGES,
            runs=lambda lang: self.execution_policies.get(lang, False),
            work_dir=self._work_dir)
        return CommandLineCodeResult(exit_code=run.exit_code, output=run.output,
                                     code_file=run.code_files[0] if run.code_files else None)


class LocalCommandLineCodeExecutor(_CommandLineExecutor):
    """AG2's LocalCommandLineCodeExecutor on kernex's local executor: each
    block is written to a file in work_dir (default: the current directory)
    and run in a process of its own."""

    def __init__(
        self,
        timeout: int = 60,
        virtual_env_context: Optional[Any] = None,
        work_dir: Union[Path, str] = Path(),
        functions: List[Any] = [],  # noqa: B006 - the reference's signature
        functions_module: str = "functions",
        execution_policies: Optional[Dict[str, bool]] = None,
    ):
        _dropin.no_functions(functions)
        work_dir = Path(work_dir)
        work_dir.mkdir(exist_ok=True)
        config = {"executor": "local", "work_dir": str(work_dir), "timeout": timeout}
        config.update(_dropin.virtual_env_options(virtual_env_context))
        self._setup(timeout, work_dir, execution_policies, config)

    def restart(self) -> None:
        """As AG2's: there is nothing to restart (a warning says so)."""
        warnings.warn("Restarting local command line code executor is not supported. No action is taken.",
                      stacklevel=2)


class DockerCommandLineCodeExecutor(_CommandLineExecutor):
    """AG2's DockerCommandLineCodeExecutor on kernex's docker executor: one
    container (network none unless kernex_options says otherwise) with
    work_dir bound at /workspace; each block runs in it. The image must be
    in the daemon (kernex never pulls). kernex_options: further docker
    executor options (network_mode, memory, cpus, pids_limit, user,
    docker_host, ...)."""

    def __init__(
        self,
        image: str = "python:3-slim",
        container_name: Optional[str] = None,
        timeout: int = 60,
        work_dir: Optional[Union[Path, str]] = None,
        bind_dir: Optional[Union[Path, str]] = None,
        auto_remove: bool = True,
        stop_container: bool = True,
        execution_policies: Optional[Dict[str, bool]] = None,
        *,
        kernex_options: Optional[Dict[str, Any]] = None,
    ):
        work_dir = Path(work_dir) if work_dir is not None else Path()
        work_dir.mkdir(exist_ok=True)
        if bind_dir is not None and Path(bind_dir).resolve() != work_dir.resolve():
            raise ValueError("bind_dir other than work_dir is not supported: kernex binds work_dir itself")
        self._bind_dir = work_dir
        config = {"executor": "docker", "image": image, "work_dir": str(work_dir), "timeout": timeout,
                  "auto_remove": auto_remove, "stop_container": stop_container}
        if container_name is not None:
            config["container_name"] = container_name
        config.update(kernex_options or {})
        self._setup(timeout, work_dir, execution_policies, config)

    @property
    def bind_dir(self) -> Path:
        return self._bind_dir

    def restart(self) -> None:
        """Restarts the container: its processes end, its files stay."""
        self._executor.restart()


class JupyterCodeExecutor(_Executor):
    """AG2's JupyterCodeExecutor on kernex's jupyter executor: the blocks run
    as cells of one kernel session. jupyter_server: None for a kernel kernex
    starts here, or a Jupyter Server (a URL, or AG2's JupyterConnectable /
    JupyterConnectionInfo). Images and HTML are saved to output_dir (which
    must exist) and listed in output_files."""

    def __init__(
        self,
        jupyter_server: Optional[Any] = None,
        kernel_name: str = "python3",
        timeout: int = 60,
        output_dir: Union[Path, str] = Path(),
        *,
        kernex_options: Optional[Dict[str, Any]] = None,
    ):
        _dropin.check_timeout(timeout)
        output_dir = Path(output_dir)
        if not output_dir.exists():
            raise ValueError(f"Output directory {output_dir} does not exist.")
        self._timeout = timeout
        self._output_dir = output_dir
        self._kernel_name = kernel_name
        config = {"executor": "jupyter", "kernel_name": kernel_name, "timeout": timeout,
                  "output_dir": str(output_dir.resolve())}
        config.update(_dropin.gateway_options(jupyter_server))
        config.update(kernex_options or {})
        self._executor = kernex.make_executor(config)

    @property
    def output_dir(self) -> Path:
        return self._output_dir

    def execute_code_blocks(self, code_blocks: List[Any]) -> IPythonCodeResult:
        """Runs the blocks as cells (each with the whole timeout), stopping at
        the first failure (exit_code 1, the traceback in output)."""
        run = _dropin.run_blocks(
            self._executor, code_blocks,
            normalize=lambda lang: lang,
            known=lambda lang: True,
            runs=lambda lang: True,
            work_dir=None)
        return IPythonCodeResult(exit_code=run.exit_code, output=run.output, output_files=run.output_files)

    def restart(self) -> None:
        """A fresh kernel: the session's state is gone."""
        self._executor.restart()
