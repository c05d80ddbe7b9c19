"""The sidecar's own bus credentials (proto/busauth.py: a proxy may register, ACK, ask for snapshots and
signing, and read pushes, the bundle and its own inbox, nothing else).

Where they come from, in order:
1. a client config holding proxy credentials (user `proxy.<id>`): used as they are;
2. a bootstrap token (`isthmus token create`): a connection authenticated by the token asks
   `isthmus.bus.join` for credentials bound to the token's namespace and service account;
3. the operator's client config (`isthmus up` wrote it): the sidecar mints credentials for its own
   namespace and service account on `isthmus.bus.creds.issue` (local convenience, logged), and never
   keeps the operator's connection.
With none of them: CredentialsError saying how to get one. A refusal: CredentialsError with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from proto.busauth import BusCredsReply, BusCredsRequest, BusJoinRequest, join_inbox_prefix
from proto.subjects import BUS_CREDS_ISSUE, BUS_JOIN
from runtime import bus as busmod
from runtime import clientconfig
from runtime.clientconfig import ClientConfig, NatsClient
from runtime.log import get_logger

log = get_logger("proxy")
CONNECT_WAIT = 30.0  # seconds to reach the bus for credentials before giving up
CALLOUT_TIMEOUT = 2.0  # seconds nats-server waits for the auth service's answer (authorization.timeout)
CALLOUT_SLOW = CALLOUT_TIMEOUT * 0.75  # a refusal at least this slow is the callout timing out, not an answer


class CredentialsError(Exception):
    """str(exc) is one line for the operator."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()[:32]


async def obtain(url: str, config: NatsClient | None, namespace: str, service_account: str,
                 token: str = "") -> NatsClient:
    """This sidecar's bus credentials (see the module docstring)."""
    if config is not None and config.user.startswith("proxy."):
        return config
    tls_ca = config.tls_ca if config else ""
    if token:
        client = await _connect(url, None, token=token, inbox=join_inbox_prefix(token_digest(token)), tls_ca=tls_ca)
        reply = await _ask(client, BUS_JOIN, BusJoinRequest(token=token))
        how = "joined with a bootstrap token"
    elif config is not None and config.user:
        client = await _connect(url, config)
        reply = await _ask(client, BUS_CREDS_ISSUE, BusCredsRequest(namespace=namespace, service_account=service_account))
        how = "minted with the operator's client config"
    else:
        raise CredentialsError("no bus credentials: pass a bootstrap token (--token-file, --token or env "
                               "ISTHMUS_TOKEN; `isthmus token create`) or the operator's client config (--config, "
                               "env ISTHMUS_CONFIG)")
    if not reply.ok:
        if token:
            raise CredentialsError(f"the control plane refused the bootstrap token: {reply.error}")
        raise CredentialsError(f"the control plane refused bus credentials: {reply.error}")
    log.info("bus credentials", user=reply.user, namespace=reply.namespace, service_account=reply.service_account,
             how=how)
    return NatsClient(url=url, user=reply.user, password=reply.password, inbox_prefix=reply.inbox_prefix,
                      tls_ca=tls_ca)


async def mint_ca_token(url: str, operator: NatsClient, namespace: str, service_account: str,
                        ttl_seconds: int = 600) -> str:
    """A one-use bootstrap token for our own identity, asked on `isthmus.ca.token.create` over a short
    connection with the operator's client config: the sidecar's own bus credentials may not create tokens.
    (The seam for the identity agent's local-convenience mint.) CredentialsError when refused; BusError when
    the ca does not answer."""
    from proto.ca import TokenCreateReply, TokenCreateRequest
    from proto.subjects import CA_TOKEN_CREATE

    bus = await _connect(url, operator)
    try:  # a BusError (the ca not answering yet) is not a refusal: the caller tries again
        reply = await bus.call(CA_TOKEN_CREATE, TokenCreateRequest(namespace=namespace, service_account=service_account,
                                                                   ttl_seconds=ttl_seconds, uses=1),
                               TokenCreateReply, timeout=10)
    finally:
        await bus.close()
    if not reply.ok:
        raise CredentialsError(f"the ca refused a bootstrap token: {reply.error}")
    log.warning("minted a bootstrap token with the operator's client config", namespace=namespace,
                service_account=service_account, token_id=reply.id)
    return reply.token


async def _connect(url: str, config: NatsClient | None, *, token: str = "", inbox: str = "",
                   tls_ca: str = "") -> busmod.Bus:
    import nats

    options = busmod.connect_options(config or NatsClient(tls_ca=tls_ca))
    if token:
        options.update(token=token, inbox_prefix=inbox)
    async def quiet(_: Exception) -> None:  # nats-py would log each failed attempt with a traceback
        return None

    options["error_cb"] = quiet
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_WAIT
    while True:
        started = loop.time()
        try:
            # several comma-separated nodes of a NATS cluster: any one of them mints (runtime/bus.servers)
            client = await asyncio.wait_for(nats.connect(servers=busmod.servers(url), name="proxy-credentials",
                                                         allow_reconnect=False, connect_timeout=2, **options), 5)
            return busmod.Bus(client)
        except Exception as exc:
            if "authorization violation" in str(exc).lower():
                if callout_unanswered(loop.time() - started, config):
                    # nats-server refuses the same way when the auth service did not answer its callout
                    # (stopped, restarting): a valid token or saved credential was called unknown and the
                    # sidecar exited. Wait for it as for the bus itself.
                    if loop.time() > deadline:
                        raise CredentialsError(f"the bus at {url} refused us after its auth callout went unanswered "
                                               f"for {CONNECT_WAIT:g}s: the auth service is not answering (see "
                                               "`isthmus up`'s output and <state-dir>/logs/auth.log)") from None
                    log.warning("the bus's auth service did not answer; trying again", url=url)
                    await asyncio.sleep(0.5)
                    continue
                if token:
                    raise CredentialsError(f"the bus at {url} does not know this bootstrap token (unknown, or not a "
                                           "token at all); get one with `isthmus token create`") from None
                raise CredentialsError(f"the bus at {url} refused the client config's credentials") from None
            if loop.time() > deadline:
                raise CredentialsError(f"cannot reach the bus at {url} for credentials: {exc}") from None
            await asyncio.sleep(0.5)


def callout_unanswered(refused_after: float, config: NatsClient | None) -> bool:
    """Whether a refusal that took `refused_after` seconds is nats-server giving up on the auth callout (it
    waits CALLOUT_TIMEOUT, `authorization.timeout` in isthmus/launch/credentials.py) rather than the auth
    service's answer (milliseconds). Service users (the operator's config) are not called out for."""
    if config is not None and config.user and not config.user.startswith("proxy."):
        return False
    return refused_after >= CALLOUT_SLOW


async def _ask(bus: busmod.Bus, subject: str, request: object) -> BusCredsReply:
    """The reply; while the auth service is not (yet) answering, asks again until CONNECT_WAIT passes
    (a sidecar may start before the control plane: listeners first, the bus when it answers)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_WAIT
    try:
        while True:
            try:
                return await bus.call(subject, request, BusCredsReply, timeout=5)
            except (busmod.NoResponders, busmod.BusTimeout) as exc:
                if loop.time() > deadline:
                    raise CredentialsError(f"no bus credentials from the control plane: {exc}") from None
                await asyncio.sleep(0.5)
            except busmod.BusError as exc:
                raise CredentialsError(f"no bus credentials from the control plane: {exc}") from None
    finally:
        await bus.close()


# `proxy run --state-dir`: the sidecar's own bus credentials are kept beside its key and certificate (0600), so
# a restart within their life needs neither a new token nor the operator's config (istio/istio#27691's promise,
# which the locked-down bus would otherwise break: a bootstrap token pays for one join).
SAVED_FILE = "bus-client.yaml"


async def saved(url: str, state_dir: str, tls_ca: str = "") -> NatsClient | None:
    """The credentials saved in `state_dir` when the bus still takes them, else None (nothing saved, unreadable,
    or refused: revoked or expired; logged, and the caller obtains new ones)."""
    path = Path(state_dir) / SAVED_FILE if state_dir else None
    if path is None or not path.is_file():
        return None
    try:
        stored = clientconfig.load(path).nats
    except clientconfig.ConfigFileError as exc:
        log.warning("saved bus credentials unreadable: obtaining new ones", error=str(exc))
        return None
    if not stored.user.startswith("proxy."):
        return None
    client = NatsClient(url=url, user=stored.user, password=stored.password, inbox_prefix=stored.inbox_prefix,
                        tls_ca=tls_ca or stored.tls_ca)
    try:
        bus = await _connect(url, client)
    except CredentialsError as exc:
        log.warning("saved bus credentials refused: obtaining new ones", error=str(exc), user=stored.user)
        return None
    await bus.close()
    log.info("bus credentials", user=client.user, how=f"saved in {state_dir}")
    return client


def save(state_dir: str, client: NatsClient) -> None:
    """Keep a proxy's credentials in `state_dir` (mode 0600, the directory 0700); OSError when the disk refuses."""
    Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    clientconfig.save(Path(state_dir) / SAVED_FILE, ClientConfig(nats=client))
