"""Semantic checks of a PeerAuthentication (Istio's ValidatePeerAuthentication and its CRD's rules), and the
warnings that need the root namespace or the other stored policies (placement_warnings).

    normalize(document) -> document     portLevelMtls keys as numbers (YAML writes `8080:`, JSON `"8080":`)
    peer_authentication(spec, f)        errors and warnings of one document
    placement_warnings(submitted, stored, root_namespace) -> [ConfigError]

Errors (refused, as Istio refuses them): an unknown mode; portLevelMtls on a policy without selector labels
("mesh/namespace peer authentication cannot have port level mTLS"); an empty portLevelMtls; a port outside
1..65535; a selector key that is empty, a key or value with a wildcard, a value over 63 characters;
targetRef/targetRefs (Istio's PeerAuthentication has none: a selector picks workloads).
Warnings (accepted): a selector without labels (Istio's "workload selector specified without labels": the
policy is namespace-wide); a selector in the root namespace (Istio ignores such a policy); a second
namespace-wide policy for a namespace (only the oldest applies, as in Istio).
"""

from __future__ import annotations

from typing import Any

from proto.config_api import ConfigError
from proto.resources import Resource
from proto.security import MTLS_MODES, PeerAuthenticationSpec
from services.pilot.validate.checks import check_port, check_selector
from services.pilot.validate.findings import Findings

def normalize(document: dict[str, Any]) -> dict[str, Any]:
    """The document with `spec.portLevelMtls` keys that spell a number turned into ints (the schema's key type);
    other keys stay as written, so the shape check names them."""
    spec = document.get("spec")
    ports = spec.get("portLevelMtls") if isinstance(spec, dict) else None
    if not isinstance(ports, dict):
        return document
    keyed = {(int(k) if isinstance(k, str) and k.strip().isdigit() else k): v for k, v in ports.items()}
    return {**document, "spec": {**spec, "portLevelMtls": keyed}}


def _mode(mode: str | None, path: str, f: Findings) -> None:
    if mode is not None and mode not in MTLS_MODES:
        f.error(path, f"unsupported mode `{mode}` (one of {', '.join(MTLS_MODES)})")


def peer_authentication(spec: PeerAuthenticationSpec, f: Findings) -> None:
    for field, value in (("targetRef", spec.target_ref), ("targetRefs", spec.target_refs)):
        if value is not None:
            f.error(f"spec.{field}", "PeerAuthentication has no targetRef in Istio: it applies to the workloads "
                                     "its `selector.matchLabels` picks (or to the whole namespace without one)")
    labels = check_selector(spec.selector, f)
    if spec.mtls is not None:
        _mode(spec.mtls.mode, "spec.mtls.mode", f)
    ports = spec.port_level_mtls
    if ports is None:
        return
    if not ports:
        f.error("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element")
    elif not labels:
        f.error("spec.portLevelMtls", "portLevelMtls requires a selector with labels: a mesh-wide or namespace-wide "
                                      "peer authentication cannot have port level mTLS")
    for port, mtls in ports.items():
        check_port(port, f"spec.portLevelMtls[{port}]", f)
        _mode(mtls.mode, f"spec.portLevelMtls[{port}].mode", f)


def _namespace_wide(resource: Resource) -> bool:
    selector = resource.spec.selector
    return selector is None or not selector.match_labels


def placement_warnings(submitted: list[Resource], stored: list[tuple[Resource, int]],
                       root_namespace: str) -> list[ConfigError]:
    """Warnings about where submitted PeerAuthentications sit: a selector in the root namespace, and a
    namespace-wide policy that is not its namespace's oldest (so it is ignored, as in Istio). `stored`:
    the stored PeerAuthentications with their etcd create revisions; a submitted one not stored yet is
    younger than all of them (its transaction comes last), ties going to the name, as Istio's."""
    created = {(r.metadata.namespace, r.metadata.name): revision for r, revision in stored}
    newest = max(created.values(), default=0) + 1
    ages: dict[str, list[tuple[int, str]]] = {}  # namespace -> (create revision, name) of its namespace-wide ones
    for resource, revision in stored:
        if _namespace_wide(resource):
            ages.setdefault(resource.metadata.namespace, []).append((revision, resource.metadata.name))
    mine = [(i, r) for i, r in enumerate(submitted, 1) if r.kind == "PeerAuthentication"]
    for _, resource in mine:
        meta = resource.metadata
        key = (meta.namespace, meta.name)
        entries = [e for e in ages.get(meta.namespace, []) if e[1] != meta.name]
        if _namespace_wide(resource):
            entries.append((created.get(key, newest), meta.name))
        ages[meta.namespace] = entries
    warnings: list[ConfigError] = []
    for index, resource in mine:
        meta = resource.metadata
        if not _namespace_wide(resource):
            if meta.namespace == root_namespace:
                warnings.append(_warning(index, resource, "spec.selector", (
                    f"a PeerAuthentication with a selector in the root namespace `{root_namespace}` applies to no "
                    "workload (Istio ignores it); put it in the namespace of the workloads it selects")))
            continue
        oldest = min(ages[meta.namespace])[1]
        if oldest != meta.name:
            scope = "the mesh" if meta.namespace == root_namespace else f"namespace `{meta.namespace}`"
            warnings.append(_warning(index, resource, "metadata.name", (
                f"{scope} already has an older policy without selector (`{oldest}`): only the oldest applies, as "
                "in Istio, so this one is ignored while that one exists")))
    return warnings


def _warning(document: int, resource: Resource, path: str, message: str) -> ConfigError:
    meta = resource.metadata
    return ConfigError(document=document, path=path, kind=resource.kind, name=meta.name, namespace=meta.namespace,
                       message=message)
