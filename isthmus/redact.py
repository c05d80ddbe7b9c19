"""What `isthmus bug-report` removes before anything is archived: private keys (PEM blocks), values of
secret-looking fields (password, token, seed, secret, key) in JSON, YAML and `key=value` text, bootstrap
tokens and bearer tokens in any text, and every
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
_SECRET_KEY = r"[A-Za-z0-9_.-]*(?:password|passwd|token(?!s)|secret(?!s)|seed|private_key|key_pem|kek)[A-Za-z0-9_.-]*"
# a scalar value only (a list or object under such a name is walked by the patterns inside it); numbers are counts
_FIELD = re.compile(rf"""(?i)(["']?{_SECRET_KEY}["']?\s*[:=]\s*)(["']?)(?![\[{{]|\d+\b)([^"'\s,}}]+)(\2)""")
# a bootstrap token as the ca mints it (services/ca/tokens.py): `<16 hex digits id>.<secret, base64url>`
_BOOTSTRAP = re.compile(r"\b([0-9a-f]{16})\.[A-Za-z0-9_-]{20,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
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
    files = [state_dir / "isthmus.yaml", state_dir / "ca" / "kek", *sorted((state_dir / "secrets").glob("*"))]
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
        elif path.suffix in (".nk", ".seed", "") or path.name == "kek":
            found.update(line.strip() for line in text.splitlines() if len(line.strip()) >= 16)
    return found


def redact(text: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` without private keys, secret-looking field values, or any of `secrets`."""
    text = _PEM_KEY.sub("<redacted private key>", text)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _BOOTSTRAP.sub(lambda m: f"{m.group(1)}.{REDACTED}", text)  # the id stays: it names the token
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}{m.group(4)}", text)


def redact_json(value: Any, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    return redact(json.dumps(value, indent=2, default=str), secrets)
