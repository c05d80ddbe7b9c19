"""What a Sidecar holds, as proxy/main.py Sidecar.__init__ assembles it: declared once for the methods of
proxy/sidecar/ (the base classes of Sidecar), so each reads as the class it is part of."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import structlog

    from proxy.access_log import AccessLog
    from proxy.admin import AdminServer
    from proxy.control.config_state import ConfigState
    from proxy.control.registration import Registration
    from proxy.control.xds_client import XdsClient
    from proxy.dns.sidecar import SidecarDns
    from proxy.http.listener import Listener
    from proxy.http.upstream_pool import ConnectionPool
    from proxy.identity.agent import IdentityAgent, IdentityFatal
    from proxy.inbound.local_app import LocalAppRouter
    from proxy.observability import SidecarTelemetry
    from proxy.outbound.router import MeshRouter
    from proxy.settings import ProxyOptions
    from proxy.tcp.listener import TcpListener
    from proxy.tls.modes import InboundModes
    from runtime import bus as busmod


class SidecarParts:
    options: ProxyOptions
    log: structlog.stdlib.BoundLogger
    state: ConfigState
    pool: ConnectionPool
    router: MeshRouter
    xds: XdsClient
    registration: Registration
    access_log: AccessLog | None
    telemetry: SidecarTelemetry
    identity: IdentityAgent
    modes: InboundModes
    outbound: Listener
    app_router: LocalAppRouter
    inbound: Listener
    tcp_out: list[TcpListener]
    tcp_in: dict[int, TcpListener]
    fatal: IdentityFatal | None
    stopping: asyncio.Event
    dns: SidecarDns | None
    dns_listening: tuple[tuple[str, int], ...]
    admin: AdminServer
    bus: busmod.Bus | None
    bus_auth: Any
    started_at: float
    tasks: list[asyncio.Task[Any]]
    loading: asyncio.Task[None]  # the identity's start-up (load_stored), made by run()
