"""The logical stage of the outbound pipeline: which service a request means, and which rule of its routes
it takes. Linkerd's "logical" target: a name, before any backend is chosen.

Host resolution follows what a client in the proxy's namespace means by a name, the way Kubernetes DNS
search paths resolve it: `reviews` -> reviews.<proxy ns>.<suffix>, `reviews.other` ->
reviews.other.<suffix>, `reviews.other.svc` -> reviews.other.svc.<suffix minus "svc.">; a name the
table holds exactly (an FQDN, a ServiceEntry host, an IP) is taken as is first. A service's loopback address
from the sidecar's DNS (proxy/dns/) means that service, as Istio lists a service's VIP among its virtual
host's domains: `Host: 127.240.3.7:9080` routes as `Host: reviews:9080`. Answers are cached per table (a push
starts a new cache; so does set_aliases).
"""

from __future__ import annotations

from proxy.core.errors import NoRoute
from proxy.core.request import Caller, RequestHead, path_without_query
from proxy.outbound.route import CompiledRoute, CompiledRule
from proxy.outbound.table import RoutingTable

RESOLVE_CACHE_SIZE = 4096


class HostNames:
    """Resolves the host a client wrote to the name the table knows it by."""

    __slots__ = ("namespace", "domain_suffix", "_search", "_cache", "_cache_table", "aliases")

    def __init__(self, namespace: str, domain_suffix: str) -> None:
        self.namespace = namespace
        self.domain_suffix = domain_suffix
        tail = domain_suffix.split(".", 1)
        self._search = (domain_suffix, tail[1]) if len(tail) == 2 else (domain_suffix,)
        self._cache: dict[str, str] = {}
        self._cache_table: RoutingTable | None = None
        self.aliases: dict[str, str] = {}  # a loopback address the sidecar's DNS answered -> the service's FQDN

    def set_aliases(self, aliases: dict[str, str]) -> None:
        """Replace the address -> FQDN aliases (proxy/dns/sidecar.py, after each push); cached answers go."""
        self.aliases = dict(aliases)
        self._cache, self._cache_table = {}, None

    def resolve(self, table: RoutingTable, host: str) -> str:
        """The FQDN the table knows `host` by, or "" when it knows none."""
        if self._cache_table is not table:
            self._cache, self._cache_table = {}, table
        found = self._cache.get(host)
        if found is None:
            found = self._lookup(table, host)
            if len(self._cache) >= RESOLVE_CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = found
        return found

    def _lookup(self, table: RoutingTable, host: str) -> str:
        name = host.lower().rstrip(".")
        alias = self.aliases.get(name)
        if alias is not None and (alias in table.routes or alias in table.clusters):
            return alias
        if "." in name or ":" in name:
            candidates = [name] + [f"{name}.{tail}" for tail in self._search]
        else:
            candidates = [f"{name}.{self.namespace}.{self.domain_suffix}", name]
        for candidate in candidates:
            if candidate in table.routes or candidate in table.clusters:
                return candidate
        return ""


def http_rule(route: CompiledRoute, host: str, head: RequestHead, caller: Caller) -> CompiledRule:
    """The first rule of `host`'s routes that matches the request; raises NoRoute when none does."""
    rule = route.rule_for(head, path_without_query(head.path) if route.needs_path else head.path, caller)
    if rule is None:
        raise NoRoute(f"no rule of the VirtualService {route.source} for {host} matches "
                      f"{head.method} {head.path}")
    return rule
