"""Recent access-log entries per service, from the sidecars' AccessLogBatch messages (GET /api/logs).

Bounded: `per_service` entries per (namespace, service) (the oldest go first), `max_services` services (the
one written to least recently goes whole), entries larger than MAX_ENTRY_BYTES encoded are dropped.
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
    pass


class LogStore:
    def __init__(self, per_service: int = 1000, max_services: int = 1000) -> None:
        self.per_service = per_service
        self.max_services = max_services
        self.services: OrderedDict[tuple[str, str], deque[AccessLogEntry]] = OrderedDict()
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
            entries = self.services[key] = deque(maxlen=self.per_service)
            while len(self.services) > self.max_services:
                self.services.popitem(last=False)
        else:
            self.services.move_to_end(key)
        kept = 0
        for entry in batch.entries:
            if len(self._encoder.encode(entry)) > MAX_ENTRY_BYTES:
                self.dropped += 1
                continue
            entries.append(entry)
            kept += 1
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
