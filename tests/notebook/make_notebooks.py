"""Writes the notebooks of the notebook suite (tests/notebook/notebooks/).
They are committed; rerun this after changing one:
    /usr/bin/python3 tests/notebook/make_notebooks.py"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notebooks")

PY = {"name": "python3", "display_name": "Python 3", "language": "python"}
BASH = {"name": "kernex-bash", "display_name": "Bash (kernex)", "language": "bash"}
TEST = {"name": "kernex-test", "display_name": "kernex test kernel", "language": "test"}


def code(src, tags=None, **md):
    c = new_code_cell(src)
    if tags:
        c.metadata["tags"] = tags
    c.metadata.update(md)
    return c


def save(name, cells, spec=PY, minor=5, metadata=None):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = dict(spec)
    nb.metadata.update(metadata or {})
    nb.nbformat_minor = minor
    if minor < 5:
        for c in nb.cells:
            c.pop("id", None)
    nbformat.validate(nb)
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        nbformat.write(nb, f)


os.makedirs(HERE, exist_ok=True)

# Streams: consecutive outputs of one name merged; stdout/stderr order kept
# (each print is flushed so the kernel's batching cannot reorder them).
save("streams.ipynb", [
    new_markdown_cell("# Streams\nConsecutive stream outputs of one name become one."),
    code("import sys, time\n"
         "for i in range(5):\n"
         "    print('line', i, flush=True)\n"
         "    time.sleep(0.05)\n"),
    code("print('out 1', flush=True)\n"
         "print('err 1', file=sys.stderr, flush=True)\n"
         "print('out 2', flush=True)\n"
         "print('out 3', flush=True)\n"
         "sys.stderr.write('err 2\\n'); sys.stderr.flush()\n"
         "42"),
    code("sys.stdout.write('no newline'); sys.stdout.flush()\n"
         "time.sleep(0.3)\n"
         "sys.stdout.write(' then more\\r\\ncarriage\\rreturn\\n'); sys.stdout.flush()\n"),
    new_raw_cell("raw cell: kept as it is"),
    code("   \n"),  # blank: not executed, as nbclient
])

# Display data: images, HTML, display_id updated across cells, clear_output
# with and without wait, execute_result with its count, unicode.
save("display.ipynb", [
    code("from IPython.display import display, HTML, Image, Markdown, clear_output, update_display\n"
         "import base64\n"
         "PNG = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAYAAACp8Z5+AAAAEklEQVR4nGP8z8Dwn4EJMDAAADwSAQ' + 'Ho4NpLAAAAAElFTkSuQmCC')\n"
         "h = display(HTML('<b>first</b>'), display_id='shared')\n"
         "display(Image(PNG))\n"
         "'result ✓'"),
    code("display(Markdown('*second* — ünïcödé 🙂'), display_id='other')\n"
         "update_display(HTML('<i>updated from cell 2</i>'), display_id='shared')\n"
         "print('after update', flush=True)"),
    code("display(HTML('<p>shown again</p>'), display_id='shared')\n"
         "h2 = display('plain text', display_id='later')"),
    code("print('to be cleared', flush=True)\n"
         "clear_output()\n"
         "print('after clear', flush=True)"),
    code("import time\n"
         "print('before wait-clear', flush=True)\n"
         "clear_output(wait=True)\n"
         "time.sleep(0.2)\n"
         "print('replaces it', flush=True)\n"
         "clear_output(wait=True)\n"
         "display(HTML('<p>only this</p>'), display_id='later')"),
    code("update_display('updated later', display_id='later')\n"
         "update_display('nobody shows this id', display_id='nowhere')\n"
         "{'a': [1, 2, 3], 'b': None}"),
])

# Errors: the failing cell stops the run (outputs up to its error kept);
# with --continue (allow_errors) the run goes on.
save("errors.ipynb", [
    code("x = 1\nprint('x is', x)"),
    code("print('about to fail', flush=True)\n1 / 0"),
    code("print('after the error')\nx + 1"),
])

# Tags: raises-exception may fail, skip-execution is not run (old outputs kept).
save("tags.ipynb", [
    code("raise ValueError('expected')", tags=["raises-exception"]),
    code("print('skipped')", tags=["skip-execution"]),
    code("print('runs after an allowed failure')"),
])

# nbformat 4.4 (no cell ids) keeps its minor version; metadata is kept.
save("minor44.ipynb", [
    code("print('four point four')", tags=["keep-me"], custom={"k": "v"}),
    new_markdown_cell("no ids in 4.4"),
    code("'ok'"),
], minor=4, metadata={"authors": [{"name": "kernex"}]})

# Papermill parameters: defaults in the cell tagged parameters.
save("parameters.ipynb", [
    new_markdown_cell("Parameters are injected after the parameters cell."),
    code("alpha = 1\nname = 'default'\nitems = []\nopts = {}", tags=["parameters"]),
    code("import json\nprint(json.dumps({'alpha': alpha, 'name': name, 'items': items, 'opts': opts}, sort_keys=True))"),
])
save("parameters_bash.ipynb", [
    code("alpha=1\nname=default", tags=["parameters"]),
    code("printf '%s|%s|%s\\n' \"$alpha\" \"$name\" \"${items[1]}\""),
], spec=BASH)

# The kernel is killed during the second cell.
save("kernel_dies.ipynb", [
    code("print('alive', flush=True)"),
    code("import os, signal, time\nprint('dying', flush=True)\ntime.sleep(0.5)  # the output leaves first\n"
         "os.kill(os.getpid(), signal.SIGKILL)"),
    code("print('never')"),
])

# A cell that runs over --timeout.
save("timeout.ipynb", [
    code("print('quick')"),
    code("import time\nprint('slow', flush=True)\ntime.sleep(60)"),
    code("print('not reached')"),
])

# kernex-bash: streams and errors of a native kernel.
save("bash.ipynb", [
    # stdout and stderr are two pipes in the kernel: their relative order is
    # not defined, so each cell writes to one of them
    code("echo one\necho three"),
    code("echo two >&2"),
    code("for i in 1 2 3; do echo \"n=$i\"; done\nexport GREETING=héllo"),
    code("echo \"$GREETING\"\nfalse"),
    code("echo 'after the failure'"),
], spec=BASH)

# The native test kernel: display ids, clear_output, PNG, streams, errors.
save("test_kernel.ipynb", [
    code("print a\nprint b\neprint c\nprint d\nwrite e\nresult ten"),
    code("display d1 first\ndisplay_png\ndisplay_html <b>x</b>"),
    code("update_display d1 second\ndisplay d2 other\nupdate_display nowhere x"),
    code("print gone\nclear\nprint kept\nclear wait\nprint replaced\nclear wait\ndisplay d1 third"),
    code("update_display d1 fourth\nflood 50"),
    code("error ValueError bad", tags=["raises-exception"]),
    code("print last"),
], spec=TEST)
# metadata.execution: the kernel's own message dates, as nbclient records
# them (a date with a zone and a short fraction; a date that is not ISO 8601
# falls back to the client's clock).
save("dates.ipynb", [
    code("date 2001-02-03T04:05:06.7+01:00"),
    code("print dated"),
    code("date not a date"),
    code("print clock"),
    code("date"),
], spec=TEST)

# Widget state: comm messages carrying a "state", as ipywidgets sends them
# (comm_open, then comm_msg updates with buffers), saved to metadata.widgets.
save("widgets.ipynb", [
    code("from ipykernel.comm import Comm\n"
         "slider = Comm(target_name='jupyter.widget',\n"
         "              data={'state': {'_model_name': 'IntSliderModel', '_model_module': '@jupyter-widgets/controls',\n"
         "                              '_model_module_version': '1.5.0', 'value': 1, 'description': 'n ✓'},\n"
         "                    'buffer_paths': [['data'], ['more', 0]]},\n"
         "              buffers=[b'\\x00\\x01\\xfe\\xff', b'ab'])\n"
         "print('opened', flush=True)"),
    code("slider.send({'method': 'update', 'state': {'value': 7}, 'buffer_paths': []})\n"
         "slider.send({'method': 'custom', 'content': {'ignored': True}})\n"
         "slider.send({'method': 'update', 'state': {}, 'buffer_paths': [['data']]}, buffers=[b'new'])"),
    code("no_model = Comm(target_name='other.target', data={'state': {'value': 3}, 'buffer_paths': []})\n"
         "other = Comm(target_name='other.target', data={'state': {'_model_name': 'X', 'n': 1}})\n"
         "other.close()"),
])
print("notebooks written to", HERE)
