"""Click parameter types and checks for the CLI's flags: every value is refused as a usage error (exit 2,
naming the flag) before anything runs, never later as a traceback or a silent misbehaviour.

    Finite(min, max)            a float in [min, max], NaN and infinities refused (click's FloatRange lets NaN
                                through every comparison, and `inf` seconds overflow the event loop's timers)
    check_proxy_identity(...)   `proxy run`'s names, address, locality and labels, with Kubernetes' syntax
    check_distinct_ports(...)   no two listeners of one sidecar on the same port

The name rules are Kubernetes' (apimachinery validation), as pilot applies them to config
(services/pilot/validate/checks.py); the CLI may not import services, so the few patterns are repeated here.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import click

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
MAX_LABELS = 64  # as the registry accepts (services/registry/service.py)


class Finite(click.FloatRange):
    """A finite float within [min, max]."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.types.FloatParamType.convert(self, value, param, ctx)  # a float, not yet range-checked
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return super().convert(number, param, ctx)


NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def check_nats_url(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """A click callback: `value` must be SCHEME://HOST[:PORT] with a scheme nats-py speaks (several
    servers may be given comma-separated); anything else is a usage error, not an unreachable bus.
    None (not given) stays None."""
    from urllib.parse import urlsplit

    if value is None:
        return None
    for url in value.split(","):
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise _bad("--nats", f"{value[:200]!r} is not a NATS URL: {exc}") from None
        if parts.scheme not in NATS_SCHEMES or not parts.hostname or parts.path not in ("", "/") or port == 0:
            raise _bad("--nats", f"{value[:200]!r} is not a NATS URL like nats://127.0.0.1:4222 "
                                 f"(schemes: {', '.join(NATS_SCHEMES)})")
    return value


def _bad(flag: str, message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=f"'{flag}'")


def check_dns_label(flag: str, value: str) -> None:
    if not value or len(value) > 63 or not DNS1123_LABEL.match(value):
        raise _bad(flag, f"{value!r} is not a valid DNS-1123 label (1-63 lower-case letters, digits and '-', "
                         "starting and ending with a letter or digit)")


def check_proxy_identity(service: str, namespace: str, address: str, locality: str, service_account: str,
                         workload_name: str = "", cluster: str = "") -> None:
    """BadParameter naming the flag for the first value the registry or the mesh would not accept (the metric
    label values --workload-name and --cluster: at most 253 printable characters, no edge whitespace)."""
    for flag, value in (("--workload-name", workload_name), ("--cluster", cluster)):
        if value and (len(value) > 253 or not value.isprintable() or value != value.strip()):
            raise _bad(flag, f"{value[:80]!r} is not a name (at most 253 printable characters)")
    check_dns_label("--service", service)
    check_dns_label("--namespace", namespace)
    if not service_account or len(service_account) > 253 or not DNS1123_SUBDOMAIN.match(service_account):
        raise _bad("--service-account", f"{service_account!r} is not a valid DNS-1123 subdomain")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise _bad("--address", f"{address!r} is not an IP address") from None
    parts = locality.split("/") if locality else []
    if len(parts) > 3 or len(locality) > 253 or any(not p or p != p.strip() for p in parts):
        raise _bad("--locality", f"{locality!r} is not REGION, REGION/ZONE or REGION/ZONE/SUBZONE")


def check_label(key: str, value: str) -> None:
    """Kubernetes' label syntax: an optional DNS subdomain prefix and '/', a name of 1-63 characters
    (alphanumerics, '-', '_', '.'; alphanumeric at both ends), and a value of at most 63 like the name."""
    prefix, slash, name = key.rpartition("/")
    if (slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))) or len(name) > 63 \
            or not LABEL_NAME.match(name):
        raise _bad("--labels", f"label key {key[:80]!r} is not a valid Kubernetes label name")
    if value and (len(value) > 63 or not LABEL_NAME.match(value)):
        raise _bad("--labels", f"label value {value[:80]!r} of {key[:80]!r} is not a valid Kubernetes label value "
                               "(at most 63 alphanumerics, '-', '_', '.')")


def parse_labels(text: str | None) -> dict[str, str]:
    """`version=v1,app=reviews` -> {"version": "v1", "app": "reviews"}; BadParameter on a bad pair,
    a key given twice, or a key or value outside Kubernetes' label syntax."""
    labels: dict[str, str] = {}
    for pair in (text or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise _bad("--labels", f"label {pair[:80]!r} is not key=value")
        if key in labels:
            raise _bad("--labels", f"label {key[:80]!r} is given twice")
        check_label(key, value)
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise _bad("--labels", f"{len(labels)} labels, more than {MAX_LABELS}")
    return labels


def check_distinct_ports(listeners: list[tuple[str, int]]) -> None:
    """`listeners`: (flag, port) of every port the sidecar binds or the app holds; BadParameter naming
    both flags when two share a port (else the second bind would fail as 'address already in use')."""
    seen: dict[int, str] = {}
    for flag, port in listeners:
        if not port:
            continue  # 0: any free port
        if port in seen:
            raise click.BadParameter(f"{seen[port]} and {flag} are both port {port}; each needs its own",
                                     param_hint=f"'{flag}'")
        seen[port] = flag


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):
    """Whole seconds from `90s`, `5m`, `24h`, `1.5h`, `7d` or plain seconds, within [min, max]."""

    name = "duration"

    def __init__(self, min: int, max: int) -> None:
        self.min, self.max = min, max

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            seconds = float(value)
        else:
            text = str(value).strip()
            unit = _DURATION_UNITS.get(text[-1:], 0)
            try:
                seconds = float(text[:-1] if unit else text) * (unit or 1)
            except ValueError:
                self.fail(f"{text[:40]!r} is not a duration like 90s, 30m, 24h or 7d", param, ctx)
        if not math.isfinite(seconds) or not self.min <= seconds <= self.max:
            self.fail(f"{str(value)[:40]!r} is outside {self.min}s to {self.max}s", param, ctx)
        return int(seconds)
