#!/usr/bin/env python3
"""Runs a command and samples the resident memory of its whole process tree from /proc
(every --interval seconds), to report the peak memory of each kind of process of a
local Spark run: the JVM (driver and, in local mode, the executor), the driver's Python,
and each Python worker (pyspark.daemon and the workers it forks), beside the CLI's.

    python bench/spark/peak_rss.py [--interval 0.2] [--label NAME] -- COMMAND [ARG ...]

Prints the command's wall time and exit code, then per kind: how many processes were
seen, the largest single process's peak RSS and the peak of their sum (at one sample).
Standard library only; Linux /proc. A process that lives shorter than one interval can
be missed, so the peaks are lower bounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree(root: int):
    """{pid: (ppid, rss bytes, cmdline)} for root and its descendants."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            with open(f"/proc/{d}/statm") as f:
                rss = int(f.read().split()[1]) * PAGE
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        procs[int(d)] = (ppid, rss, cmd)
    keep, todo = {}, [root]
    children = defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)
    while todo:
        pid = todo.pop()
        if pid in procs:
            keep[pid] = procs[pid]
            todo.extend(children[pid])
    return keep


def kind(pid: int, root: int, cmd: str) -> str:
    if "java" in cmd.split(" ", 1)[0] or " org.apache.spark" in cmd:
        return "jvm"
    if "pyspark.daemon" in cmd or "pyspark/daemon" in cmd or "pyspark.worker" in cmd:
        return "python worker"
    if pid == root or "python" in cmd.split(" ", 1)[0]:
        return "driver python" if "python" in cmd.split(" ", 1)[0] else "command"
    return "other"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--label", default="")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command")

    t0 = time.monotonic()
    child = subprocess.Popen(cmd)
    peak_one = defaultdict(int)     # kind -> largest single process
    peak_sum = defaultdict(int)     # kind -> largest sum at one sample
    seen = defaultdict(set)
    peak_total = 0
    while child.poll() is None:
        sums = defaultdict(int)
        total = 0
        for pid, (_, rss, c) in tree(child.pid).items():
            k = kind(pid, child.pid, c)
            seen[k].add(pid)
            peak_one[k] = max(peak_one[k], rss)
            sums[k] += rss
            total += rss
        for k, v in sums.items():
            peak_sum[k] = max(peak_sum[k], v)
        peak_total = max(peak_total, total)
        time.sleep(a.interval)
    wall = time.monotonic() - t0
    mib = 1 << 20
    print(f"[{a.label}] exit {child.returncode}, wall {wall:.1f} s, peak of the whole tree {peak_total / mib:,.0f} MiB")
    for k in sorted(seen):
        print(
            f"[{a.label}]   {k:14s} {len(seen[k]):3d} processes, largest {peak_one[k] / mib:8,.0f} MiB,"
            f" sum {peak_sum[k] / mib:8,.0f} MiB"
        )
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
