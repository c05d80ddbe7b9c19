"""What every control-plane service shares: settings, logging, bus, store, readiness, shutdown.

A service subclasses ServiceProcess, implements `start()` (subscribe, spawn tasks) and is run by
`ServiceProcess.main()`. It answers `isthmus.health.<name>` with ready=True once start() returned,
and prints one `{"event": "ready"}` log line, which is what `isthmus up` and the tests wait on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Any, ClassVar

from proto.debug import LogLevelReply, LogLevelRequest
from proto.health import HealthReply
from proto.subjects import admin_log_subject, health_subject
from runtime import bus as busmod
from runtime.clientconfig import ConfigFileError, load_optional
from runtime.log import configure, level_name, set_level
from runtime.metrics import MetricsPublisher, interval_from_env, service_registry
from runtime.settings import Settings
from runtime.store import Store, StoreError, grpc_target
from runtime.version import VERSION


class ServiceProcess:
    name: ClassVar[str] = "service"
    uses_store: ClassVar[bool] = True
    # a service's own file flags: {flag: (the env var it sets, help)}; the service reads the env var
    flags: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = configure(settings.log_level, self.name)
        self.bus: busmod.Bus
        self.store: Store
        self.ready = False
        self.tasks: list[asyncio.Task[None]] = []
        # this service's own metrics (prometheus-client), published for the telemetry service (runtime/metrics.py)
        self.metrics = service_registry()

    async def start(self) -> None:
        """Subscribe and spawn background work. Runs after bus (and store) are connected."""

    async def stop(self) -> None:
        """Release what start() took (leases, subscriptions)."""

    def is_leader(self) -> bool:
        return False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def run(self) -> None:
        try:
            await self._connect()
        except (ConfigFileError, busmod.BusError, StoreError) as exc:  # the operator's to fix: one line, exit 1
            self.log.error(f"the {self.name} cannot start", error=str(exc)[:500])
            raise SystemExit(1) from None
        await self.start()
        try:
            interval = interval_from_env()
        except ValueError as exc:
            self.log.warning("metrics published every 5 s", error=str(exc))
            interval = 5.0
        self.spawn(MetricsPublisher(self.bus, self.name, self.settings.instance, self.metrics, interval).run())
        await self._serve()

    async def _connect(self) -> None:
        config = load_optional()  # the credentials the launcher gave us (ISTHMUS_CONFIG, a 0600 file)
        self.bus = await busmod.connect(self.settings.nats_url, f"{self.name}-{self.settings.instance}",
                                        auth=config.nats if config else None)
        if self.uses_store:
            host, port = grpc_target(self.settings.etcd_endpoints)  # one member, or a cluster's
            etcd = config.etcd if config and config.etcd else None
            self.store = await Store.connect(host, port, user=etcd.user if etcd else "",
                                             password=etcd.password if etcd else "")

    async def _serve(self) -> None:
        await self.bus.serve(health_subject(self.name), self._health)
        await self.bus.serve(admin_log_subject(self.name), self._log_level)  # every replica: no queue group
        await self.bus.flush()
        self.ready = True
        self.log.info("ready", instance=self.settings.instance)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        self.log.info("stopping")
        await self.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.bus.close()
        if self.uses_store:
            try:
                await asyncio.wait_for(self.store.close(), 2)
            except Exception:
                pass  # etcd already gone: nothing left to release

    async def _health(self, _: bytes) -> bytes:
        reply = HealthReply(service=self.name, instance=self.settings.instance, ready=self.ready,
                            leader=self.is_leader(), version=VERSION)
        return busmod.encode(reply)

    async def _log_level(self, data: bytes) -> bytes:
        """isthmus.admin.log.<service> (operator): this replica's log level, changed when the request names one."""
        request = busmod.decode(data, LogLevelRequest)
        base = {"service": self.name, "instance": self.settings.instance, "version": VERSION}
        if not request.level:
            return busmod.encode(LogLevelReply(ok=True, level=level_name(), **base))
        try:
            before = set_level(request.level)
        except ValueError as exc:
            return busmod.encode(LogLevelReply(ok=False, error=str(exc), level=level_name(), **base))
        self.log.warning("log level changed by the operator", level=request.level, previous=before)
        return busmod.encode(LogLevelReply(ok=True, level=level_name(), previous_level=before, **base))

    @classmethod
    def main(cls, argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(prog=f"python -m services.{cls.name}")
        parser.add_argument("--nats", dest="nats_url", help="bus URL (env ISTHMUS_NATS_URL)")
        parser.add_argument("--etcd", dest="etcd_url", help="etcd URL (env ISTHMUS_ETCD_URL)")
        parser.add_argument("--lease-ttl", type=int, help="registration TTL seconds (env ISTHMUS_LEASE_TTL)")
        parser.add_argument("--log-level", help="debug|info|warning|error (env ISTHMUS_LOG_LEVEL)")
        parser.add_argument("--state-dir", help="this service's files, e.g. the ca's keys (env ISTHMUS_STATE_DIR)")
        for flag, (env, text) in cls.flags.items():
            parser.add_argument(flag, dest=env, metavar="PATH", help=f"{text} (env {env})")
        args = parser.parse_args(argv)
        for env in [env for env, _ in cls.flags.values()]:
            value = vars(args).pop(env)
            if value is not None:
                os.environ[env] = value
        if args.lease_ttl is not None and not 1 <= args.lease_ttl <= 300:
            parser.error(f"--lease-ttl {args.lease_ttl}: give 1-300 seconds")
        try:
            settings = Settings.load(**vars(args))
        except ValueError as exc:
            parser.error(str(exc))
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(cls(settings).run())
