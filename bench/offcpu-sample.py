#!/usr/bin/env python3
"""Samples where a live process's threads wait, without ever stopping it.

`gdb`, `eu-stack` and other ptrace tools stop every thread for each dump (a
live-50k run's gateway was stopped for seconds that way, docs/PERFORMANCE.md,
session 22), and `perf record -e sched:sched_switch -g` cost a run enough to
change its outcome. This reads only `/proc`: every PERIOD it reads
`/proc/<pid>/task/<tid>/syscall` of each thread whose name starts with
COMM_PREFIX (or with any of several, comma-separated: `local-gateway,fjall`). A thread on a CPU or waiting for one reads `running` (logged as
`R`). For a thread in a system call it logs the call's number and first
argument (for `futex`, 202 on x86-64, the address waited on: a worker's idle
park and a contended lock have different addresses), reads the top
STACK_BYTES of its user stack from `/proc/<pid>/mem` and keeps every word that
points into the executable's code: return addresses, plus some stale ones, so
the innermost frames are reliable and the outer ones are a hint.
`offcpu-report.py` turns them into function names.

Needs root (or ptrace rights over the target) to read `/proc/<pid>/mem`.
Costs the sampler about a tenth of a core at the default period; the target
is never stopped.

Usage: offcpu-sample.py PID COMM_PREFIX START_S DURATION_S OUT [PERIOD_MS]
  e.g. offcpu-sample.py $(pgrep -f outpost-sim-gateway) local-gateway 76 26 storm.txt
Output: a header line, then one line per thread per sample:
  <seconds since start> <tid> R
  <seconds since start> <tid> <syscall nr> <arg0> <hex offset>,<hex offset>,...
(offsets are relative to the executable's load address, as `nm` prints them).
"""
import os
import struct
import sys
import time

STACK_BYTES = 16384
MAX_FRAMES = 40


def code_ranges(pid):
    """The executable's path, its load address and its executable mappings."""
    exe = os.readlink(f"/proc/{pid}/exe")
    base, text = None, []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) < 6 or parts[5] != exe:
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            base = lo if base is None else min(base, lo)
            if "x" in parts[1]:
                text.append((lo, hi))
    return exe, base, text


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    pid, prefix = int(sys.argv[1]), sys.argv[2]
    start, duration, out = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    period = (float(sys.argv[6]) if len(sys.argv) == 7 else 3.0) / 1000
    exe, base, text = code_ranges(pid)
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            if comm.read().startswith(tuple(prefix.split(","))):
                tids.append(tid)
    t0 = time.time()
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem, open(out, "w") as f:
        f.write(f"# exe {exe} base {base:#x} tids {' '.join(tids)}\n")
        time.sleep(max(0.0, start - (time.time() - t0)))
        end = time.time() + duration
        while time.time() < end:
            now = time.time() - t0
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/syscall") as sc:
                        fields = sc.read().split()
                except OSError:
                    continue  # the thread ended
                if not fields or fields[0] == "running":
                    f.write(f"{now:.3f} {tid} R\n")
                    continue
                sp = int(fields[-2], 16)
                try:
                    mem.seek(sp)
                    stack = mem.read(STACK_BYTES)
                except OSError:
                    stack = b""
                frames = []
                for (word,) in struct.iter_unpack("<Q", stack[: len(stack) // 8 * 8]):
                    if any(lo <= word < hi for lo, hi in text):
                        frames.append(f"{word - base:x}")
                        if len(frames) >= MAX_FRAMES:
                            break
                f.write(f"{now:.3f} {tid} {fields[0]} {fields[1]} {','.join(frames)}\n")
            time.sleep(period)


if __name__ == "__main__":
    main()
