"""`isthmus create secret` reads its files within bounds and refuses what the ca would never take, naming the
flag and the file, before anything is sent (no bus here: the address is unreachable)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from isthmus.commands.secrets import MAX_KEY, read_pem
from isthmus.errors import CliError

UNREACHABLE = "nats://127.0.0.1:1"


def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", UNREACHABLE, *args],
                          capture_output=True, text=True, timeout=60)


def test_a_key_file_at_the_limit_is_read_and_one_byte_over_is_refused(tmp_path: Path) -> None:
    at = tmp_path / "at.key"
    at.write_text("-----BEGIN PRIVATE KEY-----\n".ljust(MAX_KEY, "A"))
    assert len(read_pem("--key", str(at), MAX_KEY)) == MAX_KEY
    over = tmp_path / "over.key"
    over.write_text("-----BEGIN PRIVATE KEY-----\n".ljust(MAX_KEY + 1, "A"))
    with pytest.raises(CliError, match=rf"^--key {over}: larger than {MAX_KEY} bytes"):
        read_pem("--key", str(over), MAX_KEY)


def test_a_fifo_der_or_missing_file_is_refused_naming_flag_and_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CliError, match="not a regular file"):
        read_pem("--cert", str(fifo), 100)
    der = tmp_path / "cert.der"
    der.write_bytes(b"\x30\x82\xff\xfe")
    with pytest.raises(CliError, match=rf"--cert {der}: not PEM text"):
        read_pem("--cert", str(der), 100)
    with pytest.raises(CliError, match="cannot read it"):
        read_pem("--cert", str(tmp_path / "none"), 100)


def test_the_cli_exits_1_on_a_bad_file_and_2_on_a_bad_name_or_from_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("hello\n")
    bad_file = isthmus("create", "secret", "tls", "cred", "--cert", str(plain), "--key", str(plain))
    assert bad_file.returncode == 1 and bad_file.stderr == f"error: --cert {plain}: no PEM block (-----BEGIN ...) in it\n"
    bad_name = isthmus("create", "secret", "tls", "Cred", "--cert", str(plain), "--key", str(plain))
    assert bad_name.returncode == 2 and "DNS-1123 subdomain" in bad_name.stderr
    not_cacert = isthmus("create", "secret", "generic", "cred", "--from-file=ca.crt=" + str(plain))
    assert not_cacert.returncode == 2 and "-cacert" in not_cacert.stderr
    other_key = isthmus("create", "secret", "generic", "cred-cacert", "--from-file=tls.key=" + str(plain))
    assert other_key.returncode == 2 and "tls.crt=FILE and tls.key=FILE" in other_key.stderr
    before_kind = isthmus("create", "-n", "a.b", "secret", "tls", "cred", "--cert", str(plain), "--key", str(plain))
    assert before_kind.returncode == 2 and "DNS-1123 label" in before_kind.stderr  # kubectl's `create -n NS secret`
    unknown_key = isthmus("create", "secret", "generic", "cred", "--from-file=password=" + str(plain))
    assert unknown_key.returncode == 2 and "TLS material only" in unknown_key.stderr
    twice = isthmus("create", "secret", "generic", "cred", "--from-file=tls.crt=" + str(plain),
                    "--from-file=cert=" + str(plain))
    assert twice.returncode == 2 and "each once" in twice.stderr
    assert "unknown resource kind" in isthmus("get", "nosuch").stderr  # config kinds still go to pilot
