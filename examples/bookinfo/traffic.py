"""The demo's traffic: GETs to a frontend at a steady rate, and the share of each reviews version it got.

    drive_traffic        forever (cancel to stop), a status line a second; to one URL or several in turn
    wait_first_answer    until reviews answers through the mesh
    one_request          what one GET got: "v1".."v3", or a short name of what went wrong
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from examples.bookinfo.app import HttpClient
from isthmus.launch import LaunchError

VERSIONS = ("v1", "v2", "v3")

Out = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass
class Stats:
    window: int = 200
    recent: collections.deque[str] = field(default_factory=collections.deque)
    totals: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: int = 0

    def record(self, outcome: str) -> None:
        self.recent.append(outcome)
        if len(self.recent) > self.window:
            self.recent.popleft()
        self.totals[outcome] += 1
        self.sent += 1

    def line(self, elapsed: float, rate: float) -> str:
        recent = collections.Counter(self.recent)
        n = len(self.recent) or 1
        shares = "  ".join(f"{v} {100 * recent[v] / n:5.1f}%" for v in VERSIONS)
        errors_recent = sum(c for k, c in recent.items() if k not in VERSIONS)
        totals = " ".join(f"{v}={self.totals[v]}" for v in VERSIONS)
        errors = sum(c for k, c in self.totals.items() if k not in VERSIONS)
        line = (f"[{elapsed:5.0f}s] last {len(self.recent):>3}: {shares}  err {100 * errors_recent / n:5.1f}%"
                f"  | total {self.sent} ({totals} errors={errors})  {rate:5.1f} req/s")
        kinds = [f"{k} x{c}" for k, c in recent.most_common() if k not in VERSIONS]
        return line + (f"  [{', '.join(kinds[:3])}]" if kinds else "")


async def one_request(client: HttpClient, url: str, headers: dict[str, str]) -> str:
    """The reviews version the frontend got, or a short name for what went wrong."""
    try:
        response = await client.get(url, headers)
    except Exception as exc:
        return f"frontend {type(exc).__name__}"
    if response.status != 200:
        return f"frontend {response.status}"
    try:
        reviews = response.json().get("reviews") or {}
    except ValueError:
        return "frontend bad json"
    if reviews.get("status") == 200 and reviews.get("version"):
        return str(reviews["version"])
    return f"reviews {reviews.get('status', '?')}"


async def drive_traffic(urls: str | Sequence[str], *, rate: float = 50.0, concurrency: int = 8, window: int = 200,
                        headers: dict[str, str] | None = None, out: Out = _print,
                        status: Callable[[], str] | None = None) -> None:
    """GET `urls` in turn (one URL, or several: the frontend's app port and the ingress gateway) about `rate`
    times a second in all, with at most `concurrency` in flight, forever (cancel to stop); prints the share of
    each reviews version once a second, then what `status()` says (mtls.py)."""
    targets = itertools.cycle([urls] if isinstance(urls, str) else list(urls))
    client = HttpClient(timeout=5.0)
    stats = Stats(window=window)
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    async def send(url: str) -> None:
        try:
            stats.record(await one_request(client, url, headers or {}))
        finally:
            slots.release()

    async def report() -> None:
        began = last_time = loop.time()
        last_sent = 0
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            line = stats.line(now - began, (stats.sent - last_sent) / max(now - last_time, 1e-6))
            out(f"{line}  | {status()}" if status is not None else line)
            last_time, last_sent = now, stats.sent

    reporter = asyncio.ensure_future(report())
    try:
        tick = loop.time()
        while True:
            await slots.acquire()
            task = asyncio.ensure_future(send(next(targets)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            tick = max(tick + 1.0 / rate, loop.time() - 1.0)  # after a stall, do not burst to catch up
            await asyncio.sleep(max(0.0, tick - loop.time()))
    finally:
        reporter.cancel()
        for task in in_flight:
            task.cancel()
        await asyncio.gather(reporter, *in_flight, return_exceptions=True)
        await client.close()


async def wait_first_answer(url: str, timeout: float = 30.0) -> str:
    """Ask until reviews answers through the mesh (pilot's pushes may take a moment to land)."""
    client = HttpClient(timeout=2.0)
    deadline = time.monotonic() + timeout
    outcome = ""
    try:
        while time.monotonic() < deadline:
            outcome = await one_request(client, url, {})
            if outcome in VERSIONS:
                return outcome
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise LaunchError(f"no answer from reviews through the mesh within {timeout:g}s (last: {outcome})")
