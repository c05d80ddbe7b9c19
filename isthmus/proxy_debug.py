"""Asking one proxy over the bus (proto/debug.py): which proxy a name means (pilot's proxy status), its config
dump by section (gathered from chunks), its log level. Every failure is a CliError (one `error:` line)."""

from __future__ import annotations

import json
from typing import Any

from isthmus.errors import CliError
from proto.debug import MAX_DUMP, ProxyDebugReply, ProxyDebugRequest
from proto.subjects import XDS_STATUS, proxy_debug_subject
from proto.xds import ProxyStatus, ProxyStatusReply, ProxyStatusRequest

MAX_CHUNKS = 256  # requests for one dump; with the proxy's chunk size this covers MAX_DUMP
DUMP_DEADLINE_FACTOR = 6  # one dump's chunks all arrive within this many request timeouts (a trickling proxy)


async def proxy_statuses(bus: Any, timeout: float, namespace: str | None = None,
                         snapshot_for: str = "") -> ProxyStatusReply:
    reply = await bus.call(XDS_STATUS, ProxyStatusRequest(namespace=namespace, snapshot_for=snapshot_for),
                           ProxyStatusReply, timeout)
    if not reply.ok:
        raise CliError(reply.error or "pilot could not list the proxies")
    return reply


def resolve(proxies: list[ProxyStatus], name: str) -> ProxyStatus:
    """The proxy `name` means, as istioctl reads a pod name: its id; else `service.namespace` (or `service`
    in namespace default) when one proxy serves it; else a unique prefix of an id. CliError otherwise."""
    exact = [p for p in proxies if p.proxy_id == name]
    if exact:
        return exact[0]
    service, _, namespace = name.partition(".")
    by_service = [p for p in proxies if p.service == service and (p.namespace or "default") == (namespace or "default")]
    prefixed = [p for p in proxies if p.proxy_id.startswith(name)]
    for found in (by_service, prefixed):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.proxy_id for p in found[:10])
            raise CliError(f"{name!r} names {len(found)} proxies ({names}{', ...' if len(found) > 10 else ''}): "
                           "give one proxy id")
    # pilot names a proxy's debug subject only once the proxy is registered (services/pilot/proxy_status.py
    # bus_user_for); before that, its own admin port is the one place that shows what it holds
    raise CliError(f"no proxy {name!r} has reported to pilot: see `isthmus proxy-status`. A sidecar whose "
                   "registration has not reached pilot yet (the registry unreachable) is read on its admin port "
                   "on its own host: curl http://127.0.0.1:15000/config_dump (its --admin-port)")


def subject_of(status: ProxyStatus) -> str:
    user = status.bus_user
    cred = user.removeprefix("proxy.")
    if not user.startswith("proxy.") or not cred or not cred.replace("-", "").replace("_", "").isalnum():
        raise CliError(f"pilot holds no bus credential it could verify for proxy {status.proxy_id}: the proxy did "
                       "not name one (older than `isthmus proxy-config`), or the one it named is not of the identity "
                       "registered under its id (revoked, or another workload's); it cannot be asked over the bus. "
                       "Its admin port's /config_dump shows the same, on its own host")
    return proxy_debug_subject(cred)


async def ask(bus: Any, status: ProxyStatus, request: ProxyDebugRequest, timeout: float) -> ProxyDebugReply:
    from runtime.bus import BusTimeout, NoResponders

    try:
        reply = await bus.call(subject_of(status), request, ProxyDebugReply, timeout)
    except (BusTimeout, NoResponders) as exc:
        raise CliError(f"proxy {status.proxy_id} did not answer within {timeout:g}s: it is not connected to the bus, "
                       "or has stopped") from exc
    if not reply.ok:
        raise CliError(f"proxy {status.proxy_id}: {reply.error}")
    return reply


async def fetch_section(bus: Any, status: ProxyStatus, section: str, timeout: float) -> Any:
    """One section of the proxy's config dump, decoded (a JSON object); gathered from chunks that all belong to
    one dump (a dump that changed between two chunks is asked for again, once). The proxy is not trusted: a
    chunk at another offset than asked, an empty chunk before `total`, text that is no JSON object, or a dump
    not complete within DUMP_DEADLINE_FACTOR x `timeout` seconds in all ends in one CliError."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DUMP_DEADLINE_FACTOR * timeout
    who = f"proxy {status.proxy_id}"
    for _attempt in range(2):
        parts: list[str] = []
        digest = ""
        offset = 0
        for _ in range(MAX_CHUNKS):
            left = deadline - loop.time()
            if left <= 0:
                raise CliError(f"{who}: the {section} dump did not arrive within {DUMP_DEADLINE_FACTOR * timeout:g}s")
            reply = await ask(bus, status, ProxyDebugRequest(proxy_id=status.proxy_id, section=section,
                                                             offset=offset), min(timeout, left))
            if reply.total > MAX_DUMP:
                raise CliError(f"{who}: the {section} dump is {reply.total} characters")
            if reply.offset != offset or offset + len(reply.body) > reply.total or (
                    not reply.body and offset < reply.total):
                raise CliError(f"{who} answered a malformed chunk of its {section} dump (offset {reply.offset}, "
                               f"{len(reply.body)} characters of {reply.total}; {offset} asked)")
            if digest and reply.digest != digest:
                break  # the proxy's config changed between chunks: start again
            digest = digest or reply.digest
            parts.append(reply.body)
            offset += len(reply.body)
            if offset >= reply.total:
                try:
                    value = json.loads("".join(parts))
                except ValueError as exc:
                    raise CliError(f"{who}: its {section} dump is not JSON ({exc})") from None
                if not isinstance(value, dict):
                    raise CliError(f"{who}: its {section} dump is not a JSON object")
                return value
        else:
            raise CliError(f"{who}: the {section} dump did not arrive in {MAX_CHUNKS} chunks")
    raise CliError(f"{who}: its config changed while it was read twice; try again")
