"""isthmus/analyze/sources.py without sockets: what the live read makes of each source's answer (a fake bus with
canned replies), and the files laid over the live config."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from isthmus.analyze.sources import read_files, read_live
from proto.config_api import ApplyReply, ConfigError, GetReply
from proto.registry import Workload, WorkloadListReply
from proto.resources import KINDS
from proto.secrets import SecretInfo, SecretListReply
from proto.subjects import CA_SECRET_LIST, CONFIG_GET, CONFIG_VALIDATE, REGISTRY_LIST
from runtime.bus import NoResponders

LIVE_VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": "7"},
           "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
           "status": {"conditions": []}}
FILE_VS = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n"
           "  hosts: [reviews]\n  http: [{route: [{destination: {host: ratings}}]}]\n")


class FakeBus:
    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = replies
        self.sent: list[tuple[str, Any]] = []

    async def call(self, subject: str, message: Any, reply_type: type, timeout: float) -> Any:
        self.sent.append((subject, message))
        reply = self.replies[subject]
        if isinstance(reply, Exception):
            raise reply
        if subject == CONFIG_GET:
            return reply if message.kind == "VirtualService" else GetReply(ok=True)
        return reply

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        self.sent.append((subject, payload))
        return msgspec.json.encode(self.replies[subject])


def live(replies: dict[str, Any], files: list[tuple[str, str]] = ()) -> tuple[Any, list[str], FakeBus]:  # type: ignore[assignment]
    bus = FakeBus(replies)
    notes: list[str] = []
    inputs = asyncio.run(read_live(bus, 5, read_files(list(files), "default"), notes))
    return inputs, notes, bus


def test_every_source_that_answers_is_available_and_a_file_replaces_the_live_resource() -> None:
    inputs, notes, bus = live({
        CONFIG_GET: GetReply(ok=True, resources=[LIVE_VS]),
        REGISTRY_LIST: WorkloadListReply(ok=True, workloads=[Workload(id="r1", service="reviews")], total=1),
        CA_SECRET_LIST: SecretListReply(ok=True, secrets=[SecretInfo(namespace="default", name="cert")], total=1),
        CONFIG_VALIDATE: ApplyReply(ok=False, errors=[ConfigError(document=1, message="bad")],
                                    warnings=[ConfigError(document=1, message="hmm")]),
    }, [("f.yaml", FILE_VS)])
    assert notes == []
    assert inputs.available == {"config", "registry", "secrets"}
    assert inputs.secrets == {("default", "cert")}
    [vs] = inputs.resources
    assert vs.origin == "f.yaml" and vs.spec.http[0].route[0].destination.host == "ratings"
    assert [(origin, e.message, is_error) for origin, e, is_error in inputs.validation] == [
        ("f.yaml", "bad", True), ("f.yaml", "hmm", False)]
    assert sum(1 for subject, _ in bus.sent if subject == CONFIG_GET) == len(KINDS)  # every kind, every namespace
    assert all(message.namespace is None for subject, message in bus.sent if subject == CONFIG_GET)


def test_a_cut_registry_list_and_a_silent_ca_leave_their_checks_out_with_a_note() -> None:
    inputs, notes, _ = live({
        CONFIG_GET: GetReply(ok=True, resources=[LIVE_VS]),
        REGISTRY_LIST: WorkloadListReply(ok=True, workloads=[Workload(id="r1", service="reviews")], total=2001),
        CA_SECRET_LIST: NoResponders("no responders"),
        CONFIG_VALIDATE: ApplyReply(ok=True),
    })
    assert inputs.available == {"config"}
    assert any("registry's list is incomplete" in n for n in notes), notes
    assert any("the ca did not answer" in n for n in notes), notes
    [vs] = inputs.resources
    assert vs.origin == "" and vs.name == "reviews"
