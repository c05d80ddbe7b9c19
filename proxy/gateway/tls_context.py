"""A Gateway server's TLS as a server-side SSLContext, built once per push or credential change.

    server_context(tls, cert_chain_pem, key_pem, ca_pem) -> ssl.SSLContext     ValueError: why not (NACK)
    file_material(tls) -> (chain, key, ca)                                    the files, read once per push
    check_settings(tls, where)                                                ValueError for bad versions/ciphers

Istio's ServerTLSSettings (istio.io/latest/docs/reference/config/networking/gateway/#ServerTLSSettings)
as Envoy's DownstreamTlsContext applies it:
- SIMPLE: the server certificate only; OPTIONAL_MUTUAL: a client certificate is asked for and verified against
  the CA if sent; MUTUAL: one is required (no CA: refused at push, as Istio's validation does).
- minProtocolVersion / maxProtocolVersion: TLS_AUTO, TLSV1_0..TLSV1_3; unset or TLS_AUTO: Envoy's server
  defaults, TLS 1.2 minimum and 1.3 maximum.
- cipherSuites: Envoy (BoringSSL) names, which OpenSSL spells the same for TLS 1.2 suites; they restrict TLS
  1.2 and below (TLS 1.3 suites are not configurable, in Envoy as here). An unknown name is refused.
- ALPN: http/1.1 only (no HTTP/2 downstream yet), so an h2-capable client (curl) falls back to HTTP/1.1.

Python's ssl loads a certificate and key only from a file: both are written to one 0600 file in a private 0700
directory (in /dev/shm where it exists: not on a disk), loaded and unlinked at once (proxy/identity/tls.py).
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile

from proto.gateway_xds import (
    SERVER_TLS_ISTIO_MUTUAL, SERVER_TLS_MODES, SERVER_TLS_MUTUAL, SERVER_TLS_OPTIONAL_MUTUAL, SERVER_TLS_PASSTHROUGH,
    ServerTls,
)
from proxy.identity.tls import _private_dir

VERSIONS = {"TLSV1_0": ssl.TLSVersion.TLSv1, "TLSV1_1": ssl.TLSVersion.TLSv1_1,
            "TLSV1_2": ssl.TLSVersion.TLSv1_2, "TLSV1_3": ssl.TLSVersion.TLSv1_3}
DEFAULT_MIN, DEFAULT_MAX = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3  # Envoy's server defaults
ALPN = ["http/1.1"]


def _version(name: str, default: ssl.TLSVersion, where: str) -> ssl.TLSVersion:
    if name in ("", "TLS_AUTO"):
        return default
    try:
        return VERSIONS[name]
    except KeyError:
        raise ValueError(f"{where}: TLS version {name!r} is not one of TLS_AUTO, {', '.join(VERSIONS)}") from None


def _ciphers(names: list[str], where: str) -> str:
    """OpenSSL's cipher string for Envoy's names ("[A|B]" equivalence groups are taken as their members)."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    out: list[str] = []
    for name in names:
        for member in name.strip("[]").split("|"):
            try:
                probe.set_ciphers(member)
            except ssl.SSLError:
                raise ValueError(f"{where}: cipher suite {member!r} is not known") from None
            out.append(member)
    return ":".join(out)


def check_settings(tls: ServerTls, where: str) -> None:
    """The mode, versions and cipher suites a push names are ones we can apply (ValueError: NACK)."""
    if tls.mode not in SERVER_TLS_MODES:
        raise ValueError(f"{where}: TLS mode {tls.mode!r} is not one of {', '.join(SERVER_TLS_MODES)}")
    low = _version(tls.min_protocol_version, DEFAULT_MIN, where)
    high = _version(tls.max_protocol_version, DEFAULT_MAX, where)
    if low > high:
        raise ValueError(f"{where}: minProtocolVersion {tls.min_protocol_version} is above maxProtocolVersion "
                         f"{tls.max_protocol_version}")
    if tls.cipher_suites:
        _ciphers(tls.cipher_suites, where)
    if tls.mode == SERVER_TLS_MUTUAL and not tls.credential_name and not tls.ca_certificates:
        raise ValueError(f"{where}: MUTUAL needs caCertificates or a credentialName with a CA certificate")
    if tls.mode not in (SERVER_TLS_ISTIO_MUTUAL, SERVER_TLS_PASSTHROUGH) and not tls.credential_name \
            and not (tls.server_certificate and tls.private_key):
        raise ValueError(f"{where}: {tls.mode} needs credentialName or serverCertificate and privateKey")


def _read(path: str, what: str, where: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def file_material(tls: ServerTls, where: str) -> tuple[str, str, str]:
    """(chain PEM, key PEM, CA PEM or "") from the server's files on this host; ValueError names the file."""
    return (_read(tls.server_certificate, "serverCertificate", where), _read(tls.private_key, "privateKey", where),
            _read(tls.ca_certificates, "caCertificates", where) if tls.ca_certificates else "")


def server_context(tls: ServerTls, chain_pem: str, key_pem: str, ca_pem: str, where: str) -> ssl.SSLContext:
    """The context for one server; ValueError (with `where`) when OpenSSL refuses the material."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _version(tls.min_protocol_version, DEFAULT_MIN, where)
    ctx.maximum_version = _version(tls.max_protocol_version, DEFAULT_MAX, where)
    if tls.cipher_suites:
        ctx.set_ciphers(_ciphers(tls.cipher_suites, where))
    ctx.set_alpn_protocols(ALPN)
    ctx.num_tickets = 0  # as the sidecar's: no resumption tickets to pay for on every handshake
    if tls.mode in (SERVER_TLS_MUTUAL, SERVER_TLS_OPTIONAL_MUTUAL):
        if not ca_pem.strip():
            if tls.mode == SERVER_TLS_MUTUAL:
                raise ValueError(f"{where}: MUTUAL needs a CA certificate to verify clients, and there is none")
        else:
            try:
                ctx.load_verify_locations(cadata=ca_pem)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"{where}: the CA certificate cannot be loaded: {exc}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.mode == SERVER_TLS_MUTUAL else ssl.CERT_OPTIONAL
    directory = _private_dir()
    try:
        fd, name = tempfile.mkstemp(dir=directory, suffix=".pem")  # 0600, unlinked at once
        try:
            with os.fdopen(fd, "w") as out:
                out.write(key_pem if key_pem.endswith("\n") else key_pem + "\n")
                out.write(chain_pem)
            ctx.load_cert_chain(name)
        except ssl.SSLError as exc:
            raise ValueError(f"{where}: the certificate and key cannot be loaded: {exc.reason or exc}") from None
        finally:
            os.unlink(name)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return ctx
