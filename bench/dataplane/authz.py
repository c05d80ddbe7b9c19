"""What AuthorizationPolicy costs per request: `python -m bench.dataplane.authz [--requests N] [--chunks C]`.

The inbound micro benchmark (bench/dataplane/micro.py: one HttpProxyProtocol and one pooled upstream
connection over fake transports, CPU time, no syscalls) with the sidecar's policies compiled from 0, 10 and
100 rules, as pilot would push them (WorkloadSecurity.authorization). A realistic mix, every rule with a
principal, a method (GET, POST, PUT, DELETE in turn), a path and a header condition; a tenth of the rules are DENY rules the request does not
match, the rest ALLOW rules, and the request is allowed by the last ALLOW rule only (the worst case: every
rule is evaluated, once: the sidecar then memoises the decision per distinct combination of the attributes the
rules read, proxy/inbound/authz/memo.py). The caller has an mTLS identity (the principal the last rule names).
Prints µs of CPU per proxied request for each, and the ratio to 0 rules.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.dataplane.micro import drive
from bench.dataplane.topology import HOST_HEADER

PRINCIPAL = "cluster.local/ns/default/sa/client"
REQUEST = (f"GET /api/items/42 HTTP/1.1\r\nHost: {HOST_HEADER}\r\nUser-Agent: bench\r\nAccept: */*\r\n"
           "X-Tenant: blue\r\n\r\n").encode()
COUNTS = (0, 10, 100)
METHODS = ("GET", "POST", "PUT", "DELETE")  # the other rules' methods, in turn: a GET request passes a quarter's


def rules_doc(i: int, last: bool) -> dict[str, object]:
    """Rule i: someone else's principal, path and tenant, except for the last one, which is the request's."""
    principal = PRINCIPAL if last else f"cluster.local/ns/team{i}/sa/svc{i}"
    path = "/api/items/*" if last else f"/api/v{i}/*"
    tenant = "blue" if last else f"tenant-{i}"
    return {"from": [{"source": {"principals": [principal]}}],
            "to": [{"operation": {"methods": ["GET", "HEAD"] if last else [METHODS[i % len(METHODS)]],
                                  "paths": [path]}}],
            "when": [{"key": "request.headers[x-tenant]", "values": [tenant]}]}


def policies(count: int) -> list[object]:
    """`count` rules: count // 10 DENY rules (not matching), the rest ALLOW rules, the last one matching."""
    import msgspec

    from proto.security import AuthzRule
    from proto.xds import AuthzPolicy

    if count == 0:
        return []
    denies = count // 10
    allows = count - denies
    deny = [msgspec.convert({**rules_doc(i, False), "to": [{"operation": {"paths": [f"/admin/{i}"]}}]}, AuthzRule)
            for i in range(denies)]
    allow = [msgspec.convert(rules_doc(i, i == allows - 1), AuthzRule) for i in range(allows)]
    out = [AuthzPolicy("default/allow-clients", "ALLOW", allow)]
    if deny:
        out.append(AuthzPolicy("default/deny-admin", "DENY", deny))
    return out


def router_with(count: int) -> object:
    """The inbound router after a push carrying `count` rules (None when 0: the sidecar's plain router)."""
    from proto.xds import Push, WorkloadSecurity
    from proxy.control.config_state import ConfigState
    from proxy.inbound.local_app import LocalAppRouter

    state = ConfigState(workload_id="bench")
    router = LocalAppRouter("127.0.0.1", 8080, "bench-backend", state)
    # pilot's entry for this workload; with no rules, the default one (no policy applies)
    security = [WorkloadSecurity(workload="bench", version=1, authorization=policies(count))]
    state.apply(Push(epoch="bench", seq=1, version=1, full=True, security=security))
    assert (router.admit is None) == (count == 0)
    return router


async def measure(requests: int, chunks: int) -> dict[int, float]:
    from proxy.core.downstream import Downstream

    caller = Downstream(PRINCIPAL, "10.0.0.7", "10.0.0.8", 8080)
    return {count: await drive("inbound", requests, False, chunks=chunks, router=router_with(count),
                               request=REQUEST, downstream=caller)
            for count in COUNTS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks per case; the fastest is reported")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.install()
    found = asyncio.run(measure(args.requests, args.chunks))
    base = found[0]
    for count, us in found.items():
        print(f"{count:>3} rules: {us:7.2f} us of CPU per proxied request  x{us / base:.2f} of 0 rules"
              f"  (+{us - base:.2f} us)")


if __name__ == "__main__":
    main()
