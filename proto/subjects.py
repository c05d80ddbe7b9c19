"""Every NATS subject Isthmus uses, in one place. docs/bus.md describes the payloads."""

import re

PREFIX = "isthmus"

# config API (pilot), request/reply, queue group "pilot"
CONFIG_APPLY = f"{PREFIX}.config.apply"  # payload: YAML/JSON text -> ApplyReply
CONFIG_DELETE = f"{PREFIX}.config.delete"  # DeleteRequest -> ApplyReply
CONFIG_GET = f"{PREFIX}.config.get"  # GetRequest -> GetReply
# apply's payload and headers -> ApplyReply (dry_run true): what apply would answer, nothing stored (isthmus analyze).
# A subject of its own, not a flag on apply: a pilot that predates it has no responder here, where it would ignore
# a flag and store the config.
CONFIG_VALIDATE = f"{PREFIX}.config.validate"
CONFIG_EVENTS = f"{PREFIX}.config.events"  # ConfigEvent, published

# registry, request/reply, queue group "registry"
REGISTRY_REGISTER = f"{PREFIX}.registry.register"  # RegisterRequest -> RegisterReply
REGISTRY_HEARTBEAT = f"{PREFIX}.registry.heartbeat"  # Heartbeat -> HeartbeatReply
REGISTRY_DEREGISTER = f"{PREFIX}.registry.deregister"  # DeregisterRequest -> HeartbeatReply
REGISTRY_EVENTS = f"{PREFIX}.registry.events"  # EndpointEvent, published
REGISTRY_LIST = f"{PREFIX}.registry.list"  # WorkloadListRequest -> WorkloadListReply (operator: isthmus analyze)

# push (pilot leader -> proxies), and proxies -> pilot
XDS_PUSH = f"{PREFIX}.xds.push"  # Push (delta), published
XDS_SNAPSHOT = f"{PREFIX}.xds.snapshot"  # SnapshotRequest -> Push (full)
XDS_ACK = f"{PREFIX}.xds.ack"  # Ack, published
XDS_STATUS = f"{PREFIX}.xds.status"  # ProxyStatusRequest -> ProxyStatusReply (queue group "pilot"; operators)

# ca, request/reply, queue group "ca" (proto/ca.py)
CA_BUNDLE = f"{PREFIX}.ca.bundle"  # any payload -> TrustBundle
CA_BUNDLE_UPDATES = f"{PREFIX}.ca.bundle.updates"  # TrustBundle, published on every change
CA_SIGN = f"{PREFIX}.ca.sign"  # SignRequest -> SignReply (proxies)
CA_TOKEN_CREATE = f"{PREFIX}.ca.token.create"  # TokenCreateRequest -> TokenCreateReply (operator)
CA_TOKEN_LIST = f"{PREFIX}.ca.token.list"  # any payload -> TokenListReply (operator)
CA_TOKEN_REVOKE = f"{PREFIX}.ca.token.revoke"  # TokenRevokeRequest -> TokenRevokeReply (operator)
CA_ROTATE = f"{PREFIX}.ca.rotate"  # any payload -> RotateRootReply (operator)
# the ca's secret store for gateways' credentialName (proto/secrets.py)
CA_SECRET_PUT = f"{PREFIX}.ca.secret.put"  # TlsSecretPut -> SecretPutReply (operator)
CA_SECRET_LIST = f"{PREFIX}.ca.secret.list"  # SecretListRequest -> SecretListReply (operator)
CA_SECRET_DELETE = f"{PREFIX}.ca.secret.delete"  # SecretDeleteRequest -> SecretDeleteReply (operator)
# f"{CA_SECRET_FETCH}.<namespace>.<service account>" (identity_subject): SecretFetchRequest -> SecretFetchReply,
# a proxy on its own identity only; the ca serves secrets of that namespace only
CA_SECRET_FETCH = f"{PREFIX}.ca.secret.fetch"
# f"{CA_SECRET_EVENTS}.<namespace>": SecretEvent, published by the ca; proxies of that namespace subscribe
CA_SECRET_EVENTS = f"{PREFIX}.ca.secret.events"

# bus credentials (services/auth; proto/busauth.py), request/reply, queue group "auth"
BUS_CREDS_ISSUE = f"{PREFIX}.bus.creds.issue"  # BusCredsRequest -> BusCredsReply (operator)
BUS_CREDS_REVOKE = f"{PREFIX}.bus.creds.revoke"  # BusCredsRevokeRequest -> BusCredsRevokeReply (operator)
BUS_CREDS_LIST = f"{PREFIX}.bus.creds.list"  # BusCredsListRequest -> BusCredsListReply (operator)
BUS_JOIN = f"{PREFIX}.bus.join"  # BusJoinRequest -> BusCredsReply (a proxy holding a bootstrap token)
# nats-server asks the auth service who a connecting client is (NATS auth callout, nats-server >= 2.10)
AUTH_CALLOUT = "$SYS.REQ.USER.AUTH"
# nats-server's own system-account services, used by the auth service's system user only (proto/busauth.py
# AUTH_SYSTEM) to close a revoked proxy's open connections (nats-server server/events.go, v2.10+):
SYS_CONNZ_PING = "$SYS.REQ.SERVER.PING.CONNZ"  # {"user": ..., "limit": N} -> every server's CONNZ reply
SYS_KICK_ANY = "$SYS.REQ.SERVER.*.KICK"  # the allow-list entry for kick_subject()

# telemetry (services/telemetry; proto/observations.py), published; every telemetry replica subscribes (no
# queue group), so replicas hold the same state. A proxy publishes only below its own identity:
# f"{TELEMETRY_METRICS}.<namespace>.<service account>" (identity_subject), as for registration.
TELEMETRY_METRICS = f"{PREFIX}.telemetry.metrics"  # MetricsSnapshot (proxies)
TELEMETRY_SPANS = f"{PREFIX}.telemetry.spans"  # SpanBatch (proxies)
TELEMETRY_LOGS = f"{PREFIX}.telemetry.logs"  # AccessLogBatch (proxies)
# f"{TELEMETRY_SERVICE_METRICS}.<service>": ServiceMetrics, each control-plane service its own
TELEMETRY_SERVICE_METRICS = f"{PREFIX}.telemetry.services"

# troubleshooting (proto/debug.py): f"{PROXY_DEBUG}.<bus credential id>" (proxy_debug_subject): ProxyDebugRequest ->
# ProxyDebugReply, the operator asks one proxy what it holds (its config dump, by section) or to change its log
# level; only the proxy holding that bus credential may subscribe (proto/busauth.py), and it answers only a
# request naming its own proxy id
PROXY_DEBUG = f"{PREFIX}.proxy.debug"
# f"{ADMIN_LOG}.<service>" (admin_log_subject): LogLevelRequest -> LogLevelReply, every replica answers (operator)
ADMIN_LOG = f"{PREFIX}.admin.log"

# readiness: request/reply, every instance answers
HEALTH = f"{PREFIX}.health"  # f"{HEALTH}.{service}" -> HealthReply

QUEUE_PILOT = "pilot"
QUEUE_REGISTRY = "registry"
QUEUE_CA = "ca"
QUEUE_AUTH = "auth"


def health_subject(service: str) -> str:
    return f"{HEALTH}.{service}"


def proxy_debug_subject(cred_id: str) -> str:
    """Where the proxy holding bus credential `cred_id` (user `proxy.<cred_id>`) answers ProxyDebugRequests."""
    return f"{PROXY_DEBUG}.{cred_id}"


def admin_log_subject(service: str) -> str:
    """Where every replica of a control-plane service answers LogLevelRequests."""
    return f"{ADMIN_LOG}.{service}"


def service_metrics_subject(service: str) -> str:
    """Where a control-plane service publishes its own metrics (ServiceMetrics)."""
    return f"{TELEMETRY_SERVICE_METRICS}.{service}"


def secret_events_subject(namespace: str) -> str:
    """Where the ca announces changes to the secrets of `namespace` (SecretEvent)."""
    return f"{CA_SECRET_EVENTS}.{namespace}"


def kick_subject(server_id: str) -> str:
    """Where one nats-server takes `{"cid": N}` to close that client connection (`$SYS.REQ.SERVER.<id>.KICK`)."""
    return f"$SYS.REQ.SERVER.{server_id}.KICK"


def identity_subject(base: str, namespace: str, service_account: str) -> str:
    """A proxy's registry request subject, scoped to its identity: `<base>.<namespace>.<service account>`.
    The namespace is a DNS-1123 label (one subject token, never a dot or wildcard); the service account a
    DNS-1123 subdomain (Kubernetes'), so it may span tokens: `identity_of` reads it back unambiguously.
    nats-server lets a proxy publish only on its own (proto/busauth.py), and the registry checks that the
    request is about that identity's workload. Names are checked (identity_name_error) before they get here."""
    return f"{base}.{namespace}.{service_account}"


def identity_of(subject: str, base: str) -> tuple[str, str] | None:
    """(namespace, service account) of an identity-scoped subject below `base`; None for `base` itself."""
    rest = subject[len(base) + 1:] if subject.startswith(base + ".") else ""
    namespace, _, service_account = rest.partition(".")
    return (namespace, service_account) if namespace and service_account else None


_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def identity_name_error(namespace: str, service_account: str) -> str:
    """Why (namespace, service account) cannot name a workload identity ("" when it can): Kubernetes' rules, a
    namespace is a DNS-1123 label (1-63), a service account a DNS-1123 subdomain (1-253). These names become
    SPIFFE IDs and bus subject permissions, so `>`, `*`, dots in a namespace (which would make `a.b`/`web` and
    `a`/`b.web` one subject) and anything else are refused everywhere an identity is made."""
    if not (len(namespace) <= 63 and _DNS1123_LABEL.fullmatch(namespace)):
        return f"namespace {namespace[:80]!r} is not a DNS-1123 label (1-63 lower-case letters, digits and '-')"
    if not (len(service_account) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(service_account)):
        return (f"service account {service_account[:80]!r} is not a DNS-1123 subdomain (1-253 lower-case letters, "
                "digits, '-' and '.')")
    return ""
