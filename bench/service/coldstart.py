#!/usr/bin/env python3
"""Cold start to first answer: the time from starting a server process to the first
200 answer of `POST /v1/score`, repeated N times (stdlib only).

    python3 coldstart.py --label NAME --port P --body BODY.json --repeats 5 -- CMD ARGS...

Each repeat starts CMD (fork + exec are inside the measured time), polls the port
with one POST every millisecond (connection refused / 503 until it is up), stops the
clock at the first 200, then sends SIGTERM and waits for the process to exit (the
shutdown time is printed but not part of the cold start). Prints one TSV line per
repeat: label, repeat, cold_start_ms, attempts, shutdown_ms, load1.
"""

import argparse
import http.client
import os
import signal
import subprocess
import sys
import time


def load1() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--body", required=True, help="one request body (JSON)")
    ap.add_argument("--key", default="benchkey")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--log", help="append the servers' output here")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    body = open(a.body, "rb").read()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {a.key}"}
    log = open(a.log, "ab") if a.log else subprocess.DEVNULL
    for r in range(1, a.repeats + 1):
        l1 = load1()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        attempts, ms = 0, None
        while time.perf_counter() - t0 < a.timeout:
            if proc.poll() is not None:
                print(f"{a.label}: the server exited with {proc.returncode} before answering", file=sys.stderr)
                return 1
            attempts += 1
            try:
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=2)
                c.request("POST", "/v1/score", body=body, headers=headers)
                resp = c.getresponse()
                resp.read()
                c.close()
                if resp.status == 200:
                    ms = (time.perf_counter() - t0) * 1000
                    break
            except (ConnectionError, OSError, http.client.HTTPException):
                pass
            time.sleep(0.001)
        t1 = time.perf_counter()
        # SIGTERM to the whole session of the process we started (uvicorn's workers too).
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutdown_ms = (time.perf_counter() - t1) * 1000
        if ms is None:
            print(f"{a.label}: no 200 within {a.timeout}s", file=sys.stderr)
            return 1
        print(f"{a.label}\t{r}\t{ms:.1f}\t{attempts}\t{shutdown_ms:.1f}\t{l1}", flush=True)
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
