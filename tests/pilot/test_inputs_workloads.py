"""services/pilot/inputs.py: registered workloads by id, when one id is registered under two registry keys.

The registry keys a workload by namespace/service/id and checks the identity of that key only, so a workload of
another namespace (its own bus credentials) may register a service of its own under an id already registered.
Pilot keyed workloads by id: the later registration displaced the first (its endpoint gone, its security entry
compiled from the other's labels, which its sidecar refuses: its policies frozen), and the later one's
deregistration dropped the first too.
"""

from __future__ import annotations

from proto.registry import Workload
from runtime.bus import encode
from runtime.store import REGISTRY_PREFIX, Entry
from services.pilot.inputs import Inputs


def entry(namespace: str, service: str, wid: str, revision: int, created: int, **fields) -> Entry:
    workload = Workload(id=wid, service=service, namespace=namespace, **fields)
    return Entry(key=f"{REGISTRY_PREFIX}{namespace}/{service}/{wid}", value=encode(workload),
                 mod_revision=revision, create_revision=created, lease=1)


def test_a_later_registration_under_a_registered_id_does_not_displace_it_nor_drop_it_when_it_leaves():
    inputs = Inputs()
    assert inputs.apply_workload(entry("prod", "fin", "vm1", 5, 5, labels={"app": "fin"}), False)
    impostor = entry("evil", "x", "vm1", 7, 7, labels={"app": "x"})
    assert not inputs.apply_workload(impostor, False)  # nothing pilot compiles changed
    assert inputs.workloads["vm1"][0].namespace == "prod"
    assert not inputs.apply_workload(impostor, True)
    assert inputs.workloads["vm1"][0].namespace == "prod"
    # the first one's own changes still count; when it leaves, the other (if still there) is compiled
    assert inputs.apply_workload(entry("prod", "fin", "vm1", 8, 5, labels={"app": "fin", "v": "2"}), False)
    inputs.apply_workload(entry("evil", "x", "vm1", 9, 9), False)
    assert inputs.apply_workload(entry("prod", "fin", "vm1", 10, 5), True)
    assert inputs.workloads["vm1"][0].namespace == "evil"
    assert inputs.apply_workload(entry("evil", "x", "vm1", 11, 9), True)
    assert "vm1" not in inputs.workloads
    # a re-registration with the same content is not a change; a deletion of an unknown key neither
    assert inputs.apply_workload(entry("prod", "fin", "vm2", 12, 12), False)
    assert not inputs.apply_workload(entry("prod", "fin", "vm2", 13, 12), False)
    assert not inputs.apply_workload(entry("prod", "other", "vm3", 14, 14), True)
