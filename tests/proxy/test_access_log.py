"""proxy/access_log.py: the line in Istio's default format (text) and with Istio's JSON keys, every field, and
buffering (lines reach the file on flush, not per request)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from proto.observations import AccessLogEntry
from proxy.access_log import AccessLog
from proxy.core.access import AccessRecord
from proxy.core.downstream import Downstream
from proxy.core.request import RequestHead

STAMP = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "


class Trace:
    """What the tracing stage leaves on RequestHead.trace: read duck-typed, only its trace_id."""

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"


def head(trace: object = None, downstream: Downstream | None = None) -> RequestHead:
    h = RequestHead("GET", "reviews", 9080, "/r?x=1",
                    [(b"host", b"reviews:9080"), (b"user-agent", b"curl/8.5.0"), (b"x-forwarded-for", b"10.1.1.1"),
                     (b"x-request-id", b"6d0f7c1e-0000-4000-8000-000000000001")],
                    client="127.0.0.1", downstream=downstream or Downstream())
    h.trace = trace
    return h


def http_record(**kw: object) -> AccessRecord:
    fields = dict(protocol="HTTP/1.1", bytes_received=7, upstream_ms=3.6, upstream_host="10.0.0.7:15006",
                  upstream_peer="spiffe://cluster.local/ns/default/sa/reviews", head=head(Trace()))
    fields.update(kw)
    return AccessRecord("GET", "reviews", "/r?x=1", 200, "-", "outbound|9080|v1|reviews.default.svc.cluster.local",
                        13, 4.2, **fields)  # type: ignore[arg-type]


def tcp_record() -> AccessRecord:
    return AccessRecord("-", "db:5432", "", 0, "-", "inbound|5432||", 88, 3002.06,
                        "rbac_access_denied_matched_policy[none]", protocol="TCP", bytes_received=1520,
                        downstream=Downstream("cluster.local/ns/foo/sa/sleep", "10.2.2.2"))


def written(path, fmt: str, *records: tuple[str, AccessRecord]) -> list[str]:
    log = AccessLog(str(path), fmt)
    for listener, record in records:
        log.for_listener(listener)(record)
    log.close()
    return path.read_text().splitlines()


def test_an_http_line_has_envoys_default_fields_in_istios_order(tmp_path):
    (line,) = written(tmp_path / "a.log", "text", ("outbound", http_record()))
    assert re.fullmatch(
        STAMP + r'outbound "GET /r\?x=1 HTTP/1\.1" 200 - via_upstream - 7 13 4 3 "10\.1\.1\.1" "curl/8\.5\.0" '
        r'"6d0f7c1e-0000-4000-8000-000000000001" "reviews:9080" "10\.0\.0\.7:15006" '
        r'outbound\|9080\|v1\|reviews\.default\.svc\.cluster\.local 127\.0\.0\.1 4bf92f3577b34da6a3ce929d0e0e4736 - '
        r'spiffe://cluster\.local/ns/default/sa/reviews', line), line


def test_absent_values_are_dashes_and_a_local_answer_has_its_details(tmp_path):
    record = AccessRecord("GET", "app", "/admin", 403, "-", "-", 19, 0.3,
                          "rbac_access_denied_matched_policy[ns[foo]-policy[deny]-rule[0]]",
                          head=RequestHead("GET", "app", 80, "/admin", []))
    (line,) = written(tmp_path / "a.log", "text", ("inbound", record))
    assert line.endswith('inbound "GET /admin HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[foo]-policy'
                         '[deny]-rule[0]] - 0 19 0 - "-" "-" "-" "app" "-" - - - - -'), line


def test_the_inbound_line_names_the_callers_principal(tmp_path):
    caller = Downstream("cluster.local/ns/foo/sa/sleep", "10.2.2.2", "10.0.0.7", 8080)
    record = http_record(head=head(downstream=caller), upstream_peer="")
    (line,) = written(tmp_path / "a.log", "text", ("inbound", record))
    assert line.endswith(" 10.2.2.2 - spiffe://cluster.local/ns/foo/sa/sleep -"), line


def test_a_tcp_line_has_envoys_dashes_and_its_termination_details(tmp_path):
    (line,) = written(tmp_path / "a.log", "text", ("inbound", tcp_record()))
    assert line.endswith('inbound "- - -" 0 - - rbac_access_denied_matched_policy[none] 1520 88 3002 - "-" "-" "-" '
                         '"db:5432" "-" inbound|5432|| 10.2.2.2 - spiffe://cluster.local/ns/foo/sa/sleep -'), line


def test_a_connect_tunnel_has_its_authority_as_the_path(tmp_path):
    record = AccessRecord("CONNECT", "api.example:443", "", 200, "-", "PassthroughCluster", 5000, 120.0,
                          bytes_received=800, upstream_host="93.184.216.34:443")
    (line,) = written(tmp_path / "a.log", "text", ("outbound", record))
    assert ' "CONNECT api.example:443 HTTP/1.1" 200 - - - 800 5000 120 - "-" "-" "-" "api.example:443" ' \
           '"93.184.216.34:443" PassthroughCluster ' in line, line


def test_json_has_istios_keys_every_one_present(tmp_path):
    (line,) = written(tmp_path / "a.json", "json", ("outbound", http_record()))
    entry = json.loads(line)
    assert list(entry) == list(AccessLogEntry.__struct_fields__)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("start_time"))
    assert entry == {
        "listener": "outbound", "method": "GET", "path": "/r?x=1", "protocol": "HTTP/1.1", "response_code": 200,
        "response_flags": "-", "response_code_details": "via_upstream", "connection_termination_details": None,
        "bytes_received": 7, "bytes_sent": 13, "duration": 4, "upstream_service_time": 3,
        "x_forwarded_for": "10.1.1.1", "user_agent": "curl/8.5.0", "request_id": "6d0f7c1e-0000-4000-8000-000000000001",
        "authority": "reviews:9080", "upstream_host": "10.0.0.7:15006",
        "upstream_cluster": "outbound|9080|v1|reviews.default.svc.cluster.local",
        "downstream_remote_address": "127.0.0.1", "downstream_local_address": None, "requested_server_name": None,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "downstream_peer_principal": None,
        "upstream_peer_principal": "spiffe://cluster.local/ns/default/sa/reviews"}


def test_json_for_tcp_has_no_method_and_its_termination_details(tmp_path):
    (line,) = written(tmp_path / "a.json", "json", ("inbound", tcp_record()))
    entry = json.loads(line)
    assert (entry["method"], entry["path"], entry["protocol"], entry["response_code"]) == (None, None, "TCP", 0)
    assert entry["connection_termination_details"] == "rbac_access_denied_matched_policy[none]"
    assert (entry["bytes_received"], entry["bytes_sent"], entry["authority"]) == (1520, 88, "db:5432")


def test_json_names_where_an_inbound_caller_came_from_and_what_it_reached(tmp_path):
    caller = Downstream("cluster.local/ns/foo/sa/sleep", "10.2.2.2", "10.0.0.7", 8080, "outbound_.8080_._.app")
    (line,) = written(tmp_path / "a.json", "json", ("inbound", http_record(head=head(downstream=caller))))
    entry = json.loads(line)
    assert (entry["downstream_remote_address"], entry["downstream_local_address"], entry["requested_server_name"],
            entry["downstream_peer_principal"]) == ("10.2.2.2", "10.0.0.7:8080", "outbound_.8080_._.app",
                                                    "spiffe://cluster.local/ns/foo/sa/sleep")


def test_a_trace_without_an_id_and_no_trace_are_dashes(tmp_path):
    class Unsampled:
        pass
    lines = written(tmp_path / "a.log", "text", ("outbound", http_record(head=head(Unsampled()))),
                    ("outbound", http_record(head=head(None))))
    assert all(" 127.0.0.1 - - spiffe://" in line for line in lines), lines


def test_start_time_is_when_the_request_began(tmp_path):
    (line,) = written(tmp_path / "a.json", "json", ("outbound", http_record(head=head(), upstream_ms=-1.0)))
    entry = json.loads(line)
    assert entry["upstream_service_time"] is None and entry["response_code_details"] is None
    long_ago = AccessRecord("GET", "r", "/", 200, "-", "c", 0, 3_600_000.0)  # an hour-long request
    (older,) = written(tmp_path / "b.json", "json", ("outbound", long_ago))
    assert json.loads(older)["start_time"] < entry["start_time"]


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="text, json"):
        AccessLog(str(tmp_path / "a.log"), "yaml")


async def test_lines_are_buffered_then_written(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.for_listener("outbound")(http_record())
    log.for_listener("inbound")(tcp_record())
    assert path.read_text() == ""  # nothing written per request
    await asyncio.sleep(0.7)  # FLUSH_INTERVAL
    assert [line.split()[1] for line in path.read_text().splitlines()] == ["outbound", "inbound"]
    log.close()
