"""The scenarios for one N, driven over NATS against a running control plane and worker processes.

    registration          N workloads register at once (no proxy yet): registry/etcd/pilot throughput,
                          and the pushes it causes (what N proxies would receive)
    cold start            all N proxies start at once -> each holds a full snapshot (XdsClient.synced)
    config convergence    apply of a VirtualService (weights change) -> every proxy has applied and
                          ACKed the route compiled from that etcd revision
    endpoint convergence  a workload registers -> every proxy's cluster for its service has the
                          endpoint; its lease expires -> every proxy has dropped it

Each proxy's time is taken in its worker process right after XdsClient._apply (state applied, ACK
published) with time.monotonic(); the start of a change is taken here with the same clock.

On the locked-down plane (bench/controlplane/lockdown.py) the driver holds three connections: the
operator's (config API, registry events), a proxy credential of its own (registrations and heartbeats of
`bench` workloads on the identity-scoped registry subjects, the tap on isthmus.xds.push), and the control
bus to the workers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from bench.controlplane import mesh
from bench.controlplane.procstat import ProcSampler
from bench.controlplane.pyspy import PySpy
from bench.controlplane.simproxy import EVENTS, subject
from bench.controlplane.stats import median, summary
from proto import subjects
from proto.registry import Heartbeat, HeartbeatReply, RegisterReply, RegisterRequest
from runtime import bus as busmod
from runtime.clientconfig import NatsClient
from runtime.store import REGISTRY_PREFIX, Store

EXPIRY_TTL = 2  # s: etcd's minimum lease TTL with default timings


class PushHead(msgspec.Struct):
    """The head of a Push: decoding only these fields skips the rest of the payload cheaply."""

    epoch: str
    seq: int
    version: int
    full: bool = False


class EventHead(msgspec.Struct):
    type: str
    workload_id: str
    revision: int


@dataclass
class Options:
    n: int
    workers: int
    applies: int = 10
    endpoint_cycles: int = 5
    pause: float = 0.3  # s between changes, so one change's ACKs and status flush do not overlap the next
    cold_timeout: float = 60.0
    lease_ttl: int = 60
    heartbeat: float = 20.0
    conn: str = "proxy"  # proxy: one NATS connection per simulated proxy; shared: one per worker
    change_timeout: float = 20.0
    ramp_wave: int = 250  # when the all-at-once cold start fails: start again in waves of this many proxies
    profile: bool = False
    results_dir: Path = field(default_factory=lambda: Path("."))
    label: str = ""


@dataclass
class Plane:
    nats_url: str
    etcd_host_port: tuple[str, int]
    pilot_pid: int
    pilot_log: Path
    counts: list[int]  # proxies per worker
    restart: Callable[[], Awaitable[dict[str, int]]] | None = None  # restarts registry + pilot -> new pids
    operator: NatsClient | None = None  # the operator's client config (config API, registry events)
    proxy: NatsClient | None = None  # the driver's own proxy credential (registry calls, push tap)
    control: NatsClient | None = None  # the harness's control bus (workers' commands and events)
    etcd_auth: tuple[str, str] = ("", "")  # etcd's service user and password (the lease-expiry watch)


def _registry(base: str) -> str:
    """The identity-scoped registry subject of the `bench` workloads: the only one a proxy credential may use."""
    return subjects.identity_subject(base, mesh.NAMESPACE, mesh.SERVICE_ACCOUNT)


class Driver:
    def __init__(self, opts: Options, plane: Plane, sampler: ProcSampler) -> None:
        self.o = opts
        self.plane = plane
        self.sampler = sampler
        self.bus: busmod.Bus  # the operator's
        self.reg: busmod.Bus  # the driver's proxy credential
        self.ctl: busmod.Bus  # the control bus
        self.pushes: list[tuple[float, int, int, bool, int]] = []  # (t, seq, version, full, bytes)
        self.reg_events: list[tuple[float, str, str, int]] = []  # (t, type, workload, revision)
        self.etcd_deletes: dict[str, float] = {}  # workload id -> when our etcd watch saw its key deleted
        self._waits: dict[tuple[str, str], tuple[set[int], asyncio.Event]] = {}
        self.wall_offset = time.time() - time.monotonic()
        self.notes: list[str] = []
        self._spies: list[PySpy] = []

    # ----------------------------------------------------------------------------------- plumbing
    async def _on_event(self, msg: Any) -> None:
        event = json.loads(msg.data)
        key = (event["event"], event.get("id", ""))
        entry = self._waits.get(key)
        if entry is not None:
            entry[0].add(event["worker"])
            if len(entry[0]) == len(self.plane.counts):
                entry[1].set()

    async def _on_push(self, msg: Any) -> None:
        head = msgspec.json.decode(msg.data, type=PushHead)
        self.pushes.append((time.monotonic(), head.seq, head.version, head.full, len(msg.data)))

    async def _on_registry(self, msg: Any) -> None:
        ev = msgspec.json.decode(msg.data, type=EventHead)
        self.reg_events.append((time.monotonic(), ev.type, ev.workload_id, ev.revision))

    async def _watch_etcd(self, store: Store, prefix: str) -> None:
        """A watcher like pilot's: when a lease expires, this is when etcd tells its watchers."""
        _, revision = await store.list(prefix)
        async for change in store.watch(prefix, revision + 1):
            if change.deleted:
                self.etcd_deletes[change.entry.key.rsplit("/", 1)[-1]] = time.monotonic()

    def expect(self, event: str, id_: str = "") -> asyncio.Event:
        done = asyncio.Event()
        self._waits[(event, id_)] = (set(), done)
        return done

    async def wait(self, done: asyncio.Event, timeout: float) -> bool:
        try:
            await asyncio.wait_for(done.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def ask_all(self, command: str, payload: Any = None, timeout: float = 30.0) -> list[Any]:
        data = b"" if payload is None else busmod.encode(payload)
        replies = await asyncio.gather(*(self.ctl.request(subject(w, command), data, timeout=timeout)
                                         for w in range(len(self.plane.counts))))
        return [json.loads(r) for r in replies]

    async def watch_all(self, spec: dict[str, Any]) -> asyncio.Event:
        done = self.expect("watch", spec["id"])
        await self.ask_all("watch", spec)
        return done

    async def collect(self, watch_id: str) -> list[float]:
        """Satisfaction times of every proxy that got there (missing ones are left out)."""
        replies = await self.ask_all("collect", {"id": watch_id})
        return [t for r in replies for t in r.get("times", []) if t is not None]

    async def worker_stats(self) -> dict[str, Any]:
        replies = await self.ask_all("stats")
        keys = ("pushes", "snapshots", "nacks", "resyncs", "apply_s", "apply_full_s", "decode_s", "decodes",
                "decode_bytes", "cpu_s", "registered", "snapshot_requests", "snapshot_failures", "registry_failures")
        out: dict[str, Any] = {k: sum(r[k] for r in replies) for k in keys}
        out["maxrss_mb"] = round(max(r["maxrss_mb"] for r in replies), 1)
        deltas = out["pushes"] or 1
        out["apply_us_per_delta"] = round(1e6 * out["apply_s"] / deltas, 1)
        out["decode_us_per_payload"] = round(1e6 * out["decode_s"] / (out["decodes"] or 1), 1)
        out["apply_ms_per_snapshot"] = round(1e3 * out["apply_full_s"] / (out["snapshots"] or 1), 3)
        for k in ("apply_s", "apply_full_s", "decode_s", "cpu_s"):
            out[k] = round(out[k], 3)
        return out

    def resources(self, t0: float, t1: float) -> dict[str, Any]:
        window = self.sampler.window(t0, t1)
        workers = [v for k, v in window.items() if k.startswith("worker")]
        out = {k: v for k, v in window.items() if not k.startswith("worker")}
        if workers:
            out["workers"] = {"cpu_s": round(sum(w["cpu_s"] for w in workers), 3),
                              "cpu_pct": round(sum(w["cpu_pct"] for w in workers), 1),
                              "rss_peak_mb": round(sum(w["rss_peak_mb"] for w in workers), 1)}
        return out

    def pilot_pushes(self) -> list[tuple[float, int, int, int, int]]:
        """(monotonic t, seq, version, clusters, routes) of every `pushed` line in pilot's log."""
        out = []
        try:
            lines = self.plane.pilot_log.read_text(errors="replace").splitlines()
        except OSError:
            return out
        for line in lines:
            if '"pushed"' not in line:
                continue
            try:
                rec = json.loads(line)
                wall = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
            except (ValueError, KeyError):
                continue
            out.append((wall - self.wall_offset, rec["seq"], rec["version"], rec.get("clusters", 0), rec.get("routes", 0)))
        return out

    async def quiet(self, quiet_for: float = 1.0, limit: float = 30.0) -> float:
        """Wait until no push has been seen for quiet_for seconds (at most limit); returns the wait."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            last = self.pushes[-1][0] if self.pushes else 0.0
            if time.monotonic() - last >= quiet_for:
                break
            await asyncio.sleep(0.1)
        return time.monotonic() - t0

    def profiler(self, name: str) -> PySpy | None:
        if not self.o.profile:
            return None
        spy = PySpy(self.plane.pilot_pid, self.o.results_dir / f"pyspy-pilot-{self.o.label or self.o.n}-{name}.txt")
        self._spies.append(spy)
        return spy.start()

    # ---------------------------------------------------------------------------------- scenarios
    async def run(self) -> dict[str, Any]:
        plane = self.plane
        self.bus = await busmod.connect(plane.nats_url, "bench-driver", auth=plane.operator)
        self.reg = await busmod.connect(plane.nats_url, "bench-driver-proxy", auth=plane.proxy)
        self.ctl = await busmod.connect(plane.control.url if plane.control else plane.nats_url, "bench-driver-ctl",
                                        auth=plane.control)
        try:
            await self.ctl.client.subscribe(EVENTS, cb=self._on_event)
            await self.reg.client.subscribe(subjects.XDS_PUSH, cb=self._on_push)
            await self.bus.client.subscribe(subjects.REGISTRY_EVENTS, cb=self._on_registry)
            for bus in (self.ctl, self.reg, self.bus):
                await bus.flush()
            result: dict[str, Any] = {"n": self.o.n, "workers": len(self.plane.counts), "conn": self.o.conn}
            for name, scenario in (("registration", self.registration), ("cold_start", self.cold_start),
                                   ("config", self.config_convergence), ("endpoints", self.endpoint_convergence)):
                try:
                    result[name] = await scenario()
                except Exception as exc:  # keep what was measured; the rest depends on this one
                    result["error"] = f"{name}: {type(exc).__name__}: {exc}"
                    break
                if name == "cold_start" and not (result[name]["all_synced"]
                                                 or result[name].get("ramped", {}).get("all_synced")):
                    result["error"] = "cold start: not every proxy synced, so nothing more could be measured"
                    break
            result["notes"] = self.notes
            return result
        finally:
            for spy in self._spies:  # a scenario that failed half-way may have left one running
                if spy.proc is not None and spy.proc.poll() is None:
                    spy.stop()
            try:
                await self.ask_all("stop", timeout=5)
            except Exception:
                pass
            for bus in (self.bus, self.reg, self.ctl):
                await bus.close()

    async def registration(self) -> dict[str, Any]:
        """N workloads register at once through the registry (the driver sends them; no proxy runs yet).

        Control plane only: registry + etcd + pilot's recompiles and pushes. The pushes go to nobody
        but the driver's tap; `fanout_mb_at_n` is what N connected proxies would have received."""
        n = self.o.n
        spy = self.profiler("registration")
        pushes_before = len(self.pushes)

        leases: dict[int, int] = {}

        async def one(i: int) -> float | None:
            request = RegisterRequest(workload=mesh.workload(i, n), ttl=self.o.lease_ttl)
            try:
                reply = await self.reg.call(_registry(subjects.REGISTRY_REGISTER), request, RegisterReply,
                                            timeout=self.o.cold_timeout)
            except busmod.BusError:
                return None
            if not reply.ok:
                return None
            leases[i] = reply.lease_id
            return time.monotonic() - t0

        events_before = len(self.reg_events)
        t0 = time.monotonic()
        done = await asyncio.gather(*(one(i) for i in range(n)))
        t_replied = time.monotonic()
        ok = [t for t in done if t is not None]
        # pilot has them all once it pushed a version >= the revision of the last registration
        deadline = t_replied + self.o.cold_timeout
        while len(self.reg_events) - events_before < len(ok) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        last_rev = max((e[3] for e in self.reg_events[events_before:]), default=0)
        caught_up = None
        while time.monotonic() < deadline:
            caught_up = next((p[0] for p in self.pushes[pushes_before:] if p[2] >= last_rev), None)
            if caught_up is not None:
                break
            await asyncio.sleep(0.02)
        t_end = time.monotonic()
        await self.quiet(0.5, 10)
        pushes = self.pushes[pushes_before:]
        profile = spy.stop() if spy else None
        if caught_up is None:
            self.notes.append(f"registration: pilot never pushed revision {last_rev} (the last registration)")
        heartbeats = await self.heartbeat_capacity(leases)
        out: dict[str, Any] = {
            "replied": summary(ok, n),
            "registrations_per_s": round(len(ok) / max(1e-9, t_replied - t0), 1),
            "pilot_caught_up_ms": None if caught_up is None else round(1e3 * (caught_up - t0), 1),
            "pushes": len(pushes),
            "push_mb": round(sum(p[4] for p in pushes) / 2**20, 2),
            "fanout_mb_at_n": round(sum(p[4] for p in pushes) * n / 2**20, 1),
            "resources": self.resources(t0, t_end),
            "heartbeats": heartbeats,
        }
        if profile:
            out["pilot_profile"] = profile
        if len(ok) < n:
            self.notes.append(f"registration: {n - len(ok)}/{n} registrations failed or timed out")
        return out

    async def heartbeat_capacity(self, leases: dict[int, int]) -> dict[str, Any]:
        """Up to 2,000 heartbeats sent at once: how many the registry answers per second."""
        n = self.o.n
        chosen = list(leases.items())[:2000]

        async def beat(i: int, lease: int) -> float | None:
            w = mesh.workload(i, n)
            message = Heartbeat(workload_id=w.id, namespace=w.namespace, service=w.service, lease_id=lease)
            try:
                reply = await self.reg.call(_registry(subjects.REGISTRY_HEARTBEAT), message, HeartbeatReply, timeout=30)
            except busmod.BusError:
                return None
            return time.monotonic() - t0 if reply.ok else None

        t0 = time.monotonic()
        got = [t for t in await asyncio.gather(*(beat(i, lease) for i, lease in chosen)) if t is not None]
        elapsed = time.monotonic() - t0
        return {"sent": len(chosen), "ok": len(got), "per_s": round(len(got) / max(elapsed, 1e-9), 1),
                "res": self.resources(t0, time.monotonic())}

    async def cold_start(self) -> dict[str, Any]:
        """All N proxies start at once: connect, ask for a snapshot, register (their workloads are
        registered already, with the same content, so registering changes no endpoint and pushes nothing)."""
        n = self.o.n
        synced = self.expect("synced")
        spy = self.profiler("cold")
        pushes_before = len(self.pushes)
        t0 = time.monotonic()
        await self.ask_all("start", {})
        all_synced = await self.wait(synced, self.o.cold_timeout)
        t_synced = time.monotonic()
        cold = await self.ask_all("cold")
        res = self.resources(t0, t_synced)
        profile = spy.stop() if spy else None
        connected = [t - t0 for r in cold for t in r["connected"] if t]
        synced_t = [t - t0 for r in cold for t in r["synced"] if t]
        out: dict[str, Any] = {
            "synced": summary(synced_t, n),
            "connected": summary(connected, n),
            "all_synced": all_synced,
            "failed_proxies": sum(r["failed"] for r in cold),
            "errors": [e for r in cold for e in r["errors"]][:5],
            "pushes": len(self.pushes) - pushes_before,
            "resources": res,
        }
        if profile:
            out["pilot_profile"] = profile
        if not all_synced:
            self.notes.append(f"cold start: only {len(synced_t)}/{n} proxies synced within {self.o.cold_timeout:g}s")
        # the proxies' own registrations, for the record (briefly, if the start failed anyway)
        deadline = time.monotonic() + (self.o.cold_timeout if all_synced else 2.0)
        while sum(r["registered"] for r in cold) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            cold = await self.ask_all("cold")
        out["registered"] = summary([t - t0 for r in cold for t in r["registered_at"] if t], n)
        if out["registered"]["count"] < n:
            self.notes.append(f"cold start: only {out['registered']['count']}/{n} proxies registered in time")
        out["quiet_wait_s"] = round(await self.quiet(1.0, 30), 2)
        out["worker_stats"] = await self.worker_stats()
        if not all_synced and self.o.ramp_wave and self.plane.restart is not None:
            out["ramped"] = await self.ramped_start()
        return out

    async def ramped_start(self) -> dict[str, Any]:
        """After a failed all-at-once start: stop every proxy, restart registry and pilot (their queues
        hold thousands of requests nobody waits for any more), then start the proxies in waves."""
        assert self.plane.restart is not None
        t_reset = time.monotonic()
        await self.ask_all("reset", timeout=120)
        pids = await self.plane.restart()
        for name, pid in pids.items():
            self.sampler.replace(name, pid)
        self.plane.pilot_pid = pids.get("pilot", self.plane.pilot_pid)
        await self.worker_stats()
        reset_s = time.monotonic() - t_reset
        workers = len(self.plane.counts)
        per_worker = max(1, self.o.ramp_wave // workers)
        synced = self.expect("synced")
        t0 = time.monotonic()
        started = 0
        wave = 0
        complete = True
        while started < self.o.n:
            await asyncio.gather(*(self.ctl.request(subject(w, "start"), busmod.encode(
                {"from": wave * per_worker, "to": (wave + 1) * per_worker}), timeout=30) for w in range(workers)))
            started = sum(min(c, (wave + 1) * per_worker) for c in self.plane.counts)
            wave += 1
            deadline = time.monotonic() + 30
            while True:
                progress = await self.ask_all("progress")
                if sum(p["synced"] for p in progress) >= started:
                    break
                if time.monotonic() > deadline:
                    complete = False
                    break
                await asyncio.sleep(0.1)
            if not complete:
                break
        all_synced = await self.wait(synced, 5) if complete else False
        t_end = time.monotonic()
        cold = await self.ask_all("cold")
        own = [sy - st for r in cold for st, sy in zip(r["started"], r["synced"]) if st and sy]
        out = {"wave": per_worker * workers, "waves": wave, "reset_s": round(reset_s, 2),
               "all_synced": all_synced, "total_s": round(t_end - t0, 2),
               "synced_from_own_start": summary(own, self.o.n),
               "resources": self.resources(t0, t_end), "worker_stats": await self.worker_stats()}
        if not all_synced:
            self.notes.append(f"ramped start: only {len(own)}/{self.o.n} proxies synced")
        else:
            self.notes.append(f"cold start all at once failed; started again in waves of {per_worker * workers}: "
                              f"all {self.o.n} synced in {t_end - t0:.1f}s")
        return out

    async def config_convergence(self) -> dict[str, Any]:
        target = mesh.host(mesh.TARGET)
        # set-up, not measured: the DestinationRule with subsets v1/v2 and the first VirtualService
        reply = await self.apply(mesh.destination_rule_yaml() + "---\n" + mesh.virtual_service_yaml(100, 0))
        prev = reply["revision"]
        done = await self.watch_all({"id": "setup", "kind": "route", "host": target, "version": prev})
        if not await self.wait(done, self.o.change_timeout):
            self.notes.append("config set-up did not reach every proxy in time")
        await self.collect("setup")
        await self.quiet(0.5, 10)
        await self.worker_stats()  # reset the counters
        spy = self.profiler("config")
        samples: list[float] = []
        per_apply: list[dict[str, Any]] = []
        t_begin = time.monotonic()
        for i in range(self.o.applies):
            watch_id = f"vs-{i}"
            done = await self.watch_all({"id": watch_id, "kind": "route", "host": target, "version": prev + 1})
            w1, w2 = mesh.weights(i)
            t0 = time.monotonic()
            reply = await self.apply(mesh.virtual_service_yaml(w1, w2))
            t_reply = time.monotonic()
            revision = reply["revision"]
            complete = await self.wait(done, self.o.change_timeout)
            times = sorted(t - t0 for t in await self.collect(watch_id))
            samples.extend(times)
            tap = next((p[0] for p in self.pushes if p[0] >= t0 and p[2] >= revision and not p[3]), None)
            per_apply.append({"revision": revision, "t0": t0, "api_ms": 1e3 * (t_reply - t0),
                              "tap_ms": None if tap is None else 1e3 * (tap - t0),
                              "first_ms": 1e3 * times[0] if times else None,
                              "p50_ms": 1e3 * times[len(times) // 2] if times else None,
                              "last_ms": 1e3 * times[-1] if times else None,
                              "count": len(times), "complete": complete})
            if not complete:
                self.notes.append(f"config change {i}: {len(times)}/{self.o.n} proxies within {self.o.change_timeout:g}s")
            prev = revision
            await asyncio.sleep(self.o.pause)
        t_end = time.monotonic()
        stats = await self.worker_stats()
        res = self.resources(t_begin, t_end)
        profile = spy.stop() if spy else None
        log = self.pilot_pushes()
        for row in per_apply:
            pushed = next((p for p in log if p[2] >= row["revision"] and p[4] > 0 and p[0] >= row["t0"] - 0.05), None)
            row["pushed_ms"] = None if pushed is None else 1e3 * (pushed[0] - row["t0"])
        out: dict[str, Any] = {
            "convergence": summary(samples, self.o.n * self.o.applies),
            "applies": self.o.applies,
            "breakdown_ms": _breakdown(per_apply),
            "per_apply": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items() if k != "t0"}
                          for row in per_apply],
            "worker_stats": stats,
            "resources": res,
            "window_s": round(t_end - t_begin, 2),
        }
        if profile:
            out["pilot_profile"] = profile
        return out

    async def apply(self, text: str) -> dict[str, Any]:
        reply = json.loads(await self.bus.request(subjects.CONFIG_APPLY, text.encode(), timeout=10))
        if not reply.get("ok"):
            raise RuntimeError(f"apply refused: {reply}")
        return reply

    async def endpoint_convergence(self) -> dict[str, Any]:
        target = mesh.host(mesh.TARGET)
        await self.worker_stats()
        spy = self.profiler("endpoints")
        added: list[float] = []
        expired: list[float] = []
        rows: list[dict[str, Any]] = []
        user, password = self.plane.etcd_auth
        store = await Store.connect(*self.plane.etcd_host_port, user=user, password=password)
        watcher = asyncio.create_task(self._watch_etcd(store, f"{REGISTRY_PREFIX}{mesh.NAMESPACE}/{mesh.TARGET}/"))
        await asyncio.sleep(0.2)
        try:
            return await self._endpoint_cycles(target, spy, added, expired, rows)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await store.close()

    async def _keep_alive(self, workload: Any, lease: int, last: list[float]) -> None:
        """Heartbeats for the added workload until it "dies", so its lease cannot expire while the
        add is still converging (at 5,000 proxies that can take longer than the 2 s TTL)."""
        beat = Heartbeat(workload_id=workload.id, namespace=workload.namespace, service=workload.service,
                         lease_id=lease)
        while True:
            await asyncio.sleep(0.4)
            try:
                reply = await self.reg.call(_registry(subjects.REGISTRY_HEARTBEAT), beat, HeartbeatReply, timeout=1)
                if reply.ok:
                    last[0] = time.monotonic()
            except busmod.BusError:
                pass

    async def _endpoint_cycles(self, target: str, spy: PySpy | None, added: list[float], expired: list[float],
                               rows: list[dict[str, Any]]) -> dict[str, Any]:
        t_begin = time.monotonic()
        for c in range(self.o.endpoint_cycles):
            wid = f"bench-ep-{c}"
            workload = mesh.extra_workload(c)
            done = await self.watch_all({"id": f"add-{c}", "kind": "endpoint_present", "host": target, "workload": wid})
            t0 = time.monotonic()
            reply = await self.reg.call(_registry(subjects.REGISTRY_REGISTER),
                                        RegisterRequest(workload=workload, ttl=EXPIRY_TTL), RegisterReply, timeout=10)
            t_reply = time.monotonic()
            if not reply.ok:
                raise RuntimeError(f"registration refused: {reply.error}")
            last_beat = [t_reply]
            beating = asyncio.create_task(self._keep_alive(workload, reply.lease_id, last_beat))
            complete = await self.wait(done, self.o.change_timeout)
            times = sorted(t - t0 for t in await self.collect(f"add-{c}"))
            added.extend(times)
            row = {"cycle": c, "register_ms": round(1e3 * (t_reply - t0), 2), "add_count": len(times),
                   "add_first_ms": _ms(times[0] if times else None), "add_last_ms": _ms(times[-1] if times else None)}
            if not complete:
                self.notes.append(f"endpoint add {c}: {len(times)}/{self.o.n} proxies within {self.o.change_timeout:g}s")
            # the workload dies: its heartbeats stop and its lease expires; the clock starts when etcd
            # tells its watchers that the key is gone
            done = await self.watch_all({"id": f"del-{c}", "kind": "endpoint_absent", "host": target, "workload": wid})
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            complete = await self.wait(done, EXPIRY_TTL + 5 + self.o.change_timeout)
            raw = await self.collect(f"del-{c}")
            t_deleted = self.etcd_deletes.get(wid)
            if t_deleted is None:
                self.notes.append(f"endpoint expiry {c}: the etcd watch saw no deletion; not measured")
            else:
                times = sorted(t - t_deleted for t in raw)
                expired.extend(times)
                row.update(expiry_after_ttl_ms=round(1e3 * (t_deleted - last_beat[0] - EXPIRY_TTL), 1),
                           del_count=len(times), del_first_ms=_ms(times[0] if times else None),
                           del_last_ms=_ms(times[-1] if times else None))
            if not complete:
                self.notes.append(f"endpoint expiry {c}: {len(raw)}/{self.o.n} proxies dropped it in time")
            rows.append(row)
            await asyncio.sleep(self.o.pause)
        t_end = time.monotonic()
        stats = await self.worker_stats()
        res = self.resources(t_begin, t_end)
        profile = spy.stop() if spy else None
        out: dict[str, Any] = {
            "added": summary(added, self.o.n * self.o.endpoint_cycles),
            "expired": summary(expired, self.o.n * self.o.endpoint_cycles),
            "cycles": self.o.endpoint_cycles,
            "per_cycle": rows,
            "worker_stats": stats,
            "resources": res,
        }
        if profile:
            out["pilot_profile"] = profile
        return out


def _ms(v: float | None) -> float | None:
    return None if v is None else round(1e3 * v, 2)


def _breakdown(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over the applies of each step's end, measured from the apply request."""
    def med(key: str) -> float:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(median(values), 2) if values else float("nan")

    return {
        "api_reply (validate + etcd txn)": med("api_ms"),
        "pilot pushed (watch + debounce + compile + publish)": med("pushed_ms"),
        "push seen on the bus by the driver": med("tap_ms"),
        "first proxy applied + ACKed": med("first_ms"),
        "median proxy": med("p50_ms"),
        "last proxy": med("last_ms"),
    }
