"""Who may use which subject on the bus, and the messages that issue and revoke a proxy's bus credentials.

Every allow-list is written here once: `isthmus up` turns the static roles into nats-server's config
(`users` with `permissions`), and the auth service (services/auth) puts the proxy's into the user JWT
it returns to nats-server's auth callout. A subject not listed for a role is refused by nats-server
(the client sees "Permissions Violation"). docs/security.md ("The bus") explains the choice.

Each role receives replies only on its own inbox prefix (nats-py's `inbox_prefix`), so no client can
read replies meant for another: `_INBOX.<role>` for a static role, `_INBOX.proxy.<credential id>` for
a proxy. Services answer requests through `allow_responses` (a reply subject they were sent), never
through a blanket publish right on `_INBOX.>`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto import subjects as s
from proto.base import Message

INBOX = "_INBOX"


def inbox_prefix(role: str) -> str:
    """The inbox prefix a static role's connections use (`_INBOX.<role>`)."""
    return f"{INBOX}.{role}"


def proxy_inbox_prefix(cred_id: str) -> str:
    """The inbox prefix of one proxy credential: only that proxy may subscribe below it."""
    return f"{INBOX}.proxy.{cred_id}"


class Permissions(msgspec.Struct, frozen=True):
    """What one role may publish and subscribe to; `responses`: may answer requests sent to it."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responses: bool = False


_HEALTH_ALL = f"{s.HEALTH}.*"

# The operator: `isthmus` CLI commands, `isthmus up`'s health checks, scripts holding isthmus.yaml.
OPERATOR = Permissions(
    publish=(s.CONFIG_APPLY, s.CONFIG_DELETE, s.CONFIG_GET, s.CONFIG_VALIDATE, s.XDS_STATUS, s.REGISTRY_LIST,
             s.CA_TOKEN_CREATE, s.CA_TOKEN_LIST, s.CA_TOKEN_REVOKE, s.CA_ROTATE, s.CA_BUNDLE,
             s.CA_SECRET_PUT, s.CA_SECRET_LIST, s.CA_SECRET_DELETE,
             s.BUS_CREDS_ISSUE, s.BUS_CREDS_REVOKE, s.BUS_CREDS_LIST, _HEALTH_ALL,
             # troubleshooting: one proxy's config dump and log level, every service's log level (proto/debug.py)
             f"{s.PROXY_DEBUG}.*", f"{s.ADMIN_LOG}.*"),
    subscribe=(f"{inbox_prefix('operator')}.>", s.CONFIG_EVENTS, s.REGISTRY_EVENTS, s.CA_BUNDLE_UPDATES),
)


def _service(name: str, serves: tuple[str, ...], publishes: tuple[str, ...] = (),
             listens: tuple[str, ...] = ()) -> Permissions:
    """A control-plane service: answers `serves` (and its health subject), publishes `publishes` and its own
    metrics (ServiceMetrics on its own subject only), receives `listens`; its own inbox for any request it makes."""
    publishes = tuple(dict.fromkeys((*publishes, s.service_metrics_subject(name))))
    return Permissions(publish=publishes,
                       subscribe=(*serves, *listens, s.health_subject(name), s.admin_log_subject(name),
                                  f"{inbox_prefix(name)}.>"),
                       responses=True)


SERVICES: dict[str, Permissions] = {
    # registration: proxies register, heartbeat and deregister (each on its identity-scoped subject, and
    # the plain ones for buses without lockdown); endpoint events out
    "registry": _service("registry", (s.REGISTRY_REGISTER, s.REGISTRY_HEARTBEAT, s.REGISTRY_DEREGISTER, s.REGISTRY_LIST,
                                      f"{s.REGISTRY_REGISTER}.*.>", f"{s.REGISTRY_HEARTBEAT}.*.>",
                                      f"{s.REGISTRY_DEREGISTER}.*.>"),
                         # its own health subject too: the lease hold's probe of the bus (runtime/lease_hold.py)
                         publishes=(s.REGISTRY_EVENTS, s.health_subject("registry"))),
    # config API (operator), snapshots (proxies), ACKs (proxies), proxy status (operator); pushes out
    "pilot": _service("pilot", (s.CONFIG_APPLY, s.CONFIG_DELETE, s.CONFIG_GET, s.CONFIG_VALIDATE, s.XDS_SNAPSHOT,
                                s.XDS_STATUS, s.XDS_ACK),
                      # the registry's health: pilot holds leases while no registry answers (runtime/lease_hold.py)
                      publishes=(s.XDS_PUSH, s.CONFIG_EVENTS, s.health_subject("registry"))),
    # signing (proxies), bundle (anyone with a role), tokens and rotation (operator), the secret store (operator
    # writes and lists; a proxy fetches its own namespace's on its identity subject); bundle and secret events out
    "ca": _service("ca", (s.CA_SIGN, s.CA_BUNDLE, s.CA_TOKEN_CREATE, s.CA_TOKEN_LIST, s.CA_TOKEN_REVOKE,
                          s.CA_ROTATE, s.CA_SECRET_PUT, s.CA_SECRET_LIST, s.CA_SECRET_DELETE,
                          f"{s.CA_SECRET_FETCH}.*.>"),
                   publishes=(s.CA_BUNDLE_UPDATES, f"{s.CA_SECRET_EVENTS}.*")),
    # telemetry serves HTTP (the dashboard, /metrics, Zipkin's API); on the bus it receives every proxy's
    # metrics, spans and access logs and every service's metrics, and asks pilot for the proxies' sync status
    "telemetry": _service("telemetry", (), publishes=(s.XDS_STATUS, s.service_metrics_subject("telemetry")),
                          listens=(f"{s.TELEMETRY_METRICS}.>", f"{s.TELEMETRY_SPANS}.>", f"{s.TELEMETRY_LOGS}.>",
                                   f"{s.TELEMETRY_SERVICE_METRICS}.*")),
    # the auth service: nats-server's callout, bus credentials for proxies (operator, joining proxies)
    "auth": _service("auth", (s.AUTH_CALLOUT, s.BUS_CREDS_ISSUE, s.BUS_CREDS_REVOKE, s.BUS_CREDS_LIST, s.BUS_JOIN)),
}

# The auth service's second connection, as a user of nats-server's system account (isthmus/launch/
# credentials.py: SYSTEM_USER): it may find a user's connections (CONNZ) and close them (KICK), so a
# revoked proxy is cut at once; nothing else of the system account (no reload, no account or JetStream
# admin, no server events). Held by the auth service only (secrets/auth-system.yaml).
SYSTEM_USER = "auth-system"
AUTH_SYSTEM = Permissions(publish=(s.SYS_CONNZ_PING, s.SYS_KICK_ANY),
                          subscribe=(f"{inbox_prefix(SYSTEM_USER)}.>",))


def proxy_permissions(cred_id: str, namespace: str, service_account: str) -> Permissions:
    """A sidecar: register/heartbeat/deregister workloads of its own namespace and service account
    (the identity-scoped registry subjects), ask for snapshots, ACK, ask the ca to sign and for the
    bundle, publish its telemetry and fetch its namespace's TLS secrets (identity-scoped); receive pushes, bundle
    updates and its namespace's secret events, and replies on its own inbox only. It may not publish
    pushes, use the config API, answer on any service's subject, or read another proxy's replies."""
    own = (namespace, service_account)
    return Permissions(
        publish=(s.identity_subject(s.REGISTRY_REGISTER, *own), s.identity_subject(s.REGISTRY_HEARTBEAT, *own),
                 s.identity_subject(s.REGISTRY_DEREGISTER, *own), s.XDS_SNAPSHOT, s.XDS_ACK, s.CA_SIGN, s.CA_BUNDLE,
                 # its metrics, spans and access logs, under its own identity only (the telemetry service
                 # takes the namespace of the subject, not of the payload, as the source namespace)
                 s.identity_subject(s.TELEMETRY_METRICS, *own), s.identity_subject(s.TELEMETRY_SPANS, *own),
                 s.identity_subject(s.TELEMETRY_LOGS, *own),
                 # a gateway's TLS secrets (credentialName): the ca serves only this identity's namespace's
                 s.identity_subject(s.CA_SECRET_FETCH, *own)),
        subscribe=(s.XDS_PUSH, s.CA_BUNDLE_UPDATES, s.secret_events_subject(namespace),
                   f"{proxy_inbox_prefix(cred_id)}.>", s.proxy_debug_subject(cred_id)),
        responses=True,
    )


def join_inbox_prefix(token_digest: str) -> str:
    """The inbox of a connection that holds only a bootstrap token (`token_digest`: the first 32 hex
    digits of the token's SHA-256, which the proxy and the auth service both compute)."""
    return f"{INBOX}.join.{token_digest}"


def join_permissions(token_digest: str) -> Permissions:
    """A proxy holding only a bootstrap token: it may ask for its bus credentials, nothing else."""
    return Permissions(publish=(s.BUS_JOIN,), subscribe=(f"{join_inbox_prefix(token_digest)}.>",))


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
CredId = Annotated[str, msgspec.Meta(max_length=128)]


class BusCredsRequest(Message):
    """`isthmus.bus.creds.issue` (operator) -> BusCredsReply: credentials for one proxy, bound to
    a namespace and service account. `ttl_seconds` 0: valid until revoked."""

    namespace: Name
    service_account: Name
    ttl_seconds: int = 0


class BusJoinRequest(Message):
    """`isthmus.bus.join` (a connection authenticated by a bootstrap token) -> BusCredsReply for the
    token's namespace and service account. The token itself is not spent: the ca spends it on CA_SIGN."""

    token: Annotated[str, msgspec.Meta(max_length=256)]


class BusCredsReply(Message):
    """A proxy's bus credentials (shown once: the auth service keeps only the password's hash)."""

    ok: bool
    user: str = ""  # "proxy.<id>"
    password: str = ""
    inbox_prefix: str = ""  # the only inbox this user may read; pass it to nats-py's connect()
    namespace: str = ""
    service_account: str = ""
    expires: float = 0.0  # Unix seconds; 0: until revoked
    error: str = ""


class BusCredsRevokeRequest(Message):
    """`isthmus.bus.creds.revoke` (operator) -> BusCredsRevokeReply. `user`: `proxy.<id>` or the bare
    `<id>`. The user's next connection is refused, and every connection it has open is closed at once
    by nats-server (a kick through the system account); if that fails, one already open still ends
    within the session bound (services/auth: SESSION_SECONDS). Revoking a revoked credential kicks again."""

    user: CredId


class BusCredsRevokeReply(Message):
    ok: bool
    error: str = ""
    user: str = ""  # "proxy.<id>": what was revoked
    disconnected: int = 0  # connections nats-server closed now
    kick_error: str = ""  # why open connections could not be closed now (they end within SESSION_SECONDS)
    session_seconds: int = 0  # the bound that then applies
    already_revoked_at: float = 0.0  # Unix seconds: it was revoked before this request (then only kicked again)


class BusCredsListRequest(Message):
    """`isthmus.bus.creds.list` (operator) -> BusCredsListReply: the credentials in etcd, oldest first,
    at most `limit` (the reply says how many exist); `namespace` "": all."""

    namespace: Annotated[str, msgspec.Meta(max_length=253)] = ""
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    token_id: Annotated[str, msgspec.Meta(max_length=16)] = ""  # only the credentials this token's joins made


class BusCredsInfo(Message):
    """One credential as the operator sees it: never the secret or its hash."""

    user: str  # "proxy.<id>"
    namespace: str
    service_account: str
    created: float  # Unix seconds
    issued_by: str = ""  # "join" (a bootstrap token), "operator" (isthmus.bus.creds.issue), "" (unknown: older)
    expires: float = 0.0  # 0: until revoked
    last_seen: float = 0.0  # the last connection the callout let in (refreshed at most every LAST_SEEN_EVERY s)
    revoked: bool = False
    revoked_at: float = 0.0
    token_id: str = ""  # the bootstrap token a join paid with ("" when the operator issued it)


class BusCredsListReply(Message):
    ok: bool
    credentials: list[BusCredsInfo] = msgspec.field(default_factory=list)
    total: int = 0  # how many match (credentials holds at most the request's limit)
    error: str = ""


class BusCredsRecord(Message):
    """A proxy's bus credential as etcd holds it (/isthmus/bus/creds/<id>): the secret only as its SHA-256."""

    id: str
    namespace: str
    service_account: str
    secret_sha256: str
    created: float
    expires: float = 0.0
    revoked: bool = False
    token_id: str = ""  # the bootstrap token a join paid with ("": issued by the operator); bounds joins per token
    issued_by: str = ""  # "join" | "operator"; "" in records written before this field
    last_seen: float = 0.0  # Unix seconds of the last connection the callout let in (0: never)
    revoked_at: float = 0.0  # Unix seconds; the sweep deletes the record SESSION_SECONDS later
