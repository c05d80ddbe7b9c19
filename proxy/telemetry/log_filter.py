"""A Telemetry accessLogging `filter.expression`: CEL over Envoy's attributes, compiled once per push,
evaluated per finished request of a workload that has one (istio.io Telemetry API, AccessLogging.Filter;
Envoy's attributes: envoyproxy.io docs, "Attributes").

    LogFilter(expression)            ValueError if it is not CEL; compiled once (cel-python, celpy)
    LogFilter(...)(record, side)     True to log the record; an evaluation error is False, as Envoy's CEL filter

The attributes (absent ones are missing: reading one is an error, so the request is not logged):
    request.method, request.path, request.url_path, request.host, request.scheme ("http"), request.protocol,
    request.headers[<lower-case name>] (repeated headers joined by ","), request.useragent, request.id,
    request.size / request.total_size (body bytes), request.duration (a duration)
    response.code, response.code_details, response.flags (Envoy's short flags, "-" for none),
    response.size / response.total_size (body bytes)
    connection.mtls (the caller came over mutual TLS), connection.termination_details,
    source.address, source.principal, destination.port (the listener side's app port, inbound),
    upstream.address, upstream.port, xds.cluster_name
Cost: cel-python interprets the expression over a map built per evaluated request: about 0.1 ms per logged
request for `response.code >= 400` on this machine (tests/proxy/test_access_logging.py measures it). Workloads
without a filter pay nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

import celpy
from celpy import celtypes

from proxy.core.access import AccessRecord

_ENV = celpy.Environment()


def _s(value: str) -> celtypes.StringType:
    return celtypes.StringType(value)


def attributes(r: AccessRecord) -> dict[str, Any]:
    """The CEL activation for one record (module docstring)."""
    head = r.head
    request: dict[Any, Any] = {_s("protocol"): _s(r.protocol), _s("size"): celtypes.IntType(r.bytes_received),
                               _s("total_size"): celtypes.IntType(r.bytes_received),
                               _s("duration"): celtypes.DurationType(datetime.timedelta(milliseconds=r.duration_ms))}
    if r.protocol != "TCP":
        request[_s("method")] = _s(r.method)
        request[_s("host")] = _s(r.host)
        request[_s("scheme")] = _s("http")
        if head is not None:
            request[_s("path")] = _s(r.path)
            request[_s("url_path")] = _s(r.path.split("?", 1)[0])
            headers: dict[Any, Any] = {}
            for key, value in head.headers:
                name = _s(key.decode("latin-1"))
                text = value.decode("latin-1")
                headers[name] = _s(f"{headers[name]},{text}") if name in headers else _s(text)
            request[_s("headers")] = celtypes.MapType(headers)
            for attr, header in (("useragent", "user-agent"), ("id", "x-request-id")):
                if _s(header) in headers:
                    request[_s(attr)] = headers[_s(header)]
    response = {_s("code"): celtypes.IntType(r.status), _s("flags"): _s(r.flag),
                _s("size"): celtypes.IntType(r.bytes_sent), _s("total_size"): celtypes.IntType(r.bytes_sent)}
    if r.details and r.protocol != "TCP":
        response[_s("code_details")] = _s(r.details)
    down = r.downstream
    connection = {_s("mtls"): celtypes.BoolType(bool(down is not None and down.principal))}
    if r.details and r.protocol == "TCP":
        connection[_s("termination_details")] = _s(r.details)
    source: dict[Any, Any] = {}
    if down is not None and down.source_ip:
        source[_s("address")] = _s(down.source_ip)
    elif head is not None and head.client:
        source[_s("address")] = _s(head.client)
    if down is not None and down.principal:
        source[_s("principal")] = _s(down.principal)
    destination: dict[Any, Any] = {}
    if down is not None and down.destination_port:
        destination[_s("port")] = celtypes.IntType(down.destination_port)
    upstream: dict[Any, Any] = {}
    if r.upstream_host:
        address, _, port = r.upstream_host.rpartition(":")
        upstream[_s("address")] = _s(address.strip("[]"))
        upstream[_s("port")] = celtypes.IntType(int(port))
    return {"request": celtypes.MapType(request), "response": celtypes.MapType(response),
            "connection": celtypes.MapType(connection), "source": celtypes.MapType(source),
            "destination": celtypes.MapType(destination), "upstream": celtypes.MapType(upstream),
            "xds": celtypes.MapType({_s("cluster_name"): _s(r.cluster)})}


class LogFilter:
    """One compiled filter expression."""

    __slots__ = ("expression", "program")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        try:
            self.program = _ENV.program(_ENV.compile(expression))
        except Exception as exc:  # celpy's parse errors (CELParseError, lark's): pilot should have refused it
            raise ValueError(f"access log filter {expression[:200]!r} is not CEL: {exc}") from None

    def __call__(self, r: AccessRecord) -> bool:
        try:
            result = self.program.evaluate(attributes(r))
        except Exception:  # CELEvalError (a missing attribute or header, a type mismatch): not logged, as Envoy
            return False
        return result is True or (isinstance(result, celtypes.BoolType) and bool(result))
