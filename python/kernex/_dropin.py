"""What kernex.ag2 and kernex.autogen share: running blocks one at a time
through a kernex executor (each block gets the whole timeout, as the
reference executors give it), languages set to "save, don't run", the
markdown extractor, and the result classes (the frameworks' own when they
are importable, look-alikes otherwise)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import kernex
from kernex import Error, _kernex

# A language set to "save, don't run" is written to a file in the work dir;
# the output says where, as the reference executors say it.
SAVED_LINE = "Code saved to {path}\n"

_PYTHON_NAMES = ("python", "python3", "py")


def content_str(message: Any) -> str:
    """A message's text: a str, None, or a list of content parts ({"type": "text", "text": ...})."""
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    texts = []
    for part in message:
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def save_block(work_dir: Path, code: str, language: str) -> Path:
    """Saves a block that is kept rather than run (HTML, ...) in work_dir
    through the library's own block writer (kernex::save_code_block, see
    docs/security.md): at its filename directive or a content-hashed name,
    beneath the dir's fd, no symlink followed, a new 0600 file."""
    extension = "py" if language in _PYTHON_NAMES else language
    return Path(_kernex._save_code_block(str(work_dir.resolve()), code, extension))


# Look-alikes of the frameworks' result classes, for when they are not
# installed: the same fields, constructed with the same keywords.
@dataclass
class CodeResult:
    exit_code: int
    output: str


@dataclass
class CommandLineCodeResult(CodeResult):
    code_file: Optional[str] = None  # the first block's file


@dataclass
class FilesCodeResult(CodeResult):
    output_files: list = field(default_factory=list)  # images and HTML saved


@dataclass
class BlockRun:
    exit_code: int = 0
    output: str = ""
    code_files: List[str] = field(default_factory=list)
    output_files: List[str] = field(default_factory=list)


def run_blocks(
    executor: "kernex.Executor",
    blocks: Sequence[Any],
    *,
    normalize: Callable[[str], str],
    known: Callable[[str], bool],
    runs: Callable[[str], bool],
    work_dir: Optional[Path],
    unknown_line: str = "unknown language {language}\n",
) -> BlockRun:
    """Runs blocks in order through executor, one execute() each (so each
    gets the whole timeout), stopping at the first failure. A language
    runs(lang) says not to run is saved to work_dir instead."""
    out = BlockRun()
    pieces: List[str] = []
    for block in blocks:
        language = normalize(str(block.language).lower())
        code = str(block.code)
        if not known(language):
            pieces.append(unknown_line.format(language=language))
            out.exit_code = 1
            break
        if not runs(language):
            assert work_dir is not None
            try:
                saved = save_block(work_dir, code, language)
            except Error as e:
                pieces.append(f"{e}\n")
                out.exit_code = 1
                break
            out.code_files.append(str(saved))
            pieces.append(SAVED_LINE.format(path=saved))
            out.exit_code = 0
            continue
        result = executor.execute([(language, code)])
        pieces.append(result.output)
        out.code_files.extend(result.code_files)
        out.output_files.extend(result.output_files)
        out.exit_code = result.exit_code
        if result.exit_code != 0:
            break
    out.output = "".join(pieces)
    return out


def extract_blocks(message: Any, block_class: Any) -> list:
    """The fenced blocks of a message as block_class(code=..., language=...)."""
    return [block_class(code=b.code, language=b.language)
            for b in kernex.extract_code_blocks(content_str(message))]


def virtual_env_options(virtual_env_context: Any) -> dict:
    """A venv's context (venv.EnvBuilder.ensure_directories) as local executor options."""
    if virtual_env_context is None:
        return {}
    return {
        "path_prefix": [os.path.abspath(virtual_env_context.bin_path)],
        "interpreters": {"python": os.path.abspath(virtual_env_context.env_exe)},
    }


def gateway_options(jupyter_server: Any) -> dict:
    """A Jupyter server as the reference frameworks name one (a URL, a
    JupyterConnectable with .connection_info, or a JupyterConnectionInfo
    with host, use_https, port, token) as jupyter executor options."""
    if jupyter_server is None:
        return {}
    if isinstance(jupyter_server, str):
        return {"gateway_url": jupyter_server}
    info = getattr(jupyter_server, "connection_info", jupyter_server)
    host = getattr(info, "host", None)
    if host is None:
        raise ValueError("jupyter_server must be a URL, a JupyterConnectable or a JupyterConnectionInfo")
    scheme = "https" if getattr(info, "use_https", False) else "http"
    port = getattr(info, "port", None)
    options = {"gateway_url": f"{scheme}://{host}" + (f":{port}" if port else "")}
    token = getattr(info, "token", None)
    if token:
        options["gateway_token"] = token
    return options


def no_functions(functions: Sequence[Any]) -> None:
    if functions:
        raise NotImplementedError(
            "kernex's drop-in executors do not take functions: put them in a module in the work dir "
            "and import it from the code")


def check_timeout(timeout: float) -> None:
    if timeout < 1:
        raise ValueError("Timeout must be greater than or equal to 1.")


def pairs(code_blocks: Sequence[Any]) -> List[Tuple[str, str]]:
    return [(str(b.language), str(b.code)) for b in code_blocks]
