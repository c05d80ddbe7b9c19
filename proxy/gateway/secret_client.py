"""A gateway's TLS credentials (Istio's `credentialName`) from the ca's secret store (proto/secrets.py).

    client = SecretClient(namespace, service_account)
    client.want({"bookinfo-credential"})     what the gateway's servers name now (their `-cacert` companions too)
    task = asyncio.create_task(client.run(bus))
    client.current["bookinfo-credential"]    TlsCredential; client.missing: wanted names the store lacks
    client.listeners.append(callback)        called on the loop after `current` or `missing` changed

Fetches go on the gateway's own identity subject (`isthmus.ca.secret.fetch.<namespace>.<service account>`),
each with a fresh X25519 key the private keys are sealed to (runtime/secret_seal.py). The client refetches a
wanted name on its SecretEvent, on want() changes and after the bus reconnects, and all wanted names every
REFRESH seconds (an event lost while away). A reply that does not open, or whose key does not match its
certificate, is logged and dropped: the last good credential stays. Only names from want() are held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from proto.secrets import CACERT_SUFFIX, MAX_FETCH, SecretEvent, SecretFetchReply, SecretFetchRequest, SealedTlsSecret
from proto.subjects import CA_SECRET_FETCH, identity_subject, secret_events_subject
from runtime.bus import Bus, decode
from runtime.log import get_logger
from runtime.secret_seal import SealBroken, open_sealed, raw_public

log = get_logger("proxy.secrets")
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0  # seconds between retries of a failed fetch (doubling)
REFRESH = 300.0  # seconds: every wanted name is fetched again this often (an event missed while away)
POLL = 1.0  # seconds: how often the loop checks for a reconnect of the bus
BATCH = 8  # names per fetch request (a reply carries at most MAX_FETCH; a few keep it far below max_payload)
MAX_WANTED = 1000  # names a gateway may want at once (more are dropped with a warning)


@dataclass(frozen=True)
class TlsCredential:
    name: str
    namespace: str
    version: int
    cert_chain_pem: str
    key_pem: str
    ca_cert_pem: str  # the secret's own CA cert, else its `<name>-cacert` companion's, else ""
    not_after: float
    # the companion's version when ca_cert_pem is the companion's, else 0: a companion created, rotated or
    # deleted changes what a MUTUAL server verifies with while `version` (the primary's) stays the same
    ca_version: int = 0


@dataclass(frozen=True)
class _Held:
    """One fetched secret (a primary or a companion) as the client holds it."""

    version: int
    cert_chain_pem: str
    key_pem: str
    ca_cert_pem: str
    not_after: float


def _key_matches(chain_pem: str, key_pem: str) -> bool:
    try:
        leaf = x509.load_pem_x509_certificate(chain_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        return key.public_key().public_bytes(serialization.Encoding.DER, spki) == \
            leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
    except Exception:
        return False


class SecretClient:
    def __init__(self, namespace: str, service_account: str, fetch_timeout: float = 5.0) -> None:
        self.namespace, self.service_account, self.fetch_timeout = namespace, service_account, fetch_timeout
        self.subject = identity_subject(CA_SECRET_FETCH, namespace, service_account)
        self.current: dict[str, TlsCredential] = {}
        self.missing: set[str] = set()
        self.listeners: list[Callable[[], None]] = []
        self._wanted: set[str] = set()
        self._held: dict[str, _Held] = {}  # by name: wanted names and their companions
        self._absent: set[str] = set()  # names (primaries or companions) the store said it lacks
        self._due: set[str] = set()  # names to fetch
        self._wake = asyncio.Event()
        self._backoff = BACKOFF_MIN

    def _names(self) -> set[str]:
        """Every name held or fetched: the wanted ones and their companions."""
        return self._wanted | {n + CACERT_SUFFIX for n in self._wanted if not n.endswith(CACERT_SUFFIX)}

    def want(self, wanted: Iterable[str]) -> None:
        """What the gateway's servers name now, most important first (CompiledGateway.credentials: older Gateways'
        first); anything else is forgotten at once. Beyond MAX_WANTED the later names are ignored, with a warning."""
        ordered = list(dict.fromkeys(wanted))
        if len(ordered) > MAX_WANTED:
            log.warning("too many secrets wanted; the later ones are ignored", wanted=len(ordered), limit=MAX_WANTED,
                        ignored=",".join(ordered[MAX_WANTED:])[:300])
        names = set(ordered[:MAX_WANTED])
        if names == self._wanted:
            return
        added = names - self._wanted
        self._wanted = set(names)
        keep = self._names()
        self._held = {n: h for n, h in self._held.items() if n in keep}
        self._absent &= keep
        self._due = (self._due & keep) | {n for n in keep if n not in self._held and n not in self._absent} \
            | {a + CACERT_SUFFIX for a in added if not a.endswith(CACERT_SUFFIX)} | added
        self._publish()
        self._wake.set()

    def dump(self) -> dict[str, Any]:
        """For /config_dump: names, versions, expiry and what is missing; never a key."""
        return {"namespace": self.namespace,
                "secrets": [{"name": c.name, "version": c.version, "not_after": c.not_after,
                             "has_ca_cert": bool(c.ca_cert_pem)} for c in sorted(self.current.values(),
                                                                                 key=lambda c: c.name)],
                "missing": sorted(self.missing)}

    # state -> current/missing

    def _publish(self) -> None:
        current: dict[str, TlsCredential] = {}
        for name in self._wanted:
            held = self._held.get(name)
            if held is None:
                continue
            companion = self._held.get(name + CACERT_SUFFIX)
            from_companion = not held.ca_cert_pem and companion is not None and bool(companion.ca_cert_pem)
            ca = companion.ca_cert_pem if from_companion and companion else held.ca_cert_pem
            current[name] = TlsCredential(name=name, namespace=self.namespace, version=held.version,
                                          cert_chain_pem=held.cert_chain_pem, key_pem=held.key_pem,
                                          ca_cert_pem=ca, not_after=held.not_after,
                                          ca_version=companion.version if from_companion and companion else 0)
        missing = {n for n in self._wanted if n in self._absent and n not in self._held}
        if current == self.current and missing == self.missing:
            return
        self.current, self.missing = current, missing
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the others or the loop
                log.exception("secret listener failed")

    # the loop

    async def run(self, bus: Bus) -> None:
        """Until cancelled; never raises (failures are logged and retried with capped backoff)."""
        try:
            await bus.listen(secret_events_subject(self.namespace), self._on_event)
        except Exception as exc:
            log.warning("cannot subscribe to secret events; relying on periodic refetch", error=str(exc)[:200])
        loop = asyncio.get_running_loop()
        connected = bus.connected
        next_refresh = loop.time() + REFRESH
        retry_at = 0.0
        while True:
            now = loop.time()
            if bus.connected and not connected or now >= next_refresh:  # reconnected, or time for a refresh
                self._due |= self._names()
                next_refresh = now + REFRESH
            connected = bus.connected
            if self._due and now >= retry_at:
                if await self._fetch_due(bus):
                    self._backoff = BACKOFF_MIN
                else:
                    retry_at = loop.time() + self._backoff
                    self._backoff = min(BACKOFF_MAX, self._backoff * 2)
                continue
            self._wake.clear()
            wait = POLL if not self._due else max(0.0, min(POLL, retry_at - now))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def _on_event(self, data: bytes) -> None:
        event = decode(data, SecretEvent)
        if event.namespace == self.namespace and event.name in self._names():
            held = self._held.get(event.name)
            if event.deleted or held is None or event.version > held.version:
                self._due.add(event.name)
                self._wake.set()

    async def _fetch_due(self, bus: Bus) -> bool:
        """Fetch what is due, BATCH names a request; True when every request was answered."""
        names = sorted(self._due & self._names())
        self._due -= set(names)
        ok = True
        for start in range(0, len(names), min(BATCH, MAX_FETCH)):
            batch = names[start:start + BATCH]
            try:
                await self._fetch(bus, batch)
                continue
            except Exception as exc:
                if len(batch) == 1 or not bus.connected:
                    log.warning("secret fetch failed; retrying", secrets=",".join(batch)[:300], error=str(exc)[:300])
                    self._due |= set(batch) & self._names()
                    ok = False
                    continue
            for name in batch:  # one at a time: large CA bundles together may pass the bus's max_payload
                try:
                    await self._fetch(bus, [name])
                except Exception as exc:
                    log.warning("secret fetch failed; retrying", secrets=name, error=str(exc)[:300])
                    self._due |= {name} & self._names()
                    ok = False
        self._publish()
        return ok

    async def _fetch(self, bus: Bus, names: list[str]) -> None:
        private = X25519PrivateKey.generate()
        request = SecretFetchRequest(names=names, reply_key=raw_public(private))
        reply = await bus.call(self.subject, request, SecretFetchReply, self.fetch_timeout)
        if not reply.ok:
            raise RuntimeError(f"the ca refused: {reply.error[:200]}")
        asked = set(names)
        for name in reply.missing:
            if name in asked:
                self._held.pop(name, None)
                self._absent.add(name)
        for sealed in reply.secrets:
            if sealed.name not in asked or sealed.namespace != self.namespace:
                log.warning("secret reply names a secret not asked for; dropped", secret=sealed.name[:253])
                continue
            held = self._open(private, sealed)
            if held is not None:
                self._held[sealed.name] = held
                self._absent.discard(sealed.name)

    def _open(self, private: X25519PrivateKey, sealed: SealedTlsSecret) -> _Held | None:
        key_pem = ""
        if sealed.sealed_key:
            try:
                key_pem = open_sealed(private, sealed.ephemeral_key, sealed.nonce, sealed.sealed_key,
                                      sealed.namespace, sealed.name, sealed.version).decode()
            except (SealBroken, UnicodeDecodeError) as exc:
                log.warning("secret dropped: its key does not open; keeping the last good one", secret=sealed.name,
                            version=sealed.version, error=str(exc)[:200])
                return None
            if not _key_matches(sealed.cert_chain_pem, key_pem):
                log.warning("secret dropped: its key does not match its certificate; keeping the last good one",
                            secret=sealed.name, version=sealed.version)
                return None
        return _Held(version=sealed.version, cert_chain_pem=sealed.cert_chain_pem, key_pem=key_pem,
                     ca_cert_pem=sealed.ca_cert_pem, not_after=sealed.not_after)

