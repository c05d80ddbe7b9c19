"""The ca's own settings, from the environment (`isthmus up` sets them from its flags; docs/security.md).

| env var                        | default | meaning                                                        |
| ------------------------------ | ------- | -------------------------------------------------------------- |
| ISTHMUS_STATE_DIR              | .isthmus| keys live in <state-dir>/ca/ (runtime/settings.py)             |
| ISTHMUS_WORKLOAD_CERT_TTL      | 24h     | a certificate's lifetime when the proxy asks for none (Istio's DEFAULT_WORKLOAD_CERT_TTL) |
| ISTHMUS_MAX_WORKLOAD_CERT_TTL  | 90d     | the longest lifetime granted (Istio's MAX_WORKLOAD_CERT_TTL)   |
| ISTHMUS_PLUGIN_CA_CERT, _KEY, _ROOT_CERT, _CERT_CHAIN | (none) | sign as an intermediate under the operator's root |
| ISTHMUS_CA_MAX_TOKENS          | 1000    | bootstrap tokens that may exist at once                        |
| ISTHMUS_CA_MAX_SECRETS         | 10000   | TLS secrets (gateways' credentialName) the store may hold, all namespaces (docs/secrets.md) |
| ISTHMUS_CA_KEK_FILE            | (none)  | the operator's KEK (64 hex digits, mode 0600): the signing key is also kept in etcd, sealed with it, for replicas on other machines (runtime/kek.py; `--ca-kek-file`) |
| ISTHMUS_CA_PREVIOUS_KEK_FILE   | (none)  | rotating the KEK: keys in etcd sealed with this one are sealed again with ISTHMUS_CA_KEK_FILE at start |

Durations: seconds, or a number with s, m, h or d (`90s`, `24h`, `1.5h`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from services.ca.signer import MIN_TTL

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, text: str) -> int:
    """Whole seconds; ValueError naming the variable otherwise."""
    text = text.strip()
    unit = _UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{name} is {text[:40]!r}: give seconds or a number with s, m, h or d (24h)") from None
    if not math.isfinite(value) or value < MIN_TTL:
        raise ValueError(f"{name} is {text[:40]!r}: give at least {MIN_TTL}s")
    return int(value)


@dataclass(frozen=True)
class CaConfig:
    workload_cert_ttl: int = 86400
    max_workload_cert_ttl: int = 90 * 86400
    plugin_cert: str = ""
    plugin_key: str = ""
    plugin_root: str = ""
    plugin_chain: str = ""
    max_tokens: int = 1000
    max_secrets: int = 10_000
    kek_file: str = ""  # the KEK's path (never the KEK: it is read once, by the ca, at start)
    previous_kek_file: str = ""

    @property
    def plugin(self) -> bool:
        return bool(self.plugin_cert)

    @classmethod
    def from_env(cls) -> "CaConfig":
        env = os.environ
        ttl = parse_duration("ISTHMUS_WORKLOAD_CERT_TTL", env.get("ISTHMUS_WORKLOAD_CERT_TTL", "24h"))
        top = parse_duration("ISTHMUS_MAX_WORKLOAD_CERT_TTL", env.get("ISTHMUS_MAX_WORKLOAD_CERT_TTL", "90d"))
        if ttl > top:
            raise ValueError(f"ISTHMUS_WORKLOAD_CERT_TTL ({ttl}s) is longer than ISTHMUS_MAX_WORKLOAD_CERT_TTL ({top}s)")
        files = [env.get(f"ISTHMUS_PLUGIN_CA_{n}", "") for n in ("CERT", "KEY", "ROOT_CERT", "CERT_CHAIN")]
        if any(files[:3]) and not all(files[:3]):
            raise ValueError("a plug-in CA needs all of ISTHMUS_PLUGIN_CA_CERT, ISTHMUS_PLUGIN_CA_KEY and "
                             "ISTHMUS_PLUGIN_CA_ROOT_CERT")
        if files[3] and not files[0]:
            raise ValueError("ISTHMUS_PLUGIN_CA_CERT_CHAIN needs ISTHMUS_PLUGIN_CA_CERT, _KEY and _ROOT_CERT")
        text = env.get("ISTHMUS_CA_MAX_TOKENS", "1000")
        if not text.isdigit() or not 1 <= int(text) <= 100_000:
            raise ValueError(f"ISTHMUS_CA_MAX_TOKENS is {text[:40]!r}: give 1 to 100000")
        secrets = env.get("ISTHMUS_CA_MAX_SECRETS", "10000")
        if not secrets.isdigit() or not 1 <= int(secrets) <= 1_000_000:
            raise ValueError(f"ISTHMUS_CA_MAX_SECRETS is {secrets[:40]!r}: give 1 to 1000000")
        kek, previous = env.get("ISTHMUS_CA_KEK_FILE", ""), env.get("ISTHMUS_CA_PREVIOUS_KEK_FILE", "")
        if previous and not kek:
            raise ValueError("ISTHMUS_CA_PREVIOUS_KEK_FILE (--ca-previous-kek-file) needs the new KEK in "
                             "ISTHMUS_CA_KEK_FILE (--ca-kek-file)")
        return cls(workload_cert_ttl=ttl, max_workload_cert_ttl=top, plugin_cert=files[0], plugin_key=files[1],
                   plugin_root=files[2], plugin_chain=files[3], max_tokens=int(text),
                   max_secrets=int(secrets),
                   kek_file=kek, previous_kek_file=previous)
