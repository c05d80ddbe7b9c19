"""The inbound mTLS mode of each app port, as the TlsAcceptor asks for it per connection, and the safe order
of a switch that flips what clients send.

Auto mTLS makes a client sidecar send plaintext to an endpoint whose mode is DISABLE and mutual TLS to any
other. So a switch into or out of DISABLE moves the clients too, and the server and its clients apply the push
at slightly different moments. Applied at once, DISABLE -> STRICT refuses the plaintext of clients that have
not moved yet (Istio loses these requests: istio/istio#48290), and STRICT or PERMISSIVE -> DISABLE answers
their TLS with 400. So such a switch is held at PERMISSIVE (both accepted) for `hold` seconds (`proxy run
--mtls-switch-hold`, default 10 s) before the new mode applies: clients move first, then the server
requires it. Switches that do not move clients (PERMISSIVE <-> STRICT, DISABLE -> PERMISSIVE) apply at once.
Open connections keep the way they were accepted.

    InboundModes(app_ports, hold).update(security)   after each applied push (ConfigState.on_apply)
    InboundModes.mode(app_port) -> str               per accepted connection, never per request
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from proto.xds import MTLS_DISABLE, MTLS_PERMISSIVE, WorkloadSecurity

SWITCH_HOLD = 10.0  # seconds at PERMISSIVE while clients move to or from mutual TLS


def moves_clients(old: str, new: str) -> bool:
    """Whether clients must change what they send first: auto mTLS flips (into or out of DISABLE) and the new
    mode refuses what the old one took (DISABLE -> PERMISSIVE refuses nothing)."""
    return (old == MTLS_DISABLE) != (new == MTLS_DISABLE) and new != MTLS_PERMISSIVE


class InboundModes:
    """The mode in force per app port; `security` None is PERMISSIVE everywhere (Istio's default)."""

    def __init__(self, app_ports: Iterable[int], hold: float = SWITCH_HOLD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hold = hold
        self.clock = clock
        self.modes = {port: MTLS_PERMISSIVE for port in app_ports}
        self.held: dict[int, float] = {}  # app port -> clock time its switch applies (PERMISSIVE until then)

    def update(self, security: WorkloadSecurity | None) -> None:
        now = self.clock()
        for port, old in self.modes.items():
            new = security.mode_for(port) if security is not None else MTLS_PERMISSIVE
            if new == old:
                continue
            self.modes[port] = new
            if self.hold > 0 and moves_clients(old, new):
                self.held[port] = now + self.hold
            else:
                self.held.pop(port, None)

    def mode(self, port: int) -> str:
        until = self.held.get(port)
        if until is not None:
            if self.clock() < until:
                return MTLS_PERMISSIVE
            del self.held[port]
        return self.modes.get(port, MTLS_PERMISSIVE)

    def dump(self) -> dict[str, object]:
        """For the admin port: the mode per app port and the switches still held."""
        now = self.clock()
        return {"modes": {str(p): m for p, m in self.modes.items()},
                "held_s": {str(p): round(t - now, 1) for p, t in self.held.items() if t > now}}
