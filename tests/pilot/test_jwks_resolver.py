"""services/pilot/jwks_resolver.py against a real HTTP server on 127.0.0.1: bounds (size, time, status, format),
the cache with its refresh, retries that keep the last good keys, and a changed key set reaching the push."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from proto.registry import Workload
from services.pilot.jwks_resolver import FetchError, JwksResolver, JwksSettings, fetch_body, parse_jwks
from services.pilot.pusher import Pusher
from tests.pilot.test_peer_authn import state


def key_set() -> str:
    return json.dumps({"keys": [json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))]})


class Issuer:
    """What the test issuer serves, path -> (status, body, delay seconds, send Content-Length)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, float, bool]] = {}
        self.hits: dict[str, int] = {}
        self.url = ""

    def serve(self, path: str, body: str | bytes, status: int = 200, delay: float = 0.0, length: bool = True) -> str:
        self.routes[path] = (status, body.encode() if isinstance(body, str) else body, delay, length)
        return self.url + path


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    served = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            served.hits[self.path] = served.hits.get(self.path, 0) + 1
            status, body, delay, length = served.routes.get(self.path, (404, b"no", 0.0, True))
            self.send_response(status)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if delay:  # trickle a byte every 0.1 s: no single read waits long, the whole answer does
                    until = time.monotonic() + delay
                    while body and time.monotonic() < until:
                        self.wfile.write(body[:1])
                        self.wfile.flush()
                        body = body[1:]
                        time.sleep(0.1)
                self.wfile.write(body)
            except OSError:  # the resolver gave up and closed: what this test expects of it
                pass

        def log_message(self, *args: object) -> None:  # quiet: the test reads answers, not the server's log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


def test_a_jwks_is_fetched_and_checked(issuer):
    keys = key_set()
    url = issuer.serve("/jwks", keys)
    assert parse_jwks(url, fetch_body(url, 5, 1 << 20)) == keys


@pytest.mark.parametrize("length", [True, False])
def test_the_body_is_bounded_by_max_bytes_at_the_limit_and_one_over(issuer, length):
    keys = key_set()
    url = issuer.serve("/jwks", keys, length=length)
    assert fetch_body(url, 5, len(keys)) == keys.encode()
    with pytest.raises(FetchError, match=f"more than {len(keys) - 1}|over {len(keys) - 1} bytes"):
        fetch_body(url, 5, len(keys) - 1)


def test_an_oversized_body_is_refused_at_the_default_one_mib(issuer):
    url = issuer.serve("/big", b"x" * (1024 * 1024 + 1), length=False)
    with pytest.raises(FetchError, match="ISTHMUS_JWKS_MAX_BYTES"):
        fetch_body(url, 5, JwksSettings().max_bytes)


def test_a_slow_issuer_is_given_up_at_the_timeout(issuer):
    url = issuer.serve("/slow", key_set() + " " * 100, delay=5.0)
    started = time.monotonic()
    with pytest.raises(FetchError, match="no complete answer within 0.3s"):
        fetch_body(url, 0.3, 1 << 20)
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("status, body, message", [
    (500, "internal secret", "status 500, want 200"),
    (404, "nope", "status 404, want 200"),
    (204, "", "status 204, want 200"),
])
def test_only_a_200_is_accepted_and_the_body_is_never_quoted(issuer, status, body, message):
    url = issuer.serve("/x", body, status=status)
    with pytest.raises(FetchError) as caught:
        fetch_body(url, 5, 1 << 20)
    assert message in str(caught.value) and (not body or body not in str(caught.value))


@pytest.mark.parametrize("body, message", [
    ("{not json", "the body is not JSON"),
    ('{"keys": []}', "not a usable JSON Web Key Set"),
    ('{"root_password": "hunter2"}', "not a usable JSON Web Key Set"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_body_that_is_not_a_jwks_is_refused_without_quoting_it(issuer, body, message):
    url = issuer.serve("/x", body)
    with pytest.raises(FetchError) as caught:
        parse_jwks(url, fetch_body(url, 5, 1 << 20))
    assert message in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.fixture
def raw_server():
    """`raw_server(answer)`: a TCP server on 127.0.0.1 that runs answer(connection) per connection; its URL."""
    import socket
    servers = []

    def start(answer) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def accept() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/jwks.json"

    yield start
    for server in servers:
        server.close()


def _trickle(head: bytes):
    def answer(conn) -> None:  # a byte every 0.1 s: no single read waits long, the whole head does
        conn.recv(4096)
        try:
            for i in range(len(head)):
                conn.sendall(head[i:i + 1])
                time.sleep(0.1)
        except OSError:  # the resolver cut the connection at its deadline: what this test expects
            pass
        conn.close()
    return answer


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\n" * 4, b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 20])
def test_a_status_line_or_headers_trickled_are_given_up_at_the_timeout(raw_server, head):
    url = raw_server(_trickle(head))  # took 6-8 s before: urllib's timeout bounds each read, not the head
    started = time.monotonic()
    with pytest.raises(FetchError, match="no complete answer within 0.5s"):
        fetch_body(url, 0.5, 1 << 20)
    assert time.monotonic() - started < 3.0


def test_an_answer_that_is_not_http_is_named_by_its_kind_never_quoted(raw_server):
    def banner(conn) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2 internal-secret\r\n")
        time.sleep(0.5)
        conn.close()

    url = raw_server(banner)  # was http.client.BadStatusLine, logged by pilot as its own bug with the banner
    with pytest.raises(FetchError) as caught:
        fetch_body(url, 2, 1 << 20)
    assert "the answer is not HTTP (BadStatusLine)" in str(caught.value) and "secret" not in str(caught.value)


def test_nothing_listens_is_an_error_naming_the_url():
    with pytest.raises(FetchError, match="GET http://127.0.0.1:9/k"):
        fetch_body("http://127.0.0.1:9/k", 2, 1 << 20)


async def _until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_lookup_never_blocks_then_the_answer_recompiles_and_a_refresh_brings_new_keys(issuer):
    first, second = key_set(), key_set()
    url = issuer.serve("/jwks", first)
    changes = []
    resolver = JwksResolver(JwksSettings(refresh_interval=0.2, retry_interval=0.1), lambda: changes.append(1))
    try:
        keys, error = resolver.lookup("a", url, 5.0)
        assert keys is None and error == f"fetching {url}: no answer yet"
        await _until(lambda: changes)
        assert resolver.lookup("a", url, 5.0) == (first, "")
        issuer.serve("/jwks", second)
        await _until(lambda: resolver.lookup("a", url, 5.0) == (second, ""))
        assert len(changes) == 2
        issuer.serve("/jwks", json.dumps(json.loads(second), indent=2))  # the same keys written otherwise
        hits = issuer.hits["/jwks"]
        await _until(lambda: issuer.hits["/jwks"] >= hits + 2)
        assert len(changes) == 2  # no recompile for a re-serialization
    finally:
        await resolver.close()


async def test_a_failing_issuer_keeps_the_last_good_keys_with_the_error_and_recovers(issuer):
    keys = key_set()
    url = issuer.serve("/jwks", keys)
    changes = []
    resolver = JwksResolver(JwksSettings(refresh_interval=0.2, retry_interval=0.1), lambda: changes.append(1))
    try:
        resolver.lookup("a", url, 5.0)
        await _until(lambda: resolver.lookup("a", url, 5.0) == (keys, ""))
        issuer.serve("/jwks", "oops", status=500)
        await _until(lambda: resolver.lookup("a", url, 5.0)[1] != "")
        assert resolver.lookup("a", url, 5.0) == (keys, f"GET {url}: status 500, want 200")
        issuer.serve("/jwks", keys)
        await _until(lambda: resolver.lookup("a", url, 5.0) == (keys, ""))
    finally:
        await resolver.close()


async def test_keys_are_found_by_openid_discovery_without_a_jwks_uri(issuer):
    keys = key_set()
    jwks_url = issuer.serve("/keys", keys)
    issuer.serve("/.well-known/openid-configuration", json.dumps({"issuer": issuer.url, "jwks_uri": jwks_url}))
    resolver = JwksResolver(JwksSettings(), lambda: None)
    try:
        resolver.lookup(issuer.url + "/", None, 5.0)
        await _until(lambda: resolver.lookup(issuer.url + "/", None, 5.0) == (keys, ""))
    finally:
        await resolver.close()


async def test_uris_no_compile_looks_up_are_dropped_and_stop_being_fetched(issuer):
    url = issuer.serve("/jwks", key_set())
    resolver = JwksResolver(JwksSettings(refresh_interval=0.05), lambda: None)
    try:
        resolver.lookup("a", url, 5.0)
        task = resolver.entries[url].task
        resolver.begin()
        resolver.end()
        assert resolver.entries == {}
        await asyncio.sleep(0.05)
        assert task is not None and task.cancelled()
        hits = issuer.hits.get("/jwks", 0)
        await asyncio.sleep(0.3)
        assert issuer.hits.get("/jwks", 0) == hits
    finally:
        await resolver.close()


async def test_a_changed_key_set_reaches_the_push_after_refresh(issuer):
    first, second = key_set(), key_set()
    url = issuer.serve("/jwks", first)
    changed = asyncio.Event()
    resolver = JwksResolver(JwksSettings(refresh_interval=0.2), changed.set)
    pusher = Pusher(jwks=resolver.lookup, jwks_sweep=(resolver.begin, resolver.end))
    policy = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec: {{jwtRules: [{{issuer: a, jwksUri: '{url}', timeout: 2s}}]}}
"""
    s = state((policy, 5), workloads=[(Workload(id="f1", service="f", namespace="foo"), 2)], revision=5)
    try:
        push = pusher.recompile(s, 5)  # answers at once, from an empty cache
        assert push is not None and push.security[0].jwt[0].jwks_error == f"fetching {url}: no answer yet"
        for expected in (first, second):
            await asyncio.wait_for(changed.wait(), 10)
            changed.clear()
            push = pusher.recompile(s, 5)
            assert push is not None
            (provider,) = push.security[0].jwt
            assert (provider.rule.jwks, provider.jwks_error) == (expected, "")
            issuer.serve("/jwks", second)
    finally:
        await resolver.close()


def test_settings_come_from_the_environment_and_refuse_nonsense():
    settings = JwksSettings.from_env({"ISTHMUS_JWKS_REFRESH_INTERVAL": "0.5", "ISTHMUS_JWKS_MAX_BYTES": "2048"})
    assert (settings.refresh_interval, settings.retry_interval, settings.max_bytes) == (0.5, 60.0, 2048)
    assert JwksSettings.from_env({}) == JwksSettings(1200.0, 60.0, 1024 * 1024)
    for bad in ("0", "-1", "x", "inf"):
        with pytest.raises(ValueError, match="ISTHMUS_JWKS_RETRY_INTERVAL"):
            JwksSettings.from_env({"ISTHMUS_JWKS_RETRY_INTERVAL": bad})


async def test_closing_during_a_slow_fetch_returns_at_once_and_the_thread_is_a_daemon(issuer):
    url = issuer.serve("/slow", key_set() + " " * 100, delay=5.0)
    resolver = JwksResolver(JwksSettings(), lambda: None)
    resolver.lookup("a", url, 5.0)
    await _until(lambda: issuer.hits.get("/slow"))
    fetching = [t for t in threading.enumerate() if t.name.startswith("jwks fetch")]
    assert fetching and all(t.daemon for t in fetching)  # a fetch in flight never holds up pilot's exit
    started = time.monotonic()
    await resolver.close()
    assert time.monotonic() - started < 1.0
