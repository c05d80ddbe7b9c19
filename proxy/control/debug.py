"""The proxy's answers to the operator's troubleshooting requests over the bus (proto/debug.py): what it holds,
by section of its /config_dump, and its log level, changed at runtime.

It subscribes to `isthmus.proxy.debug.<its bus credential id>` (nats-server lets only the holder of that
credential subscribe there, and only the operator publish) and answers only requests naming its own proxy id.
A dump is JSON sent in chunks (the reply must fit the bus's max_payload); the last one rendered is kept for
the requests of the following chunks, at most CACHE_SECONDS. Secrets never leave: the `secret` section holds
certificates' subjects, SANs, serials and validity, never a key (the admin port's /config_dump does not
hold keys either).
"""

from __future__ import annotations

import datetime
import hashlib
import time
from collections.abc import Callable
from typing import Any

import msgspec

from proto.debug import MAX_DUMP, SECTIONS, ProxyDebugReply, ProxyDebugRequest
from proto.identity_worker import CertFields
from proto.subjects import proxy_debug_subject
from runtime.bus import Bus, decode, encode
from runtime.log import get_logger, level_name, set_level
from runtime.version import VERSION

log = get_logger("proxy.debug")
CACHE_SECONDS = 30.0
_json = msgspec.json.Encoder()


def fields_summary(cert: CertFields, now: float | None = None) -> dict[str, Any]:
    """A certificate the sidecar holds parsed (its workload chain and roots: proxy/identity/) as the operator reads
    it: subject, issuer, SANs, serial (hex), validity; never a key. No `cryptography`: the X.509 worker parsed it."""
    now = time.time() if now is None else now
    return {"subject": cert.subject, "issuer": cert.issuer,
            "sans": [*(f"URI:{u}" for u in cert.uris), *(f"DNS:{d}" for d in cert.dns), *(f"IP:{i}" for i in cert.ips)],
            "serial": cert.serial, "not_before": _iso(cert.not_before), "not_after": _iso(cert.not_after),
            "expires_in_s": int(cert.not_after - now)}


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat()


def cert_summary(pem_or_der: Any, now: float | None = None) -> dict[str, Any]:
    """A gateway credential's certificate (PEM or parsed), as fields_summary() shows one. Loads `cryptography`:
    only gateways hold credentials, a sidecar never calls this."""
    from cryptography import x509

    cert = pem_or_der if isinstance(pem_or_der, x509.Certificate) else x509.load_pem_x509_certificate(pem_or_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [*(f"URI:{u}" for u in san.get_values_for_type(x509.UniformResourceIdentifier)),
                *(f"DNS:{d}" for d in san.get_values_for_type(x509.DNSName)),
                *(f"IP:{i}" for i in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        sans = []
    not_after = cert.not_valid_after_utc.timestamp()
    now = time.time() if now is None else now
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(), "sans": sans,
            "serial": format(cert.serial_number, "x"), "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(), "expires_in_s": int(not_after - now)}


def _pem_certs(text: str) -> list[Any]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(text.encode()) if text.strip() else []
    except ValueError:
        return []


def secret_section(identity: Any, gateway_secrets: Any = None) -> dict[str, Any]:
    """The workload certificate chain and the roots trusted (proxy/identity), and a gateway's credentialName
    certificates (proxy/gateway/secret_client.py): certificates only."""
    material = getattr(identity, "material", None)
    roots = list(getattr(getattr(identity, "bundle", None), "roots", None) or [])
    out: dict[str, Any] = {
        "workload": {"spiffe_id": getattr(identity, "identity", ""),
                     "chain": [fields_summary(c) for c in (material.chain if material is not None else [])],
                     "error": getattr(identity, "error", "") or ""},
        "roots": [fields_summary(r) for r in roots],
    }
    current = getattr(gateway_secrets, "current", None)
    if current:
        out["credentials"] = [{"name": c.name, "namespace": c.namespace, "version": c.version,
                               "chain": [cert_summary(x) for x in _pem_certs(c.cert_chain_pem)],
                               "ca": [cert_summary(x) for x in _pem_certs(c.ca_cert_pem)]}
                              for c in sorted(current.values(), key=lambda c: c.name)]
    return out


def section_of(dump: dict[str, Any], section: str, secrets: dict[str, Any]) -> Any:
    """One section of a config dump (proto/debug.py SECTIONS); `all`: the whole dump and the secrets."""
    clusters = dump.get("clusters") or []
    head = {"proxy": dump.get("proxy", {}), "version": dump.get("version", 0), "epoch": dump.get("epoch", ""),
            "seq": dump.get("seq", 0)}
    if section == "clusters":
        return {**head, "mesh": dump.get("mesh"),
                "clusters": [{k: v for k, v in c.items() if k != "endpoints"} | {"endpoint_count": len(
                    c.get("endpoints") or [])} for c in clusters]}
    if section == "endpoints":
        return {**head, "clusters": [{"host": c.get("host"), "version": c.get("version"),
                                      "endpoints": c.get("endpoints") or []} for c in clusters]}
    if section == "routes":
        return {**head, "routes": dump.get("routes") or [], "pending": dump.get("pending") or []}
    if section == "listeners":
        return {**head, "security": dump.get("security"), "gateway": dump.get("gateway"),
                "gateway_tls": dump.get("gateway_tls")}
    if section == "secret":
        return {**head, **secrets}
    return {**dump, "secret": secrets}


class DebugResponder:
    """`dump`: the proxy's /config_dump; `secrets`: its secret_section()."""

    def __init__(self, proxy_id: str, kind: str, dump: Callable[[], dict[str, Any]],
                 secrets: Callable[[], dict[str, Any]]) -> None:
        self.proxy_id = proxy_id
        self.kind = kind
        self.dump = dump
        self.secrets = secrets
        self.max_payload = 1024 * 1024
        self._cache: tuple[str, str, str, float] = ("", "", "", 0.0)  # section, body, digest, rendered at

    async def attach(self, bus: Bus, bus_user: str) -> None:
        cred = bus_user.removeprefix("proxy.")
        if not bus_user.startswith("proxy.") or not cred.replace("-", "").replace("_", "").isalnum():
            log.warning("no debug subject: not a proxy credential", user=bus_user[:64])
            return
        self.max_payload = bus.max_payload
        await bus.serve(proxy_debug_subject(cred), self.handle)

    async def handle(self, data: bytes) -> bytes | None:
        request = decode(data, ProxyDebugRequest)
        if request.proxy_id != self.proxy_id:
            return None  # another proxy holding the same credential: it answers
        return encode(self.answer(request))

    def answer(self, request: ProxyDebugRequest) -> ProxyDebugReply:
        base = {"proxy_id": self.proxy_id, "version": VERSION, "kind": self.kind, "level": level_name()}
        if request.what == "info":
            return ProxyDebugReply(ok=True, **base)
        if request.what == "log":
            if not request.level:
                return ProxyDebugReply(ok=True, **base)
            try:
                before = set_level(request.level)
            except ValueError as exc:
                return ProxyDebugReply(ok=False, error=str(exc), **base)
            log.warning("log level changed by the operator", level=request.level, previous=before)
            return ProxyDebugReply(ok=True, previous_level=before, **{**base, "level": level_name()})
        if request.what != "config" or request.section not in SECTIONS:
            return ProxyDebugReply(ok=False, error=f"unknown request {request.what!r}/{request.section!r}: "
                                                   f"sections are {', '.join(SECTIONS)}", **base)
        body, digest = self._body(request.section, request.offset)
        if len(body) > MAX_DUMP:
            return ProxyDebugReply(ok=False, total=len(body), error=f"the {request.section} section is {len(body)} "
                                   f"characters, more than {MAX_DUMP}: ask for one section at a time", **base)
        # <= 4 bytes per character in UTF-8, and JSON escaping of the quotes in the body at most doubles them
        chunk = max(1024, min(request.chunk, (self.max_payload - 4096) // 8))
        return ProxyDebugReply(ok=True, body=body[request.offset:request.offset + chunk], offset=request.offset,
                               total=len(body), digest=digest, **base)

    def _body(self, section: str, offset: int) -> tuple[str, str]:
        cached_section, body, digest, at = self._cache
        if offset and cached_section == section and time.monotonic() - at < CACHE_SECONDS:
            return body, digest
        secrets = self.secrets() if section in ("secret", "all") else {}
        body = _json.encode(section_of(self.dump(), section, secrets)).decode()
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        self._cache = (section, body, digest, time.monotonic())
        return body, digest


async def serve_debug(sidecar: Any) -> None:
    """Answer troubleshooting requests for a running Sidecar (or Gateway), and name its credential in its ACKs
    (so `isthmus proxy-config` finds its subject through pilot's proxy status)."""
    kind = "gateway" if sidecar.server_info().get("gateway") else "sidecar"
    responder = DebugResponder(sidecar.options.id, kind, sidecar.config_dump,
                               lambda: secret_section(sidecar.identity, getattr(sidecar, "secrets", None)))
    user = getattr(sidecar.bus_auth, "user", "") or ""
    sidecar.xds.bus_user = user
    sidecar.xds.gateway = kind == "gateway"
    await responder.attach(sidecar.bus, user)
