"""`isthmus bug-report`'s redaction and bounds, without a bus."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from isthmus.commands.bug_report import MAX_LINE, Archive, tail_lines
from isthmus.redact import REDACTED, known_secrets, redact


def test_the_state_directorys_secrets_are_found_and_removed_anywhere(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "isthmus.yaml").write_text("nats:\n  user: operator\n  password: op-Secret-1234567\n")
    (tmp_path / "secrets" / "etcd.json").write_text('{"root_password": "rootpw-abcdefgh", "user": "root"}')
    (tmp_path / "secrets" / "auth-account.nk").write_text("SAAJ7SEEDSEEDSEEDSEEDSEED\n")
    found = known_secrets(tmp_path)
    assert found == {"op-Secret-1234567", "rootpw-abcdefgh", "SAAJ7SEEDSEEDSEEDSEEDSEED"}
    text = "url nats://operator:op-Secret-1234567@h and rootpw-abcdefgh and SAAJ7SEEDSEEDSEEDSEEDSEED; user root"
    assert redact(text, found) == f"url nats://operator:{REDACTED}@h and {REDACTED} and {REDACTED}; user root"


def test_keys_tokens_and_secret_fields_are_redacted_but_counts_are_not() -> None:
    text = ('{"password": "hunter2hunter2", "tokens_per_fill": 5, "max_tokens": 10, "secrets": ["edge"]}\n'
            "token 0123456789abcdef.Pj75BrjH-Zp5oUbemGweO5c2bBqSh43A\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\n"
            "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n")
    out = redact(text)
    assert "hunter2" not in out and "Pj75" not in out and "eyJhbGci" not in out and "MIGH" not in out
    assert '"tokens_per_fill": 5, "max_tokens": 10, "secrets": ["edge"]' in out
    assert "0123456789abcdef." in out  # a token's id names it; only its secret goes


def test_a_log_tail_keeps_the_last_lines_each_bounded(tmp_path: Path) -> None:
    log = tmp_path / "pilot.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "x" * (MAX_LINE + 1) + "\n")
    kept = tail_lines(log, 3).splitlines()
    assert kept[:2] == ["line 98", "line 99"] and len(kept[2]) == MAX_LINE


def test_the_archive_holds_what_fits_and_names_what_does_not() -> None:
    archive = Archive(max_bytes=10, secrets={"s3cr3t"})
    archive.add("a.txt", "s3cr3t")  # 10 bytes once redacted: exactly at the bound
    archive.add("b.txt", "x")  # one byte over
    with tarfile.open(fileobj=io.BytesIO(archive.close())) as tar:
        names = tar.getnames()
        manifest = tar.extractfile("bug-report/MANIFEST").read().decode()  # type: ignore[union-attr]
        assert tar.extractfile("bug-report/a.txt").read() == REDACTED.encode()  # type: ignore[union-attr]
    assert names == ["bug-report/a.txt", "bug-report/MANIFEST"]
    assert "left out b.txt (1 bytes): past --max-bytes 10" in manifest
