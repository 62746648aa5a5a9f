"""Load test of the HTTP service: ``GET /recommend/{user_id}`` at a fixed rate, on loopback.

    python experiments/benchmark_serve.py [--bundle data/bundles/ml-100k] [--rate 200]
                                          [--requests 2000] [--max-seconds 60] [--url URL]

Starts ``python -m recsys.serve`` on a free loopback port (or uses the server at ``--url``,
which must be on this machine and serve ``--bundle``), sends 50 warm-up requests, then
``--requests`` requests on an open loop: request ``i`` is due at ``i / rate`` seconds, whether
or not the earlier ones have come back, each for a user drawn uniformly from the bundle's
(seed 0), ``k=10``. Latency runs from when a request was due to its last byte, so a generator
or a server that falls behind shows in it (no coordinated omission). Bounded: nothing is sent
after ``--max-seconds``, and a request that takes 5 s counts as an error. Prints p50/p95/p99
and the largest latency, the throughput completed, the errors, how late the generator sent
(if that is large, the numbers measure the client) and the load average of the machine before
the run. Acceptance (issue 14): p99 < 10 ms at 200 requests/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from recsys.bundle import MANIFEST
from recsys.cli import ArgumentParser, one_line_errors, positive_int
from recsys.errors import ConfigError

WARM_UP = 50
TIMEOUT_SECONDS = 5.0
IDLE_SECONDS = 2.0


class Connections:
    """Keep-alive HTTP/1.1 connections to one server, each carrying one request at a time: a
    client far lighter than a general one, so that on a small machine the numbers measure the
    server, not the client. A connection idle for ``IDLE_SECONDS`` is closed, not reused:
    uvicorn closes those idle for 5 s, and a request sent on one would fail."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        """Status and body of ``GET path``."""
        while self.idle and time.monotonic() - self.idle[0][0] > IDLE_SECONDS:
            self.idle.pop(0)[2].close()  # the least recently used first
        if self.idle:
            _, reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            body = await reader.readexactly(int(length[1]) if length else 0)
        except BaseException:
            writer.close()
            raise
        self.idle.append((time.monotonic(), reader, writer))
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        for _, _, writer in self.idle:
            writer.close()


async def recommend(connections: Connections, user: int) -> str:
    """One ``GET /recommend/{user}?k=10``: ``"ok"`` if it came back 200 with ten films, else
    what went wrong."""
    try:
        status, body = await asyncio.wait_for(connections.get(f"/recommend/{user}?k=10"),
                                              TIMEOUT_SECONDS)  # fmt: skip
        if status != 200:
            return f"status {status}"
        return "ok" if len(json.loads(body)["films"]) == 10 else "not ten films"
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ValueError, KeyError, TypeError) as error:  # fmt: skip
        return type(error).__name__


async def load(url: str, warm_up: np.ndarray, users: np.ndarray, rate: float,
               max_seconds: float) -> dict:  # fmt: skip
    """One request per ``warm_up`` user in turn, then one per user of ``users`` at ``rate``
    per second; the latencies, how late each was sent, and the errors."""
    address = urlsplit(url)
    connections = Connections(address.hostname, address.port)
    for user in warm_up.tolist():
        outcome = await recommend(connections, user)
        if outcome != "ok":
            sys.exit(f"error: GET {url}/recommend/{user}?k=10 failed in the warm-up: {outcome}")
    start = time.perf_counter()

    async def one(i: int, user: int) -> tuple[float, float, str]:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent = time.perf_counter()
        outcome = await recommend(connections, user)
        return time.perf_counter() - due, sent - due, outcome

    due_in_time = [u for i, u in enumerate(users.tolist()) if i / rate < max_seconds]
    results = await asyncio.gather(*(one(i, u) for i, u in enumerate(due_in_time)))
    elapsed = time.perf_counter() - start
    connections.close()
    latency, lateness, outcome = (np.array(column) for column in zip(*results, strict=True))
    ok = outcome == "ok"
    errors = dict(zip(*np.unique(outcome[~ok], return_counts=True), strict=True))
    return {"latency": latency[ok], "lateness": lateness, "errors": errors,
            "sent": len(results), "elapsed": elapsed}  # fmt: skip


def start_server(bundle: str) -> tuple[subprocess.Popen, str]:
    """``python -m recsys.serve`` on a free loopback port; the process and its URL."""
    process = subprocess.Popen([sys.executable, "-m", "recsys.serve", "--bundle", bundle,
                                "--port", "0"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    line = process.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
    if found is None:
        process.kill()
        sys.exit(f"error: the server did not start: {line.strip() or 'no output'}")
    return process, found[1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux's /proc), or ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.exit(f"error: --url {url} is not on loopback: this load test only runs against "
                 f"this machine (127.0.0.1, ::1 or localhost)")


def report(result: dict, rate: float, url: str, load_average: tuple[float, ...],
           server_cpu: float | None) -> None:  # fmt: skip
    p50, p95, p99 = np.percentile(result["latency"] * 1e3, [50, 95, 99])
    late = np.percentile(result["lateness"] * 1e3, 99)
    done = len(result["latency"])
    print(f"GET {url}/recommend/{{user_id}}?k=10: {result['sent']} requests due at {rate:g}/s "
          f"(open loop, users uniform, seed 0), after {WARM_UP} warm-up requests")
    print(f"machine: {os.cpu_count()} cores, load average before the run "
          f"{' '.join(f'{x:.2f}' for x in load_average)}")
    print(f"latency (due -> last byte): p50 {p50:.2f} ms   p95 {p95:.2f} ms   p99 {p99:.2f} ms"
          f"   max {result['latency'].max() * 1e3:.2f} ms")
    errors = ", ".join(f"{n} {kind}" for kind, n in result["errors"].items()) or "0"
    print(f"throughput: {done / result['elapsed']:.1f} requests/s completed ({done} in "
          f"{result['elapsed']:.2f} s); errors {errors}; sent late by p99 {late:.2f} ms")
    if server_cpu is not None:
        print(f"server CPU: {server_cpu / result['sent'] * 1e3:.2f} ms a request "
              f"({server_cpu / result['elapsed']:.0%} of one core at this rate)")
    met = p99 < 10 and not result["errors"] and done / result["elapsed"] >= 0.95 * rate
    print(f"acceptance (p99 < 10 ms at {rate:g} requests/s, no errors): "
          f"{'met' if met else 'NOT met'}")


def main() -> None:
    parser = ArgumentParser("experiments/benchmark_serve.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="data/bundles/ml-100k")
    parser.add_argument("--url", default=None, help="a running server (loopback only)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--requests", type=positive_int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    if not (0 < args.rate <= 5000 and 0 < args.requests <= 100_000 and args.max_seconds > 0):
        sys.exit("error: --rate must be in (0, 5000], --requests in 1..100000, --max-seconds > 0")
    if not (Path(args.bundle) / MANIFEST).is_file():  # the server checks the rest
        raise ConfigError(f"--bundle {args.bundle} is not a bundle (no {MANIFEST}): export one "
                          f"with `python -m recsys.export`, or pass --bundle PATH")  # fmt: skip
    ids = np.load(Path(args.bundle) / "user_ids.npy")
    users = np.random.default_rng(0).choice(ids, size=WARM_UP + args.requests)
    process = None
    if args.url is None:
        process, url = start_server(args.bundle)
    else:
        check_loopback(args.url)
        url = args.url.rstrip("/")
    try:
        load_average = os.getloadavg()
        before = None if process is None else cpu_seconds(process.pid)
        result = asyncio.run(load(url, users[:WARM_UP], users[WARM_UP:], args.rate,
                                  args.max_seconds))  # fmt: skip
        after = None if process is None else cpu_seconds(process.pid)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    server_cpu = None if before is None or after is None else after - before
    report(result, args.rate, url, load_average, server_cpu)


if __name__ == "__main__":
    with one_line_errors():
        main()
