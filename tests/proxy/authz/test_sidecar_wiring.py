"""proxy/main.py wires authorization: one compiled Authorization per push, read by the inbound HTTP stage and
every inbound TCP listener (with its own app port), and shown in /server_info (and /config_dump)."""

from __future__ import annotations

from tests.proxy.authz.helpers import caller, policy
from proto.xds import Push, WorkloadSecurity
from proxy.main import Sidecar
from proxy.settings import ProxyOptions


def test_one_push_reaches_the_http_stage_and_the_tcp_listeners() -> None:
    options = ProxyOptions(service="db", service_port=9080, app_port=8080, app_tcp=((5432, 15432, 0),),
                           inbound_host="127.0.0.1", inbound_port=0, outbound_port=0, admin_port=0, access_log="")
    car = Sidecar(options)
    assert car.inbound.state.app_port == 8080  # destination.port of HTTP callers: the app port
    tcp = car.tcp_in[5432]
    assert tcp.app_port == 15432 and tcp.authorize is not None
    before = tcp.authorize()  # no push yet: the policies are unknown, every connection is closed
    assert before is not None and before(caller(port=15432)) == (False, "inbound_config_not_received")
    ports_only = policy("foo/pg", "ALLOW", {"to": [{"operation": {"ports": ["15432"]}}]})
    car.state.apply(Push(epoch="e", seq=1, version=1, full=True,
                         security=[WorkloadSecurity(workload=options.id, version=1, authorization=[ports_only])]))
    check = tcp.authorize()
    assert check is not None and check(caller(port=15432)) == (True, "")
    assert check(caller(port=8080))[0] is False
    assert car.app_router.admit is not None
    assert car.server_info()["inbound_authz"] == {"rules": 1, "tcp_denied": {5432: 0}}
    car.state.apply(Push(epoch="e", seq=2, version=2, full=True,
                         security=[WorkloadSecurity(workload=options.id, version=2)]))  # the policy deleted
    assert tcp.authorize() is None and car.app_router.admit is None
    assert car.server_info()["inbound_authz"]["rules"] == 0
