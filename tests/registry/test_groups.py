"""services/registry/groups.py: a registration bound to a WorkloadGroup gets its template, as Istio's
auto-registration (workloadEntryFromGroup, ensureProxyCanControlEntry)."""

from __future__ import annotations

import msgspec

from proto.registry import Workload
from services.pilot.config_api import config_key, stored_form
from services.pilot.validate import decode_documents
from services.registry.groups import bind, group_key

GROUP = """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: reviews, namespace: bookinfo}
spec:
  metadata:
    labels: {class: vm, tier: meta}
  template:
    serviceAccount: reviews
    locality: us-east/a
    labels: {tier: template, version: v1, app: reviews}
"""


class Entry(msgspec.Struct):
    value: bytes


class DictStore:
    """What bind() reads of the store: get(key)."""

    def __init__(self, items: dict[str, bytes]) -> None:
        self.items = items

    async def get(self, key: str) -> Entry | None:
        return Entry(self.items[key]) if key in self.items else None


def _store(text: str = GROUP) -> DictStore:
    resources, errors, _ = decode_documents(text)
    assert errors == []
    return DictStore({config_key("WorkloadGroup", "bookinfo", "reviews"): stored_form(resources[0])})


def _workload(**fields) -> Workload:
    base = dict(id="vm-1", service="reviews", namespace="bookinfo", service_account="reviews",
                workload_group="reviews", labels={"version": "v2"})
    return Workload(**{**base, **fields})


def test_the_group_key_is_where_pilot_stores_it():
    assert group_key("bookinfo", "reviews") == config_key("WorkloadGroup", "bookinfo", "reviews")


async def test_labels_merge_template_then_group_metadata_then_the_workloads_own():
    bound, problem = await bind(_store(), _workload())
    assert problem == ""
    assert bound.labels == {"tier": "meta", "version": "v2", "app": "reviews", "class": "vm"}
    assert bound.locality == "us-east/a"
    bound, _ = await bind(_store(), _workload(locality="eu/b"))
    assert bound.locality == "eu/b"  # the workload's own wins


async def test_a_missing_group_is_refused():
    _, problem = await bind(DictStore({}), _workload())
    assert problem == "cannot find WorkloadGroup bookinfo/reviews"
    _, problem = await bind(_store(), _workload(namespace="other"))
    assert problem == "cannot find WorkloadGroup other/reviews"  # a group binds workloads of its own namespace


async def test_a_service_account_other_than_the_templates_is_refused():
    _, problem = await bind(_store(), _workload(service_account="ratings"))
    assert "service account mismatch" in problem
    no_sa = GROUP.replace("    serviceAccount: reviews\n", "")
    bound, problem = await bind(_store(no_sa), _workload(service_account="ratings"))
    assert problem == "" and bound.service_account == "ratings"


async def test_a_workload_without_a_group_is_left_as_it_is():
    plain = _workload(workload_group="")
    assert await bind(DictStore({}), plain) == (plain, "")
