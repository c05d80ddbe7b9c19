"""The sidecar's access log: one line per HTTP request and per opaque TCP connection, in Envoy's and Istio's terms.

Off unless asked for (`proxy run --access-log -|PATH`, env ISTHMUS_ACCESS_LOG), as Istio's
meshConfig.accessLogFile, or turned on per workload by a Telemetry resource's `accessLogging` (provider `envoy`:
proxy/telemetry/access_logging.py): a line nobody reads is per-request work the hot path should not do.
Text (`--access-log-format text`, the default) follows Istio's default format (pilot/pkg/model/telemetry_logging.go
EnvoyTextLogFormat, itself Envoy's default with response code details and more) field by field, with the
listener's name after the time and, at the end, the trace id and the peer principals:

    [START_TIME] LISTENER "METHOD PATH PROTOCOL" RESPONSE_CODE RESPONSE_FLAGS RESPONSE_CODE_DETAILS
    CONNECTION_TERMINATION_DETAILS BYTES_RECEIVED BYTES_SENT DURATION UPSTREAM_SERVICE_TIME "X-FORWARDED-FOR"
    "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST" UPSTREAM_CLUSTER DOWNSTREAM_REMOTE_ADDRESS TRACE_ID
    DOWNSTREAM_PEER_PRINCIPAL UPSTREAM_PEER_PRINCIPAL

    [2026-11-27T07:55:14.123Z] outbound "GET /r HTTP/1.1" 200 - via_upstream - 0 13 4 3 "-" "curl/8.5.0"
      "6d0f...-..." "reviews:9080" "10.0.0.7:15006" outbound|9080|v1|reviews.default.svc.cluster.local 127.0.0.1
      4bf92f3577b34da6a3ce929d0e0e4736 - spiffe://cluster.local/ns/default/sa/reviews
    [...] inbound "- - -" 0 - - rbac_access_denied_matched_policy[none] 0 0 0 - "-" "-" "-" "127.0.0.1:5432" "-" ...

(one line each; wrapped here). START_TIME is when the request began (UTC, ms); DURATION and
UPSTREAM_SERVICE_TIME are whole milliseconds (`-` when no upstream answered); BYTES_* are body bytes (TCP:
bytes from / to the client); RESPONSE_FLAGS are Envoy's (`-` when none: UO overflow, UH no healthy upstream, UF
connect failure, UT timeout, DI delay, FI abort, RL rate limited, NR no route, ...); RESPONSE_CODE_DETAILS is
`via_upstream` for a response the upstream gave, the stage's details for one the sidecar made (an
AuthorizationPolicy denial `rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]]`, a JWT
refusal `jwt_authn_access_denied{Jwt_is_expired}`, an AUDIT match `rbac_audit_matched_policy[...]`), else `-`; a
TCP connection has `"- - -"`, code 0, what it reached as AUTHORITY and its details as
CONNECTION_TERMINATION_DETAILS; a CONNECT tunnel has its authority as PATH. Absent values are `-`.
JSON (`--access-log-format json`, env ISTHMUS_ACCESS_LOG_FORMAT) writes one object per line with Istio's JSON keys
(proto.observations.AccessLogEntry, every key present, null when absent).
Lines are buffered and written at most every FLUSH_INTERVAL seconds, or when BUFFER_LINES pile up, so logging
costs no syscall per request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO

import msgspec

from proxy.core.access import AccessRecord, Stamp, downstream_principal, entry_of, remote_address, \
    request_headers, trace_id

FLUSH_INTERVAL = 0.5
BUFFER_LINES = 256
FORMATS = ("text", "json")
_json = msgspec.json.Encoder()


def _q(value: str | None) -> str:
    return value if value else "-"


def text_line(listener: str, r: AccessRecord, start: str) -> str:
    """One line of the text format (module docstring), without its newline."""
    tcp = r.protocol == "TCP"
    xff, ua, rid, authority = request_headers(r)
    if tcp:
        request, code, details, termination = "- - -", 0, "-", r.details or "-"
    else:
        path = r.host if r.method == "CONNECT" else r.path
        request, code, termination = f"{r.method} {path} {r.protocol}", r.status, "-"
        details = r.details or ("via_upstream" if r.upstream_ms >= 0 else "-")
    service = int(r.upstream_ms) if r.upstream_ms >= 0 else "-"
    return (f'[{start}] {listener} "{request}" {code} {r.flag} {details} {termination} {r.bytes_received} '
            f'{r.bytes_sent} {int(r.duration_ms)} {service} "{_q(xff)}" "{_q(ua)}" "{_q(rid)}" "{_q(authority)}" '
            f'"{_q(r.upstream_host)}" {r.cluster} {_q(remote_address(r))} {_q(trace_id(r))} '
            f'{_q(downstream_principal(r))} {_q(r.upstream_peer)}')


def json_line(listener: str, r: AccessRecord, start: str) -> str:
    return _json.encode(msgspec.structs.asdict(entry_of(listener, r, start))).decode()


class AccessLog:
    def __init__(self, destination: str, fmt: str = "text") -> None:
        """`destination`: "-" for stdout, else a file path (appended to); `fmt`: "text" or "json" (ValueError)."""
        if fmt not in FORMATS:
            raise ValueError(f"access log format {fmt!r} is not one of {', '.join(FORMATS)}")
        self.stream: IO[str] = sys.stdout if destination == "-" else open(destination, "a", encoding="utf-8")
        self.owned = destination != "-"
        self.format = text_line if fmt == "text" else json_line
        self.lines: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.stamp = Stamp()
        self.closed = False

    def for_listener(self, name: str) -> "ListenerLog":
        return ListenerLog(self, name)

    def record(self, listener: str, r: AccessRecord) -> None:
        """A request or connection is over: its line, timed from its start."""
        if self.closed:
            return
        self._add(self.format(listener, r, self.stamp(time.time() - r.duration_ms / 1000.0)) + "\n")

    def write(self, line: str) -> None:
        """A line of free text, stamped now."""
        if self.closed:
            return
        self._add(f"[{self.stamp(time.time())}] {line}\n")

    def _add(self, line: str) -> None:
        self.lines.append(line)
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
    """The access log as one listener writes to it: its name leads every line. Called with each AccessRecord
    (the Listener's on_complete, the TCP listener's access_log)."""

    __slots__ = ("log", "name")

    def __init__(self, log: AccessLog, name: str) -> None:
        self.log, self.name = log, name

    def __call__(self, r: AccessRecord) -> None:
        self.log.record(self.name, r)
