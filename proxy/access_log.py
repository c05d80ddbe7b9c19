"""The sidecar's access log: one line per HTTP request and per opaque TCP connection, as Envoy's.

Off unless asked for (`proxy run --access-log -|PATH`, env ISTHMUS_ACCESS_LOG), as Istio's
meshConfig.accessLogFile: a line nobody reads is per-request work the hot path should not do. A line:

    [2026-11-27T07:55:14.123Z] outbound "GET reviews/r" 503 UO 0 0.4ms outbound|9080|v1|reviews.default.svc...
    [2026-11-27T07:55:15.002Z] outbound "TCP db:5432" - - 1520/88 3002.1ms outbound|5432||db.default.svc...

status (`-` for TCP), Envoy's response flag (`-` when none: UO overflow, UH no healthy upstream, UF connect
failure, UT timeout, DI delay, FI abort, RL rate limited, NR no route, ...), response body bytes relayed
from the upstream (0 for an answer the sidecar made itself; TCP: bytes to the client/from the client),
duration, cluster, and, only when there are some, Envoy's response code details (HTTP) or connection
termination details (TCP) as one last field, e.g. an AuthorizationPolicy denial (Envoy has no RBAC response
flag: the flag stays `-`, as in Istio's default access log):

    [...] inbound "GET app/admin" 403 - 0 0.2ms inbound|8080||app rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]]
    [...] inbound "TCP 127.0.0.1:5432" - - 0/0 0.1ms inbound|5432|| rbac_access_denied_matched_policy[none]

A JWT refusal has `jwt_authn_access_denied{Jwt_is_expired}` (whitespace made `_` as Envoy does).
An AUDIT match adds rbac_audit_matched_policy[...] there (comma-separated from a denial). Lines are buffered
and written at most every FLUSH_INTERVAL seconds, or when BUFFER_LINES pile up, so logging costs no syscall per request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.core.access import AccessRecord

FLUSH_INTERVAL = 0.5
BUFFER_LINES = 256


class AccessLog:
    def __init__(self, destination: str) -> None:
        """`destination`: "-" for stdout, else a file path (appended to)."""
        self.stream: IO[str] = sys.stdout if destination == "-" else open(destination, "a", encoding="utf-8")
        self.owned = destination != "-"
        self.lines: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        self.closed = False

    def for_listener(self, name: str) -> "ListenerLog":
        return ListenerLog(self, name)

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # the date part changes once a second: format it once
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def write(self, line: str) -> None:
        if self.closed:  # a connection cut at shutdown, logging after the log closed: dropped
            return
        self.lines.append(f"[{self._time()}] {line}\n")
        if len(self.lines) >= BUFFER_LINES:
            self.flush()
        elif self.timer is None:
            try:
                self.timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no loop (a test calling directly): write now
                self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lines:
            self.stream.write("".join(self.lines))
            self.lines.clear()
            self.stream.flush()

    def close(self) -> None:
        self.flush()
        self.closed = True
        if self.owned:
            self.stream.close()


class ListenerLog:
    """The access log as one listener writes to it: its name leads every line."""

    __slots__ = ("log", "name")

    def __init__(self, log: AccessLog, name: str) -> None:
        self.log, self.name = log, name

    def __call__(self, r: AccessRecord) -> None:
        """An HTTP request is over (the Listener's on_complete)."""
        self.log.write(f'{self.name} "{r.method} {r.host}{r.path}" {r.status} {r.flag} {r.bytes_sent} '
                       f"{r.duration_ms:.1f}ms {r.cluster}" + (f" {r.details}" if r.details else ""))

    def tcp(self, target: str, flag: str, sent: int, received: int, duration_ms: float, cluster: str,
            details: str = "") -> None:
        """An opaque TCP connection is over (proxy/tcp/relay.py)."""
        self.log.write(f'{self.name} "TCP {target}" - {flag} {sent}/{received} {duration_ms:.1f}ms {cluster}'
                       + (f" {details}" if details else ""))
