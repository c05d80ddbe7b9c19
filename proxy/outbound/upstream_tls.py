"""The transport-out decision for one endpoint and service port: plaintext, or mutual TLS to its sidecar.

    decide(config, subset, port, endpoint, originate, sni) -> origination or None   once per push, never per request
    istio_sni(host, subset, port) -> str       the server name ISTIO_MUTUAL sends: the cluster's name, once per port
    tls_problem(config, check) -> str                                             why a push's cluster is refused

Istio's auto mTLS (enableAutoMtls) with the DestinationRule's `tls` first (proto.xds.client_tls: merged as
MergeSubsetTrafficPolicy): DISABLE is plaintext; ISTIO_MUTUAL is mutual TLS with the workload certificate,
the server held to `subjectAltNames[0]` when given, else to the SPIFFE ID the endpoint registered with,
and the server name (SNI) the DestinationRule's `sni` when given, else Istio's default, the name of the
cluster in its DNS SRV form: `outbound_.<service port>_.<subset>_.<host>` (`istio_sni`; pilot/pkg/networking/
core/cluster_tls.go sets it for ISTIO_MUTUAL, from model.BuildDNSSrvSubsetKey), so an AuthorizationPolicy's
`connection.sni` written for Istio matches here. The SNI is never a host name to verify: the server's SPIFFE ID
is. Each subset and port is its own cluster with its own name, so their connections pool apart (the name is in
the origination's `key`), as Envoy's clusters do.
SIMPLE and MUTUAL (certificate files, for services outside the mesh): TLS with those files; `tls_problem` asks
the sidecar's `check` to load them when the push is applied, and a push whose files cannot be loaded is
refused whole (NACK with the reason), never sent in plaintext. Without a `check` (no TLS source), they are
refused too.

The origination object itself (proxy/tls/origination.TlsOrigination) is made by `originate`, which the
sidecar supplies (proxy/tls/upstream.py), so this stage imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable

from proto.xds import (TLS_DISABLE, TLS_ISTIO_MUTUAL, TLS_MUTUAL, TLS_SIMPLE, ClientTls, ClusterConfig, Endpoint,
                       client_tls)

# (the merged ClientTls, the endpoint, the cluster's default SNI for ISTIO_MUTUAL) -> an origination with `key`
# (a tuple that sets its pooled connections apart), or None for plaintext
Originate = Callable[[ClientTls, Endpoint, str], object]
# a ClientTls -> "" when it can be originated, else why not (loads SIMPLE/MUTUAL files once)
TlsCheck = Callable[[ClientTls], str]

SUPPORTED = (TLS_DISABLE, TLS_ISTIO_MUTUAL)
MAX_SNI = 255  # bytes of a TLS server name (RFC 6066 host_name; OpenSSL's TLSEXT_MAXLEN_host_name)


def istio_sni(host: str, subset: str, port: int) -> str:
    """Istio's SNI for ISTIO_MUTUAL to service `port` of `host` through `subset` ("" for none):
    `outbound_.9080_.v1_.reviews.default.svc.cluster.local`, `outbound_.8000_._.httpbin.foo.svc.cluster.local`.
    "" (no SNI sent) for a name a TLS client cannot send: over MAX_SNI bytes, a label over 63 bytes (a 63
    character subset name with its `_`), not ASCII. Envoy would send it or fail the connection; the SNI only
    informs the server (its `connection.sni`), so the connection goes without it."""
    name = f"outbound_.{port}_.{subset}_.{host}"
    if len(name) > MAX_SNI or not name.isascii() or any(not 0 < len(label) <= 63 for label in name.split(".")):
        return ""
    return name


def decide(config: ClusterConfig | None, subset: str, port: int, endpoint: Endpoint,
           originate: Originate | None, sni: str = "") -> object:
    """The origination for traffic to `endpoint` through `subset` ("" for none) on service `port`, or None
    for plaintext; `sni`: the cluster's istio_sni, sent with ISTIO_MUTUAL unless the DestinationRule sets
    its own `sni`. Without `originate` (a table built with no TLS source: unit tests, the benchmark), or
    without the cluster's config, plaintext."""
    if originate is None or config is None:
        return None
    chosen = client_tls(config, subset or None, port, endpoint)
    if chosen.mode == TLS_DISABLE:
        return None
    return originate(chosen, endpoint, sni)


def tls_problem(config: ClusterConfig, check: TlsCheck | None = None) -> str:
    """"" when every tls the cluster's DestinationRule sets can be originated here; else the reason to refuse
    the push (ConfigState NACKs it): SIMPLE or MUTUAL whose files `check` cannot load (or with no `check`),
    or an unknown mode."""
    where = [("", config.tls), *((f" port {p}", t) for p, t in config.port_tls.items())]
    for subset in config.subsets:
        where.append((f" subset {subset.name}", subset.tls))
        where += [(f" subset {subset.name} port {p}", t) for p, t in subset.port_tls.items()]
    for at, tls in where:
        if tls is None or tls.mode in SUPPORTED:
            continue
        if tls.mode in (TLS_SIMPLE, TLS_MUTUAL):
            if check is None:
                return (f"cluster {config.host}{at}: DestinationRule tls mode {tls.mode} needs the sidecar's TLS "
                        "source; refused rather than sent in plaintext")
            problem = check(tls)
            if problem:
                return f"cluster {config.host}{at}: {problem}; refused rather than sent in plaintext"
            continue
        return f"cluster {config.host}{at}: unknown tls mode {tls.mode!r}"
    return ""
