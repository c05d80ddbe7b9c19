"""The inbound path's routing stage: every request that reaches the inbound listener goes to the
app beside the sidecar. (mTLS termination and authorization will sit in front of it here.)"""

from __future__ import annotations

from proxy.outbound.target import RequestHead, Target


class LocalAppRouter:
    def __init__(self, host: str, port: int, service: str) -> None:
        self.target = Target(host, port, f"inbound|{port}||{service}")

    def pick(self, head: RequestHead) -> Target:
        return self.target
