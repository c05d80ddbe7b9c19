"""Checks every kind shares: host names, ports, label selectors, header names, string matches, regexes,
subset names, destinations and percentages. Each appends to a `Findings` and carries on.

The rules are Istio's (pkg/config/validation: ValidateFQDN, ValidatePort, validateLabels in
labels.Instance.Validate, ValidateHTTPHeaderName, validateStringMatch and validateStringMatchRegexp);
wildcard hosts are Isthmus's "not supported yet". A leaf: it imports only findings.py.
"""

from __future__ import annotations

import ipaddress
import re

from proto.networking import Destination, StringMatch
from proto.security import PeerSelector
from services.pilot.validate.findings import Findings

MAX_SELECTOR_LABELS = 4096  # the security CRDs' maxProperties of selector.matchLabels
IGNORED_HEADER_KEYS = ("uri", "scheme", "method", "authority")  # Istio ignores these keys in `headers`

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?\Z")  # host names are case-insensitive
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+\Z")  # RFC 7230 tchars, as Istio checks
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
# Python's `re` accepts these, RE2 (Envoy's and Istio's engine) rejects them: lookarounds, backreferences,
# atomic groups and possessive quantifiers. Other differences: RE2 writes end-of-text as `\z`, which
# Python rejects (Python's `\Z`); both engines match a route regex against the whole value (fullmatch).
RE2_UNSUPPORTED = re.compile(r"\(\?<?[=!]|\(\?P=|\(\?>|\\[1-9]|[*+?}]\+")


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_problem(host: str) -> str | None:
    """Why `host` is not a usable host name, or None. Wildcards are Isthmus's "not supported yet"."""
    if not host:
        return "host must not be empty"
    if host.startswith("*") or "*" in host:
        return f"wildcard host `{host}` is not supported yet"
    if len(host) > 255:
        return f"host `{host[:40]}...` is longer than 255 characters"
    for label in host.split("."):
        if len(label) > 63 or not HOST_LABEL.match(label):
            return f"`{host}` is not a valid host name (label `{label}` is not a DNS-1123 label)"
    return None


def check_host(host: str, path: str, f: Findings, allow_ip: bool = False) -> None:
    if allow_ip and is_ip(host):
        return
    problem = host_problem(host)
    if problem:
        f.error(path, problem)


def check_port(number: int, path: str, f: Findings) -> None:
    if not 1 <= number <= 65535:
        f.error(path, f"port number {number} is not in the range 1..65535")


def check_labels(labels: dict[str, str], path: str, f: Findings) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))) or len(name) > 63 \
                or not LABEL_NAME.match(name):
            f.error(f"{path}[{key}]", f"`{key}` is not a valid label key")
        if value and (len(value) > 63 or not LABEL_NAME.match(value)):
            f.error(f"{path}[{key}]", f"`{value}` is not a valid label value")


def check_regex(pattern: str, path: str, f: Findings) -> None:
    if not pattern:
        f.error(path, "regex string match should not be empty")
    elif len(pattern) > 1024:
        f.error(path, "regex is too large, max length allowed is 1024")
    elif RE2_UNSUPPORTED.search(pattern.replace("\\\\", "")):
        f.error(path, f"regex `{pattern}` uses a lookaround, backreference, atomic group or possessive "
                      "quantifier, which RE2 (the regex syntax of Istio) does not support")
    else:
        try:
            re.compile(pattern)
        except re.error as exc:
            f.error(path, f"invalid regex `{pattern}`: {exc}; "
                          "use RE2 syntax (https://github.com/google/re2/wiki/Syntax)")


def check_string_match(sm: StringMatch, path: str, f: Findings, allow_empty_prefix: bool = False,
                       allow_presence: bool = False) -> None:
    """`allow_presence`: a match with no field only asks for presence (headers, queryParams), as in Istio."""
    given = [k for k in ("exact", "prefix", "regex") if getattr(sm, k) is not None]
    if not given and not allow_presence:
        f.error(path, "one of `exact`, `prefix` or `regex` is required")
    elif len(given) > 1:
        f.error(path, f"only one of `exact`, `prefix`, `regex` may be set (found {', '.join(given)})")
    if sm.prefix == "" and not allow_empty_prefix:
        f.error(f"{path}.prefix", "prefix string match should not be empty")
    if sm.regex is not None:
        check_regex(sm.regex, f"{path}.regex", f)


def check_subset_name(name: str, path: str, f: Findings) -> None:
    if not name:
        f.error(path, "subset name cannot be empty")
    elif len(name) > 63 or not HOST_LABEL.match(name):
        f.error(path, f"subset name `{name}` is invalid (must be a DNS-1123 label)")


def check_destination(dest: Destination, path: str, f: Findings) -> None:
    """A route's or a mirror's `destination`: host (not `*`), subset name, port number."""
    if dest.host == "*":
        f.error(f"{path}.host", "invalid destination host *")
    else:
        check_host(dest.host, f"{path}.host", f)
    if dest.subset is not None:
        check_subset_name(dest.subset, f"{path}.subset", f)
    if dest.port is not None:
        check_port(dest.port.number, f"{path}.port.number", f)


def check_percent(value: float, path: str, f: Findings) -> None:
    if not 0.0 <= value <= 100.0:
        f.error(path, f"percentage {value:g} is not in range 0..100")


def check_selector(selector: PeerSelector | None, f: Findings) -> dict[str, str]:
    """A security policy's `selector` (istio.type.v1beta1.WorkloadSelector, as Istio's validateWorkloadSelector and
    the CRDs check it); returns its labels ({} when none: the policy is namespace-wide, or mesh-wide in the root
    namespace). A selector without labels is a warning, as Istio's."""
    if selector is None:
        return {}
    labels = selector.match_labels or {}
    path = "spec.selector.matchLabels"
    if not labels:
        f.warn("spec.selector", "workload selector specified without labels: the policy applies to the "
                                "whole namespace")
    elif len(labels) > MAX_SELECTOR_LABELS:
        f.error(path, f"{len(labels)} labels, more than {MAX_SELECTOR_LABELS}")
    for key, value in labels.items():
        if key == "":
            f.error(f"{path}[]", "key must not be empty")
        elif "*" in key or "*" in value:
            f.error(f"{path}[{key}]", f"wildcard is not supported in selector: `{key}={value}`")
        elif len(value) > 63:  # the CRD's maxLength; Istio checks no more of a selector's syntax
            f.error(f"{path}[{key}]", f"value `{value[:20]}...` is longer than 63 characters")
    return labels
