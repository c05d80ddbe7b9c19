"""What a listener reports once per request (or opaque TCP connection) to the access log and stats
(proxy/access_log.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from proto.observations import AccessLogEntry
from proxy.core.downstream import Downstream
from proxy.core.request import RequestHead


class AccessRecord:
    """What `on_complete` receives after each request; flag is Envoy's response flag ("-" if none), details
    Envoy's response code details when a stage set some (RequestHead.details) or the failure has some
    (jwt_authn_access_denied{...}), else "" (for TCP: the connection termination details).

    Envoy's default fields beyond those (proxy/access_log.py formats them): `protocol` HTTP/1.1, HTTP/1.0 or TCP;
    `bytes_received` request body bytes (TCP: bytes from the client); `upstream_ms` ms from the request's start to
    the upstream's response head (Envoy's x-envoy-upstream-service-time; -1: no upstream answered);
    `upstream_host` address:port of the endpoint; `upstream_peer` the SPIFFE ID the upstream proved over
    mutual TLS (""), both read from `target` (the chosen proxy.core.target.Target) only when asked, else as
    given; `head` the request (headers, trace, caller), read only when a line or filter needs them;
    `downstream` the caller of a TCP connection (HTTP: head.downstream)."""

    __slots__ = ("method", "host", "path", "status", "flag", "cluster", "bytes_sent", "duration_ms", "details",
                 "protocol", "bytes_received", "upstream_ms", "_upstream_host", "_upstream_peer", "target", "head",
                 "downstream")

    def __init__(self, method: str, host: str, path: str, status: int, flag: str, cluster: str,
                 bytes_sent: int, duration_ms: float, details: str = "", *, protocol: str = "HTTP/1.1",
                 bytes_received: int = 0, upstream_ms: float = -1.0, upstream_host: str = "",
                 upstream_peer: str = "", head: RequestHead | None = None,
                 downstream: Downstream | None = None, target: object = None) -> None:
        self.method = method
        self.host = host
        self.path = path
        self.status = status
        self.flag = flag
        self.cluster = cluster
        self.bytes_sent = bytes_sent
        self.duration_ms = duration_ms
        self.details = details  # Envoy's response code details a stage gave ("" when none: not in the line)
        self.protocol = protocol
        self.bytes_received = bytes_received
        self.upstream_ms = upstream_ms
        self._upstream_host = upstream_host
        self._upstream_peer = upstream_peer
        self.target = target
        self.head = head
        self.downstream = downstream if downstream is not None or head is None else head.downstream


    @property
    def upstream_host(self) -> str:
        return upstream_of(self.target)[0] if self.target is not None else self._upstream_host

    @property
    def upstream_peer(self) -> str:
        """The upstream's proved SPIFFE ID: only once it answered (a failed connect proved nothing)."""
        if self.target is None:
            return self._upstream_peer
        return upstream_of(self.target)[1] if self.upstream_ms >= 0 else ""


OnComplete = Callable[[AccessRecord], None]  # a listener's on_complete: the access log, telemetry


def upstream_of(target: object) -> tuple[str, str]:
    """(upstream_host, upstream_peer) of a proxy.core.target.Target: "address:port" and the SPIFFE ID its
    mutual TLS origination required (and the handshake checked), "" without one."""
    address = getattr(target, "address", None)
    if address is None:
        return "", ""
    port = getattr(target, "port", 0)
    host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    peer = getattr(getattr(target, "tls", None), "expected_id", "") or ""
    if peer and not peer.startswith("spiffe://"):
        peer = "spiffe://" + peer
    return host, peer


# --- Envoy's fields of a record, shared by the access log's formats and the shipped entries -----------------
_XFF, _UA, _RID, _HOST = b"x-forwarded-for", b"user-agent", b"x-request-id", b"host"


class Stamp:
    """Envoy's %START_TIME% (2026-11-27T07:55:14.123Z), its date part formatted once a second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second, self.text = -1, ""

    def __call__(self, now: float) -> str:
        second = int(now)
        if second != self.second:
            self.second = second
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.text}.{int((now - second) * 1000):03d}Z"


def request_headers(r: AccessRecord) -> tuple[str | None, str | None, str | None, str | None]:
    """(x-forwarded-for, user-agent, x-request-id, authority) of the record's request, in one pass over its
    headers; None where absent. The authority is the Host header as sent, else the request's host."""
    head = r.head
    if head is None:
        return None, None, None, r.host if r.method == "CONNECT" or r.protocol == "TCP" else None
    xff = ua = rid = host = None
    for key, value in head.headers:
        if key == _XFF:
            xff = value.decode("latin-1")
        elif key == _UA:
            ua = value.decode("latin-1")
        elif key == _RID:
            rid = value.decode("latin-1")
        elif key == _HOST:
            host = value.decode("latin-1")
    return xff, ua, rid, host or r.host


def trace_id(r: AccessRecord) -> str | None:
    """The trace id the tracing stage gave the request (RequestHead.trace, read duck-typed), else None."""
    trace = r.head.trace if r.head is not None else None
    return getattr(trace, "trace_id", None) or None if trace is not None else None


def downstream_principal(r: AccessRecord) -> str | None:
    """spiffe://<principal> of the caller over mutual TLS (inbound), else None."""
    down = r.downstream
    principal = down.principal if down is not None else None
    return f"spiffe://{principal}" if principal else None


def remote_address(r: AccessRecord) -> str | None:
    down = r.downstream
    if down is not None and down.source_ip:
        return down.source_ip
    return (r.head.client or None) if r.head is not None else None


def local_address(r: AccessRecord) -> str | None:
    """The address the caller reached (inbound), address:port."""
    down = r.downstream
    if down is None or not down.destination_ip:
        return None
    return f"{down.destination_ip}:{down.destination_port}" if down.destination_port else down.destination_ip


def entry_of(listener: str, r: AccessRecord, start: str) -> AccessLogEntry:
    """The record as Istio's JSON access-log entry (also what the `isthmus` provider ships)."""
    tcp = r.protocol == "TCP"
    xff, ua, rid, authority = request_headers(r)
    upstream = r.upstream_ms >= 0
    return AccessLogEntry(
        start_time=start, listener=listener,
        method=None if tcp else r.method, path=None if tcp else (r.host if r.method == "CONNECT" else r.path),
        protocol=r.protocol, response_code=0 if tcp else r.status, response_flags=r.flag,
        response_code_details=None if tcp else (r.details or ("via_upstream" if upstream else None)),
        connection_termination_details=(r.details or None) if tcp else None,
        bytes_received=r.bytes_received, bytes_sent=r.bytes_sent, duration=int(r.duration_ms),
        upstream_service_time=int(r.upstream_ms) if upstream else None,
        x_forwarded_for=xff, user_agent=ua, request_id=rid, authority=authority,
        upstream_host=r.upstream_host or None, upstream_cluster=r.cluster if r.cluster != "-" else None,
        downstream_remote_address=remote_address(r), downstream_local_address=local_address(r),
        requested_server_name=(r.downstream.sni or None) if r.downstream is not None else None, trace_id=trace_id(r),
        downstream_peer_principal=downstream_principal(r), upstream_peer_principal=r.upstream_peer or None)
