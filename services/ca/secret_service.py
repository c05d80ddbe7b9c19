"""The ca's secret store on the bus (proto/secrets.py; docs/secrets.md), queue group `ca`:

    isthmus.ca.secret.put / .list / .delete               the operator: TlsSecretPut, SecretListRequest, ...
    isthmus.ca.secret.fetch.<namespace>.<service account> a proxy on its own identity (nats-server allows no
                                                          other): SecretFetchRequest -> SecretFetchReply
    isthmus.ca.secret.events.<namespace>                  SecretEvent after each write or delete

The namespace a fetch is served from is the subject's, never the payload's (it names none): names are
DNS-1123 subdomains, so a `/` or `..` in one cannot reach another namespace's key path; it is `missing`.
Logs name secrets, never a key or a certificate body.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from proto.secrets import (
    SecretDeleteReply, SecretDeleteRequest, SecretEvent, SecretFetchReply, SecretFetchRequest, SecretListReply,
    SecretListRequest, SecretPutReply, SealedTlsSecret, TlsSecretPut,
)
from proto.subjects import (
    CA_SECRET_DELETE, CA_SECRET_FETCH, CA_SECRET_LIST, CA_SECRET_PUT, QUEUE_CA, identity_name_error, identity_of,
    secret_events_subject,
)
from runtime import kek as keks
from runtime.bus import Bus, decode, deadline_passed, encode, request_subject
from runtime.metrics import IstioSum
from runtime.secret_seal import seal_to
from services.ca.secret_check import SecretRefused, check, name_error
from services.ca.secret_store import SecretStore

CONCURRENCY = 16


class SecretService:
    def __init__(self, bus: Bus, secrets: SecretStore, log: Any, registry: CollectorRegistry) -> None:
        self.bus, self.secrets, self.log = bus, secrets, log
        self.stored = Gauge("isthmus_ca_secrets_stored", "TLS secrets in the ca's store (all namespaces).",
                            registry=registry)
        self.fetches = IstioSum("isthmus_ca_secret_fetches", "Secret fetches by gateways: served (every name "
                                "found or missing answered) or refused.", ["outcome"], registry=registry)
        self.writes = IstioSum("isthmus_ca_secret_writes", "Operator writes to the secret store by outcome "
                               "(created, replaced, deleted, refused).", ["outcome"], registry=registry)

    async def start(self) -> None:
        self.stored.set(await self.secrets.count())
        for subject, handler in ((CA_SECRET_PUT, self._put), (CA_SECRET_LIST, self._list),
                                 (CA_SECRET_DELETE, self._delete), (f"{CA_SECRET_FETCH}.*.>", self._fetch)):
            await self.bus.serve(subject, handler, queue=QUEUE_CA, concurrency=CONCURRENCY)

    async def _event(self, namespace: str, name: str, version: int, deleted: bool = False) -> None:
        try:
            await self.bus.publish(secret_events_subject(namespace), encode(
                SecretEvent(namespace=namespace, name=name, version=version, deleted=deleted)))
        except Exception as exc:  # the gateways' periodic refetch catches up; the write itself stands
            self.log.warning("secret event not published", namespace=namespace, secret=name, error=str(exc)[:200])

    async def _put(self, data: bytes) -> bytes:
        put = decode(data, TlsSecretPut)
        now = time.time()
        try:
            if deadline_passed():
                raise SecretRefused("the request's deadline passed; nothing was stored")
            info, warnings = check(put, now)
            stored, created = await self.secrets.put(put, info, now)
        except SecretRefused as exc:
            self.writes.inc("refused")
            self.log.warning("ca audit", action="secret-put", outcome="refused", namespace=put.namespace[:63],
                             secret=put.name[:253], reason=str(exc))
            return encode(SecretPutReply(ok=False, error=str(exc)))
        self.writes.inc("created" if created else "replaced")
        self.stored.set(await self.secrets.count())
        self.log.info("ca audit", action="secret-put", outcome="created" if created else "replaced",
                      namespace=put.namespace, secret=put.name, version=stored.version, type=stored.type,
                      hosts=",".join(stored.hosts)[:300], not_after=stored.not_after)
        await self._event(put.namespace, put.name, stored.version)
        return encode(SecretPutReply(ok=True, info=stored, created=created, warnings=warnings))

    async def _list(self, data: bytes) -> bytes:
        request = decode(data, SecretListRequest)
        if request.namespace and identity_name_error(request.namespace, "x"):
            return encode(SecretListReply(ok=False, error=identity_name_error(request.namespace, "x")))
        infos = await self.secrets.infos(request.namespace)
        return encode(SecretListReply(ok=True, secrets=infos[:request.limit], total=len(infos)))

    async def _delete(self, data: bytes) -> bytes:
        request = decode(data, SecretDeleteRequest)
        error = name_error(request.namespace, request.name)
        if error:
            return encode(SecretDeleteReply(ok=False, error=error))
        if not await self.secrets.delete(request.namespace, request.name):
            return encode(SecretDeleteReply(ok=False, error=f"not found: secret {request.name!r} in namespace "
                                                            f"{request.namespace}"))
        self.writes.inc("deleted")
        self.stored.set(await self.secrets.count())
        self.log.info("ca audit", action="secret-delete", outcome="deleted", namespace=request.namespace,
                      secret=request.name)
        await self._event(request.namespace, request.name, 0, deleted=True)
        return encode(SecretDeleteReply(ok=True))

    async def _fetch(self, data: bytes) -> bytes:
        identity = identity_of(request_subject(), CA_SECRET_FETCH)
        if identity is None or identity_name_error(*identity):
            self.fetches.inc("refused")
            self.log.warning("secret fetch refused", subject=request_subject()[:200], reason="not an identity subject")
            return encode(SecretFetchReply(ok=False, error="ask on isthmus.ca.secret.fetch.<namespace>.<service "
                                                           "account>, your own identity"))
        namespace, service_account = identity
        request = decode(data, SecretFetchRequest)
        if deadline_passed():
            self.fetches.inc("refused")
            return encode(SecretFetchReply(ok=False, error="the request's deadline passed; ask again"))
        secrets: list[SealedTlsSecret] = []
        missing: list[str] = []
        for name in dict.fromkeys(request.names):
            found = None if name_error(namespace, name) else await self.secrets.get(namespace, name)
            if found is None:
                missing.append(name)
                continue
            record, version = found
            try:
                key_pem = self.secrets.open_key(namespace, name, record)
            except keks.Unsealable as exc:
                self.log.error("a stored secret does not open", namespace=namespace, secret=name, reason=str(exc))
                missing.append(name)
                continue
            sealed = SealedTlsSecret(namespace=namespace, name=name, version=version,
                                     cert_chain_pem=record.cert_chain_pem, ca_cert_pem=record.ca_cert_pem,
                                     not_after=record.info.not_after)
            if key_pem:
                ephemeral, nonce, ciphertext = seal_to(request.reply_key, namespace, name, version, key_pem)
                sealed.ephemeral_key, sealed.nonce, sealed.sealed_key = ephemeral, nonce, ciphertext
            secrets.append(sealed)
        self.fetches.inc("served")
        self.log.info("secrets served", namespace=namespace, service_account=service_account,
                      served=",".join(s.name for s in secrets)[:500], missing=",".join(missing)[:500])
        return encode(SecretFetchReply(ok=True, secrets=secrets, missing=missing))
