"""Issue 19 through the real binary: `kernex run` and `kernex exec` speak one
language. Percent-format cell markers as VS Code, Spyder and Jupytext write
them; --json records for every cell; every block checked before any runs.
Uses the native test kernel (kernex-test) and python3 where ANSI tracebacks matter."""
import json
import os
import unittest

from cli_test_support import cli_test_case


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


if __name__ == "__main__":
    unittest.main(verbosity=2)
