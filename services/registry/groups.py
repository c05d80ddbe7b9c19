"""A registration bound to a WorkloadGroup (Workload.workload_group) gets the group's template, as Istio's
auto-registration builds a WorkloadEntry from it (pilot/pkg/autoregistration/controller.go workloadEntryFromGroup
and ensureProxyCanControlEntry):

    bind(store, workload) -> (workload with the template applied, "") | (workload, why it is refused)

- the group is looked up in the workload's namespace; none there: refused (Istio: "cannot find WorkloadGroup");
- the template's serviceAccount, when set, must be the workload's (its bus credentials' identity, which the
  registry holds it to): else refused ("service account mismatch");
- labels: the template's, then the group's metadata labels, then the workload's own, each overriding the one
  before (node metadata > WorkloadGroup.metadata > WorkloadGroup.template);
- locality: the workload's own, else the template's.
The template's address and ports are the registration's own (an Isthmus sidecar registers them); its network
and weight are not carried by a registration (docs/workload-group.md).
"""

from __future__ import annotations

import msgspec

from proto.registry import Workload
from proto.resources import WorkloadGroup
from runtime.store import CONFIG_PREFIX, Store


def group_key(namespace: str, name: str) -> str:
    """Where pilot's config API stores a WorkloadGroup (services/pilot/config_api.py config_key)."""
    return f"{CONFIG_PREFIX}WorkloadGroup/{namespace}/{name}"


async def bind(store: Store, workload: Workload) -> tuple[Workload, str]:
    if not workload.workload_group:
        return workload, ""
    where = f"{workload.namespace}/{workload.workload_group}"
    entry = await store.get(group_key(workload.namespace, workload.workload_group))
    if entry is None:
        return workload, f"cannot find WorkloadGroup {where}"
    try:
        group = msgspec.json.decode(entry.value, type=WorkloadGroup)
    except msgspec.DecodeError as exc:
        return workload, f"WorkloadGroup {where} is unreadable: {exc}"
    template = group.spec.template
    if template is None:
        return workload, f"WorkloadGroup {where} has no template"
    if template.service_account and template.service_account != workload.service_account:
        return workload, (f"registration in WorkloadGroup {where}: service account mismatch: "
                          f"{workload.service_account!r} vs {template.service_account!r}")
    meta = group.spec.metadata
    labels = {**template.labels, **(meta.labels if meta is not None else {}), **workload.labels}
    locality = workload.locality or template.locality or ""
    return msgspec.structs.replace(workload, labels=labels, locality=locality), ""
