"""Workload registration messages (registry service) and the record stored in etcd under a lease."""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.base import Message

# An etcd lease ID is an int64; a request naming one outside that range is malformed, not our error.
LeaseId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Workload(Message):
    """A running workload with its sidecar, as the proxy registers it."""

    id: str
    service: str
    namespace: str = "default"
    address: str = "127.0.0.1"  # where peers reach the sidecar's inbound listener
    service_port: int = 80  # the port clients use (`reviews:9080`)
    inbound_port: int = 15006  # the sidecar's inbound listener, which forwards to the app
    tcp_ports: dict[int, int] = {}  # opaque TCP: service port -> the sidecar's inbound TCP listener for it
    labels: dict[str, str] = {}
    service_account: str = "default"
    locality: str = ""
    healthy: bool = True
    # service port -> the port the app listens on (the workload port that PeerAuthentication portLevelMtls
    # names, as Istio's targetPort); a port missing here is taken to be the service port itself
    app_ports: dict[int, int] = {}
    # Istio's workload name (source_workload / destination_workload: a Deployment's name in Kubernetes):
    # `proxy run --workload-name`, by default "<service>-<version label>" or "<service>" (proto.observations
    # workload_name_of); `cluster`: source_cluster / destination_cluster (`--cluster`, default "unknown")
    workload_name: str = ""
    cluster: str = ""
    # A gateway (`isthmus gateway run`), not a sidecar: it has no app and no inbound listener; peers reach
    # Gateway port P at `address`:gateway_ports[P] (`--port LISTEN:P`). Pilot makes its endpoint without a
    # sidecar (auto mTLS sends plaintext to it unless a DestinationRule says ISTIO_MUTUAL, as Istio's gateways).
    gateway: bool = False
    gateway_ports: dict[int, int] = {}
    # the WorkloadGroup of the workload's namespace it belongs to (`proxy run --workload-group NAME`; "": none):
    # the registry applies the group's template (Istio's auto-registration), pilot pushes its probe
    workload_group: str = ""
    # drawn by the sidecar at each start: pilot copies it into the workload's security entry, which the sidecar
    # takes only with its own, so a new run never takes the entry compiled from a previous run's registration
    # (other labels) that outlived it (proxy/control/security_state.py); "": an older sidecar
    instance: str = ""


class WorkloadIdClaim(Message):
    """Which registration holds a workload id, as etcd keeps it (/isthmus/workload-ids/<id>, written by the
    registry in the registration's transaction and under its lease: services/registry/ids.py). Pilot and the
    sidecars know a workload by its id alone, so one id is one registration across namespaces and services."""

    namespace: str
    service: str
    service_account: str = "default"


class RegisterRequest(Message):
    workload: Workload
    ttl: int | None = None  # seconds; None: the registry's default


class RegisterReply(Message):
    ok: bool
    lease_id: int = 0
    ttl: int = 0
    error: str = ""
    # not ok because the registry could not reach etcd (or etcd failed): no refusal, try again as when the
    # registry does not answer (a configured sidecar stays ready meanwhile); False from a registry older than it
    transient: bool = False


class Heartbeat(Message):
    workload_id: str
    namespace: str
    service: str
    lease_id: LeaseId
    healthy: bool = True


class HeartbeatReply(Message):
    ok: bool
    error: str = ""  # "unknown lease": the proxy must register again


class DeregisterRequest(Message):
    workload_id: str
    namespace: str
    service: str
    lease_id: LeaseId = 0


# the most workloads one REGISTRY_LIST reply carries (~400 bytes each: well under NATS's 1 MiB max_payload)
MAX_LIST = 2000


class WorkloadListRequest(Message):
    """REGISTRY_LIST (operator: `isthmus analyze`) -> WorkloadListReply. `namespace` None: every namespace."""

    namespace: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)] = MAX_LIST


class WorkloadListReply(Message, omit_defaults=False):
    ok: bool
    workloads: list[Workload] = []
    total: int = 0  # how many are registered; more than len(workloads) when `limit` cut the list
    revision: int = 0
    error: str = ""


class EndpointEvent(Message):
    """Published on registry.events when a workload appears, changes health, or goes away."""

    type: str  # ADDED | MODIFIED | DELETED
    namespace: str
    service: str
    workload_id: str
    revision: int
    workload: Workload | None = None
