"""What a listener reports once per request to the access log and stats (proxy/access_log.py)."""

from __future__ import annotations


class AccessRecord:
    """What `on_complete` receives after each request; flag is Envoy's response flag ("-" if none), details
    Envoy's response code details when a stage set some (RequestHead.details) or the failure has some
    (jwt_authn_access_denied{...}), else ""."""

    __slots__ = ("method", "host", "path", "status", "flag", "cluster", "bytes_sent", "duration_ms", "details")

    def __init__(self, method: str, host: str, path: str, status: int, flag: str, cluster: str,
                 bytes_sent: int, duration_ms: float, details: str = "") -> None:
        self.method = method
        self.host = host
        self.path = path
        self.status = status
        self.flag = flag
        self.cluster = cluster
        self.bytes_sent = bytes_sent
        self.duration_ms = duration_ms
        self.details = details  # Envoy's response code details a stage gave ("" when none: not in the line)
