"""proxy/control/security_state.py through ConfigState: a sidecar keeps its own WorkloadSecurity from pushes."""

from __future__ import annotations

import json

import msgspec
import pytest

from proto.xds import Push, WorkloadSecurity
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.control.security_state import Owner


def entry(workload: str, mode: str, version: int = 1, **ports: str) -> WorkloadSecurity:
    return WorkloadSecurity(workload=workload, version=version, namespace="foo", mtls_mode=mode,
                            port_mtls={int(p[1:]): m for p, m in ports.items()})


def push(seq: int, *entries: WorkloadSecurity, full: bool = False, removed: tuple[str, ...] = ()) -> Push:
    return Push(epoch="e", seq=seq, version=seq, full=full, security=list(entries), removed_security=list(removed))


def test_a_sidecar_keeps_only_its_own_entry_and_reads_its_mode_per_app_port():
    state = ConfigState(workload_id="me")
    assert state.security is None and state.dump()["security"]["mtls_mode"] == "PERMISSIVE"
    state.apply(push(1, entry("other", "DISABLE"), entry("me", "STRICT", p8080="DISABLE"), full=True))
    assert state.security is not None and state.security.workload == "me"
    assert (state.security.mode_for(8080), state.security.mode_for(9080)) == ("DISABLE", "STRICT")
    dumped = json.loads(json.dumps(state.dump()))["security"]
    assert (dumped["mtls_mode"], dumped["port_mtls"]) == ("STRICT", {"8080": "DISABLE"})


def test_a_delta_without_the_entry_keeps_it_a_newer_one_replaces_it_a_removal_keeps_it_too():
    state = ConfigState(workload_id="me")
    state.apply(push(1, entry("me", "STRICT"), full=True))
    state.apply(push(2, entry("other", "DISABLE")))
    assert state.security.mtls_mode == "STRICT"
    state.apply(push(3, entry("me", "DISABLE", version=3)))
    assert (state.security.mtls_mode, state.security.version) == ("DISABLE", 3)
    # removed: pilot no longer knows the workload (its lease lapsed while the registry was away), which does not
    # mean no policy applies to it: the last entry stays in force (proxy/control/security_state.py)
    state.apply(push(4, removed=("me",)))
    assert (state.security.mtls_mode, state.security.version) == ("DISABLE", 3)
    state.apply(push(5, entry("me", "PERMISSIVE", version=5)))  # back: the next entry replaces it
    assert state.security.mtls_mode == "PERMISSIVE"


def test_a_snapshot_without_the_entry_keeps_the_last_one_and_before_any_there_is_none():
    state = ConfigState(workload_id="me")
    state.apply(push(1, entry("other", "STRICT"), full=True))
    assert state.security is None  # pilot has not compiled this workload's registration yet
    assert "admits nothing" in state.dump()["security"]["pending"]  # /config_dump says so beside the defaults
    state.apply(push(2, entry("me", "STRICT"), full=True))
    state.apply(push(3, entry("other", "STRICT"), full=True))
    assert state.security is not None and state.security.mtls_mode == "STRICT"


@pytest.mark.parametrize("bad", [entry("me", "strict"), entry("me", "STRICT", p80="UNSET")])
def test_an_unknown_mode_in_its_own_entry_is_rejected_and_changes_nothing(bad):
    state = ConfigState(workload_id="me")
    state.apply(push(1, entry("me", "STRICT"), full=True))
    with pytest.raises(ConfigRejected, match="mTLS mode"):
        state.apply(push(2, bad))
    assert (state.security.mtls_mode, state.seq) == ("STRICT", 1)
    state.apply(push(2, entry("other", "nonsense")))  # another workload's entry is not this sidecar's business


def test_config_dump_names_authorization_policies_and_jwt_providers_without_their_keys():
    from proto.security import AuthzRule, JwtRule
    from proto.xds import AuthzPolicy, JwtProvider
    state = ConfigState(workload_id="me")
    assert state.dump()["security"]["authorization"] == [] and state.dump()["security"]["jwt"] == []
    me = WorkloadSecurity(workload="me", version=3, namespace="foo",
                          authorization=[AuthzPolicy(name="istio-system/deny", action="DENY", rules=[AuthzRule()]),
                                         AuthzPolicy(name="foo/allow-nothing", action="ALLOW")],
                          jwt=[JwtProvider(source="foo/jwt", rule=JwtRule(issuer="a", jwks='{"keys": []}')),
                               JwtProvider(source="foo/jwt", rule=JwtRule(issuer="b", jwks_uri="https://b/k"),
                                           jwks_error="GET https://b/k: status 500, want 200")])
    state.apply(push(1, me, full=True))
    dumped = json.loads(json.dumps(state.dump()))["security"]
    assert dumped["authorization"] == [{"name": "istio-system/deny", "action": "DENY", "rules": 1},
                                       {"name": "foo/allow-nothing", "action": "ALLOW", "rules": 0}]
    assert dumped["jwt"] == [
        {"source": "foo/jwt", "issuer": "a", "jwks_uri": None, "keys": True, "jwks_error": ""},
        {"source": "foo/jwt", "issuer": "b", "jwks_uri": "https://b/k", "keys": False,
         "jwks_error": "GET https://b/k: status 500, want 200"}]
    assert "keys\": [" not in json.dumps(dumped)


def test_a_probe_in_its_own_entry_is_kept_shown_and_an_unknown_kind_rejected():
    from proto.workload_group import Probe

    state = ConfigState(workload_id="me")
    probed = WorkloadSecurity(workload="me", version=1, probe=Probe(source="foo/g", kind="http", port=80))
    state.apply(push(1, probed, full=True))
    assert state.dump()["security"]["probe"] == {"source": "foo/g", "kind": "http"}
    grpc = WorkloadSecurity(workload="me", version=2, probe=Probe(source="foo/g", kind="grpc", port=80))
    with pytest.raises(ConfigRejected, match="probe of me: kind 'grpc'"):
        state.apply(push(2, grpc))
    assert state.security.probe.kind == "http"
    state.apply(push(2, WorkloadSecurity(workload="me", version=3), full=True))
    assert "probe" not in state.dump()["security"]  # no probe pushed: the key is absent, as before probes


def test_an_entry_compiled_from_another_registration_under_its_id_is_not_taken():
    # the registry keys a workload by namespace/service/id: another identity may register the same id in its own
    # namespace or service, and pilot (keyed by id) then compiles the entry from that registration
    state = ConfigState(workload_id="me", owner=Owner("foo", "fin", "fin-sa", "run2"))
    other = WorkloadSecurity(workload="me", version=2, namespace="evil", service="x", service_account="default")
    state.apply(push(1, other, full=True))
    assert state.security is None  # not this workload's: still nothing admitted
    mine = WorkloadSecurity(workload="me", version=3, namespace="foo", service="fin", service_account="fin-sa",
                            instance="run2", mtls_mode="STRICT")
    state.apply(push(2, mine, full=True))
    assert state.security is mine
    for impostor in (other, msgspec.structs.replace(mine, version=4, service="x", mtls_mode="PERMISSIVE"),
                     msgspec.structs.replace(mine, version=4, service_account="other", mtls_mode="PERMISSIVE"),
                     # a previous run of this sidecar (other labels) whose registration outlived it
                     msgspec.structs.replace(mine, version=4, instance="run1", mtls_mode="PERMISSIVE")):
        state.apply(push(3, impostor))
        assert state.security is mine
    # an entry of an older pilot (no service), or of an older sidecar's registration (no instance), is taken
    state.apply(push(4, msgspec.structs.replace(mine, version=5, instance="")))
    assert state.security.version == 5
    older = WorkloadSecurity(workload="me", version=6, namespace="foo", mtls_mode="DISABLE")
    state.apply(push(5, older))
    assert state.security is older


def test_a_push_refused_for_a_cluster_still_brings_its_valid_security_entry():
    # pilot sends an entry only when it changes: dropped with a refused cluster, it would never come back
    from proto.xds import ClusterConfig, Endpoint

    state = ConfigState(workload_id="me")
    applied = []
    state.on_apply.append(lambda: applied.append(state.security))
    state.apply(push(1, entry("me", "PERMISSIVE"), full=True))
    bad = ClusterConfig(host="db.foo.svc.cluster.local", version=2, ports=[5432], endpoints=[Endpoint(address="")])
    with pytest.raises(ConfigRejected, match="no address"):
        state.apply(Push(epoch="e", seq=2, version=2, clusters=[bad], security=[entry("me", "STRICT", version=2)]))
    assert (state.security.mtls_mode, state.version, state.clusters) == ("STRICT", 1, {})
    assert applied[-1] is state.security  # the inbound side rebuilt from it
    # an entry it cannot enforce is refused with the push: the last one stays
    with pytest.raises(ConfigRejected, match="mTLS mode"):
        state.apply(Push(epoch="e", seq=3, version=3, clusters=[bad], security=[entry("me", "strict", version=3)]))
    assert state.security.version == 2
