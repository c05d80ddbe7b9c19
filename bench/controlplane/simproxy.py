"""A worker process of simulated proxies: `python -m bench.controlplane.simproxy --nats URL --control URL
--creds FILE --worker W --first I --count K --total N` (the control bus's password in the environment:
bench/controlplane/lockdown.py).

Each simulated proxy is the real proxy's control-plane code without listeners: an XdsClient over a
ConfigState (subscription to isthmus.xds.push, snapshot on start and on gaps, ACK/NACK after every
push) and a Registration (register the workload, heartbeat its lease), wired as proxy/main.py wires
them, with its own NATS connection (`--conn proxy`, the default) or, as a fallback, one connection
shared by all proxies of this worker (`--conn shared`: every proxy still has its own subscription,
so NATS still delivers one copy per proxy). The bus is locked down as `isthmus up` runs it: each proxy
connects with its own proxy credential (the K in `--creds`, issued before the timed part), so each
connection passes nats-server's auth callout (services/auth) and gets a proxy's permissions; a shared
connection uses the first.

What the simulation adds, all outside the real code paths:
- a hook after XdsClient._apply (after the ACK is published) that timestamps what the driver
  watches for (a route version, an endpoint present or absent, the full endpoint count);
- counters: pushes, snapshots, NACKs, resyncs, and the CPU time (thread_time: CPU, not wall, since
  workers share few cores) of decode and ConfigState.apply;
- the app probe (a TCP connect to the app, with a 1 s timeout, on registration and every heartbeat)
  answers healthy without connecting: with a thousand proxies in one event loop, loop lag under
  load makes probes time out, and the health flaps that follow (each one a push of the service's
  whole cluster to every proxy) would be an artifact of the simulation;
- `--share-decoded` (default on): every proxy still decodes every payload it receives (the CPU is
  paid per proxy, as in a real proxy), but the decoded object is then swapped for an identical one
  already decoded by another proxy of this worker, so 5,000 proxies do not hold 5,000 copies of the
  mesh (a real proxy holds one copy in its own process). ConfigState never mutates pushes.

The driver talks to a worker over the harness's own control bus (another nats-server, not the plane's):
bench.cp.<W>.{ping,start,progress,reset,watch,collect,cold,stats,stop}; workers announce `synced`
and finished watches on bench.cp.events. Times are time.monotonic() (CLOCK_MONOTONIC: one clock for every
process on this host).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from bench.controlplane import mesh
from bench.controlplane.lockdown import control_client, read_creds
from proto import subjects
from proto.xds import Push
from proxy.control import registration as registration_module
from proxy.control import xds_client as xds_module
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.control.registration import Registration
from proxy.control.xds_client import XdsClient
from runtime import bus as busmod
from runtime.log import configure

EVENTS = "bench.cp.events"


def subject(worker: int, command: str) -> str:
    return f"bench.cp.{worker}.{command}"


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.pushes = 0  # deltas applied (or rejected)
        self.snapshots = 0  # full snapshots applied
        self.nacks = 0
        self.resyncs = 0  # gaps or new epochs seen after the first sync
        self.apply_s = 0.0  # ConfigState.apply, deltas
        self.apply_full_s = 0.0  # ConfigState.apply, snapshots
        self.decode_s = 0.0
        self.decodes = 0
        self.decode_bytes = 0
        self.snapshot_requests = 0
        self.snapshot_failures = 0  # timeouts or no responder: XdsClient retries with backoff
        self.registry_failures = 0  # register/heartbeat calls that failed
        self.started = time.monotonic()
        self.rusage = resource.getrusage(resource.RUSAGE_SELF)

    def dump(self) -> dict[str, Any]:
        now = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (now.ru_utime + now.ru_stime) - (self.rusage.ru_utime + self.rusage.ru_stime)
        out = {"pushes": self.pushes, "snapshots": self.snapshots, "nacks": self.nacks, "resyncs": self.resyncs,
               "apply_s": self.apply_s, "apply_full_s": self.apply_full_s, "decode_s": self.decode_s,
               "decodes": self.decodes, "decode_bytes": self.decode_bytes, "cpu_s": cpu,
               "snapshot_requests": self.snapshot_requests, "snapshot_failures": self.snapshot_failures,
               "registry_failures": self.registry_failures,
               "wall_s": time.monotonic() - self.started, "maxrss_mb": now.ru_maxrss / 1024}
        self.reset()
        return out


COUNTERS = Counters()


class SharedDecoder:
    """Decode (paying the CPU), then hand out one canonical object per distinct payload."""

    def __init__(self, share: bool, keep: int = 8) -> None:
        self.share = share
        self.keep = keep
        self.real = busmod.decode
        self.cache: collections.OrderedDict[bytes, Any] = collections.OrderedDict()

    def __call__(self, data: bytes, type_: type) -> Any:
        t = time.thread_time()
        obj = self.real(data, type_)
        COUNTERS.decode_s += time.thread_time() - t
        COUNTERS.decodes += 1
        COUNTERS.decode_bytes += len(data)
        if not self.share or type_ is not Push:
            return obj
        key = bytes(data)
        found = self.cache.get(key)
        if found is not None:
            self.cache.move_to_end(key)
            return found
        self.cache[key] = obj
        if len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return obj


class SimState(ConfigState):
    def apply(self, push: Push) -> None:
        t = time.thread_time()
        try:
            super().apply(push)
        except ConfigRejected:
            COUNTERS.nacks += 1
            raise
        finally:
            spent = time.thread_time() - t
            if push.full:
                COUNTERS.apply_full_s += spent
                COUNTERS.snapshots += 1
            else:
                COUNTERS.apply_s += spent
                COUNTERS.pushes += 1


class SimXds(XdsClient):
    def __init__(self, proxy: SimProxy, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxy = proxy

    async def _apply(self, push: Push) -> None:
        await super()._apply(push)  # ConfigState.apply, then the ACK is published
        self.proxy.applied(push)

    def request_resync(self) -> None:
        if self.synced.is_set() and not self._resync.is_set():
            COUNTERS.resyncs += 1
        super().request_resync()


class SimRegistration(Registration):
    t_registered = 0.0

    async def _register(self) -> None:
        await super()._register()
        if not self.t_registered:
            self.t_registered = time.monotonic()


class Watch:
    """What the driver waits for on every proxy: the first time each proxy's state satisfies it."""

    def __init__(self, spec: dict[str, Any], size: int) -> None:
        self.id: str = spec["id"]
        self.kind: str = spec["kind"]  # route | endpoint_present | endpoint_absent | endpoint_total
        self.host: str = spec.get("host", "")
        self.version: int = spec.get("version", 0)
        self.workload: str = spec.get("workload", "")
        self.hosts: list[str] = spec.get("hosts", [])
        self.total: int = spec.get("total", 0)
        self.size = size
        self.done: dict[int, float] = {}
        self.announced = False

    def check(self, state: ConfigState) -> bool:
        if self.kind == "route":
            route = state.routes.get(self.host)
            return route is not None and route.version >= self.version
        if self.kind in ("endpoint_present", "endpoint_absent"):
            cluster = state.clusters.get(self.host)
            present = cluster is not None and any(ep.workload == self.workload for ep in cluster.endpoints)
            return present if self.kind == "endpoint_present" else not present
        if self.kind == "endpoint_total":
            clusters = state.clusters
            return sum(len(c.endpoints) for h in self.hosts if (c := clusters.get(h)) is not None) >= self.total
        raise ValueError(f"unknown watch kind {self.kind!r}")


class CountingBus:
    """The proxy's Bus, counting snapshot requests and failed requests (XdsClient and Registration
    only log them)."""

    def __init__(self, bus: busmod.Bus) -> None:
        self._bus = bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def request(self, subject_: str, payload: bytes, timeout: float = 5.0) -> bytes:
        snapshot = subject_ == subjects.XDS_SNAPSHOT
        if snapshot:
            COUNTERS.snapshot_requests += 1
        try:
            return await self._bus.request(subject_, payload, timeout)
        except busmod.BusError:
            if snapshot:
                COUNTERS.snapshot_failures += 1
            else:
                COUNTERS.registry_failures += 1
            raise

    async def call(self, subject_: str, message: Any, reply_type: type, timeout: float = 5.0) -> Any:
        return busmod.decode(await self.request(subject_, busmod.encode(message), timeout), reply_type)


class SimProxy:
    def __init__(self, worker: Worker, index: int) -> None:
        self.worker = worker
        self.index = index
        total = worker.total
        self.id = mesh.proxy_id(index)
        service = mesh.service_of(index, total)
        self.state = SimState()
        self.xds = SimXds(self, self.state, self.id, service, mesh.NAMESPACE)
        self.registration = SimRegistration(mesh.workload(index, total), "127.0.0.1", worker.app_port, worker.ttl,
                                            worker.heartbeat)
        self.bus: busmod.Bus | None = None
        self.own_bus = False
        self.tasks: list[asyncio.Task[Any]] = []
        self.t_started = 0.0
        self.t_connected = 0.0
        self.t_synced = 0.0
        self.error = ""

    async def start(self) -> None:
        """What Sidecar._control_plane and Sidecar.run do, minus the listeners."""
        self.t_started = time.monotonic()
        try:
            if self.worker.shared_bus is not None:
                bus = self.worker.shared_bus
            else:
                bus = await busmod.connect(self.worker.nats_url, f"proxy-{self.id}", wait=60,
                                           on_reconnect=self._on_reconnect,
                                           auth=self.worker.creds[self.index - self.worker.first])
                self.own_bus = True
            self.bus = bus
            counted: Any = CountingBus(bus)
            self.t_connected = time.monotonic()
            self.tasks.append(asyncio.create_task(self.xds.run()))
            await self.xds.attach(counted)
            self.tasks.append(asyncio.create_task(self.registration.run(counted)))
        except Exception as exc:  # counted and reported: the driver sees a proxy that never synced
            self.error = f"{type(exc).__name__}: {exc}"

    async def _on_reconnect(self) -> None:
        self.xds.request_resync()

    def applied(self, push: Push) -> None:
        if not self.t_synced and self.xds.synced.is_set():
            self.t_synced = time.monotonic()
            self.worker.proxy_synced()
        self.worker.check_watches(self)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.own_bus and self.bus is not None and not self.bus.client.is_closed:
            try:
                await asyncio.wait_for(self.bus.client.close(), 2)
            except Exception:
                pass


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.id: int = args.worker
        self.nats_url: str = args.nats
        self.control_url: str = args.control
        self.creds = read_creds(args.creds)  # one proxy credential per proxy of this worker
        if len(self.creds) < args.count:
            raise SystemExit(f"--creds holds {len(self.creds)} credentials for {args.count} proxies")
        self.first: int = args.first
        self.count: int = args.count
        self.total: int = args.total
        self.conn: str = args.conn
        self.ttl: int = args.ttl
        self.heartbeat: float = args.heartbeat
        self.proxies: list[SimProxy] = []
        self.watches: dict[str, Watch] = {}
        self.synced = 0
        self.shared_bus: busmod.Bus | None = None
        self.ctl: busmod.Bus | None = None
        self.app_port = 9  # never probed: see always_healthy
        self.stopping = asyncio.Event()
        self._starters: list[asyncio.Task[Any]] = []
        self._bg: set[asyncio.Task[Any]] = set()

    # --------------------------------------------------------------------------------- proxies
    def proxy_synced(self) -> None:
        self.synced += 1
        if self.synced == len(self.proxies):
            self._announce({"event": "synced"})

    def check_watches(self, proxy: SimProxy) -> None:
        if not self.watches:
            return
        now = time.monotonic()
        for watch in self.watches.values():
            if proxy.index in watch.done or not watch.check(proxy.state):
                continue
            watch.done[proxy.index] = now
            if len(watch.done) == watch.size and not watch.announced:
                watch.announced = True
                self._announce({"event": "watch", "id": watch.id})

    def _announce(self, event: dict[str, Any]) -> None:
        if self.ctl is None:
            return
        event["worker"] = self.id
        task = asyncio.ensure_future(self.ctl.publish(EVENTS, busmod.encode(event)))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    # -------------------------------------------------------------------------------- commands
    async def _ping(self, _: bytes) -> bytes:
        return busmod.encode({"ok": True, "worker": self.id, "count": self.count})

    async def _start(self, data: bytes) -> bytes:
        """Start this worker's proxies [from, to) (default: all) at once."""
        spec = msgspec.json.decode(data) if data else {}
        if not self.proxies:
            self.proxies = [SimProxy(self, self.first + i) for i in range(self.count)]
            COUNTERS.reset()
        lo, hi = spec.get("from", 0), min(spec.get("to", self.count), self.count)
        batch = [p for p in self.proxies[lo:hi] if not p.t_started]
        self._starters.append(asyncio.create_task(self._start_batch(batch)))
        return busmod.encode({"ok": True, "started": len(batch)})

    async def _start_batch(self, batch: list[SimProxy]) -> None:
        if self.conn == "shared" and self.shared_bus is None:
            self.shared_bus = await busmod.connect(self.nats_url, f"proxies-worker-{self.id}", wait=60,
                                                   auth=self.creds[0])
        await asyncio.gather(*(p.start() for p in batch))  # all at once
        if all(p.t_started for p in self.proxies):
            gc.freeze()  # as the sidecar does after start-up: what start-up allocated is never garbage

    async def _progress(self, _: bytes) -> bytes:
        return busmod.encode({"started": sum(1 for p in self.proxies if p.t_started), "synced": self.synced,
                              "registered": sum(1 for p in self.proxies if p.registration.lease_id)})

    async def _reset(self, _: bytes) -> bytes:
        """Stop every proxy (closing its connection) and forget them: the next start is a fresh one."""
        for task in self._starters:
            task.cancel()
        await asyncio.gather(*self._starters, return_exceptions=True)
        self._starters.clear()
        await asyncio.gather(*(p.stop() for p in self.proxies), return_exceptions=True)
        if self.shared_bus is not None:
            await self.shared_bus.close()
            self.shared_bus = None
        self.proxies, self.watches, self.synced = [], {}, 0
        if isinstance(xds_module.decode, SharedDecoder):
            xds_module.decode.cache.clear()
        gc.unfreeze()
        gc.collect()
        return busmod.encode({"ok": True})

    async def _watch(self, data: bytes) -> bytes:
        spec = msgspec.json.decode(data)
        watch = Watch(spec, len(self.proxies))
        now = time.monotonic()
        for proxy in self.proxies:
            if proxy.t_synced and watch.check(proxy.state):
                watch.done[proxy.index] = now
        self.watches[watch.id] = watch
        if len(watch.done) == watch.size:  # nothing left to wait for: say so now
            watch.announced = True
            self._announce({"event": "watch", "id": watch.id})
        return busmod.encode({"ok": True, "already": len(watch.done)})

    async def _collect(self, data: bytes) -> bytes:
        spec = msgspec.json.decode(data)
        watch = self.watches.pop(spec["id"], None) if spec.get("remove", True) else self.watches.get(spec["id"])
        if watch is None:
            return busmod.encode({"ok": False, "error": f"no watch {spec['id']}"})
        return busmod.encode({"ok": True, "times": [watch.done.get(p.index) for p in self.proxies]})

    async def _cold(self, _: bytes) -> bytes:
        return busmod.encode({
            "ok": True,
            "started": [p.t_started or None for p in self.proxies],
            "connected": [p.t_connected or None for p in self.proxies],
            "synced": [p.t_synced or None for p in self.proxies],
            "registered_at": [p.registration.t_registered or None for p in self.proxies],
            "registered": sum(1 for p in self.proxies if p.registration.lease_id),
            "errors": [p.error for p in self.proxies if p.error][:5],
            "failed": sum(1 for p in self.proxies if p.error),
        })

    async def _stats(self, _: bytes) -> bytes:
        out = COUNTERS.dump()
        out["proxies"] = len(self.proxies)
        out["registered"] = sum(1 for p in self.proxies if p.registration.lease_id)
        return busmod.encode(out)

    async def _stop(self, _: bytes) -> bytes:
        self.stopping.set()
        return busmod.encode({"ok": True})

    # ------------------------------------------------------------------------------------ main
    async def main(self) -> None:
        self.ctl = await busmod.connect(self.control_url, f"bench-ctl-{self.id}", wait=30,
                                        auth=control_client(self.control_url))
        handlers: dict[str, Callable[[bytes], Awaitable[bytes]]] = {
            "ping": self._ping, "start": self._start, "progress": self._progress, "reset": self._reset,
            "watch": self._watch, "collect": self._collect, "cold": self._cold, "stats": self._stats,
            "stop": self._stop}
        for name, handler in handlers.items():
            await self.ctl.serve(subject(self.id, name), handler)
        await self.ctl.flush()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()
        for task in self._starters:
            task.cancel()
        await asyncio.gather(*(p.stop() for p in self.proxies), return_exceptions=True)
        if self.shared_bus is not None:
            await self.shared_bus.close()
        await asyncio.sleep(0.05)  # let the stop reply leave
        await self.ctl.close()


async def always_healthy(host: str, port: int, timeout: float = 1.0) -> bool:
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.controlplane.simproxy")
    parser.add_argument("--nats", required=True, help="the plane's bus")
    parser.add_argument("--control", required=True, help="the harness's control bus")
    parser.add_argument("--creds", required=True, help="this worker's proxy credentials (lockdown.write_creds)")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--first", type=int, required=True, help="global index of this worker's first proxy")
    parser.add_argument("--count", type=int, required=True, help="proxies in this worker")
    parser.add_argument("--total", type=int, required=True, help="proxies in the whole benchmark (N)")
    parser.add_argument("--conn", choices=("proxy", "shared"), default="proxy")
    parser.add_argument("--ttl", type=int, default=60, help="registration lease TTL (s)")
    parser.add_argument("--heartbeat", type=float, default=20.0, help="heartbeat/probe interval (s)")
    parser.add_argument("--no-share-decoded", action="store_true")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    configure(args.log_level, f"simproxy-{args.worker}")
    xds_module.decode = SharedDecoder(not args.no_share_decoded)  # type: ignore[assignment]
    registration_module.probe_tcp = always_healthy  # type: ignore[assignment]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(Worker(args).main())


if __name__ == "__main__":
    main()
