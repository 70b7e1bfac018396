"""Side-by-side benchmark: kernex's kernel_client vs Debian's jupyter_client,
on the same kernels, in one run. Prints a markdown table with ratios.

    /usr/bin/python3 tests/bench/run_kernel_bench.py BUILD_DIR [CELLS] [STARTS] [STREAMS]

Kernels: kernex-test (the native test kernel, so client overhead dominates),
kernex-bash (the native bash kernel, from the build tree) and python3
(Debian's ipykernel). Measures start-to-ready, per-cell round trip of a
trivial cell (`1+1`; `true` on kernex-bash; execute_reply and iopub idle
both received), a cell streaming 100,000 printed lines (median of STREAMS
runs after a warm-up, with the client's own CPU time), and shutdown.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from jupyter_client import KernelManager

KERNELS = {
    "kernex-test": ("1+1", "lines 100000"),
    "kernex-bash": ("true", "seq 100000"),
    "python3": ("1+1", "for i in range(100000):\n    print(i)"),
}


def jupyter_client_bench(kernel, cell, stream, cells, starts, streams):
    start_ms, shutdown_ms, cell_ms = [], [], []
    stream_ms, stream_cpu_ms, stream_bytes = [], [], 0
    for s in range(starts):
        t0 = time.perf_counter()
        km = KernelManager(kernel_name=kernel)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        start_ms.append((time.perf_counter() - t0) * 1000)
        if s == 0:
            for _ in range(10):
                kc.execute_interactive(cell, output_hook=lambda m: None, timeout=30)
            for _ in range(cells):
                c0 = time.perf_counter()
                reply = kc.execute_interactive(cell, output_hook=lambda m: None, timeout=30)
                cell_ms.append((time.perf_counter() - c0) * 1000)
                assert reply["content"]["status"] == "ok", reply
            for i in range(streams + 1):  # the first is a warm-up
                got = [0]

                def count(m):
                    if m["msg_type"] == "stream":
                        got[0] += len(m["content"]["text"].encode())

                c0, s0 = time.process_time(), time.perf_counter()
                kc.execute_interactive(stream, output_hook=count, timeout=300)
                if i > 0:
                    stream_ms.append((time.perf_counter() - s0) * 1000)
                    stream_cpu_ms.append((time.process_time() - c0) * 1000)
                stream_bytes = got[0]
        kc.stop_channels()
        d0 = time.perf_counter()
        km.shutdown_kernel()
        shutdown_ms.append((time.perf_counter() - d0) * 1000)
    return {
        "client": "jupyter_client", "kernel": kernel,
        "start_ms": statistics.median(start_ms),
        "cell_ms_mean": statistics.mean(cell_ms), "cell_ms_median": statistics.median(cell_ms),
        "stream_ms": statistics.median(stream_ms), "stream_cpu_ms": statistics.median(stream_cpu_ms),
        "stream_bytes": stream_bytes,
        "shutdown_ms": statistics.median(shutdown_ms),
    }


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    cells = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    starts = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    streams = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    os.environ["JUPYTER_PATH"] = os.pathsep.join([
        os.path.join(build, "tests", "helpers", "share", "jupyter"),
        os.path.join(build, "kernelspecs", "kernex-bash", "jupyter"),
    ])
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    bench = os.path.join(build, "tests", "bench", "bench_kernel_client")
    load_before = f"{os.getloadavg()[0]:.2f}"
    rows = []
    for kernel, (cell, stream) in KERNELS.items():
        ours = json.loads(subprocess.run([bench, kernel, cell, stream, str(cells), str(starts), str(streams)],
                                         check=True, capture_output=True, text=True).stdout)
        theirs = jupyter_client_bench(kernel, cell, stream, cells, starts, streams)
        assert ours["stream_bytes"] == theirs["stream_bytes"], (ours, theirs)
        rows.append((kernel, ours, theirs))

    print(f"cells per kernel: {cells}; starts per kernel: {starts}; streams per kernel: {streams}; "
          f"machine: {os.cpu_count()} cores; load average before: {load_before}, after: {os.getloadavg()[0]:.2f}")
    print()
    print("| kernel | measure | kernex | jupyter_client | jupyter_client / kernex |")
    print("|---|---|---:|---:|---:|")
    measures = [("start-to-ready (median)", "start_ms"), ("per cell `{cell}` (mean)", "cell_ms_mean"),
                ("per cell `{cell}` (median)", "cell_ms_median"), ("stream 100,000 lines (median)", "stream_ms"),
                ("stream 100,000 lines: client CPU", "stream_cpu_ms"),
                ("shutdown (median)", "shutdown_ms")]
    for kernel, ours, theirs in rows:
        for template, key in measures:
            label = template.format(cell=KERNELS[kernel][0])
            ratio = theirs[key] / ours[key] if ours[key] > 0 else float("inf")
            print(f"| {kernel} | {label} | {ours[key]:.3f} ms | {theirs[key]:.3f} ms | {ratio:.1f}x |")
    print()
    print("Client overhead per cell: each client's median round trip minus the bare-ZeroMQ floor")
    print("(the same cells over raw sockets, requests signed beforehand, no parsing), measured")
    print("by bench_kernel_client on the same kernel in the same run.")
    print()
    print("| kernel | bare ZeroMQ floor | kernex overhead | jupyter_client overhead |")
    print("|---|---:|---:|---:|")
    for kernel, ours, theirs in rows:
        floor = ours["raw_zmq_cell_ms_median"]
        print(f"| {kernel} | {floor:.3f} ms | {ours['cell_ms_median'] - floor:.3f} ms | "
              f"{theirs['cell_ms_median'] - floor:.3f} ms |")
    print()
    print("Start-up added by each client: start-to-ready minus the kernel's own start-up (the")
    print("kernelspec spawned directly until it first answers kernel_info on a bare socket).")
    print()
    print("| kernel | kernel's own start-up | kernex adds | jupyter_client adds |")
    print("|---|---:|---:|---:|")
    for kernel, ours, theirs in rows:
        bare = ours["bare_start_ms"]
        print(f"| {kernel} | {bare:.1f} ms | {ours['start_ms'] - bare:.1f} ms | {theirs['start_ms'] - bare:.1f} ms |")

    print()
    print("Streaming: the kernel's own time to stream the cell (started directly, one bare")
    print("subscriber that parses nothing) is the floor under any client; each client's")
    print("median minus it is what that client adds. CPU: the client process's own CPU")
    print("time during the stream (all its threads), which load on the machine inflates less.")
    print()
    print("| kernel | bytes | kernel's own streaming | kernex adds | jupyter_client adds | kernex CPU | jupyter_client CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kernel, ours, theirs in rows:
        floor = ours["bare_stream_ms"]
        print(f"| {kernel} | {ours['stream_bytes']:,} | {floor:.1f} ms | {ours['stream_ms'] - floor:.1f} ms | "
              f"{theirs['stream_ms'] - floor:.1f} ms | {ours['stream_cpu_ms']:.1f} ms | {theirs['stream_cpu_ms']:.1f} ms |")


if __name__ == "__main__":
    main()
