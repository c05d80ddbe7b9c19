"""What the sidecar says of itself: whether it is ready, the admin port's config dump and server info (also
the debug subject's, proxy/control/debug.py), and the "ready" log line."""

from __future__ import annotations

import time
from typing import Any

from proxy.sidecar.parts import SidecarParts


class SidecarStatus(SidecarParts):
    def ready_fields(self) -> dict[str, Any]:
        """What the "ready" log line says: the bound ports (a gateway says its own: proxy/gateway/main.py)."""
        fields = {"outbound": self.outbound.port, "inbound": self.inbound.port, "admin": self.options.admin_port,
                  "service": self.options.service, "namespace": self.options.namespace}
        if self.dns is not None:
            fields["dns"] = self.dns.port
        return fields

    def is_ready(self) -> bool:
        """Config from pilot including this workload's own security entry (before it the inbound listener admits
        nothing: proxy/inbound/local_app.py), and a workload certificate (as Envoy is not ready before its SDS
        secrets): before it, mutual TLS could be neither offered nor originated."""
        return self.xds.synced.is_set() and self.app_router.configured and self.identity.provider.current is not None

    def not_ready(self) -> str:
        """Why /ready is 503, when the registry refuses our registration (another namespace or service holds
        this workload id, a bad label...): pilot sends no security entry to a workload it does not know, so this
        sidecar admits nothing until that changes. Also once configured (its lease was lost, and another took the
        id meanwhile): it keeps enforcing the config it holds, but it is out of the mesh, so /ready is 503 with
        this. "": the admin port's default reason, when not ready."""
        refused = self.registration.refused
        return f"the registry refuses this workload's registration: {refused}" if refused else ""

    def config_dump(self) -> dict[str, Any]:
        dns = {"dns": self.dns.dump()} if self.dns is not None else {}
        return {"proxy": self.server_info(), **self.state.dump(), **self.telemetry.dump(), **dns}

    def server_info(self) -> dict[str, Any]:
        o = self.options
        return {"id": o.id, "service": o.service, "namespace": o.namespace, "labels": o.labels,
                "outbound": f"{o.outbound_host}:{self.outbound.port}", "inbound": f"{o.inbound_host}:{self.inbound.port}",
                "app": f"{o.app_host}:{o.app_port}",
                "tcp_outbound": {listener.name: listener.port for listener in self.tcp_out},
                "tcp_inbound": {port: listener.port for port, listener in self.tcp_in.items()},
                "bus_connected": bool(self.bus and self.bus.connected),
                "inbound_mtls": self.inbound_mtls(),
                "inbound_authz": self.inbound_authz(),
                "tracing": self.telemetry.tracing.dump(),
                "synced": self.is_ready(), "registration_refused": self.registration.refused, "uptime_s": round(time.time() - self.started_at, 1)}

    def inbound_mtls(self) -> dict[str, Any]:
        """What each inbound listener's TlsAcceptor took (tls, plaintext) and closed (plaintext_refused in
        STRICT, tls_refused before a certificate, handshake_failed, timed_out, overflow), and the mode per app
        port (with switches still held at PERMISSIVE); one entry per listener the flags made."""
        acceptors = {"inbound": self.inbound.acceptor,
                     **{f"tcp {port}": listener.acceptor for port, listener in self.tcp_in.items()}}
        return {"listeners": {name: acceptor.stats.as_dict() for name, acceptor in acceptors.items()
                              if acceptor is not None}, **self.modes.dump()}

    def inbound_authz(self) -> dict[str, Any]:
        """The AuthorizationPolicy rules compiled from the last push (proxy/inbound/authz/) and the TCP
        connections each inbound TCP listener closed by a policy."""
        authz = self.app_router.authz
        return {"rules": authz.rules if authz is not None else 0,
                "tcp_denied": {port: listener.denied for port, listener in self.tcp_in.items()}}
