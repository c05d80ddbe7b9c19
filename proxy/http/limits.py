"""What one client connection may make a listener hold, and for how long (Envoy's defaults).

    Limits                  one listener's bounds, resolved once from settings (proxy/settings.py)
    max_head_bytes          request line + header lines, counted as they arrive     431 (Envoy: 60 KiB)
    max_headers             header lines in one request                             431 (Envoy: 100)
    max_url_bytes           the request target                                      414 (Envoy: in the 60 KiB)
    max_pipelined           parsed requests waiting behind the one in flight        close after answering them
    request_headers_timeout first byte of a head to its end                         408 (Envoy: off; ours 10 s)
    request_timeout         first byte of a request to its last body byte           408 (Envoy: off; ours 300 s)
    stream_idle_timeout     no byte either way while a request is open              408, or close (Envoy: 5 min)
    max_connections         open connections on this listener; more are closed at once (Envoy: none; ours 10,000)
    max_response_head_bytes an upstream's response line + headers                   502 UPE (Envoy: 60 KiB)
    max_pending_head_bytes  incomplete request heads held by all connections        503 OM and close (ours: 32 MiB)

Envoy's names: HttpConnectionManager max_request_headers_kb, HttpProtocolOptions max_headers_count,
request_headers_timeout, request_timeout, stream_idle_timeout; the listener connection limit (the
overload manager's global_downstream_max_connections). docs/decisions.md "Request limits" says where we
differ and why. 0 turns a timeout or the connection limit off.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int = 60 * KIB
    max_headers: int = 100
    max_url_bytes: int = 60 * KIB
    max_pipelined: int = 16
    request_headers_timeout: float = 10.0  # seconds; 0: off
    request_timeout: float = 300.0  # seconds; 0: off
    stream_idle_timeout: float = 300.0  # seconds; 0: off
    max_connections: int = 10_000  # 0: unlimited
    max_response_head_bytes: int = 60 * KIB
    max_response_headers: int = 100
    max_pending_head_bytes: int = 32 * KIB * KIB  # incomplete heads held per listener (head_budget.py); 0: off

    def __post_init__(self) -> None:
        for name in ("max_head_bytes", "max_headers", "max_url_bytes", "max_pipelined",
                     "max_response_head_bytes", "max_response_headers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("request_headers_timeout", "request_timeout", "stream_idle_timeout", "max_connections",
                     "max_pending_head_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


DEFAULT = Limits()
