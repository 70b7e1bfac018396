"""Peak resident memory of a command and of each process it starts.

    /usr/bin/python3 tests/bench/peak_rss.py COMMAND [ARGS...]

Runs COMMAND, reads VmHWM (the peak RSS the kernel keeps per process) of it
and of its descendants every 20 ms while it runs, and prints the command's
exit status, the size of what it printed (stdout and stderr together), and
the five largest peaks, one per process. Unlike `/usr/bin/time -v`, whose
maximum RSS is the largest of the command and every child it reaped, this
tells kernex's own memory from a kernel's.
"""
import subprocess
import sys
import threading
import time


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    printed = []
    reader = threading.Thread(target=lambda: printed.append(len(proc.stdout.read())))
    reader.start()
    peaks = {}
    while proc.poll() is None:
        stack = [proc.pid]
        while stack:
            pid = stack.pop()
            stack += children(pid)
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = f.read()
            except OSError:
                continue
            name = status.split("\n", 1)[0].split()[1]
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[(pid, name)] = max(peaks.get((pid, name), 0), int(line.split()[1]))
        time.sleep(0.02)
    reader.join()
    print(f"exit status {proc.returncode}, {printed[0]} bytes printed")
    print("| process | pid | peak RSS (MB) |\n|---|---:|---:|")
    for (pid, name), kb in sorted(peaks.items(), key=lambda item: -item[1])[:5]:
        print(f"| {name} | {pid} | {kb / 1024:.0f} |")


if __name__ == "__main__":
    main()
