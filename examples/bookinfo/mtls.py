"""What the demo's live line says about mutual TLS, read from each sidecar's admin port the way an operator
would: /certs (does it hold a valid workload certificate) and /server_info `inbound_mtls` (how many
connections its inbound listeners took over TLS and in plaintext), and for a client-only demo /config_dump
(whether the endpoints it calls have a sidecar and get auto mTLS).

    MtlsWatch(workloads).run()   polls every INTERVAL seconds until cancelled; .line() the latest summary
    summarize(...)               the words, from counts (pure)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from examples.bookinfo.app import HttpClient
from examples.bookinfo.workloads import Workload

INTERVAL = 2.0  # seconds between polls of every sidecar's admin port
REVIEWS = "reviews.default."  # the start of the host the frontend calls (any domain suffix)


@dataclass
class Counts:
    sidecars: int = 0
    certified: int = 0  # sidecars whose /certs says "valid"
    inbound_tls: int = 0  # connections the sidecars' inbound listeners took over (mutual) TLS
    inbound_plaintext: int = 0  # ... and in plaintext
    endpoints: int = 0  # endpoints of reviews the sidecars call, with a sidecar
    endpoints_mtls: int = 0  # ... of which they send mutual TLS to (auto mTLS)


def summarize(c: Counts) -> str:
    """`mTLS: 4/4 sidecars hold a certificate, all hops mutual TLS` when every sidecar has a certificate,
    no inbound listener took a plaintext connection and some took TLS (or, for a client-only demo, every
    reviews endpoint it calls gets mTLS); otherwise what falls short."""
    words = f"mTLS: {c.certified}/{c.sidecars} sidecars hold a certificate"
    if c.inbound_plaintext:
        return words + f", {c.inbound_plaintext} plaintext connection{'s' * (c.inbound_plaintext != 1)} accepted"
    if c.endpoints_mtls < c.endpoints:
        return words + f", {c.endpoints - c.endpoints_mtls}/{c.endpoints} reviews endpoints without mTLS"
    if c.certified < c.sidecars:
        return words
    if c.inbound_tls or c.endpoints:
        return words + ", all hops mutual TLS"
    return words + ", no hop yet"


class MtlsWatch:
    def __init__(self, workloads: list[Workload], interval: float = INTERVAL) -> None:
        self.workloads = workloads
        self.interval = interval
        self.counts: Counts | None = None

    def line(self) -> str:
        return summarize(self.counts) if self.counts is not None else "mTLS: checking"

    async def poll(self, client: HttpClient) -> Counts:
        c = Counts(sidecars=len(self.workloads))
        for w in self.workloads:
            base = f"http://127.0.0.1:{w.admin_port}"
            try:
                certs = (await client.get(f"{base}/certs")).json()
                info = (await client.get(f"{base}/server_info")).json()
                dump = (await client.get(f"{base}/config_dump")).json()
            except (OSError, asyncio.TimeoutError, ValueError):
                continue  # not answering: counts as no certificate
            c.certified += certs.get("workload", {}).get("state") == "valid"
            for stats in info.get("inbound_mtls", {}).get("listeners", {}).values():
                c.inbound_tls += stats.get("tls", 0)
                c.inbound_plaintext += stats.get("plaintext", 0)
            for cluster in dump.get("clusters", ()):
                if str(cluster.get("host", "")).startswith(REVIEWS):
                    for endpoint in cluster.get("endpoints", ()):
                        if endpoint.get("sidecar"):
                            c.endpoints += 1
                            c.endpoints_mtls += bool(endpoint.get("auto_mtls"))
        return c

    async def run(self) -> None:
        client = HttpClient(timeout=1.0)
        try:
            while True:
                self.counts = await self.poll(client)
                await asyncio.sleep(self.interval)
        finally:
            await client.close()
