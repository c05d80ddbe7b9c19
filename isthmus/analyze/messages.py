"""The one table of analysis message codes, and the message every analyzer reports.

    TYPES["IST0101"] -> MessageType(code, name, level, template, description)
    make(code, resource, *args) -> Message          (the template filled with args, printf-style as Istio's)

Codes, names, levels and templates are Istio's (istio/istio pkg/config/analysis/msg/messages.yaml) where the
check is the same, so `istioctl analyze` users read the same lines and Istio's per-code documentation
(https://istio.io/latest/docs/reference/config/analysis/istXXXX/) applies. Two exceptions, said in their
descriptions: IST0113 (retired by Istio in 1.21, istio/istio#48599, with no current successor; Isthmus keeps it
for the DestinationRule-against-PeerAuthentication mTLS check) and the schema codes, which carry pilot's own
validation messages. docs/analyze.md explains each code and how to fix it.
"""

from __future__ import annotations

from typing import Any

import msgspec

ERROR, WARNING, INFO = "Error", "Warning", "Info"
LEVEL_ORDER = {INFO: 0, WARNING: 1, ERROR: 2}


class MessageType(msgspec.Struct, frozen=True):
    code: str
    name: str
    level: str  # Error | Warning | Info
    template: str  # printf-style, as Istio's (%s, %q, %v, %d, %t)
    description: str


class Message(msgspec.Struct, omit_defaults=True):
    """One finding: `resource` is `Kind namespace/name` (Istio's FriendlyName), `origin` the file it came from
    (empty for the live config)."""

    code: str
    level: str
    resource: str
    message: str
    origin: str = ""
    documentation_url: str = ""


_TABLE = (
    MessageType("IST0101", "ReferencedResourceNotFound", ERROR, "Referenced %s not found: %q",
                "A resource being referenced does not exist."),
    MessageType("IST0106", "SchemaValidationError", ERROR, "Schema validation error: %v",
                "The resource has a schema validation error (pilot's validation: `isthmus apply` refuses it)."),
    MessageType("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", ERROR,
                "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to "
                "undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single "
                "resource.", "Conflicting hosts on VirtualServices associated with mesh gateway"),
    MessageType("IST0112", "VirtualServiceDestinationPortSelectorRequired", ERROR,
                "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in "
                "the destination is required to disambiguate.",
                "A VirtualService routes to a service with more than one port exposed, but does not specify which "
                "to use."),
    MessageType("IST0113", "MTLSPolicyConflict", ERROR,
                "A DestinationRule and Policy are in conflict with regards to mTLS for host %s. The DestinationRule "
                "%q specifies that mTLS must be %t but the Policy object %q specifies %s.",
                "A DestinationRule and a PeerAuthentication are in conflict with regards to mTLS (Istio retired "
                "this code in 1.21 with no successor; Isthmus keeps it for this check)."),
    MessageType("IST0128", "NoServerCertificateVerificationDestinationLevel", WARNING,
                "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to "
                "validate server identity for host: %s",
                "No caCertificates are set in DestinationRule, this results in no verification of presented "
                "server certificate."),
    MessageType("IST0129", "NoServerCertificateVerificationPortLevel", WARNING,
                "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to "
                "validate server identity for host: %s at port %s",
                "No caCertificates are set in DestinationRule, this results in no verification of presented "
                "server certificate for traffic to a given port."),
    MessageType("IST0130", "VirtualServiceUnreachableRule", WARNING, "VirtualService rule %v not used (%s).",
                "A VirtualService rule will never be used because a previous rule uses the same match."),
    MessageType("IST0131", "VirtualServiceIneffectiveMatch", INFO,
                "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).",
                "A VirtualService rule match duplicates a match in a previous rule."),
    MessageType("IST0132", "VirtualServiceHostNotFoundInGateway", WARNING,
                "one or more host %v defined in VirtualService %s not found in Gateway %s.",
                "Host defined in VirtualService not found in Gateway."),
    MessageType("IST0133", "SchemaWarning", WARNING, "Schema validation warning: %v",
                "The resource has a schema validation warning (pilot's: `isthmus apply` accepts it and prints it)."),
    MessageType("IST0145", "ConflictingGateways", ERROR,
                "Conflict with gateways %s (workload selector %s, port %s, hosts %v).",
                "Gateway should not have the same selector, port and matched hosts of server"),
    MessageType("IST0173", "DestinationRuleSubsetNotSelectPods", ERROR,
                "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH "
                "(NoHealthyUpstream).",
                "Subsets defined in destination does not select any pods (in Isthmus: no registered workload of "
                "the host's service carries the subset's labels)."),
    MessageType("IST0174", "UnknownDestinationRuleHost", WARNING,
                "The host %s defined in the DestinationRule does not match any services in the mesh.",
                "Host defined in destination rule does not match any services in the mesh."),
    MessageType("IST0177", "ConflictingServiceEntryProtocol", WARNING,
                "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s).",
                "Multiple ServiceEntries define the same host and port with conflicting protocols."),
)

TYPES: dict[str, MessageType] = {t.code: t for t in _TABLE}
DOCS_URL = "https://istio.io/latest/docs/reference/config/analysis"


def format_template(template: str, args: tuple[Any, ...]) -> str:
    """Go's fmt verbs as Istio's templates use them: %q quotes with double quotes, %t is true/false, %v of a list
    is `[a b]`; the rest as Python's %-formatting."""
    out: list[str] = []
    values = iter(args)
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "%" or i + 1 == len(template):
            out.append(ch)
            i += 1
            continue
        verb = template[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        value = next(values, "")
        if verb == "q":
            out.append('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif verb == "t":
            out.append("true" if value else "false")
        elif isinstance(value, (list, tuple)):
            out.append("[" + " ".join(str(v) for v in value) + "]")
        else:
            out.append(str(value))
    return "".join(out)


def make(code: str, resource: str, *args: Any, origin: str = "") -> Message:
    """A message of `code` (a key of TYPES) about `resource` (`Kind namespace/name`)."""
    kind = TYPES[code]
    return Message(code=code, level=kind.level, resource=resource, message=format_template(kind.template, args),
                   origin=origin, documentation_url=f"{DOCS_URL}/{code.lower()}/")
