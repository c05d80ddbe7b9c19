"""Settings resolved once from flags and environment variables (flags win, then env, then defaults).

| env var                  | default                  | meaning                                       |
| ------------------------ | ------------------------ | --------------------------------------------- |
| ISTHMUS_NATS_URL         | nats://127.0.0.1:4222    | the bus; a cluster's nodes comma-separated    |
| ISTHMUS_ETCD_URL         | http://127.0.0.1:2379    | etcd (control-plane services only); a cluster's members comma-separated |
| ISTHMUS_DOMAIN_SUFFIX    | svc.cluster.local        | `reviews` -> reviews.<ns>.<suffix>            |
| ISTHMUS_LEASE_TTL        | 5                        | seconds a registration lives without heartbeat|
| ISTHMUS_LOG_LEVEL        | info                     | debug, info, warning, error                   |
| ISTHMUS_INSTANCE         | <hostname>-<pid>         | this process's name on the bus                |
| ISTHMUS_OUTBOUND_TRAFFIC_POLICY | ALLOW_ANY         | pilot: meshConfig.outboundTrafficPolicy.mode  |
| ISTHMUS_TRACE_SAMPLING   | 1.0                      | pilot: the mesh's default trace sampling, percent (Istio's PILOT_TRACE_SAMPLING) |
| ISTHMUS_TRUST_DOMAIN     | cluster.local            | SPIFFE trust domain (meshConfig.trustDomain)  |
| ISTHMUS_ROOT_NAMESPACE   | istio-system             | mesh-wide policies live here (meshConfig.rootNamespace) |
| ISTHMUS_STATE_DIR        | .isthmus                 | a service's files (the ca's keys: <dir>/ca/); `isthmus up` passes its --state-dir |

The ca's own settings (certificate lifetimes, plug-in CA files, token bound) are in services/ca/config.py.

Pilot's bounds on one config submission (ConfigLimits; docs/decisions.md says where each default comes
from): ISTHMUS_CONFIG_MAX_BYTES (3 MiB), ISTHMUS_CONFIG_MAX_DOCUMENTS (1000), ISTHMUS_CONFIG_MAX_DEPTH
(100), ISTHMUS_CONFIG_MAX_ITEMS (10000 per list or mapping), ISTHMUS_CONFIG_MAX_NODES (1000000 after
alias expansion), ISTHMUS_CONFIG_DECODE_TIMEOUT (30 s), ISTHMUS_CONFIG_DECODE_MEMORY_MB (1024).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_ETCD_URL = "http://127.0.0.1:2379"


@dataclass(frozen=True)
class ConfigLimits:
    """What one submission to the config API may cost pilot; each limit is refused by name.

    max_bytes: the submission's size (the Kubernetes API server caps request bodies at 3 MiB).
    max_documents: documents in one submission, counting a List's items.
    max_depth: nesting of mappings and lists (protobuf's default recursion limit, 100).
    max_items: entries in one list or mapping (Istio has no hard cap; ten thousand header matches
        in one route is already far past any real config).
    max_nodes: scalars, lists and mappings in the whole submission after alias expansion.
    Aliases are also refused when they make up too much of the expansion (go-yaml's
    allowedAliasRatio: 99% for small documents down to 10% for huge ones).
    decode_timeout (seconds; a request's own deadline, when sooner, bounds it too) and
    decode_memory_mb bound the worker process that decodes.
    """

    max_bytes: int = 3 * 1024 * 1024
    max_documents: int = 1000
    max_depth: int = 100
    max_items: int = 10_000
    max_nodes: int = 1_000_000
    decode_timeout: float = 30.0
    decode_memory_mb: int = 1024

    @classmethod
    def from_env(cls) -> "ConfigLimits":
        """ValueError naming the variable for a value that is not a positive finite number."""
        env, base = os.environ, cls()
        for name in vars(base):
            text = env.get(f"ISTHMUS_CONFIG_{name.upper()}")
            if text is not None:
                try:
                    type(getattr(base, name))(text)
                except ValueError:
                    raise ValueError(f"ISTHMUS_CONFIG_{name.upper()} is {text[:40]!r}: give a positive finite "
                                     "number") from None
        limits = cls._read(env, base)
        for name, value in vars(limits).items():
            if not (value > 0 and value != float("inf")):  # also refuses NaN
                raise ValueError(f"ISTHMUS_CONFIG_{name.upper()} is {value!r}: give a positive finite number")
        return limits

    @classmethod
    def _read(cls, env: Any, base: "ConfigLimits") -> "ConfigLimits":
        return cls(
            max_bytes=int(env.get("ISTHMUS_CONFIG_MAX_BYTES", base.max_bytes)),
            max_documents=int(env.get("ISTHMUS_CONFIG_MAX_DOCUMENTS", base.max_documents)),
            max_depth=int(env.get("ISTHMUS_CONFIG_MAX_DEPTH", base.max_depth)),
            max_items=int(env.get("ISTHMUS_CONFIG_MAX_ITEMS", base.max_items)),
            max_nodes=int(env.get("ISTHMUS_CONFIG_MAX_NODES", base.max_nodes)),
            decode_timeout=float(env.get("ISTHMUS_CONFIG_DECODE_TIMEOUT", base.decode_timeout)),
            decode_memory_mb=int(env.get("ISTHMUS_CONFIG_DECODE_MEMORY_MB", base.decode_memory_mb)),
        )


def _percent(text: str, name: str) -> float:
    """A percentage 0..100 read from a setting; ValueError naming the setting otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} is {text!r}: a percentage 0..100 is needed") from None
    if not 0.0 <= value <= 100.0:  # also refuses nan
        raise ValueError(f"{name} is {text!r}: a percentage 0..100 is needed")
    return value


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
    # pilot: the percentage of requests without a sampling decision that sidecars sample when no Telemetry
    # resource says (MeshConfig.trace_sampling; Istio's PILOT_TRACE_SAMPLING, 1), pushed to all
    trace_sampling: float = 1.0
    config_limits: ConfigLimits = field(default_factory=ConfigLimits)
    # identities are spiffe://<trust_domain>/ns/<ns>/sa/<sa>; policies in root_namespace apply mesh-wide (Istio's
    # meshConfig.trustDomain and meshConfig.rootNamespace)
    trust_domain: str = "cluster.local"
    root_namespace: str = "istio-system"
    state_dir: str = ".isthmus"

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
            config_limits=ConfigLimits.from_env(),
            trace_sampling=_percent(env.get("ISTHMUS_TRACE_SAMPLING", "1.0"), "ISTHMUS_TRACE_SAMPLING"),
            trust_domain=env.get("ISTHMUS_TRUST_DOMAIN", "cluster.local"),
            root_namespace=env.get("ISTHMUS_ROOT_NAMESPACE", "istio-system"),
            state_dir=env.get("ISTHMUS_STATE_DIR") or ".isthmus",
        )
        given = {k: v for k, v in flags.items() if v is not None}
        settings = replace(base, **given)
        if settings.outbound_traffic_policy not in ("ALLOW_ANY", "REGISTRY_ONLY"):
            raise ValueError(f"ISTHMUS_OUTBOUND_TRAFFIC_POLICY is {settings.outbound_traffic_policy!r}: "
                             "use ALLOW_ANY or REGISTRY_ONLY")
        _percent(str(settings.trace_sampling), "trace_sampling")
        etcd_endpoints(settings.etcd_url)  # a bad etcd URL is a usage error now, not a traceback at connect
        return settings

    @property
    def etcd_host_port(self) -> tuple[str, int]:
        """The first etcd member's host and port."""
        return self.etcd_endpoints[0]

    @property
    def etcd_endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of every etcd member named in etcd_url (comma-separated: an etcd cluster)."""
        return etcd_endpoints(self.etcd_url)


def etcd_endpoints(url: str) -> list[tuple[str, int]]:
    """(host, port) of each comma-separated etcd URL (`http://` may be left out; port default 2379).
    ValueError for a URL without a host or with a bad port."""
    endpoints = []
    for part in [p.strip() for p in url.split(",") if p.strip()] or [DEFAULT_ETCD_URL]:
        parsed = urlparse(part if "://" in part else f"http://{part}")
        try:
            port = parsed.port or 2379
        except ValueError as exc:
            raise ValueError(f"etcd URL {part[:200]!r}: {exc}") from None
        if not parsed.hostname:
            raise ValueError(f"etcd URL {part[:200]!r} names no host")
        endpoints.append((parsed.hostname, port))
    return endpoints
