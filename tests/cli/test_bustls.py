"""write_private and ca_and_server (tester final7)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path

from cryptography import x509

from isthmus.launch.bustls import ca_and_server, write_private


def test_write_private_replaces_a_0644_file_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old old old old")
    os.chmod(path, 0o644)
    write_private(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"new"
    fresh = tmp_path / "fresh.pem"
    old = os.umask(0)
    try:
        write_private(fresh, b"k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_server_sans_are_the_names_and_loopback_only() -> None:
    ca, server, _ = ca_and_server("o", "ca", "srv", ["localhost", "nats"], datetime.timedelta(days=1))
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "nats"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert server.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
