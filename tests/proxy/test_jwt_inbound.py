"""RequestAuthentication on the inbound listener end to end, without sockets: a push with the sidecar's jwt rules
reaches LocalAppRouter, the stage changes the request head and that change is what goes upstream (not the
head as received); a refused request gets Envoy's 401 and an access-log line with the response code details;
a push that changes the rules recompiles the stage, and one without rules removes it."""

from __future__ import annotations

import asyncio
import re
import time

from proto.xds import Push, WorkloadSecurity
from proxy.access_log import AccessLog
from proxy.control.config_state import ConfigState
from proxy.http.head import Mode
from proxy.http.listener_state import ServerState
from proxy.http.server import HttpProxyProtocol
from proxy.http.upstream import UpstreamConnection
from proxy.http.upstream_pool import ConnectionPool
from proxy.inbound.local_app import LocalAppRouter
from tests.proxy.jwt.issuers import claims, provider, rule, sign
from tests.proxy.test_head_as_received import RESPONSE, Recording



def soon() -> int:
    """An `exp` ten minutes ahead of the real clock the sidecar's stage reads (per test: a long suite outlives
    any time taken at import)."""
    return int(time.time()) + 600


class Inbound:
    """A client connection to the inbound listener of a sidecar whose workload is `w1`, and its app connection."""

    def __init__(self, log_path: str = "") -> None:
        self.state = ConfigState(workload_id="w1")
        self.router = LocalAppRouter("127.0.0.1", 8080, "app", self.state)
        pool = ConnectionPool()
        pool._loop = asyncio.get_running_loop()
        self.log = AccessLog(log_path) if log_path else None
        self.proto = HttpProxyProtocol(ServerState(self.router, pool, Mode.INBOUND,
                                                   self.log.for_listener("inbound") if self.log else None, None,
                                                   60.0))
        self.client = Recording()
        self.proto.connection_made(self.client)  # type: ignore[arg-type]
        self.upstream = Recording()
        conn = UpstreamConnection(pool, ("127.0.0.1", 8080))
        conn.connection_made(self.upstream)  # type: ignore[arg-type]
        pool.release(conn)
        self.conn = conn

    def push(self, version: int, *providers) -> None:  # type: ignore[no-untyped-def]
        self.state.apply(Push(epoch="e", seq=version, version=version, full=True,
                              security=[WorkloadSecurity(workload="w1", version=version, jwt=list(providers))]))

    def send(self, request: bytes) -> bytes:
        """The head that went upstream (b"" if none) after answering it."""
        self.proto.data_received(request)
        head = b"".join(self.upstream.data)
        self.upstream.data.clear()
        if head:
            self.conn.data_received(RESPONSE)
        return head


def get(token: str = "", path: str = "/get", extra: bytes = b"") -> bytes:
    auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
    return b"GET %s HTTP/1.1\r\nHost: app:8000\r\n%s%sx-request-id: 1\r\n\r\n" % (path.encode(), auth, extra)


async def test_without_request_authentication_no_stage_runs_and_the_head_goes_as_received():
    side = Inbound()
    side.push(1)
    assert side.router.admit is None
    request = get(sign(claims(exp=soon())))
    assert side.send(request) == request  # nobody looked at the token: it goes as sent


async def test_the_verified_head_goes_upstream_without_the_token_and_with_the_outputs():
    side = Inbound()
    side.push(1, provider(rule(output_payload_to_header="x-jwt-payload",
                               output_claim_to_headers=[("x-jwt-sub", "sub")])))
    token = sign(claims(exp=soon()))
    head = side.send(get(token, f"/get?access_token={token}&keep=1", b"x-jwt-sub: forged\r\n"))
    assert head.startswith(b"GET /get?keep=1 HTTP/1.1\r\n")
    assert b"authorization" not in head.lower() and token.encode() not in head.split(b"x-jwt-payload")[0]
    assert b"x-jwt-sub: alice\r\n" in head and b"forged" not in head
    assert b"x-jwt-payload: %s\r\n" % token.split(".")[1].encode() in head


async def test_an_invalid_token_gets_401_reaches_no_app_and_is_logged_with_envoys_details(tmp_path):
    side = Inbound(str(tmp_path / "access.log"))
    side.push(1, provider())
    assert side.send(get(sign(claims(exp=soon() - 4200)))) == b""
    answer = b"".join(side.client.data)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'www-authenticate: Bearer realm="http://app:8000/get", error="invalid_token"\r\n' in answer
    assert answer.endswith(b"\r\n\r\nJwt is expired")  # as Envoy: no newline
    assert side.log is not None
    side.log.flush()
    line = (tmp_path / "access.log").read_text().splitlines()[-1]
    assert re.fullmatch(r'\[.*\] inbound "GET /get HTTP/1.1" 401 - jwt_authn_access_denied\{Jwt_is_expired\} - 0 0 \d+ - .*',
                        line), line
    side.log.close()


async def test_a_push_that_changes_the_rules_swaps_the_stage_and_one_without_them_removes_it():
    side = Inbound()
    side.push(1, provider(rule(audiences=["svc"])))
    first = side.router.authn.check
    token = sign(claims(exp=soon()))  # no aud
    assert side.send(get(token)) == b""  # 403: audiences
    assert b"403 Forbidden" in b"".join(side.client.data)
    side.push(2, provider(rule(audiences=["svc"])))
    assert side.router.authn.check is first  # unchanged rules: the same compiled stage (and its cache)
    side.push(3, provider())
    assert side.router.authn.check is not first
    assert side.send(get(token)).startswith(b"GET /get HTTP/1.1\r\n")
    side.push(4)
    assert side.router.authn.check is None and side.router.admit is None
