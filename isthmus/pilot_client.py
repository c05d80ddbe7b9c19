"""Talking to pilot over the bus for one CLI command: connect fast, send, close, and turn every bus failure
into one `error:` line (CliError)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from isthmus.errors import CliError
from proto.config_api import ApplyReply
from proto.subjects import CONFIG_APPLY

T = TypeVar("T")

REQUEST_TIMEOUT = 10.0


async def connect_cli(url: str, timeout: float = 3.0, auth: Any = None) -> Any:
    """A short-lived connection that fails fast (no reconnect loop) when nothing listens. `auth`: the
    client config's NatsClient; None: the config find_config() finds (ISTHMUS_CONFIG, .isthmus/isthmus.yaml)."""
    import nats

    from runtime.bus import Bus, BusError, connect_options, servers
    from runtime.clientconfig import ConfigFileError, load_optional

    if auth is None:
        try:
            config = load_optional()
        except ConfigFileError as exc:
            raise BusError(str(exc)) from exc
        auth = config.nats if config else None

    async def quiet(_: Exception) -> None:
        return None

    try:
        client = await asyncio.wait_for(
            nats.connect(servers=servers(url), name="isthmus-cli", allow_reconnect=False, connect_timeout=2,
                         max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=quiet,
                         **connect_options(auth)),
            timeout,
        )
    except Exception as exc:  # refused, timed out, bad URL
        raise BusError(f"cannot reach the bus at {url}: {exc}") from exc
    return Bus(client)


async def apply_text(bus: Any, text: str, timeout: float = REQUEST_TIMEOUT, namespace: str | None = None) -> ApplyReply:
    """Send one YAML/JSON stream to pilot's config API (what `isthmus apply` does); `namespace`: kubectl's -n
    (documents naming none go there; one naming another is refused)."""
    from proto.config_api import NAMESPACE_HEADER
    from runtime.bus import decode

    headers = {NAMESPACE_HEADER: namespace} if namespace is not None else None
    return decode(await bus.request(CONFIG_APPLY, text.encode(), timeout, headers=headers), ApplyReply)


def with_bus(nats_url: str, work: Callable[[Any], Awaitable[T]], *, changes: bool = False,
             timeout: float = REQUEST_TIMEOUT, service: str = "pilot", auth: Any = None) -> T:
    """Connect, run `work(bus)`, close; bus failures become one `error:` line and exit code 1.
    `changes`: the request changes config, so a timeout says it was not (and will not be) applied:
    pilot refuses a request whose deadline passed (runtime/bus_deadline.py, Isthmus-Deadline).
    `service`: who answers (named in the error lines: pilot, or the ca)."""
    from runtime.bus import BusError, BusTimeout, NoResponders, PayloadTooLarge

    async def run() -> T:
        bus = await connect_cli(nats_url, auth=auth)
        try:
            return await work(bus)
        finally:
            try:
                await asyncio.wait_for(bus.client.close(), 2)
            except Exception:
                pass

    try:
        return asyncio.run(run())
    except BusTimeout as exc:
        outcome = "; the change was not applied and will not be applied later" if changes else ""
        raise CliError(f"{service} did not answer within {timeout:g}s{outcome}") from exc
    except NoResponders as exc:
        # we reached the bus, so `isthmus up` (or whoever runs it) is there: the service itself is not serving,
        # which is what a restart looks like (the supervisor restarts a service that exits)
        raise CliError(f"{service} did not answer on {nats_url} (nothing serves it): the bus is up, so {service} "
                       "is restarting or was not started; try again in a few seconds, else see `isthmus up`'s "
                       "output and <state-dir>/logs/") from exc
    except PayloadTooLarge as exc:
        raise CliError(f"{exc}; nothing was sent: split the files into several applies") from exc
    except BusError as exc:
        reason = str(exc.__cause__ or "").strip()[:200]
        if "authorization violation" in reason.lower():
            raise CliError(f"the bus at {nats_url} refused our credentials: use the client config `isthmus up` "
                           "wrote (--config, or export ISTHMUS_CONFIG=<state-dir>/isthmus.yaml)") from exc
        because = f" ({reason})" if reason else ""
        raise CliError(f"cannot reach {service} on {nats_url}{because}: is `isthmus up` running?") from exc


def ask(obj: dict[str, Any], subject: str, message: Any, reply_type: type, service: str,
        changes: bool = False) -> Any:
    """One request/reply of a CLI command to `service` ("the ca", "the auth service"), on the bus and
    credentials of the command's context `obj`, its reply decoded as `reply_type`; CliError as with_bus."""
    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> Any:
        return await bus.call(subject, message, reply_type, timeout)

    return with_bus(obj["nats_url"], work, timeout=timeout, changes=changes, service=service, auth=obj.get("auth"))


def quiet_logs() -> None:
    """Only errors from the bus client's logging: the terminal is for the command's own output."""
    from runtime.log import configure

    configure("error")
