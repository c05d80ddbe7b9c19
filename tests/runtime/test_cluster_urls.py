"""Several NATS nodes and etcd members in one URL setting (a clustered control plane): how the URLs are
split and what target aetcd is given. Behaviour on a real cluster: tests/integration/test_cluster_faults.py."""

from __future__ import annotations

import pytest

from runtime.bus import servers
from runtime.settings import Settings, etcd_endpoints
from runtime.store import grpc_target


def test_a_bus_url_with_commas_names_every_node_of_the_cluster() -> None:
    assert servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    assert servers("nats://a:4222, nats://b:4222,,nats://c:4222") == ["nats://a:4222", "nats://b:4222",
                                                                      "nats://c:4222"]


def test_etcd_urls_with_commas_are_every_member_and_the_first_is_the_single_endpoint() -> None:
    settings = Settings.load(etcd_url="http://127.0.0.1:2379,http://127.0.0.1:22379, 127.0.0.1:32379")
    assert settings.etcd_endpoints == [("127.0.0.1", 2379), ("127.0.0.1", 22379), ("127.0.0.1", 32379)]
    assert settings.etcd_host_port == ("127.0.0.1", 2379)
    assert etcd_endpoints("etcd-1") == [("etcd-1", 2379)]


def test_a_bad_etcd_url_is_refused_when_settings_load() -> None:
    with pytest.raises(ValueError, match="etcd URL 'http://127.0.0.1:99999'"):
        Settings.load(etcd_url="http://127.0.0.1:2379,http://127.0.0.1:99999")
    with pytest.raises(ValueError, match="names no host"):
        etcd_endpoints("http://:2379")


def test_one_etcd_member_is_dialled_as_it_is() -> None:
    assert grpc_target([("etcd.example", 2379)]) == ("etcd.example", 2379)


def test_several_members_become_one_grpc_ipv4_target_listing_each_address() -> None:
    host, port = grpc_target([("127.0.0.1", 2379), ("localhost", 22379), ("127.0.0.3", 32379)])
    assert f"{host}:{port}" == "ipv4:127.0.0.1:2379,127.0.0.1:22379,127.0.0.3:32379"


def test_a_member_whose_name_does_not_resolve_is_left_out_not_fatal() -> None:
    host, port = grpc_target([("127.0.0.1", 2379), ("no-such-host.invalid", 22379)])
    assert f"{host}:{port}" == "ipv4:127.0.0.1:2379"
