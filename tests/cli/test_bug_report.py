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


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


def test_secrets_the_patterns_missed_are_redacted() -> None:
    """Each leaked before: a quoted value with spaces, Basic credentials, cookies, a JWT outside `Bearer` (Istio's
    RequestAuthentication reads them from query parameters and custom headers, so access logs hold them), a
    password in a URL, a YAML block scalar, a base64 PEM private key (a Kubernetes Secret's tls.key)."""
    import base64

    b64_key = base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKEYKEYKEY\n-----END EC PRIVATE KEY-----\n").decode()
    cases = {
        'password: "correct horse battery staple"': "horse",
        '{"password": "correct horse battery staple"}': "horse",
        "{'client_secret': 'two words'}": "words",
        "authorization: Basic dXNlcjpwYXNzd29yZDEyMw==": "dXNlcjpw",
        '{"authorization": "Basic dXNlcjpwYXNzd29yZDEyMw=="}': "dXNlcjpw",
        "cookie: session=abcdef123456789; theme=dark": "abcdef123",
        '{"set-cookie": "sid=s3cr3tcookieval; Path=/"}': "s3cr3tcookie",
        f"GET /api?jwt={JWT} HTTP/1.1": "c2lnbmF0",
        f"x-jwt-assertion: {JWT}": "c2lnbmF0",
        f'{{"claims": "{JWT}"}}': "c2lnbmF0",
        "--etcd http://root:etcdpassw0rd@127.0.0.1:2379": "etcdpassw0rd",
        "password: |\n  multi line secret value\nnext: 1\n": "multi line",
        f"tls.key: {b64_key}": b64_key[20:40],
        f'{{"data": {{"tls.key": "{b64_key}"}}}}': b64_key[20:40],
    }
    for text, leaked in cases.items():
        out = redact(text)
        assert leaked not in out, (text, out)


def test_what_is_not_secret_stays() -> None:
    base64_cert = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUI="  # "-----BEGIN CERTIFICATE-----\nMIIB"
    text = (f"ca: {base64_cert}\nurl http://127.0.0.1:2379/v3 and nats://h:4222\nnext: 1\n"
            '{"tokens_per_fill": 5, "path": "/a.b.c"}\n')
    assert redact(text) == text


def test_redaction_is_linear_in_long_runs() -> None:
    """The secret-field pattern tried every position of a run of name characters (quadratic: 20 KB took 35 s):
    one long string in a proxy's dump held `bug-report` for hours. 50 KB of each shape must take well under
    a few seconds (the quadratic pattern took minutes here)."""
    import time

    n = 50_000
    for text in ("x " + "a" * n, '{"password": "' + "a" * n, "cookie: " + "a" * n, "eyJ" + "a" * n + "." * n,
                 "LS0tLS1CRUdJTi" + "A" * n, "http://" + "a:" * (n // 2), "password: |\n" + " x\n" * (n // 3)):
        started = time.monotonic()
        redact(text)
        assert time.monotonic() - started < 5.0, text[:40]


def test_a_cluster_directorys_kek_and_keys_are_known_secrets(tmp_path: Path) -> None:
    """`isthmus cluster init` writes the KEK as ca-kek (not ca/kek) and etcd's JWT signing key as secrets/*.key."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "ca-kek").write_text("Kek0123456789abcdefKEKkek0123456789\n")
    (tmp_path / "secrets" / "etcd-jwt.key").write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
                                                        "-----END PRIVATE KEY-----\n")
    found = known_secrets(tmp_path)
    assert "Kek0123456789abcdefKEKkek0123456789" in found
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" in found
