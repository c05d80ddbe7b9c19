"""Checks of a DestinationRule's `tls` (Istio's ClientTLSSettings) at any level, after Istio's ValidateTLS
(pkg/config/validation/agent) and its analyzers.

Errors: a mode other than DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL; MUTUAL without clientCertificate or
privateKey; insecureSkipVerify with caCertificates or subjectAltNames (SIMPLE, MUTUAL); and, not supported
yet, credentialName (Isthmus has no secret store for sidecars) and caCrl (no revocation lists).
Warnings: fields the mode ignores (DISABLE or an unset mode, which Istio reads as DISABLE: all of them;
SIMPLE: the client certificate and key; ISTIO_MUTUAL: the files, since the sidecar uses its workload
certificate and the mesh trust bundle); SIMPLE or MUTUAL without caCertificates (Istio's IST0128, IST0129);
insecureSkipVerify with ISTIO_MUTUAL (the peer's identity is then not checked).
"""

from __future__ import annotations

from proto.networking import ClientTLSSettings
from services.pilot.validate.findings import Findings

MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
_FILES = (("clientCertificate", "client_certificate"), ("privateKey", "private_key"),
          ("caCertificates", "ca_certificates"))


def _given(tls: ClientTLSSettings, *names: tuple[str, str]) -> list[str]:
    return [wire for wire, attr in names if getattr(tls, attr)]


def client_tls(tls: ClientTLSSettings, path: str, f: Findings) -> None:
    """`path`: where the tls sits, e.g. `spec.trafficPolicy.tls`."""
    mode = tls.mode
    if tls.credential_name is not None:
        f.error(f"{path}.credentialName", "credentialName is not supported yet: Isthmus has no secret store for "
                                          "sidecars to fetch credentials from; give the files with "
                                          "clientCertificate, privateKey and caCertificates")
    if tls.ca_crl is not None:
        f.error(f"{path}.caCrl", "caCrl is not supported yet: certificate revocation lists are not checked")
    if mode is not None and mode not in MODES:
        f.error(f"{path}.mode", f"unsupported TLS mode `{mode}` (one of {', '.join(MODES)})")
        return
    skip = bool(tls.insecure_skip_verify)
    others = _given(tls, *_FILES, ("subjectAltNames", "subject_alt_names"), ("sni", "sni"),
                    ("insecureSkipVerify", "insecure_skip_verify"))
    if mode in (None, "DISABLE"):
        if others:
            unset = "mode is unset, which is DISABLE" if mode is None else "mode DISABLE"
            f.warn(path, f"{unset}: plaintext, so {', '.join(others)} {'is' if len(others) == 1 else 'are'} ignored")
        return
    if mode == "ISTIO_MUTUAL":
        files = _given(tls, *_FILES)
        if files:
            f.warn(path, f"{', '.join(files)} ignored with ISTIO_MUTUAL: the sidecar uses its workload certificate "
                         "and the mesh trust bundle")
        if skip:
            f.warn(f"{path}.insecureSkipVerify", "with ISTIO_MUTUAL the peer's identity is then not checked")
        return
    if skip and (tls.ca_certificates or tls.subject_alt_names):
        f.error(f"{path}.insecureSkipVerify", "cannot specify caCertificates or subjectAltNames when "
                                              "insecureSkipVerify is set true")
    if mode == "MUTUAL":
        if not tls.client_certificate:
            f.error(f"{path}.clientCertificate", "client certificate required for mutual tls")
        if not tls.private_key:
            f.error(f"{path}.privateKey", "private key required for mutual tls")
    elif _given(tls, *_FILES[:2]):
        f.warn(path, "clientCertificate and privateKey are ignored with SIMPLE (MUTUAL presents them)")
    if not tls.ca_certificates and not skip:
        f.warn(path, f"{mode} without caCertificates: the server's certificate is checked against the system "
                     "trust store of the client's host (Istio's analyzer warns, IST0128)")
