"""Valid requests while slow clients (slowloris) hold connections open, on loopback only.

    python -m bench.slow_clients [--slow 2000] [--requests 400] [--seconds 20]

Starts ``vodimg serve`` on 127.0.0.1 (default limits: VODIMG_MAX_CONNECTIONS 1024,
VODIMG_HEADER_TIMEOUT 10 s) and measures signed DescribeProcessImageAsyncTemplates calls, each on
a new connection (the hardest case: it must be accepted while the server is at its connection
limit), first alone (the baseline, same run), then while a separate process keeps ``--slow``
connections open that send a request head one byte a second and reconnect whenever the server
closes them. Reported: p50/p99 latency, failures, the server's RSS and open descriptors, and how
often the slow clients were cut off (by the head timeout or to make room).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench.api_throughput import free_port, machine, start_vodimg, tc3_request

SLOW_HEAD = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def raise_descriptor_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def slow_clients(port: int, count: int, seconds: float, ready, stats) -> None:
    """Keep ``count`` connections trickling a head until ``seconds`` pass (a child process)."""
    raise_descriptor_limit(count + 256)

    async def one() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(SLOW_HEAD)
                while time.monotonic() < deadline:
                    await asyncio.sleep(1.0)
                    writer.write(b"a")
                    await writer.drain()
                    if reader.at_eof():
                        raise ConnectionResetError
                writer.close()
            except (ConnectionError, OSError):
                with stats.get_lock():
                    stats.value += 1  # cut off by the server: come back, as an attacker would
                await asyncio.sleep(0.05)

    async def main() -> None:
        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(2.0)  # all connected (or refused) by now
        ready.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def raw_request(port: int) -> bytes:
    """The signed request as bytes: sent on a plain socket, so the client adds no cost of its own."""
    request = tc3_request(port, "DescribeProcessImageAsyncTemplates", {"Limit": 10})
    body = request.body.encode()
    head = [f"POST / HTTP/1.1", *(f"{name}: {value}" for name, value in request.headers.items()),
            f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def call(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15.0) as sock:  # a new connection
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def measure(port: int, requests: int, sample=None) -> dict:
    request = raw_request(port)
    latencies, failures = [], 0
    for index in range(requests):
        started = time.perf_counter()
        try:
            answer = call(port, request)
            if not answer.startswith(b"HTTP/1.1 200") or b'"Error"' in answer or b'"TotalCount"' not in answer:
                raise RuntimeError(answer[:300])
            latencies.append((time.perf_counter() - started) * 1000)
        except (OSError, RuntimeError):
            failures += 1
        if sample is not None and index == requests // 2:
            sample()
    latencies.sort()
    return {"p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "failures": failures}


def server_state(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=2000, help="slow connections kept open")
    parser.add_argument("--requests", type=int, default=400, help="valid requests per phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the slow clients stay")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_vodimg(Path(tmp) / "data", port, 1)
        try:
            measure(port, 20)  # warm up
            rss, fds = server_state(server.pid)
            rows.append(("alone (baseline)", measure(port, args.requests), rss, fds))
            ready, cut_off = multiprocessing.Event(), multiprocessing.Value("l", 0)
            attacker = multiprocessing.Process(target=slow_clients,
                                               args=(port, args.slow, args.seconds, ready, cut_off))
            attacker.start()
            ready.wait(30)
            started, sampled = time.monotonic(), []
            result = measure(port, args.requests, lambda: sampled.append(server_state(server.pid)))
            elapsed = time.monotonic() - started
            rows.append((f"with {args.slow} slow clients", result, *sampled[0]))
            if elapsed > args.seconds:
                print(f"warning: the slow clients left after {args.seconds} s, before the {elapsed:.0f} s "
                      f"of requests ended: raise --seconds")
            attacker.join()
            time.sleep(1.0)
            rss_after, fds_after = server_state(server.pid)
        finally:
            server.terminate()
            server.wait()
    baseline = rows[0][1]
    print(f"machine: {machine()}; loopback; the other agents' load distorts absolute figures")
    print(f"vodimg serve defaults: 1024 connections per process, 10 s to send a head; valid requests "
          f"on a new connection each, {args.requests} per phase")
    print(f"{'phase':<28} {'p50 ms':>8} {'p99 ms':>8} {'x base p99':>10} {'failed':>7} {'server RSS MB':>14} "
          f"{'open fds':>9}")
    for name, result, rss, fds in rows:
        print(f"{name:<28} {result['p50']:>8.2f} {result['p99']:>8.2f} {result['p99'] / baseline['p99']:>10.2f} "
              f"{result['failures']:>7} {rss:>14.0f} {fds:>9}")
    print(f"slow connections cut off by the server during the {args.seconds:.0f} s attack: {cut_off.value}; "
          f"after they left: RSS {rss_after:.0f} MB, {fds_after} fds")


if __name__ == "__main__":
    main()
