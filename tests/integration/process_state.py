"""Whether a process still runs, as /proc says it, for the integration tests
(no dependency on the build: the bash kernel's tests use it too)."""
import os
import time


def alive(pid):
    """True while pid exists and is not a zombie (or dead: its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, not ours
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_gone(pid, seconds=30):
    """True once pid no longer runs (gone, or a zombie), within seconds."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
