#!/usr/bin/env python3
"""Summarizes `offcpu-sample.py` output: how often the sampled threads were on
(or waiting for) a CPU, what they waited in, and the most common waiting
stacks as function names (innermost first, repeated names folded; the outer
frames are a hint, see offcpu-sample.py).

Usage: offcpu-report.py EXE SAMPLES [FROM_S TO_S] [FRAMES]
  EXE: the sampled executable (with symbols), e.g. target/release/outpost-sim-gateway
  FROM_S, TO_S: only samples in this window (seconds since the sampler began)
  FRAMES: names kept per stack (default 8)
"""
import bisect
import collections
import re
import subprocess
import sys


def symbols(exe):
    """(start offsets, names) of the executable's functions, sorted."""
    out = subprocess.run(["nm", "-C", "--defined-only", exe], capture_output=True, text=True, check=True)
    syms = []
    for line in out.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return [s for s, _ in syms], [n for _, n in syms]


def short(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    for _ in range(2):  # generic arguments, two levels deep
        name = re.sub(r"<[^<>]*>", "<>", name)
    return name[:100]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    exe, path = sys.argv[1], sys.argv[2]
    lo = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    hi = float(sys.argv[4]) if len(sys.argv) > 4 else float("inf")
    keep = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    starts, names = symbols(exe)

    def name(offset):
        i = bisect.bisect_right(starts, offset) - 1
        return short(names[i]) if i >= 0 else "?"

    states, stacks, per_thread = collections.Counter(), collections.Counter(), collections.Counter()
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            fields = line.split()
            if not lo <= float(fields[0]) <= hi:
                continue
            if fields[2] == "R":
                states["on or waiting for a CPU"] += 1
                per_thread[(fields[1], "R")] += 1
                continue
            state = f"syscall {fields[2]} arg0 {fields[3]}"
            states[state] += 1
            per_thread[(fields[1], "waiting")] += 1
            frames = []
            for offset in fields[4].split(",") if len(fields) > 4 and fields[4] else []:
                n = name(int(offset, 16))
                if not frames or frames[-1] != n:
                    frames.append(n)
                if len(frames) >= keep:
                    break
            stacks[(state, " <- ".join(frames))] += 1
    total = sum(states.values()) or 1
    print("states:")
    for state, n in states.most_common(10):
        print(f"  {n:7d} {100 * n / total:5.1f}%  {state}")
    print("per thread:", ", ".join(f"{t} {s} {n}" for (t, s), n in sorted(per_thread.items())))
    print("waiting stacks:")
    for (state, stack), n in stacks.most_common(25):
        print(f"  {n:7d}  [{state}]  {stack}")


if __name__ == "__main__":
    main()
