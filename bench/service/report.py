#!/usr/bin/env python3
"""Table and BENCHMARKS.md section of the scoring-service benchmark (stdlib only).

    python3 report.py --dir WORK_DIR [--benchmarks BENCHMARKS.md]

Reads WORK_DIR/{results.tsv, coldstart.tsv, meta.tsv} written by run.sh, prints the
table and the targets of issue 6, and writes the section to WORK_DIR/section.md. With
--benchmarks the section goes at the end of that file; when a section with the same
heading is already there, only that section is replaced (up to the next heading of the
same or a higher level), so nothing else in the file changes.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from collections import defaultdict

HEADING = "## Scoring service (issue 6)"
SERVICES = ["churnguard-logistic", "churnguard-gbdt", "fastapi"]
VARIANTS = ["churnguard-logistic-unique", "churnguard-logistic-tmpfs", "churnguard-logistic-tmpfs-unique"]
CHURNGUARD = ["churnguard-logistic", "churnguard-gbdt"] + VARIANTS
LABEL = {
    "churnguard-logistic": "churnguard logistic",
    "churnguard-gbdt": "churnguard gbdt",
    "fastapi": "FastAPI + sklearn logistic",
    "churnguard-logistic-unique": "churnguard logistic, new customer id per request",
    "churnguard-logistic-tmpfs": "(diagnostic) churnguard logistic, outbox on tmpfs",
    "churnguard-logistic-tmpfs-unique": "(diagnostic) churnguard logistic, new ids, outbox on tmpfs",
}


def rows(path: str) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_range(xs, f="{:.2f}"):
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    return f.format(lo) if lo == hi else f"{f.format(lo)}-{f.format(hi)}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--benchmarks")
    a = ap.parse_args()
    res = rows(os.path.join(a.dir, "results.tsv"))
    cold = rows(os.path.join(a.dir, "coldstart.tsv"))
    meta = {}
    with open(os.path.join(a.dir, "meta.tsv")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v

    by = defaultdict(list)
    for r in res:
        by[(r["service"], int(r["conns"]))].append(r)
    conns = sorted({int(r["conns"]) for r in res}, key=lambda c: (c != 16, c))
    rounds = sorted({int(r["round"]) for r in res})

    def col(svc, c, key, conv=float):
        return [conv(r[key]) for r in by[(svc, c)]]

    # ------------------------------------------------------------ the table
    head = ["service", "conns", "req/s (median)", "req/s per round", "p50 ms", "p99 ms (median)", "p99 ms per round",
            "max ms", "non-2xx", "socket errors", "CPU % server / wrk", "RSS after MiB", "load1 during"]
    table = []
    for c in conns:
        for svc in SERVICES + VARIANTS:
            rs = by[(svc, c)]
            if not rs:
                continue
            rps = col(svc, c, "rps")
            p99 = col(svc, c, "p99_ms")
            loads = col(svc, c, "load1_before") + col(svc, c, "load1_after")
            table.append([
                LABEL[svc], str(c), f"{med(rps):,.0f}", " / ".join(f"{x:,.0f}" for x in rps),
                f"{med(col(svc, c, 'p50_ms')):.2f}", f"{med(p99):.2f}", " / ".join(f"{x:.2f}" for x in p99),
                f"{max(col(svc, c, 'max_ms')):.1f}",
                str(sum(col(svc, c, "non2xx", int))), str(sum(col(svc, c, "socket_errors", int))),
                f"{med(col(svc, c, 'server_cpu_pct')):.0f} / "
                + (f"{med(col(svc, c, 'wrk_cpu_pct')):.0f}" if all(r.get('wrk_cpu_pct', '-') not in ('-', '') for r in rs) else "-"),
                f"{max(col(svc, c, 'rss_mib')):.1f}",
                fmt_range(loads),
            ])

    # ------------------------------------------------------------ ratios, in the same round
    def ratio_rounds(svc, c=16):
        out = []
        for rnd in rounds:
            x = [float(r["rps"]) for r in by[(svc, c)] if int(r["round"]) == rnd]
            y = [float(r["rps"]) for r in by[("fastapi", c)] if int(r["round"]) == rnd]
            if x and y and y[0] > 0:
                out.append(x[0] / y[0])
        return out

    ratios = {svc: {c: ratio_rounds(svc, c) for c in conns} for svc in CHURNGUARD}

    # ------------------------------------------------------------ cold start and memory
    cs = defaultdict(list)
    cs_load = defaultdict(list)
    for r in cold:
        cs[r["service"]].append(float(r["cold_start_ms"]))
        cs_load[r["service"]].append(float(r["load1"]))

    def rss_after(svc):
        return [float(r["rss_mib"]) for r in res if r["service"] == svc]

    def hwm(svc):
        return [float(r["hwm_mib"]) for r in res if r["service"] == svc]

    # ------------------------------------------------------------ targets
    t16 = 16 in conns
    targets = []
    if t16 and ratios["churnguard-logistic"][16]:
        rr = ratios["churnguard-logistic"][16]
        m = med(rr)
        every = all(x >= 20 for x in rr)
        targets.append((
            ">= 20x the FastAPI service's requests/s at 16 connections (logistic)",
            f"{m:.1f}x (median of the per-round ratios; rounds: {', '.join(f'{x:.1f}x' for x in rr)}); "
            f"{med(col('churnguard-logistic', 16, 'rps')):,.0f} vs {med(col('fastapi', 16, 'rps')):,.0f} req/s",
            "met" if m >= 20 and every else ("met in the median only" if m >= 20 else "not met"),
        ))
    if t16 and by[("churnguard-logistic", 16)]:
        p99 = col("churnguard-logistic", 16, "p99_ms")
        m = med(p99)
        targets.append((
            "p99 < 2 ms at 16 connections (logistic)",
            f"{m:.2f} ms (median over rounds; rounds: {', '.join(f'{x:.2f}' for x in p99)} ms)",
            "met" if m < 2 and max(p99) < 2 else ("met in the median only" if m < 2 else "not met"),
        ))
    if cs["churnguard-logistic"]:
        x = cs["churnguard-logistic"]
        targets.append((
            "cold start to first answer < 200 ms",
            f"{med(x):.0f} ms median of {len(x)} (range {min(x):.0f}-{max(x):.0f} ms; gbdt {med(cs['churnguard-gbdt']):.0f} ms)",
            "met" if med(x) < 200 else "not met",
        ))
    if rss_after("churnguard-logistic"):
        x = rss_after("churnguard-logistic")
        g = rss_after("churnguard-gbdt")
        targets.append((
            "resident memory < 100 MiB with a model loaded",
            f"{max(x):.1f} MiB RSS after the load runs, worst of {len(x)} (peak VmHWM {max(hwm('churnguard-logistic')):.1f} MiB; "
            f"gbdt {max(g) if g else float('nan'):.1f} MiB)",
            "met" if max(x) < 100 else "not met",
        ))
    if t16 and ratios["churnguard-logistic-unique"][16]:
        rr = ratios["churnguard-logistic-unique"][16]
        p99 = col("churnguard-logistic-unique", 16, "p99_ms")
        targets.append((
            "the same two targets when every request is a new customer (each score writes a new outbox row)",
            f"{med(rr):.1f}x FastAPI (rounds: {', '.join(f'{x:.1f}x' for x in rr)}), "
            f"{med(col('churnguard-logistic-unique', 16, 'rps')):,.0f} req/s, p99 {med(p99):.2f} ms",
            ("20x met" if med(rr) >= 20 else "20x not met") + ", " + ("p99 met" if med(p99) < 2 else "p99 not met"),
        ))
    bad = sum(int(r["non2xx"]) + int(r["socket_errors"]) for r in res)
    server_non200 = sum(int(r["server_non200"]) for r in res if r["server_non200"] not in ("-", ""))
    targets.append((
        "no non-2xx answer, no socket error",
        f"{bad} in wrk's counts over all {len(res)} runs; churnguard's own /metrics count of non-200 on /v1/score: {server_non200}",
        "met" if bad == 0 and server_non200 == 0 else "not met",
    ))

    # ------------------------------------------------------------ print
    def md_table(h, body):
        out = ["| " + " | ".join(h) + " |", "|" + "|".join("---" for _ in h) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(out)

    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in table:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
    print()
    for svc in CHURNGUARD:
        for c in conns:
            if ratios[svc][c]:
                print(f"{LABEL[svc]} / FastAPI at {c} connections, same round: "
                      + ", ".join(f"{x:.1f}x" for x in ratios[svc][c]) + f" (median {med(ratios[svc][c]):.1f}x)")
    print()
    for svc in SERVICES:
        if cs[svc]:
            print(f"cold start {LABEL[svc]}: median {med(cs[svc]):.0f} ms of {len(cs[svc])} "
                  f"({', '.join(f'{x:.0f}' for x in cs[svc])} ms; load {fmt_range(cs_load[svc])})")
    print()
    for name, value, verdict in targets:
        print(f"[{verdict}] {name}: {value}")

    # ------------------------------------------------------------ the section
    ratio_lines = []
    for svc in CHURNGUARD:
        parts = [f"{c} conns {med(ratios[svc][c]):.1f}x" for c in conns if ratios[svc][c]]
        if parts:
            ratio_lines.append(f"{LABEL[svc]} / FastAPI, median of the per-round ratios: " + ", ".join(parts))
    cold_body = []
    for svc in SERVICES:
        if cs[svc]:
            cold_body.append([LABEL[svc], f"{med(cs[svc]):.0f}", ", ".join(f"{x:.0f}" for x in cs[svc]),
                              fmt_range(cs_load[svc])])
    rss_body = []
    for svc in CHURNGUARD:
        if rss_after(svc):
            rss_body.append([LABEL[svc], f"{fmt_range(rss_after(svc), '{:.1f}')}", f"{max(hwm(svc)):.1f}"])
    if meta.get("fastapi_rss_after_all"):
        rss_body.append([LABEL["fastapi"] + " (master + 2 workers)", meta["fastapi_rss_after_all"], "-"])

    lines = [
        HEADING,
        "",
        f"`{meta.get('command', 'bash bench/service/run.sh')}` (bench/service/; needs `wrk` from Debian and the "
        f"release binary; the FastAPI peer's venv is created in `bench/.venv-service` from "
        f"`bench/service/requirements.txt`).",
        "",
        f"- **Date** {meta.get('date')}, commit {meta.get('commit')}, {meta.get('churnguard')}; {meta.get('machine')}.",
        f"- **Load average** (1/5/15 min) {meta.get('loadavg_start')} at the start, {meta.get('loadavg_end')} at the end; "
        f"the 1-minute load before and after every run is in the table. {meta.get('note', '')} The load generator (wrk, {meta.get('wrk')}) shares the same 2 cores with the server "
        f"under test: every requests/s figure is what a server gets while wrk takes its own share of the CPU "
        f"(\"CPU %\": the server's and wrk's shares over the run, 200% = both cores).",
        f"- **Peers**: `churnguard serve` (started fresh for each of its runs, API key auth on, alert outbox in SQLite "
        f"under the models dir) against FastAPI + uvicorn (2 workers, uvloop + httptools, no access log) serving the "
        f"scikit-learn equivalent of the logistic model (signed log1p, median imputation, StandardScaler, "
        f"LogisticRegression, Platt; {meta.get('peer_fit', '')}; per request: pydantic validation of the body, the "
        f"fitted sklearn steps on one row, top-3 coef x z reasons; no state kept). {meta.get('python')}.",
        f"- **Requests**: single-customer `POST /v1/score` with `features`, rotating through "
        f"{meta.get('bodies')}, taken from the {meta.get('as_of')} snapshot of a 5,000-customer base "
        f"(`generate --seed 3`). wrk `--latency`, 2 threads (1 at 1 connection), {meta.get('duration')} s per run after "
        f"a 2 s warm-up; {meta.get('rounds')} rounds, each running every connection count for the three services in "
        f"an order that rotates from round to round. Medians over rounds; per-round values beside them.",
        "",
        md_table(head, table),
        "",
        "- " + "\n- ".join(ratio_lines),
        "",
    ]
    if any(by[(v, 16)] for v in VARIANTS):
        def m16(svc, key):
            return med(col(svc, 16, key)) if by[(svc, 16)] else float("nan")
        lines += [
            "**Why the variants.** `churnguard serve` checks every score against the customer's tier "
            "recorded in its SQLite outbox (WAL) and writes, before it answers, only a score that changes "
            "the tier or raises an alert (alerts with an fsynced commit, tier changes without one); the "
            "check reads an in-process cache of recent customers. With the 256-customer rotation the tiers "
            "settle after the first pass and the outbox is not touched again; when every request is a new "
            "customer, every request writes a new state (and the ~5% that enter `high` an fsynced alert). "
            f"Here: {m16('churnguard-logistic', 'rps'):,.0f} req/s / p99 {m16('churnguard-logistic', 'p99_ms'):.2f} ms "
            f"with the rotation, {m16('churnguard-logistic-unique', 'rps'):,.0f} req/s / p99 "
            f"{m16('churnguard-logistic-unique', 'p99_ms'):.2f} ms with a new customer per request; with the "
            f"outbox on tmpfs (fsync free; a diagnostic, not a deployable setup) "
            f"{m16('churnguard-logistic-tmpfs', 'rps'):,.0f} req/s / p99 {m16('churnguard-logistic-tmpfs', 'p99_ms'):.2f} ms "
            f"and {m16('churnguard-logistic-tmpfs-unique', 'rps'):,.0f} req/s / p99 "
            f"{m16('churnguard-logistic-tmpfs-unique', 'p99_ms'):.2f} ms. The FastAPI peer keeps no state, so "
            "its numbers do not depend on the customer ids.",
            "",
        ]
    lines += [
        "Cold start (process start to the first 200 of `POST /v1/score`, polled every ms; alternating services):",
        "",
        md_table(["service", "median ms", "each run ms", "load1"], cold_body),
        "",
        "Resident memory (ps RSS right after each load run):",
        "",
        md_table(["service", "RSS MiB", "peak VmHWM MiB"], rss_body),
        "",
        "**Targets** (issue 6):",
        "",
        md_table(["target", "measured", "verdict"], [list(t) for t in targets]),
        "",
        f"Outbox after the run: {meta.get('outbox')}. WARN/ERROR lines in the servers' logs: {meta.get('serve_warnings')}.",
        "",
    ]
    section = "\n".join(lines)
    with open(os.path.join(a.dir, "section.md"), "w") as f:
        f.write(section)
    print(f"\nsection written to {os.path.join(a.dir, 'section.md')}")

    if a.benchmarks:
        write_section(a.benchmarks, section)
    return 0


def write_section(path: str, section: str) -> None:
    """Append the section, or replace only a section with the same heading."""
    if not os.path.exists(path):
        with open(path, "a") as f:
            f.write(section)
        print(f"created {path} with the section")
        return
    with open(path) as f:  # read right before writing: the rest of the file is someone else's
        text = f.read()
    lines = text.split("\n")
    fenced, inside = [], False  # lines inside ``` blocks are never headings
    for l in lines:
        if l.lstrip().startswith("```"):
            inside = not inside
        fenced.append(inside)
    start = next((i for i, l in enumerate(lines) if l.strip() == HEADING and not fenced[i]), None)
    if start is None:
        with open(path, "a") as f:
            f.write(("" if text.endswith("\n\n") or not text else "\n" if text.endswith("\n") else "\n\n") + section)
        print(f"appended the section to {path}")
        return
    level = len(HEADING) - len(HEADING.lstrip("#"))
    end = len(lines)
    for i in range(start + 1, len(lines)):
        l = lines[i]
        if l.startswith("#") and not fenced[i]:
            lv = len(l) - len(l.lstrip("#"))
            if lv <= level and l[lv:lv + 1] == " ":
                end = i
                break
    new = "\n".join(lines[:start]) + ("\n" if start else "") + section + ("\n" + "\n".join(lines[end:]) if end < len(lines) else "")
    with open(path) as f:
        if f.read() != text:
            print(f"{path} changed while the section was being written: not touched; the section is in section.md",
                  file=sys.stderr)
            return
    with open(path, "w") as f:
        f.write(new)
    print(f"replaced the section in {path}")


if __name__ == "__main__":
    sys.exit(main())
