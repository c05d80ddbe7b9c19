"""The sidecar's control plane, in the background beside its listeners: the bus, pilot's pushes
(proxy/control/xds_client.py), registration, the debug subject, the workload identity and telemetry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from proxy.control import buscreds
from proxy.control.debug import serve_debug
from proxy.identity.agent import IdentityFatal
from proxy.identity.ca_client import CaRefused
from proxy.sidecar.errors import CredentialsError
from proxy.sidecar.parts import SidecarParts
from runtime import bus as busmod


class SidecarControlPlane(SidecarParts):
    def _mint_with_operator_config(self) -> Callable[[], Awaitable[str]] | None:
        """With the operator's client config and no token, the sidecar creates its own bootstrap token (the local
        convenience of `proxy run`), over a short connection as the operator: its own bus credentials may not."""
        o = self.options
        if o.bus_auth is None or o.bus_auth.user != "operator":
            return None

        async def mint() -> str:
            try:
                return await buscreds.mint_ca_token(o.nats_url, o.bus_auth, o.namespace, o.service_account)
            except CredentialsError as exc:
                raise CaRefused(str(exc)) from None
        return mint

    async def _control_plane(self) -> None:
        self.bus = await busmod.connect(self.options.nats_url, f"proxy-{self.options.id}", wait=None,
                                        on_reconnect=self._on_reconnect, auth=self.bus_auth)
        await serve_debug(self)  # `isthmus proxy-config`, `proxy log` over the bus (before the first ACK names it)
        await self.xds.attach(self.bus)
        await self.loading  # the stored certificate, if any, is held (TLS ready) before peers learn of us
        self.tasks.append(asyncio.create_task(self.registration.run(self.bus)))
        self.tasks.append(asyncio.create_task(self._identity(self.bus)))
        self.tasks += self.telemetry.start(self.bus)

    async def _identity(self, bus: busmod.Bus) -> None:
        """The identity loop; a refusal it cannot get past (IdentityFatal) stops the sidecar, and `run` raises it."""
        try:
            await self.identity.run(bus)
        except IdentityFatal as exc:
            self.log.error("no workload identity", error=str(exc), spiffe_id=self.identity.identity)
            self.fatal = exc
            self.stopping.set()

    async def _on_reconnect(self) -> None:
        self.xds.request_resync()  # pushes may have been missed while away
