"""kernex-bash against the Jupyter kernel test suite (Debian's jupyter_kernel_test).

Every message the kernel sends is validated against the protocol's schema;
the samples below make the suite exercise kernel_info, stdout/stderr
streams, errors, is_complete, completion, inspection, display_data,
clear_output and history (tail, range, search with unique and n). Not run:
the pager (kernex-bash has none) and execute_result: a shell's output is its
stdout, so kernex-bash sends streams and never an execute_result; the sample
below exists only for the history test, which executes it.
The kernel is found through JUPYTER_PATH (set by meson to the build tree's kernelspec).
"""

import os
import shutil
import tempfile
import unittest

import jupyter_kernel_test

from test_bash_kernel_behaviour import png_bytes


class kernex_bash_conformance(jupyter_kernel_test.KernelTests):
    kernel_name = "kernex-bash"
    language_name = "bash"
    file_extension = ".sh"

    code_hello_world = "echo 'hello, world'"
    code_stderr = "echo 'to stderr' >&2"
    # Exactly one output: the error that carries the exit status.
    code_generate_error = "false"
    code_inspect_sample = "cd"
    code_clear_output = "echo soon-gone; clear"

    # Only the history test uses it (see above): it is run, and searched for.
    code_execute_result = [{"code": "echo kx-history-sample", "result": "kx-history-sample\n"}]
    code_history_pattern = "echo kx-history-s*"
    supported_history_operations = ("tail", "range", "search")

    def test_execute_result(self):
        self.skipTest("kernex-bash sends a cell's output as streams, never as execute_result")

    complete_code_samples = [
        "echo hi",
        "for i in 1 2; do echo $i; done",
        "f() { echo f; }",
        "x=1; y=(a b)",
        "cat <<EOF\nbody\nEOF",
    ]
    incomplete_code_samples = [
        "for i in 1 2; do",
        "if true; then",
        'echo "open',
        "echo hi |",
        "cat <<EOF\nbody",
        "echo continued \\",
    ]
    invalid_code_samples = ["fi", "echo )", "done", "then echo"]

    @classmethod
    def setUpClass(cls):
        # Files for path completion and display, named by the class's samples.
        cls.files = tempfile.mkdtemp(prefix="kernex-bash-conformance-")
        cls.addClassCleanup(shutil.rmtree, cls.files, ignore_errors=True)
        os.mkdir(os.path.join(cls.files, "alps"))
        with open(os.path.join(cls.files, "alpha.txt"), "w") as f:
            f.write("a\n")
        with open(os.path.join(cls.files, "plot.png"), "wb") as f:
            f.write(png_bytes())
        with open(os.path.join(cls.files, "shape.svg"), "w") as f:
            f.write('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
        with open(os.path.join(cls.files, "page.html"), "w") as f:
            f.write("<p>hello</p>")
        cls.completion_samples = [
            {"text": "shop", "matches": {"shopt"}},
            {"text": "echo $BASH_VERSI", "matches": {"$BASH_VERSINFO", "$BASH_VERSION"}},
            {"text": "echo ${BASH_VERSI", "matches": {"${BASH_VERSINFO}", "${BASH_VERSION}"}},
            {"text": f"ls {cls.files}/al",
             "matches": {f"{cls.files}/alpha.txt", f"{cls.files}/alps/"}},
        ]
        cls.code_display_data = [
            {"code": f"display {cls.files}/plot.png", "mime": "image/png"},
            {"code": f"display {cls.files}/shape.svg", "mime": "image/svg+xml"},
            {"code": f"display {cls.files}/page.html", "mime": "text/html"},
        ]
        super().setUpClass()


if __name__ == "__main__":
    unittest.main()
