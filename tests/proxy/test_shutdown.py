"""proxy/main.py Sidecar.stop: listeners drain together within a bounded grace, and connections cut at the
end log to the access log before it closes; a line written after close is dropped, not an error."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import (Clients, Upstream, keep_alive_echo, read_request, read_response, recorded_logs,
                                      stall)

from proxy.access_log import AccessLog
from proto.xds import Push, WorkloadSecurity
from proxy.main import Sidecar, log_loop_error
from proxy.settings import ProxyOptions

pytestmark = pytest.mark.timeout(30)


def test_access_log_write_after_close_is_dropped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = AccessLog(str(tmp_path / "access.log"))
    log.write("before")
    log.close()
    log.write("after")  # a connection cut at shutdown: no ValueError (I/O operation on closed file)
    log.flush()
    assert (tmp_path / "access.log").read_text().count("\n") == 1


async def test_stop_with_open_connections_is_prompt_and_logs_no_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "access.log"
    options = ProxyOptions(service="stop", service_port=9080, app_port=1, inbound_host="127.0.0.1", inbound_port=0,
                           outbound_port=0, admin_port=0, access_log=str(path))
    car = Sidecar(options)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log_loop_error)
    clients = Clients()
    try:
        with recorded_logs() as logs:
            async with Upstream(stall) as slow, Upstream(keep_alive_echo) as fast:
                await car.start_listeners()
                port = car.outbound.port
                stuck = []
                for _ in range(5):  # requests in flight that never finish
                    reader, writer = await clients(port)
                    writer.write(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n"
                                 % (slow.port, slow.port))
                    stuck.append(reader)
                reader, writer = await clients(port)  # an idle keep-alive connection
                writer.write(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % (fast.port, fast.port))
                assert (await read_response(reader)).status == 200
                reader, writer = await clients(port)  # a CONNECT tunnel
                writer.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % (fast.port, fast.port))
                assert (await read_response(reader, head_only=True)).status == 200
                for _ in range(300):
                    if len(slow.requests) == 5:
                        break
                    await asyncio.sleep(0.01)
                assert len(slow.requests) == 5
                t0 = loop.time()
                await car.stop(grace=0.5)
                elapsed = loop.time() - t0
                await asyncio.sleep(0.1)  # anything still scheduled by a cut connection runs now
    finally:
        loop.set_exception_handler(None)
        await clients.close()
    assert elapsed < 3.0
    assert [e for e in logs if e["event"] == "internal_error"] == []
    lines = path.read_text().splitlines()
    assert len(lines) >= 6, lines  # the fast request, and the five cut ones (logged before the log closed)
    assert sum(' "GET /' in line for line in lines) >= 6


async def test_the_inbound_listener_accepting_through_its_tls_acceptor_drains_as_before() -> None:
    """The inbound port now accepts through a TlsAcceptor (PERMISSIVE with no policy): stop closes its socket
    (new connections refused), lets a request in flight finish within the grace, and cuts a stuck one after it."""
    async def slow_ok(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.2)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await stall(up, reader, writer)

    clients = Clients()
    try:
        async with Upstream(slow_ok) as app:
            options = ProxyOptions(service="drain", service_port=9080, app_port=app.port, inbound_host="127.0.0.1",
                                   inbound_port=0, outbound_port=0, admin_port=0)
            car = Sidecar(options)
            car.state.apply(Push(epoch="e", seq=1, version=1, full=True,  # its entry: the inbound side admits
                                 security=[WorkloadSecurity(workload=options.id, version=1)]))
            await car.start_listeners()
            assert car.inbound.acceptor is not None and car.inbound.acceptor.accepting
            port = car.inbound.port
            reader, writer = await clients(port)
            writer.write(b"GET / HTTP/1.1\r\nhost: drain\r\n\r\n")
            for _ in range(300):
                if len(app.requests) == 1:
                    break
                await asyncio.sleep(0.01)
            stopping = asyncio.ensure_future(car.stop(grace=2.0))
            await asyncio.sleep(0.05)
            try:
                await asyncio.open_connection("127.0.0.1", port)
                refused = False
            except OSError:
                refused = True
            assert refused  # the acceptor's socket is closed first
            response = await read_response(reader)
            assert response.status == 200  # the request in flight finished during the grace
            await asyncio.wait_for(stopping, 5)
            assert car.inbound.acceptor.stats.plaintext == 1 and not car.inbound.acceptor.accepting
    finally:
        await clients.close()
