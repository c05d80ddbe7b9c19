"""The outbound router: the Router protocol (proxy/core/target.py) over the current routing table, as the
stages of the outbound pipeline in order, each its own module:

    logical   proxy/outbound/logical.py    which service the host means, which rule of its routes matches
    concrete  proxy/outbound/concrete.py   which destination (by weight), cluster, subset and port
    endpoint  proxy/outbound/endpoint.py   which address: the pool's balancer, minus outlier ejections

The table (proxy/outbound/table.py) is an immutable snapshot ConfigState builds after every applied push;
a push swaps it in one assignment, and the router reads it once per request.
"""

from __future__ import annotations

from proto.xds import ALLOW_ANY
from proxy.core.errors import HOST_SHOWN, NoCluster, NoRoute
from proxy.core.request import Caller, RequestHead
from proxy.core.target import Target
from proxy.outbound import concrete, endpoint, logical
from proxy.outbound.connect_policy import check_opaque
from proxy.outbound.passthrough import outside
from proxy.outbound.plan import PLAN_CACHE_SIZE, Plan, compile_plan
from proxy.outbound.table import RoutingTable, TableSource


class MeshRouter:
    """Router over `source.table`, read once per request: a push swaps the table in one assignment."""

    def __init__(self, source: TableSource, namespace: str = "default",
                 domain_suffix: str = "svc.cluster.local", labels: dict[str, str] | None = None,
                 locality: str = "") -> None:
        self.source = source
        self.namespace = namespace
        self.labels = dict(labels or {})  # this workload's labels: VirtualService match sourceLabels
        self.locality = locality  # this workload's "region/zone/subzone": localityLbSetting
        self.caller = Caller(self.labels, namespace)
        self.domain_suffix = domain_suffix
        self.hosts = logical.HostNames(namespace, domain_suffix)
        # (host, port) -> the Plan for it, or None (no plan: run the stages); valid for one table object
        self._plans: dict[tuple[str, int], Plan | None] = {}
        self._plans_table: RoutingTable | None = None

    def resolve(self, table: logical.RoutingTable, host: str) -> str:
        """The FQDN the table knows `host` by, or "" when it knows none."""
        return self.hosts.resolve(table, host)

    def set_aliases(self, aliases: dict[str, str]) -> None:
        """Loopback address -> service FQDN, for requests whose Host is the address (proxy/dns/); plans go."""
        self.hosts.set_aliases(aliases)
        self._plans, self._plans_table = {}, None

    def pick(self, head: RequestHead) -> Target:
        table = self.source.table
        key = (head.host, head.port)
        if self._plans_table is table:
            try:
                plan = self._plans[key]
            except KeyError:
                pass
            else:
                if plan is not None:  # a simple route: compiled once for this table (proxy/outbound/plan.py)
                    return plan.target or plan.pick(head)
                return self._pick(table, head)
        else:  # a push: plans made for the old table are void
            self._plans, self._plans_table = {}, table
        target = self._pick(table, head)
        if len(self._plans) >= PLAN_CACHE_SIZE:
            self._plans.clear()
        host = self.hosts.resolve(table, head.host)
        self._plans[key] = compile_plan(table, host, table.routes.get(host), head.port, self.locality) if host \
            else None
        return target

    def _pick(self, table: RoutingTable, head: RequestHead) -> Target:
        """Every stage of the pipeline, in order."""
        host = self.hosts.resolve(table, head.host)
        if not host:  # outside the mesh: outboundTrafficPolicy (proxy/outbound/passthrough.py)
            return outside(self.outbound_policy(), head.host, head.port)
        route = table.routes.get(host)
        if route is not None and (route.rules or not route.tcp):  # tcp routes alone leave HTTP to the cluster
            rule = logical.http_rule(route, host, head, self.caller)
            if rule.local is not None:  # directResponse or redirect: the exchange answers, no endpoint
                return rule.local
            entry, host, subset, port, policy = concrete.destination(table, route, rule, head.port)
        else:
            entry, host, subset, port, policy = concrete.service(table, host, head)
        return endpoint.pick(entry, host, subset, port, head, policy, self.locality)

    def tcp_pick(self, host: str, port: int, client: str = "") -> Target:
        """Where an opaque TCP connection to `host:port` goes: the host's first tcp route that matches the
        port and this caller picks a destination by weight (no tcp route: the host's own cluster), then the
        destination pool's balancer an endpoint. Raises NoRoute, NoCluster or NoHealthyUpstream."""
        table = self.source.table
        fqdn = self.resolve(table, host)
        if not fqdn:
            raise NoRoute(f"no service or route for host {host[:HOST_SHOWN]!r}")
        subset = ""
        route = table.routes.get(fqdn)
        rule = route.tcp_rule_for(port, self.caller) if route is not None and route.tcp else None
        if rule is not None:
            dest = rule.pick()
            fqdn, subset = dest.host, dest.subset or ""
            if dest.port is not None:
                port = dest.port
        elif route is not None and route.tcp:
            raise NoRoute(f"no tcp route of the VirtualService {route.source} for {fqdn} matches port {port}")
        entry = table.clusters.get(fqdn)
        if entry is None:
            raise NoCluster(f"tcp route sends to {fqdn}, which has no cluster")
        if rule is not None and dest.port is None and len(entry.ports) == 1:
            (port,) = entry.ports
        return endpoint.pick(entry, fqdn, subset, port, RequestHead("", host, port, "", [], client), None, self.locality)

    def connect_pick(self, host: str, port: int, client: str = "") -> Target:
        """Where a CONNECT tunnel to `host:port` goes. A host the registry knows: opaque TCP to it, as Istio
        treats any TCP to a service (tcp_pick: its tcp routes, balancer and connection limits), if the port is
        opaque TCP in the mesh, else ConnectRefused (proxy/outbound/connect_policy.py). Any other:
        the outboundTrafficPolicy's passthrough, or BlackHole (raised) under REGISTRY_ONLY."""
        table = self.source.table
        fqdn = self.resolve(table, host)
        if fqdn:
            check_opaque(table, fqdn, port, self.caller)  # an HTTP port: ConnectRefused (403)
            return self.tcp_pick(host, port, client)
        return outside(self.outbound_policy(), host, port, tunnel=True)

    def outbound_policy(self) -> str:
        """meshConfig.outboundTrafficPolicy.mode, from the source's mesh settings (ConfigState.mesh)."""
        mesh = getattr(self.source, "mesh", None)
        return mesh.outbound_traffic_policy if mesh is not None else ALLOW_ANY

    def mirror_pick(self, host: str, subset: str, port: int | None, head: RequestHead) -> tuple[str, int] | None:
        """(address, port) of an endpoint of a mirror destination, or None when it has none (no error:
        a mirror never fails the request). Only requests on a rule with mirrors call this."""
        return endpoint.mirror(self.source.table, host, subset, port, head, self.locality)

    def retry_pick(self, target: Target, head: RequestHead, tried: list[tuple[str, int]], attempt: int = 1) -> Target:
        """Another endpoint of `target`'s cluster for retry number `attempt` (proxy/outbound/endpoint.retry)."""
        return endpoint.retry(self.source.table, target, head, tried, attempt, self.locality)
