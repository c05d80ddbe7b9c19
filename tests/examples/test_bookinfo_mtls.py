"""The demo's mTLS words (examples/bookinfo/mtls.py), from counts: they claim "all hops" only when earned."""

from __future__ import annotations

from examples.bookinfo.mtls import Counts, summarize


def test_all_hops_mutual_tls_only_with_every_certificate_tls_in_and_no_plaintext() -> None:
    assert summarize(Counts(4, 4, inbound_tls=3)) == "mTLS: 4/4 sidecars hold a certificate, all hops mutual TLS"
    assert summarize(Counts(1, 1, endpoints=3, endpoints_mtls=3)) == \
        "mTLS: 1/1 sidecars hold a certificate, all hops mutual TLS"


def test_a_plaintext_connection_a_missing_certificate_or_an_endpoint_without_mtls_is_said() -> None:
    assert summarize(Counts(4, 4, inbound_tls=3, inbound_plaintext=1)) == \
        "mTLS: 4/4 sidecars hold a certificate, 1 plaintext connection accepted"
    assert summarize(Counts(4, 4, inbound_plaintext=2)).endswith("2 plaintext connections accepted")
    assert summarize(Counts(4, 3, inbound_tls=3)) == "mTLS: 3/4 sidecars hold a certificate"
    assert summarize(Counts(1, 1, endpoints=3, endpoints_mtls=2)) == \
        "mTLS: 1/1 sidecars hold a certificate, 1/3 reviews endpoints without mTLS"
    assert summarize(Counts(4, 4)) == "mTLS: 4/4 sidecars hold a certificate, no hop yet"
