"""docker-compose.yml, generated from the commands of isthmus/launch/topology.py (the ones the loopback cluster
of tests/integration/test_cluster_faults.py runs): `python -m isthmus.launch.compose > docker-compose.yml`.
tests/deploy/test_compose.py checks the committed file is this output and that `docker-compose config` takes it.

Containers: `init` (credentials into the `cluster` volume, once per `up`), nats-1..3 (one NATS cluster),
etcd-1..3 (one etcd cluster), `etcd-auth` (once), two replicas of each service, the ingress gateway on host
port 8080, the demo's frontend and reviews v1..v3 each with its sidecar in the app's network namespace (a
pod, as Kubernetes runs Istio's sidecars), `config` (applies the demo's config once), Prometheus on host port
9090 scraping both telemetry replicas. Workloads and the gateway have fixed addresses on the `mesh` network:
a sidecar registers the address peers reach it at (--address).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from isthmus.launch.services import SERVICES
from isthmus.launch.topology import Layout, etcd_auth_command, etcd_command, init_command, nats_command, \
    service_command

CLUSTER = "/isthmus/cluster"  # the `cluster` volume: what `isthmus cluster init` writes
DATA = "/var/lib/isthmus"
SUBNET = "172.28.0.0/24"
NODES = 3
REPLICAS = 2
SERVICE_PORT = 9080
APP_PORT = 9081
GATEWAY_IP = "172.28.0.30"
WORKLOADS = {("frontend", "v1"): "172.28.0.40", ("reviews", "v1"): "172.28.0.41",
             ("reviews", "v2"): "172.28.0.42", ("reviews", "v3"): "172.28.0.43"}
DEMO_CONFIG = ["examples/bookinfo/bookinfo-gateway.yaml", "examples/bookinfo/destination-rule-reviews.yaml",
               "examples/bookinfo/virtual-service-reviews-80-10-10.yaml"]

LAYOUT = Layout(
    directory=CLUSTER, data=DATA,
    nats_client=tuple(f"nats-{i}:4222" for i in range(1, NODES + 1)),
    nats_listen=("0.0.0.0:4222",) * NODES,
    nats_routes=tuple(f"nats-{i}:6222" for i in range(1, NODES + 1)),
    nats_route_listen=("0.0.0.0:6222",) * NODES,
    etcd_client=tuple(f"http://etcd-{i}:2379" for i in range(1, NODES + 1)),
    etcd_peer=tuple(f"http://etcd-{i}:2380" for i in range(1, NODES + 1)),
    etcd_listen_client=("http://0.0.0.0:2379",) * NODES,
    etcd_listen_peer=("http://0.0.0.0:2380",) * NODES,
)


def _image(command: list[str], **more: Any) -> dict[str, Any]:
    return {"image": "isthmus:latest", "command": command, **more}


def _after(*names: str, done: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    deps = {n: {"condition": "service_started"} for n in names}
    deps.update({n: {"condition": "service_completed_successfully"} for n in done})
    return deps


def node_url(i: int) -> str:
    """One NATS node's URL, for a proxy: it learns the cluster's other nodes from that one (nats-server's INFO
    connect_urls) and moves to them when it fails; the proxies are spread over the nodes."""
    return f"nats://{LAYOUT.nats_client[i % NODES]}"


def sidecar_command(service: str, version: str, address: str, node: int = 0) -> list[str]:
    """A workload's sidecar (`isthmus proxy run`), as the demo runs it (examples/bookinfo/workloads.py)."""
    return ["isthmus", "--nats", node_url(node), "proxy", "run", "--service", service, "--namespace", "default",
            "--service-account", f"bookinfo-{service}", "--service-port", str(SERVICE_PORT),
            "--app-port", str(APP_PORT), "--labels", f"app={service},version={version}", "--address", address,
            "--state-dir", f"{DATA}/sidecar", "--access-log", "-"]


def app_command(service: str, version: str) -> list[str]:
    """The demo's app as the demo runs it; the frontend calls reviews through its sidecar's outbound port."""
    from examples.bookinfo.workloads import app_argv

    return ["python", *app_argv(service, version, APP_PORT, 15001 if service == "frontend" else None)[1:]]


def gateway_command() -> list[str]:
    return ["isthmus", "--nats", node_url(NODES - 1), "gateway", "run", "--name", "istio-ingressgateway",
            "--namespace", "istio-system", "--port", "8080:80", "--admin-port", "15000", "--address", GATEWAY_IP]


def config_command() -> list[str]:
    return ["isthmus", "--nats", LAYOUT.nats_url, "apply", *[a for f in DEMO_CONFIG for a in ("-f", f)]]


def compose() -> dict[str, Any]:
    cluster_ro = f"cluster:{CLUSTER}:ro"
    operator = {"ISTHMUS_CONFIG": f"{CLUSTER}/isthmus.yaml"}  # sidecars mint bus credentials with it (demo only)
    services: dict[str, Any] = {"init": _image(init_command(LAYOUT), volumes=[f"cluster:{CLUSTER}"])}
    volumes: dict[str, Any] = {"cluster": {}}
    for i in range(NODES):
        name = LAYOUT.nats_name(i)
        services[name] = _image(nats_command(LAYOUT, i), volumes=[f"cluster:{CLUSTER}"],
                                depends_on=_after(done=("init",)), restart="unless-stopped")
    for i in range(NODES):
        name = LAYOUT.etcd_name(i)
        services[name] = _image(etcd_command(LAYOUT, i), volumes=[cluster_ro, f"{name}:{DATA}/{name}"],
                                depends_on=_after(done=("init",)), restart="unless-stopped")
        volumes[name] = {}
    services["etcd-auth"] = _image(etcd_auth_command(LAYOUT), volumes=[cluster_ro],
                                   depends_on=_after(*(LAYOUT.etcd_name(i) for i in range(NODES))))
    nats = tuple(LAYOUT.nats_name(i) for i in range(NODES))
    for name in SERVICES:
        for replica in range(1, REPLICAS + 1):
            env = {"ISTHMUS_CONFIG": f"{CLUSTER}/secrets/{name}.yaml", "ISTHMUS_INSTANCE": f"{name}-{replica}"}
            more: dict[str, Any] = {}
            if name == "auth":
                env.update(ISTHMUS_AUTH_SEED_FILE=f"{CLUSTER}/secrets/auth-account.nk",
                           ISTHMUS_AUTH_SYSTEM_CONFIG=f"{CLUSTER}/secrets/auth-system.yaml")
            if name == "ca":  # the signing key lives sealed in etcd under the shared KEK; the state dir is the replica's
                env.update(ISTHMUS_CA_KEK_FILE=f"{CLUSTER}/ca-kek", ISTHMUS_STATE_DIR=DATA)
                volumes[f"ca-{replica}"] = {}
                more["volumes"] = [cluster_ro, f"ca-{replica}:{DATA}"]
            if name == "telemetry":
                env.update(ISTHMUS_DASHBOARD_BIND="0.0.0.0", ISTHMUS_DASHBOARD_PORT="20001")
                more["ports"] = [f"{20000 + replica}:20001"]  # the dashboard: 20001 and 20002 on the host
            services[f"{name}-{replica}"] = _image(
                service_command(LAYOUT, name), environment=env, volumes=more.pop("volumes", [cluster_ro]),
                depends_on=_after(*nats, done=("etcd-auth",)), restart="unless-stopped", **more)
    ready = _after(*nats, "pilot-1", "pilot-2", "auth-1", "auth-2", "ca-1", "ca-2", "registry-1", "registry-2")
    services["istio-ingressgateway"] = _image(
        gateway_command(), environment=dict(operator), volumes=[cluster_ro], depends_on=ready, ports=["8080:8080"],
        networks={"mesh": {"ipv4_address": GATEWAY_IP}}, restart="unless-stopped")
    for node, ((service, version), address) in enumerate(WORKLOADS.items()):
        app = f"{service}-{version}"
        services[app] = _image(app_command(service, version), networks={"mesh": {"ipv4_address": address}},
                               restart="unless-stopped")
        services[f"{app}-sidecar"] = _image(sidecar_command(service, version, address, node), environment=dict(operator),
                                            volumes=[cluster_ro], network_mode=f"service:{app}",
                                            depends_on=_after(app, *ready), restart="unless-stopped")
    services["config"] = _image(config_command(), environment=dict(operator), volumes=[cluster_ro],
                                depends_on=_after("pilot-1", "pilot-2"), restart="on-failure")
    services["prometheus"] = {"image": "prom/prometheus:v2.53.0", "ports": ["9090:9090"],
                              "volumes": ["./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro"],
                              "depends_on": _after("telemetry-1", "telemetry-2")}
    for spec in services.values():  # the mesh network for all but the sidecars (they share their app's)
        if "network_mode" not in spec:
            spec.setdefault("networks", ["mesh"])
    return {"version": "3.9", "services": services, "volumes": volumes,
            "networks": {"mesh": {"ipam": {"config": [{"subnet": SUBNET}]}}}}


HEADER = """\
# Isthmus, clustered: 3 NATS nodes, 3 etcd members, 2 replicas of every control-plane service, the ingress
# gateway (http://localhost:8080/productpage), the bookinfo demo's workloads with their sidecars, Prometheus
# (http://localhost:9090) scraping the telemetry service (dashboard: http://localhost:20001/).
#
#   docker build -t isthmus:latest . && docker-compose up
#
# GENERATED by `python -m isthmus.launch.compose > docker-compose.yml` from isthmus/launch/topology.py, the
# command lines the loopback cluster of tests/integration/test_cluster_faults.py runs: edit those, not this.
# docs/ha.md explains the topology; docs/install-vm.md runs the same commands on machines.
"""


class _Dumper(yaml.SafeDumper):
    """Lists of scalars (commands, ports) in flow style, one line each: the file reads like the commands."""


def _flow_scalars(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(item, (str, int)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _flow_scalars)
_Dumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign]  # no &id001 anchors


def render() -> str:
    return HEADER + yaml.dump(compose(), Dumper=_Dumper, sort_keys=False, width=1000)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
