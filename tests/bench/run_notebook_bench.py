"""Side-by-side benchmark: a notebook run by kernex vs Debian's nbclient, in
one run, same kernels, same notebooks. Prints a markdown table.

    /usr/bin/python3 tests/bench/run_notebook_bench.py BUILD_DIR [REPEATS]

Notebooks: 200 small cells (on kernex-test, the native test kernel, where
client overhead dominates, and on python3), and one cell printing a 50 MB
stream (python3). Time: wall clock from reading the notebook to the
executed notebook written, kernel start and shutdown included (median of
REPEATS, default 3). Memory: the client process's peak RSS, VmHWM of
/proc/self/status (getrusage's ru_maxrss would keep the resident size of the
python that forked it across execve); the kernel is another process and
counted for neither.
kernex: tests/bench/bench_notebook (the library, as `kernex run` uses it);
also `kernex run` itself: wall time, and its peak RSS read as VmHWM from
/proc/PID/status every 10 ms while it runs (the last reading: a lower bound,
missing at most the last 10 ms; its kernel is not counted).
nbclient: NotebookClient.execute() then nbformat.write, in a fresh python3
process.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

NBCLIENT = r"""
import json, sys, time
t0 = time.monotonic()
import nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name=sys.argv[3]).execute()
nbformat.write(nb, sys.argv[2])
seconds = time.monotonic() - t0
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"seconds": seconds, "maxrss_kb": hwm}))
"""


def notebook(cells, kernel):
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata.kernelspec = {"name": kernel, "display_name": kernel, "language": "python"}
    return nb


def run_cli(argv, env):
    """Runs `kernex run`; returns its wall time and its last VmHWM in kB."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env)
    hwm = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return {"seconds": seconds, "maxrss_kb": hwm}


def main():
    build = os.path.abspath(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1",
               JUPYTER_PATH=os.path.join(build, "tests", "helpers", "share", "jupyter"))
    bench = os.path.join(build, "tests", "bench", "bench_notebook")
    kernex = os.path.join(build, "src", "cli", "kernex")
    tmp = tempfile.mkdtemp(prefix="kernex-nb-bench-")
    cases = [
        ("200 small cells", "kernex-test", [f"result {i}" for i in range(200)]),
        ("200 small cells", "python3", [f"x{i} = {i}\nx{i} * 2" for i in range(200)]),
        ("50 MB stream", "python3",
         ["import sys\nline = 'x' * 1023 + '\\n'\nfor i in range(51200):\n    sys.stdout.write(line)"]),
    ]
    rows = []
    for name, kernel, cells in cases:
        path = os.path.join(tmp, "in.ipynb")
        with open(path, "w") as f:
            nbformat.write(notebook(cells, kernel), f)
        results = {"kernex": [], "nbclient": [], "cli": []}
        for _ in range(repeats):
            r = subprocess.run([bench, path, os.path.join(tmp, "k.ipynb"), kernel],
                               capture_output=True, text=True, env=env, check=True)
            results["kernex"].append(json.loads(r.stdout))
            r = subprocess.run(["/usr/bin/python3", "-c", NBCLIENT, path, os.path.join(tmp, "n.ipynb"), kernel],
                               capture_output=True, text=True, env=env, check=True)
            results["nbclient"].append(json.loads(r.stdout.strip().splitlines()[-1]))
            results["cli"].append(run_cli([kernex, "run", "-q", "--kernel", kernel, "-o",
                                           os.path.join(tmp, "c.ipynb"), path], env))
        med = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
        mem = {k: max(x["maxrss_kb"] for x in v) for k, v in results.items()}
        rows.append((name, kernel, med, mem))
    print("| notebook | kernel | kernex (s) | `kernex run` (s) | nbclient (s) | speed-up (library, CLI) "
          "| kernex peak RSS | `kernex run` peak RSS | nbclient peak RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, kernel, med, mem in rows:
        print(f"| {name} | {kernel} | {med['kernex']:.3f} | {med['cli']:.3f} | {med['nbclient']:.3f} | "
              f"{med['nbclient'] / med['kernex']:.1f}x, {med['nbclient'] / med['cli']:.1f}x | "
              f"{mem['kernex'] / 1024:.1f} MB | {mem['cli'] / 1024:.1f} MB | {mem['nbclient'] / 1024:.1f} MB |")
    load = os.getloadavg()[0]
    print(f"\n(median of {repeats}; peak RSS: max over the runs; {os.cpu_count()} CPUs; load average {load:.1f})")


if __name__ == "__main__":
    main()
