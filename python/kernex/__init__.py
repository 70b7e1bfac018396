"""kernex: run code in Jupyter kernels, local processes and Docker containers.

A thin layer over kernex's C++ library (the extension kernex._kernex):

    import kernex

    with kernex.start_kernel("python3") as k:       # a kernel, shut down on exit
        k.execute("x = 41")
        r = k.execute("x + 1", timeout=30)
        r.status, r.result                           # "ok", "42"

    with kernex.make_executor({"executor": "local", "timeout": 10}) as ex:
        res = ex.execute(kernex.extract_code_blocks(model_reply))
        res.exit_code, res.output

Calls wait with the GIL released; Ctrl-C interrupts the running cell or
block, then raises KeyboardInterrupt. Failures of kernex itself raise
kernex.Error (.code names the category); what the code does is in the
result. Drop-in executors for AG2 and AutoGen are in kernex.ag2 and
kernex.autogen. See docs/python.md.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from . import _kernex
from ._kernex import BlockReview, CodeResult, Error, Execution, Executor, Kernel

__all__ = [
    "BlockReview",
    "CodeBlock",
    "CodeResult",
    "Error",
    "Execution",
    "Executor",
    "Kernel",
    "connect",
    "extract_code_blocks",
    "make_executor",
    "start_kernel",
]

__version__ = "0.1.0"


@dataclass
class CodeBlock:
    """A fenced code block of a message (the shape of AG2's and AutoGen's CodeBlock)."""

    code: str
    language: str


# Kernels and executors still open when the interpreter exits are closed then
# (kernels shut down, containers removed), whether or not anything still
# refers to them.
_open: "weakref.WeakSet[Union[Kernel, Executor]]" = weakref.WeakSet()
_open_lock = threading.Lock()


def _track(obj):
    with _open_lock:
        _open.add(obj)
    return obj


@atexit.register
def _close_all() -> None:
    with _open_lock:
        left = list(_open)
    for obj in left:
        try:
            obj.shutdown() if isinstance(obj, Kernel) else obj.close()
        except Exception:  # noqa: BLE001 - exiting: close what can be closed
            pass


def start_kernel(
    kernel_name: str = "python3",
    *,
    cwd: Optional[Union[str, os.PathLike]] = None,
    env: Optional[Mapping[str, str]] = None,
    startup_timeout: float = 60.0,
    transport: str = "tcp",
    autorestart: bool = True,
) -> Kernel:
    """Starts a kernel from its kernelspec and waits until it is ready.

    Returns a Kernel, also a context manager that shuts the kernel down on
    exit. cwd: the kernel's working directory; env: added to the kernelspec's
    environment; transport: "tcp" or "ipc"; autorestart: restart the kernel
    when it dies. Raises kernex.Error (not_found: no such kernelspec,
    launch_failed, timeout).
    """
    return _track(
        _kernex._start_kernel(
            kernel_name,
            None if cwd is None else os.fspath(cwd),
            dict(env or {}),
            float(startup_timeout),
            transport,
            autorestart,
        )
    )


def connect(connection_file: Union[str, os.PathLike]) -> Kernel:
    """Attaches to a running kernel from its connection file.

    The kernel is not kernex's: shutdown() closes the connection only, and
    restart() raises kernex.Error(unsupported). Raises kernex.Error when the
    file is missing or malformed, or the kernel does not answer.
    """
    return _track(_kernex._connect(os.fspath(connection_file)))


def make_executor(
    config: Union[Mapping[str, Any], str, None] = None,
    *,
    approve: Optional[Callable[["BlockReview"], Union[str, bool]]] = None,
    **options: Any,
) -> Executor:
    """Makes a code executor: {"executor": "local" | "docker" | "jupyter", ...options}.

    config may be that dict, its JSON text, or the executor's name with the
    options as keyword arguments: make_executor("local", timeout=10).
    approve: a hook asked before each block runs (Executor.set_approve):
    approve(review) sees review.language, .code, .sha256 and answers "run",
    "skip" or "stop" (or True / False). Returns an Executor, also a context
    manager that closes it on exit. Raises kernex.Error(invalid_argument) for
    an unknown executor or option.
    """
    if config is None:
        merged: dict = {}
    elif isinstance(config, str):
        stripped = config.strip()
        merged = json.loads(stripped) if stripped.startswith("{") else {"executor": config}
    else:
        merged = dict(config)
    merged.update(options)
    for key, value in list(merged.items()):
        if isinstance(value, os.PathLike):
            merged[key] = os.fspath(value)
    executor = _track(Executor(merged))
    if approve is not None:
        executor.set_approve(approve)
    return executor


def extract_code_blocks(markdown: str, default_language: str = "python") -> list:
    """The fenced code blocks of a markdown message, in order, as CodeBlocks.

    A block without a language gets one from a shebang line, else
    default_language; a fence never closed is ignored.
    """
    return [CodeBlock(code=code, language=language)
            for language, code in _kernex._extract_code_blocks(markdown, default_language)]
