"""Which service a DNS query name means, as a client in the sidecar's namespace means it (Kubernetes' DNS
search path, as proxy/outbound/logical.py resolves a Host):

    reviews                              reviews.<our namespace>.<suffix>
    reviews.other                        reviews.other.<suffix>
    reviews.other.svc                    reviews.other.svc.<suffix minus its first label>  (suffix svc.cluster.local)
    reviews.other.svc.cluster.local      itself; so is any other name the mesh knows exactly (a ServiceEntry host)

NameForms.lookup(qname, known) -> (name the mesh knows it by or "", authoritative). Authoritative is True for a
known name and for any name under the domain suffix (an unknown one there is NXDOMAIN: the zone is ours);
for other unknown names False: the sidecar is no recursive resolver and answers REFUSED, so a stub resolver
asks its next server (as Consul answers only its own domain).
"""

from __future__ import annotations

from collections.abc import Container


class NameForms:
    __slots__ = ("namespace", "suffix", "_zone", "_svc_label", "_tail")

    def __init__(self, namespace: str, domain_suffix: str) -> None:
        self.namespace = namespace.lower()
        self.suffix = domain_suffix.lower().strip(".")
        self._zone = "." + self.suffix
        first, _, tail = self.suffix.partition(".")
        self._svc_label, self._tail = (first, tail) if tail else ("", "")

    def lookup(self, qname: str, known: Container[str]) -> tuple[str, bool]:
        """`qname` as the question spells it (any case, with or without the final dot)."""
        name = qname.lower().rstrip(".")
        if name in known:
            return name, True
        if name == self.suffix or name.endswith(self._zone):
            return "", True
        dots = name.count(".")
        if dots == 0 and name:
            candidate = f"{name}.{self.namespace}.{self.suffix}"
        elif dots == 1:
            candidate = f"{name}.{self.suffix}"
        elif dots == 2 and self._tail and name.rpartition(".")[2] == self._svc_label:
            candidate = f"{name}.{self._tail}"
        else:
            return "", False
        return (candidate, True) if candidate in known else ("", False)
