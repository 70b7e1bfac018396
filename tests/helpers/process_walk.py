"""Finding processes by a word in their command line (a /proc walk), for the
Python tests: a block in a pid namespace of its own has $$ and $! that mean
nothing outside it, so a test names what it starts (`exec -a WORD sleep 1000`)
and looks for that word."""

import os
import signal
import time
import uuid


def unique_marker():
    """A word no other process has in its command line."""
    return "kxmark" + uuid.uuid4().hex[:12]


def processes_with(marker):
    """pids of running processes whose command line holds marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def eventually_none(marker, within=5.0):
    """The processes with marker still running after up to within seconds ([] once none is)."""
    deadline = time.monotonic() + within
    while True:
        left = processes_with(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_leftovers(marker):
    for pid in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
