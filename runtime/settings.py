"""Settings resolved once from flags and environment variables (flags win, then env, then defaults).

| env var                  | default                  | meaning                                       |
| ------------------------ | ------------------------ | --------------------------------------------- |
| ISTHMUS_NATS_URL         | nats://127.0.0.1:4222    | the bus                                       |
| ISTHMUS_ETCD_URL         | http://127.0.0.1:2379    | etcd (control-plane services only)            |
| ISTHMUS_DOMAIN_SUFFIX    | svc.cluster.local        | `reviews` -> reviews.<ns>.<suffix>            |
| ISTHMUS_LEASE_TTL        | 5                        | seconds a registration lives without heartbeat|
| ISTHMUS_LOG_LEVEL        | info                     | debug, info, warning, error                   |
| ISTHMUS_INSTANCE         | <hostname>-<pid>         | this process's name on the bus                |
| ISTHMUS_OUTBOUND_TRAFFIC_POLICY | ALLOW_ANY         | pilot: meshConfig.outboundTrafficPolicy.mode  |
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_ETCD_URL = "http://127.0.0.1:2379"


def _instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    nats_url: str = DEFAULT_NATS_URL
    etcd_url: str = DEFAULT_ETCD_URL
    domain_suffix: str = "svc.cluster.local"
    lease_ttl: int = 5
    log_level: str = "info"
    instance: str = field(default_factory=_instance_name)
    # pilot: what sidecars do with hosts the registry does not know (ALLOW_ANY or REGISTRY_ONLY), pushed to all
    outbound_traffic_policy: str = "ALLOW_ANY"

    @classmethod
    def load(cls, **flags: Any) -> "Settings":
        """Defaults, overridden by ISTHMUS_* env vars, overridden by flags that are not None."""
        env = os.environ
        base = cls(
            nats_url=env.get("ISTHMUS_NATS_URL", DEFAULT_NATS_URL),
            etcd_url=env.get("ISTHMUS_ETCD_URL", DEFAULT_ETCD_URL),
            domain_suffix=env.get("ISTHMUS_DOMAIN_SUFFIX", "svc.cluster.local"),
            lease_ttl=int(env.get("ISTHMUS_LEASE_TTL", "5")),
            log_level=env.get("ISTHMUS_LOG_LEVEL", "info"),
            instance=env.get("ISTHMUS_INSTANCE") or _instance_name(),
            outbound_traffic_policy=env.get("ISTHMUS_OUTBOUND_TRAFFIC_POLICY", "ALLOW_ANY").strip().upper(),
        )
        given = {k: v for k, v in flags.items() if v is not None}
        settings = replace(base, **given)
        if settings.outbound_traffic_policy not in ("ALLOW_ANY", "REGISTRY_ONLY"):
            raise ValueError(f"ISTHMUS_OUTBOUND_TRAFFIC_POLICY is {settings.outbound_traffic_policy!r}: "
                             "use ALLOW_ANY or REGISTRY_ONLY")
        return settings

    @property
    def etcd_host_port(self) -> tuple[str, int]:
        parsed = urlparse(self.etcd_url if "://" in self.etcd_url else f"http://{self.etcd_url}")
        return parsed.hostname or "127.0.0.1", parsed.port or 2379
