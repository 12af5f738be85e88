#!/usr/bin/env python3
"""Once a second, what the box, the gateway and the sim are doing during a
live run, as CSV: the per-second record that explains a break (docs/
PERFORMANCE.md, "Session 25" and "Session 26" were read from one like it).

    bench/live-watch.py --gateway-pid PID [--sim-pid PID] \
        [--metrics 127.0.0.1:PORT] [--secs N] > watch.csv

Columns (rates are per second over the last interval):
  t_s                  seconds since the watch started
  box_busy_cores       CPU in use on the whole box (of `nproc` cores)
  gw_cores, gw_rss_mib the gateway process (all its threads)
  sim_cores            the sim process, if --sim-pid
  udp_in, udp_out      datagrams delivered to / sent by any UDP socket on
                       the box (/proc/net/snmp; on loopback both sides)
  udp_rcvbuf_drops     datagrams dropped because a receive buffer was full
  gw_queue_bytes       the gateway's socket receive queue, from its
                       /metrics (outpost_udp_receive_queue_bytes), if --metrics

Reads only /proc and the metrics endpoint; costs well under 1% of a core.
Stops when the gateway exits, after --secs, or on Ctrl-C.
"""

import argparse
import os
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def box_ticks():
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user..steal; guest is already in user
    return total - idle, total


def proc_ticks(pid):
    """utime + stime jiffies of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    after = stat[stat.rfind(")") + 2 :].split()
    return int(after[11]) + int(after[12])


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:
        return None


def udp_counters():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    values = dict(zip(rows[0][1:], (int(v) for v in rows[1][1:])))
    return values["InDatagrams"], values["OutDatagrams"], values["RcvbufErrors"]


def queue_bytes(metrics):
    if not metrics:
        return ""
    try:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=0.5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("outpost_udp_receive_queue_bytes"):
                    return str(int(float(line.split()[-1])))
    except (OSError, ValueError):
        pass
    return ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--sim-pid", type=int)
    ap.add_argument("--metrics", help="the gateway's metrics address, HOST:PORT")
    ap.add_argument("--secs", type=float, default=float("inf"))
    a = ap.parse_args()

    start = time.monotonic()
    last_t, last_box = start, box_ticks()
    last_gw, last_sim = proc_ticks(a.gateway_pid), a.sim_pid and proc_ticks(a.sim_pid)
    last_udp = udp_counters()
    if last_gw is None:
        sys.exit(f"no process {a.gateway_pid}")
    print("t_s,box_busy_cores,gw_cores,gw_rss_mib,sim_cores,udp_in,udp_out,udp_rcvbuf_drops,gw_queue_bytes")
    n = 1
    try:
        while time.monotonic() - start < a.secs:
            # Sleep to the next whole second of the watch, so rows do not drift.
            time.sleep(max(0.0, start + n - time.monotonic()))
            n += 1
            now, box, gw = time.monotonic(), box_ticks(), proc_ticks(a.gateway_pid)
            if gw is None:
                break
            sim = a.sim_pid and proc_ticks(a.sim_pid)
            udp = udp_counters()
            dt = now - last_t
            cores = lambda new, old: "" if new is None or old is None else f"{(new - old) / CLK_TCK / dt:.2f}"
            busy = (box[0] - last_box[0]) / max(1, box[1] - last_box[1]) * os.cpu_count()
            rates = [f"{(x - y) / dt:.0f}" for x, y in zip(udp, last_udp)]
            print(
                f"{now - start:.1f},{busy:.2f},{cores(gw, last_gw)},{rss_mib(a.gateway_pid) or 0:.0f},"
                f"{cores(sim, last_sim) if a.sim_pid else ''},{','.join(rates)},{queue_bytes(a.metrics)}",
                flush=True,
            )
            last_t, last_box, last_gw, last_sim, last_udp = now, box, gw, sim, udp
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
