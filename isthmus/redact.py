"""What `isthmus bug-report` removes before anything is archived: private keys (PEM blocks), values of
secret-looking fields (password, token, seed, secret, key) in JSON, YAML and `key=value` text, bootstrap
tokens, HTTP credentials (Bearer/Basic values, cookies), JWTs, URL passwords and base64 PEM keys in any text,
and every
secret the state directory's own files hold (bus and etcd passwords, the account seed, the ca's KEK), wherever
those strings appear. Pure (tests/cli/test_bug_report.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REDACTED = "<redacted>"
_PEM_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S)
# field names whose values are secret (not `tokens_per_fill`, `max_tokens`, `secrets`: counts and lists)
# (it starts where a name starts: without the lookbehind every position of a long run of letters was tried, and
# 20 KB of them took 35 s, so one long string in a proxy's dump held `bug-report` for hours)
_SECRET_KEY = r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]*(?:password|passwd|token(?!s)|secret(?!s)|seed|private_key|key_pem|kek)[A-Za-z0-9_.-]*"
# a scalar value only (a list or object under such a name is walked by the patterns inside it); numbers are counts.
# A quoted value is redacted to its closing quote (spaces included), a YAML block scalar (`|`, `>`) with its
# indented lines, an unquoted one to the first space or separator.
_FIELD = re.compile(rf"""(?i)(["']?{_SECRET_KEY}["']?\s*[:=][ \t]*)(?:"((?:[^"\\\n]|\\.)*)"|'([^'\n]*)'"""
                    rf"""|[|>][-+]?[ \t]*\n((?:[ \t]+\S.*(?:\n|$))+)|(?![\[{{]|\d+\b)([^"'\s,}}]+))""")
# credentials an HTTP header, a query or a URL carries
_AUTH_SCHEME = re.compile(r"(?i)\b((?:bearer|basic|digest|negotiate)\s+)[A-Za-z0-9._~+/=-]{8,}")
_COOKIE = re.compile(r"""(?i)(\b(?:set-)?cookie["']?\s*[:=][ \t]*["']?)([^"'\n]+)""")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"']+:)[^/\s@\"']+@")
# a PEM block base64-encoded once more (a Kubernetes Secret's tls.key): "-----BEGIN" in base64 at offset 0
_B64_PEM = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/]*={0,2}")
# a bootstrap token as the ca mints it (services/ca/tokens.py): `<16 hex digits id>.<secret, base64url>`
_BOOTSTRAP = re.compile(r"\b([0-9a-f]{16})\.[A-Za-z0-9_-]{20,}")
_SECRET_NAMES = re.compile(rf"(?i)^{_SECRET_KEY}$")
MAX_SECRET_FILE = 64 * 1024  # bytes of a state-dir file read for the secrets it holds


def _secret_values(value: Any, key: str = "") -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _secret_values(v, str(k))]
    if isinstance(value, list):
        return [s for v in value for s in _secret_values(v, key)]
    if isinstance(value, str) and len(value) >= 8 and _SECRET_NAMES.match(key):
        return [value]
    return []


def known_secrets(state_dir: Path) -> set[str]:
    """The secret strings the state directory's config and secret files hold (isthmus.yaml, secrets/*, the ca's
    KEK): redacted wherever they appear, even under a field name the patterns would miss."""
    found: set[str] = set()
    # `isthmus up`'s layout (ca/kek) and `isthmus cluster init`'s (ca-kek)
    files = [state_dir / "isthmus.yaml", state_dir / "ca" / "kek", state_dir / "ca-kek",
             *sorted((state_dir / "secrets").glob("*"))]
    for path in files:
        try:
            if not path.is_file() or path.stat().st_size > MAX_SECRET_FILE:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix in (".yaml", ".yml", ".json"):
            try:
                found.update(_secret_values(yaml.safe_load(text)))
            except yaml.YAMLError:
                pass
        elif path.suffix in (".nk", ".seed", ".key", "") or path.name in ("kek", "ca-kek"):
            found.update(line.strip() for line in text.splitlines() if len(line.strip()) >= 16)
    return found


def redact(text: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` without private keys, secret-looking field values, or any of `secrets`."""
    text = _PEM_KEY.sub("<redacted private key>", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _BOOTSTRAP.sub(lambda m: f"{m.group(1)}.{REDACTED}", text)  # the id stays: it names the token
    text = _B64_PEM.sub(_b64_private_key, text)
    text = _JWT.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _COOKIE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _FIELD.sub(_field_redacted, text)


def _field_redacted(match: re.Match[str]) -> str:
    name, double, single, block, bare = match.groups()
    if double is not None:
        return f'{name}"{REDACTED}"'
    if single is not None:
        return f"{name}'{REDACTED}'"
    if block is not None:
        return f"{name}{REDACTED}\n"
    return f"{name}{REDACTED}" if bare else match.group(0)


def _b64_private_key(match: re.Match[str]) -> str:
    import base64
    import binascii

    blob = match.group(0)
    try:
        decoded = base64.b64decode(blob + "=" * (-len(blob) % 4))
    except (binascii.Error, ValueError):
        return blob
    return "<redacted private key>" if b"PRIVATE KEY" in decoded else blob


def redact_json(value: Any, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    return redact(json.dumps(value, indent=2, default=str), secrets)
