"""The benchmark mesh: N simulated proxies in namespace `bench`, spread round-robin over S services
(`svc-<k>`, about ENDPOINTS_PER_SERVICE workloads each, labels version=v1/v2 alternating). The
config-convergence scenario routes `svc-0` by a VirtualService whose weights change; the endpoint
scenario adds and expires workloads of `svc-0`."""

from __future__ import annotations

from proto.registry import Workload

NAMESPACE = "bench"
SERVICE_ACCOUNT = "default"  # every simulated workload's: the identity its proxy's bus credential is bound to
DOMAIN_SUFFIX = "svc.cluster.local"
ENDPOINTS_PER_SERVICE = 50
SERVICE_PORT = 9080
INBOUND_PORT = 15006
TARGET = "svc-0"


def service_count(n: int) -> int:
    return max(2, n // ENDPOINTS_PER_SERVICE)


def service_name(k: int) -> str:
    return f"svc-{k}"


def host(service: str) -> str:
    return f"{service}.{NAMESPACE}.{DOMAIN_SUFFIX}"


def all_hosts(n: int) -> list[str]:
    return [host(service_name(k)) for k in range(service_count(n))]


def proxy_id(i: int) -> str:
    return f"sim-{i:05d}"


def service_of(i: int, n: int) -> str:
    return service_name(i % service_count(n))


def version_of(i: int, n: int) -> str:
    return "v1" if (i // service_count(n)) % 2 == 0 else "v2"


def address_of(i: int) -> str:
    """One loopback address per simulated VM (nothing listens there: proxies never receive traffic)."""
    return f"127.{1 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def workload(i: int, n: int) -> Workload:
    """What simulated proxy i registers (the driver pre-registers the same, so a proxy's own
    registration changes no endpoint content and causes no push)."""
    service = service_of(i, n)
    return Workload(id=proxy_id(i), service=service, namespace=NAMESPACE, address=address_of(i),
                    service_account=SERVICE_ACCOUNT, service_port=SERVICE_PORT, inbound_port=INBOUND_PORT,
                    labels={"app": service, "version": version_of(i, n)}, healthy=True)


def extra_workload(c: int) -> Workload:
    """The c-th workload the endpoint scenario adds to svc-0."""
    return Workload(id=f"bench-ep-{c}", service=TARGET, namespace=NAMESPACE, address=address_of(60000 + c),
                    service_account=SERVICE_ACCOUNT, service_port=SERVICE_PORT, inbound_port=INBOUND_PORT, labels={"app": TARGET, "version": "v1"})


def destination_rule_yaml() -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {TARGET}, namespace: {NAMESPACE}}}
spec:
  host: {TARGET}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


def virtual_service_yaml(w1: int, w2: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {TARGET}, namespace: {NAMESPACE}}}
spec:
  hosts: [{TARGET}]
  http:
  - route:
    - {{destination: {{host: {TARGET}, subset: v1}}, weight: {w1}}}
    - {{destination: {{host: {TARGET}, subset: v2}}, weight: {w2}}}
"""


def weights(i: int) -> tuple[int, int]:
    """The i-th change (i >= 0): 90/10, 80/20, ... 10/90, then again; never equal to the previous one."""
    w2 = 10 * (i % 9 + 1)
    return 100 - w2, w2
