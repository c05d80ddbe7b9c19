"""Field values that validation checks and the compilers read, parsed by one function each.

    retry_on("5xx,503,reset") -> (conditions, status codes, problems)   an HTTPRetry's `retryOn`
    body_bytes(direct) -> bytes                                         a validated directResponse body
    effective_mode(tls) -> str                                          a Gateway server's TLS mode

A leaf beside durations.py: the compilers (services/pilot/compile/) import it, so a value is read the
same way where it is checked and where it is compiled.
"""

from __future__ import annotations

import base64

from proto.gateway import ServerTLSSettings
from proto.gateway_xds import SERVER_TLS_PASSTHROUGH, SERVER_TLS_SIMPLE
from proto.networking import HTTPDirectResponse

RETRY_ON = frozenset(("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
                      "retriable-status-codes", "cancelled", "deadline-exceeded", "internal",
                      "resource-exhausted", "unavailable"))
RETRY_ON_NOT_YET = frozenset(("retriable-headers", "envoy-ratelimited", "http3-post-connect-failure"))


def retry_on(text: str) -> tuple[list[str], list[int], list[str]]:
    """(conditions, status codes, problems) of a retryOn string."""
    conditions: list[str] = []
    codes: list[int] = []
    problems: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.isdigit():
            code = int(item)
            if 100 <= code <= 599:
                codes.append(code)
            else:
                problems.append(f"{item} is not a valid HTTP status code for retryOn")
        elif item in RETRY_ON:
            conditions.append(item)
        elif item in RETRY_ON_NOT_YET:
            problems.append(f"retryOn condition `{item}` is not supported yet")
        else:
            problems.append(f"`{item}` is not a valid retryOn policy (one of {', '.join(sorted(RETRY_ON))} "
                            "or an HTTP status code)")
    return conditions, codes, problems


def body_bytes(direct: HTTPDirectResponse) -> bytes:
    """The body of a (validated) direct response."""
    body = direct.body
    if body is None:
        return b""
    if body.string_ is not None:
        return body.string_.encode()
    return base64.b64decode(body.bytes_ or "", validate=True)


def effective_mode(tls: ServerTLSSettings) -> str:
    """A Gateway server's TLS mode: `mode`, else SIMPLE when a certificate is given, else PASSTHROUGH (Istio's
    enum default). Validation and the gateway compiler read it the same way."""
    if tls.mode:
        return tls.mode
    return SERVER_TLS_SIMPLE if (tls.credential_name or tls.server_certificate) else SERVER_TLS_PASSTHROUGH
