"""Pilot's JWKS resolver: fetches each RequestAuthentication jwksUri so sidecars get the key set inline, as
istiod does by default (pilot/pkg/model/jwks_resolver.go); sidecars never reach the issuer.

    resolver = JwksResolver(JwksSettings.from_env(), on_change)
    resolver.lookup(issuer, jwks_uri, timeout_s) -> (key set JSON | None, error)   the compiler's JwksLookup
    resolver.begin(); ...compile...; resolver.end()     entries no compile looked up are dropped
    await resolver.close()

lookup never blocks: it answers from the cache and, for a URI it has not seen, starts a background task that
fetches it (a jwtRule with neither jwks nor jwksUri: its issuer's OpenID discovery document
<issuer>/.well-known/openid-configuration first, for its `jwks_uri`, as Istio). The task refetches every
`refresh_interval` (Istio's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 min); after a failure it retries after
`retry_interval` (Istio's 1 min), doubling per consecutive failure up to an hour (Istio's reset threshold).
When a fetch changes the keys or the error, `on_change()` is called: pilot recompiles and pushes.
Until a fetch succeeds, and while fetches fail, lookup returns the last good keys (None if never) with the
error, as Istio keeps its cached keys; the sidecar then verifies with those, or refuses every token of the
issuer (401) when there are none.

Accepted: status 200 and a body of at most `max_bytes` that is a JWKS of keys PyJWT loads
(validate/jwks.py), within the rule's `timeout` for the whole exchange. HTTP proxies from the environment
are not used; redirects are followed to http(s) only. Errors never quote the body: a jwksUri pointing at
an internal service must not leak its answers through /config_dump (Istio's validateJWKSFormat reason).
The fetch runs urllib (stdlib) in a daemon thread: http and https (the system's CA bundle) with no new
dependency; at the deadline its sockets are shut down (http_deadline.py), so a server that trickles its
status line, headers or body holds it no longer, and a fetch in flight never delays pilot's exit. An
answer that is not HTTP is an error naming its kind, never its bytes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.log import get_logger
from services.pilot.http_deadline import Deadline
from services.pilot.validate.jwks import jwks_problems

log = get_logger("pilot.jwks")

RETRY_CAP = 3600.0  # seconds: Istio's JwtPubKeyRefreshIntervalOnFailureResetThreshold (60 min)
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
_CHUNK = 65536


@dataclass(frozen=True)
class JwksSettings:
    """refresh_interval: seconds between fetches of a URI that answered (ISTHMUS_JWKS_REFRESH_INTERVAL, 1200);
    retry_interval: seconds before the first retry of a failed fetch (ISTHMUS_JWKS_RETRY_INTERVAL, 60);
    max_bytes: the largest response body accepted (ISTHMUS_JWKS_MAX_BYTES, 1 MiB)."""

    refresh_interval: float = 1200.0
    retry_interval: float = 60.0
    max_bytes: int = 1024 * 1024

    @classmethod
    def from_env(cls, env: Any = None) -> "JwksSettings":
        """ValueError naming the variable for a value that is not a positive number."""
        env = os.environ if env is None else env
        base, values = cls(), {}
        for name, kind in (("refresh_interval", float), ("retry_interval", float), ("max_bytes", int)):
            var = f"ISTHMUS_JWKS_{name.upper()}"
            text = env.get(var)
            if text is None:
                continue
            try:
                value = kind(text)
            except ValueError:
                value = 0
            if not (0 < value < float("inf")):
                raise ValueError(f"{var} is {text[:40]!r}: give a positive number")
            values[name] = value
        return cls(**{**vars(base), **values})


class FetchError(Exception):
    """Why a fetch gave no key set; the message is what JwtProvider.jwks_error says."""


class _NoProxies(urllib.request.ProxyHandler):
    def __init__(self) -> None:
        super().__init__({})


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not newurl.lower().startswith(("http://", "https://")):
            raise FetchError(f"redirected to a non-http(s) URL by {req.full_url}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_body(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET `url` (blocking: run in a thread); the body of a 200 of at most `max_bytes`, within `timeout`
    seconds in all, status line and headers included (http_deadline.py). FetchError otherwise."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "isthmus-pilot"})
    watch = Deadline(timeout)
    late = FetchError(f"GET {url}: no complete answer within {timeout:g}s")
    try:
        with watch, watch.opener(_NoProxies(), _HttpRedirects()).open(request, timeout=timeout) as response:
            if response.status != 200:
                raise FetchError(f"GET {url}: status {response.status}, want 200")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"GET {url}: body of {declared} bytes, more than {max_bytes} "
                                 "(ISTHMUS_JWKS_MAX_BYTES)")
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise late
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"GET {url}: body over {max_bytes} bytes (ISTHMUS_JWKS_MAX_BYTES)")
                chunks.append(chunk)
            if watch.expired:  # the watchdog cut the connection: what was read is not the whole answer
                raise late
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"GET {url}: status {exc.code}, want 200") from None
    except (TimeoutError, OSError, urllib.error.URLError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if watch.expired or isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            raise late from None
        if isinstance(reason, http.client.HTTPException) and not isinstance(reason, OSError):
            # not an HTTP/1.x answer (an SSH banner, a database): named by kind, its bytes never quoted
            raise FetchError(f"GET {url}: the answer is not HTTP ({type(reason).__name__})") from None
        raise FetchError(f"GET {url}: {type(reason).__name__}: {reason}"[:300]) from None
    return b"".join(chunks)


def parse_jwks(url: str, body: bytes) -> str:
    """The key set as text, or FetchError when it is not a usable JWKS (never quoting it)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(f"GET {url}: the body is not UTF-8 JSON") from None
    errors, _ = jwks_problems(text)
    if errors:
        raise FetchError(f"GET {url}: not a usable JSON Web Key Set: {errors[0][:60]}"
                         if not errors[0].startswith("not JSON") else f"GET {url}: the body is not JSON")
    return text


def discovered_jwks_uri(url: str, body: bytes) -> str:
    """`jwks_uri` of an OpenID discovery document, or FetchError."""
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchError(f"GET {url}: the discovery document is not JSON") from None
    uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(uri, str) or not uri.lower().startswith(("http://", "https://")):
        raise FetchError(f"GET {url}: the discovery document has no http(s) `jwks_uri`")
    return uri


def _parsed(keys: str | None) -> Any:
    return json.loads(keys) if keys is not None else None


async def _in_thread(fetch: Callable[[str, float, int], bytes], url: str, timeout: float, limit: int) -> bytes:
    """fetch(url, timeout, limit) in a daemon thread: a fetch still running when pilot stops (it ends by its
    deadline) never holds up the exit, as the default executor's threads would."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    def settle(result: bytes | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result or b"")

    def run() -> None:
        try:
            body = fetch(url, timeout, limit)
        except BaseException as exc:  # handed to the awaiting task, which says what it was
            error: BaseException | None = exc
            body = None
        else:
            error = None
        try:
            loop.call_soon_threadsafe(settle, body, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=run, name=f"jwks fetch {url[:60]}", daemon=True).start()
    return await done


class _Entry:
    __slots__ = ("issuer", "uri", "timeout", "keys", "error", "failures", "task", "used")

    def __init__(self, issuer: str, uri: str | None, timeout: float) -> None:
        self.issuer, self.uri, self.timeout = issuer, uri, timeout
        self.keys: str | None = None
        self.error = f"fetching {self.target}: no answer yet"
        self.failures = 0
        self.task: asyncio.Task[None] | None = None
        self.used = True

    @property
    def target(self) -> str:
        return self.uri or self.issuer.rstrip("/") + DISCOVERY_SUFFIX


class JwksResolver:
    """The cache of fetched key sets, one background task per URI in use."""

    def __init__(self, settings: JwksSettings, on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.entries: dict[str, _Entry] = {}  # jwksUri (or discovery URL) -> its entry

    def lookup(self, issuer: str, jwks_uri: str | None, timeout: float) -> tuple[str | None, str]:
        """(last good key set or None, "" or why the last fetch failed); starts fetching an unseen URI."""
        entry = _Entry(issuer, jwks_uri, timeout)
        key = entry.target
        found = self.entries.get(key)
        if found is None:
            found = self.entries[key] = entry
            found.task = asyncio.get_running_loop().create_task(self._follow(found), name=f"jwks {key}")
        found.used, found.timeout = True, timeout
        return found.keys, found.error

    def begin(self) -> None:
        """Before a compile: every entry is unused until looked up."""
        for entry in self.entries.values():
            entry.used = False

    def end(self) -> None:
        """After a compile: entries no rule looked up are dropped, their fetching stopped."""
        for key in [k for k, e in self.entries.items() if not e.used]:
            entry = self.entries.pop(key)
            if entry.task is not None:
                entry.task.cancel()

    async def close(self) -> None:
        tasks = [e.task for e in self.entries.values() if e.task is not None]
        self.entries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, entry: _Entry) -> str:
        limit, deadline = self.settings.max_bytes, time.monotonic() + entry.timeout
        url = entry.uri
        if url is None:
            discovery = entry.target
            body = await _in_thread(fetch_body, discovery, entry.timeout, limit)
            url = discovered_jwks_uri(discovery, body)
        body = await _in_thread(fetch_body, url, max(0.001, deadline - time.monotonic()), limit)
        return parse_jwks(url, body)

    async def _follow(self, entry: _Entry) -> None:
        while True:
            try:
                keys, error = await self._fetch(entry), ""
            except FetchError as exc:
                keys, error = entry.keys, str(exc)
            except Exception as exc:  # our bug: keep the task (and the last good keys) alive, say why
                log.exception("jwks fetch failed", uri=entry.target)
                keys, error = entry.keys, f"fetching {entry.target} failed: {type(exc).__name__}"
            changed = error != entry.error or _parsed(keys) != _parsed(entry.keys)  # not a re-serialization
            entry.keys, entry.error = keys, error
            if error:
                entry.failures += 1
                delay = min(max(RETRY_CAP, self.settings.retry_interval),
                            self.settings.retry_interval * 2 ** (entry.failures - 1))
                log.warning("jwks fetch failed", uri=entry.target, error=error, retry_in=delay)
            else:
                entry.failures = 0
                delay = self.settings.refresh_interval
            if changed:
                if not error:
                    log.info("jwks keys updated", uri=entry.target)
                self.on_change()
            await asyncio.sleep(delay)
