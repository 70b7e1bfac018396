"""kernex.ag2's executors driven the way AG2's ConversableAgent drives a code
executor (a markdown message in, "exitcode: N (...)\\nCode output: ..." out),
with stand-ins for AG2's CodeBlock and CodeExecutor protocol (AG2 itself is
not installed: it is not in Debian)."""

import os
import threading
from typing import Any, Protocol, runtime_checkable

import pytest

from kernex import ag2
from conftest import none_left, unique_marker, wait_for


class StandInCodeBlock:
    """Shaped like autogen.coding.base.CodeBlock (a pydantic model: keyword fields)."""

    def __init__(self, *, code: str, language: str):
        self.code = code
        self.language = language


@runtime_checkable
class CodeExecutorProtocol(Protocol):
    """AG2's autogen.coding.base.CodeExecutor, which its factory checks with isinstance."""

    @property
    def code_extractor(self) -> Any: ...

    def execute_code_blocks(self, code_blocks: list) -> Any: ...

    def restart(self) -> None: ...


def agent_reply(executor, messages):
    """What ConversableAgent._generate_code_execution_reply_using_executor does
    with last_n_messages="auto": scan the trailing user messages, newest
    first, run the first that has code blocks, format the result."""
    scan = 0
    for message in reversed(messages):
        if message.get("role") != "user":
            break
        scan += 1
    for message in reversed(messages[len(messages) - scan:]):
        if not message["content"]:
            continue
        code_blocks = executor.code_extractor.extract_code_blocks(message["content"])
        if len(code_blocks) == 0:
            continue
        result = executor.execute_code_blocks(code_blocks)
        exitcode2str = "execution succeeded" if result.exit_code == 0 else "execution failed"
        return True, f"exitcode: {result.exit_code} ({exitcode2str})\nCode output: {result.output}"
    return False, None


MESSAGE = """Here is the plan.
```python
print("sum is", 20 + 22)
```
and then
```bash
echo "from bash"
```
"""


def test_local_executor_in_a_conversable_agent(tmp_path):
    with ag2.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=30) as executor:
        assert isinstance(executor, CodeExecutorProtocol)
        found, reply = agent_reply(executor, [{"role": "assistant", "content": "hi"},
                                              {"role": "user", "content": MESSAGE}])
        assert found
        assert reply == "exitcode: 0 (execution succeeded)\nCode output: sum is 42\nfrom bash\n"
        result = executor.execute_code_blocks([StandInCodeBlock(code="print('x')", language="python")])
        assert result.exit_code == 0 and result.output == "x\n"
        assert os.path.dirname(result.code_file) == str(tmp_path.resolve())
        assert open(result.code_file).read() == "print('x')"
        # No code blocks: no reply, as AG2's.
        assert agent_reply(executor, [{"role": "user", "content": "just text"}]) == (False, None)


def test_local_executor_stops_at_the_first_failure(tmp_path):
    with ag2.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=30) as executor:
        found, reply = agent_reply(executor, [{"role": "user", "content":
                                               "```sh\necho one; exit 2\n```\n```sh\necho two\n```\n"}])
        assert reply.startswith("exitcode: 2 (execution failed)\nCode output: one\n")
        assert "two" not in reply
        unknown = executor.execute_code_blocks([StandInCodeBlock(code="x", language="cobol")])
        assert unknown.exit_code == 1 and "unknown language cobol" in unknown.output


def test_each_block_gets_the_whole_timeout_and_keeps_its_output(tmp_path):
    marker = unique_marker()
    with ag2.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=2) as executor:
        result = executor.execute_code_blocks([
            StandInCodeBlock(code="sleep 1; echo first", language="bash"),
            StandInCodeBlock(code="sleep 1; echo second", language="bash"),
            StandInCodeBlock(code=f"echo partial; exec -a {marker} sleep 120", language="bash"),
        ])
        assert result.exit_code == 124
        assert "first\n" in result.output and "second\n" in result.output
        assert "partial\n" in result.output
        # The block's process was stopped, not orphaned.
        assert none_left(marker)


def test_execution_policies_save_without_running(tmp_path):
    policies = {"python": False}
    with ag2.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=30, execution_policies=policies) as executor:
        assert executor.execution_policies["python"] is False
        assert executor.execution_policies["bash"] is True
        result = executor.execute_code_blocks([
            StandInCodeBlock(code="open('ran', 'w').write('yes')\n", language="python"),
            StandInCodeBlock(code="<!-- filename: page.html -->\n<b>hi</b>\n", language="html"),
            StandInCodeBlock(code="echo ran bash", language="bash"),
        ])
        assert result.exit_code == 0
        assert not (tmp_path / "ran").exists()
        saved = result.code_file
        assert saved.startswith(str(tmp_path.resolve()) + "/tmp_code_") and saved.endswith(".py")
        assert open(saved).read() == "open('ran', 'w').write('yes')\n"
        assert f"Code saved to {saved}\n" in result.output
        assert (tmp_path / "page.html").read_text() == "<!-- filename: page.html -->\n<b>hi</b>\n"
        assert result.output.endswith("ran bash\n")


def test_saving_follows_no_symlink_out_of_the_work_dir(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "outside.html"
    outside.write_text("precious")
    (work / "sub").symlink_to(tmp_path)
    with ag2.LocalCommandLineCodeExecutor(work_dir=work, timeout=30) as executor:
        for name in ("sub/outside.html", "../outside.html", str(outside)):
            result = executor.execute_code_blocks(
                [StandInCodeBlock(code=f"<!-- filename: {name} -->\nowned", language="html")])
            assert result.exit_code == 1, name
    assert outside.read_text() == "precious"
    # A name the code planted as a link is refused, as the C++ executors
    # refuse it (the drop-ins save through the library's own block writer):
    # nothing is written through it.
    (work / "index.html").symlink_to(outside)
    with ag2.LocalCommandLineCodeExecutor(work_dir=work, timeout=30) as executor:
        result = executor.execute_code_blocks(
            [StandInCodeBlock(code="<!-- filename: index.html -->\nours", language="html")])
        assert result.exit_code == 1
        assert "index.html" in result.output
    assert outside.read_text() == "precious"
    # A file at the name (left by a block) is replaced by a new one of ours, 0600.
    (work / "index.html").unlink()
    (work / "page.html").write_text("old")
    os.chmod(work / "page.html", 0o666)
    with ag2.LocalCommandLineCodeExecutor(work_dir=work, timeout=30) as executor:
        result = executor.execute_code_blocks(
            [StandInCodeBlock(code="<!-- filename: page.html -->\nours", language="html")])
        assert result.exit_code == 0
    assert (work / "page.html").read_text() == "<!-- filename: page.html -->\nours"
    assert (work / "page.html").stat().st_mode & 0o777 == 0o600


def test_local_restart_warns_as_ag2(tmp_path):
    with ag2.LocalCommandLineCodeExecutor(work_dir=tmp_path) as executor:
        with pytest.warns(UserWarning, match="not supported"):
            executor.restart()
    with pytest.raises(ValueError):
        ag2.LocalCommandLineCodeExecutor(work_dir=tmp_path, timeout=0)


def test_jupyter_executor_keeps_state_and_saves_html(tmp_path):
    with ag2.JupyterCodeExecutor(timeout=60, output_dir=tmp_path) as executor:
        assert isinstance(executor, CodeExecutorProtocol)
        found, reply = agent_reply(executor, [{"role": "user", "content": "```python\nx = 40\nprint('set')\n```"}])
        assert reply == "exitcode: 0 (execution succeeded)\nCode output: set\n"
        found, reply = agent_reply(executor, [{"role": "user", "content": "```python\nx + 2\n```"}])
        assert reply.startswith("exitcode: 0 (execution succeeded)\nCode output: ") and "42" in reply
        result = executor.execute_code_blocks([StandInCodeBlock(
            code="from IPython.display import HTML\nHTML('<b>bold</b>')", language="python")])
        assert result.exit_code == 0
        assert len(result.output_files) == 1
        assert os.path.dirname(result.output_files[0]) == str(tmp_path.resolve())
        assert "<b>bold</b>" in open(result.output_files[0]).read()
        failed = executor.execute_code_blocks([StandInCodeBlock(code="1/0", language="python")])
        assert failed.exit_code == 1 and "ZeroDivisionError" in failed.output
        executor.restart()
        gone = executor.execute_code_blocks([StandInCodeBlock(code="x", language="python")])
        assert gone.exit_code == 1 and "NameError" in gone.output
    with pytest.raises(ValueError):
        ag2.JupyterCodeExecutor(output_dir=tmp_path / "missing")


def test_jupyter_timeout_keeps_the_output_and_the_session(tmp_path):
    with ag2.JupyterCodeExecutor(timeout=3, output_dir=tmp_path) as executor:
        executor.execute_code_blocks([StandInCodeBlock(code="kept = 1", language="python")])
        result = executor.execute_code_blocks([StandInCodeBlock(
            code="import time\nprint('partial', flush=True)\ntime.sleep(120)", language="python")])
        assert result.exit_code == 124
        assert "partial" in result.output
        after = executor.execute_code_blocks([StandInCodeBlock(code="print(kept)", language="python")])
        assert after.exit_code == 0 and after.output == "1\n"


def test_extractor_takes_content_parts():
    blocks = ag2.MarkdownCodeExtractor().extract_code_blocks(
        [{"type": "text", "text": "```bash\necho a\n```"}, {"type": "image_url", "image_url": {"url": "x"}}])
    assert [(b.language, b.code) for b in blocks] == [("bash", "echo a\n")]
    assert ag2.MarkdownCodeExtractor().extract_code_blocks(None) == []


def test_docker_executor_in_a_conversable_agent(tmp_path, dockerd):
    from conftest import BUSYBOX_IMAGE, containers

    with ag2.DockerCommandLineCodeExecutor(image=BUSYBOX_IMAGE, container_name="kernex-ag2-test", timeout=30,
                                           work_dir=tmp_path, kernex_options={"docker_host": dockerd}) as executor:
        assert isinstance(executor, CodeExecutorProtocol)
        assert "kernex-ag2-test" in containers(dockerd)
        found, reply = agent_reply(executor, [{"role": "user", "content":
                                               "```sh\necho in the container; pwd; echo data > made.txt\n```"}])
        assert reply == "exitcode: 0 (execution succeeded)\nCode output: in the container\n/workspace\n"
        assert (tmp_path / "made.txt").read_text() == "data\n"
        saved = executor.execute_code_blocks([StandInCodeBlock(code="<p>x</p>", language="html")])
        assert saved.exit_code == 0 and saved.output.startswith("Code saved to ")
        executor.restart()
        again = executor.execute_code_blocks([StandInCodeBlock(code="cat made.txt", language="sh")])
        assert again.output == "data\n"
    # stop_container and auto_remove (the defaults): the container is gone.
    assert "kernex-ag2-test" not in containers(dockerd)
