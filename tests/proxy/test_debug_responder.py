"""proxy/control/debug.py: a proxy answers only requests naming it, sends its dump in bounded chunks, changes
its log level, and never sends a key (tested without a bus)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509

from proto.debug import ProxyDebugReply, ProxyDebugRequest
from proxy.control import debug
from proxy.control.debug import DebugResponder, cert_summary, secret_section, section_of
from proxy.identity.x509_read import cert_fields
from runtime import log as runtime_log
from runtime.bus import decode, encode
from tests.proxy.tls_certs import TestCa

DUMP = {"proxy": {"id": "p1", "outbound": "127.0.0.1:15001"}, "version": 7, "epoch": "e", "seq": 3,
        "clusters": [{"host": "a.ns.svc.cluster.local", "version": 7, "endpoints": [{"address": "10.0.0.1"}]}],
        "routes": [{"host": "a.ns.svc.cluster.local", "version": 7}], "pending": [],
        "security": {"mtls_mode": "STRICT"}}


def responder(dump: dict[str, Any] | None = None) -> DebugResponder:
    return DebugResponder("p1", "sidecar", lambda: dump or DUMP, lambda: {"workload": {"chain": []}, "roots": []})


async def ask(r: DebugResponder, **fields: Any) -> ProxyDebugReply | None:
    raw = await r.handle(encode(ProxyDebugRequest(**fields)))
    return None if raw is None else decode(raw, ProxyDebugReply)


async def test_a_request_for_another_proxy_is_left_unanswered() -> None:
    assert await ask(responder(), proxy_id="p2") is None
    reply = await ask(responder(), proxy_id="p1", section="clusters")
    assert reply is not None and reply.ok
    clusters = json.loads(reply.body)["clusters"]
    assert clusters[0]["endpoint_count"] == 1 and "endpoints" not in clusters[0]


async def test_a_large_dump_comes_in_chunks_that_join_to_the_whole() -> None:
    big = {**DUMP, "routes": [{"host": f"h{i}.ns.svc.cluster.local", "version": i} for i in range(3000)]}
    r = responder(big)
    parts, offset, digests = [], 0, set()
    while True:
        reply = await ask(r, proxy_id="p1", section="routes", offset=offset, chunk=1024)
        assert reply is not None and reply.ok and len(reply.body) <= 1024
        parts.append(reply.body)
        digests.add(reply.digest)
        offset += len(reply.body)
        if offset >= reply.total:
            break
    assert len(parts) > 10 and len(digests) == 1
    assert len(json.loads("".join(parts))["routes"]) == 3000


async def test_a_dump_over_the_bound_is_refused_and_one_at_it_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps(section_of(DUMP, "routes", {}), separators=(",", ":"))
    monkeypatch.setattr(debug, "MAX_DUMP", len(body))
    at = await ask(responder(), proxy_id="p1", section="routes")
    assert at is not None and at.ok and at.total == len(body)
    monkeypatch.setattr(debug, "MAX_DUMP", len(body) - 1)
    over = await ask(responder(), proxy_id="p1", section="routes")
    assert over is not None and not over.ok and "more than" in over.error


async def test_log_level_changes_at_runtime_and_an_unknown_level_is_refused() -> None:
    runtime_log.set_level("info")
    reply = await ask(responder(), proxy_id="p1", what="log", level="debug")
    assert reply is not None and reply.ok and (reply.level, reply.previous_level) == ("debug", "info")
    assert runtime_log.level_name() == "debug"
    bad = await ask(responder(), proxy_id="p1", what="log", level="loud")
    assert bad is not None and not bad.ok and "unknown log level" in bad.error
    runtime_log.set_level("info")


async def test_an_unknown_section_is_refused() -> None:
    reply = await ask(responder(), proxy_id="p1", section="keys")
    assert reply is not None and not reply.ok and "sections are" in reply.error


def test_the_secret_section_names_certificates_and_holds_no_key(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    cert_path, key_path = ca.leaf("spiffe://cluster.local/ns/a/sa/web", "web", dns=("web.a",))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    # the sidecar holds its chain as the X.509 worker parsed it (proxy/identity/x509_read.py)
    identity = SimpleNamespace(material=SimpleNamespace(chain=[cert_fields(cert)]), bundle=SimpleNamespace(roots=[]),
                               identity="spiffe://cluster.local/ns/a/sa/web", error="")
    gateway = SimpleNamespace(current={"edge": SimpleNamespace(name="edge", namespace="a", version=2,
                                                               cert_chain_pem=cert_path.read_text(),
                                                               key_pem=key_path.read_text(), ca_cert_pem="")})
    section = secret_section(identity, gateway)
    text = json.dumps(section)
    assert "PRIVATE KEY" not in text and key_path.read_text().splitlines()[1] not in text
    summary = section["workload"]["chain"][0]
    assert summary["sans"] == ["URI:spiffe://cluster.local/ns/a/sa/web", "DNS:web.a"]
    assert summary["serial"] == format(cert.serial_number, "x") and summary["expires_in_s"] > 0
    assert section["credentials"][0]["chain"][0]["subject"] == cert_summary(cert)["subject"]
    # the held fields render as the parsed certificate does (expires_in_s aside: two clocks read)
    assert {**summary, "expires_in_s": 0} == {**cert_summary(cert), "expires_in_s": 0}


def test_the_admin_ports_logging_endpoint_changes_the_level_as_envoys_does() -> None:
    from proxy.admin import AdminServer

    admin = AdminServer("127.0.0.1", 0, lambda: True, dict, dict)
    runtime_log.set_level("info")
    assert admin.respond("GET", "/logging")[2] == b"active loggers:\n  isthmus: info\n"
    status, _, body = admin.respond("POST", "/logging?level=debug")
    assert status == 200 and body.endswith(b"debug (was info)\n") and runtime_log.level_name() == "debug"  # type: ignore[union-attr]
    assert admin.respond("POST", "/logging?level=loud")[0] == 400 and runtime_log.level_name() == "debug"
    assert admin.respond("POST", "/logging")[0] == 400
    assert admin.respond("PUT", "/logging?level=info")[0] == 405
    assert admin.respond("POST", "/config_dump")[0] == 405  # every other path stays GET only
    runtime_log.set_level("info")


async def test_a_chunk_of_the_worst_text_still_fits_the_bus() -> None:
    """Quotes double when the body is carried as a JSON string, a non-ASCII character takes 4 bytes: the chunk
    size leaves room for both."""
    hosts = ['"\\\U0001F600' * 50 for _ in range(200)]
    r = responder({**DUMP, "routes": [{"host": h, "version": 1} for h in hosts]})
    r.max_payload = 64 * 1024
    reply = await r.handle(encode(ProxyDebugRequest(proxy_id="p1", section="routes", chunk=10**9)))
    assert reply is not None and len(reply) <= r.max_payload - 1024
    assert len(decode(reply, ProxyDebugReply).body) > 1000
