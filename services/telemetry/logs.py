"""Recent access-log entries per service, from the sidecars' AccessLogBatch messages (GET /api/logs).

Bounded: `per_service` entries per (namespace, service) (the oldest go first), `max_services` services (the
one written to least recently goes whole), entries larger than MAX_ENTRY_BYTES encoded are dropped, and at
most `max_bytes` of entries (as JSON) in all: past it the oldest entries of the service written to least
recently go first (the counts alone allow 1000 x 1000 entries of 16 KiB: 16 GB).
A batch whose namespace is not the one of the identity that published it is dropped whole.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from itertools import chain

import msgspec

from proto.observations import AccessLogBatch, AccessLogEntry

MAX_ENTRY_BYTES = 16 * 1024
MAX_NAME = 253


class BatchRefused(ValueError):
    """An access-log batch that is malformed or passes a bound: logged and dropped."""


class LogStore:
    def __init__(self, per_service: int = 1000, max_services: int = 1000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.per_service = per_service
        self.max_services = max_services
        self.max_bytes = max_bytes
        self.services: OrderedDict[tuple[str, str], deque[AccessLogEntry]] = OrderedDict()
        self._sizes: dict[tuple[str, str], deque[int]] = {}  # each held entry's JSON bytes, in the same order
        self.bytes = 0
        self.dropped = 0
        self._encoder = msgspec.json.Encoder()

    def add(self, batch: AccessLogBatch, namespace: str) -> int:
        """Keep the batch's entries under (namespace, batch.service); how many were kept."""
        if batch.namespace != namespace:
            raise BatchRefused(f"the batch says namespace {batch.namespace[:80]!r} but was published by an identity "
                               f"of namespace {namespace!r}")
        if not (batch.service and len(batch.service) <= MAX_NAME and batch.service.isprintable()):
            raise BatchRefused("service is empty, too long or not printable")
        key = (namespace, batch.service)
        entries = self.services.get(key)
        if entries is None:
            entries = self.services[key] = deque()
            sizes = self._sizes[key] = deque()
            while len(self.services) > self.max_services:
                gone, _ = self.services.popitem(last=False)
                self.bytes -= sum(self._sizes.pop(gone))
        else:
            self.services.move_to_end(key)
            sizes = self._sizes[key]
        kept = 0
        for entry in batch.entries:
            size = len(self._encoder.encode(entry))
            if size > MAX_ENTRY_BYTES:
                self.dropped += 1
                continue
            entries.append(entry)
            sizes.append(size)
            self.bytes += size
            if len(entries) > self.per_service:
                entries.popleft()
                self.bytes -= sizes.popleft()
            kept += 1
        while self.bytes > self.max_bytes and self.services:  # the least recently written service's oldest first
            oldest_key = next(iter(self.services))
            oldest, oldest_sizes = self.services[oldest_key], self._sizes[oldest_key]
            oldest.popleft()
            self.bytes -= oldest_sizes.popleft()
            if not oldest:
                del self.services[oldest_key], self._sizes[oldest_key]
        return kept

    def recent(self, service: str = "", namespace: str = "", limit: int = 100) -> list[AccessLogEntry]:
        """The newest `limit` entries (newest first) of the services matching `service` (a name, or a FQDN
        `<name>.<namespace>.svc...`) and `namespace` ("" matches any)."""
        if "." in service:
            service, namespace_of_fqdn = service.split(".")[:2]
            namespace = namespace or namespace_of_fqdn
        chosen = [entries for (ns, name), entries in self.services.items()
                  if (not service or name == service) and (not namespace or ns == namespace)]
        return heapq.nlargest(limit, chain.from_iterable(chosen), key=lambda e: e.start_time)
