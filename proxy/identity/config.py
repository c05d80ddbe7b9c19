"""The identity agent's settings (IdentityConfig, from `proxy run`'s flags) and where its bootstrap token comes
from, in this order:
1. `--token` / ISTHMUS_TOKEN, else `--token-file` (read at each try, so an operator can drop a new one);
2. else a token minted for our own namespace and service account over CA_TOKEN_CREATE (the local
   convenience; logged as a warning).
(A usable certificate in `--state-dir` comes before all of these: agent.py.)

    IdentityFatal     no identity can be had as started, and waiting will not help: one line for `proxy run`
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from proxy.identity.ca_client import CaRefused
from proxy.identity.schedule import GRACE_JITTER, GRACE_RATIO, ROTATION_SPREAD
from proxy.identity.spiffe import spiffe_id
from runtime.bootstrap_tokens import TokenRefused, read_token_file
from runtime.log import get_logger

log = get_logger("proxy.identity")


class IdentityFatal(Exception):
    """The proxy cannot get its identity as started and waiting will not help: one line for `proxy run`."""


@dataclass(frozen=True)
class IdentityConfig:
    trust_domain: str
    namespace: str
    service_account: str
    token: str = ""  # --token / ISTHMUS_TOKEN
    token_file: str = ""  # --token-file
    state_dir: str = ""  # --state-dir; "" keeps key and certificate in memory only
    ttl_seconds: int = 0  # asked certificate lifetime; 0: the ca's default
    grace_ratio: float = GRACE_RATIO
    grace_jitter: float = GRACE_JITTER
    rotation_spread: float = ROTATION_SPREAD
    # How to create a token for ourselves when none is given (the local convenience): a coroutine giving one,
    # raising CaRefused when refused; None: not possible (the bus lets only the operator create tokens, and
    # this sidecar does not hold the operator's client config). proxy/sidecar/control_plane.py supplies it.
    mint: Callable[[], Awaitable[str]] | None = None

    @property
    def spiffe_id(self) -> str:
        return spiffe_id(self.trust_domain, self.namespace, self.service_account)

    def how_to_get_a_token(self) -> str:
        return (f"get one with `isthmus token create --namespace {self.namespace} --service-account "
                f"{self.service_account}` and pass it with --token (or --token-file, env ISTHMUS_TOKEN)")


async def bootstrap_token(config: IdentityConfig, first: bool) -> tuple[str, bool]:
    """(token, minted). IdentityFatal (first time) or CaRefused/OSError when none can be had."""
    if config.token:
        return config.token, False
    if config.token_file:
        try:
            text = read_token_file(config.token_file)
        except OSError as exc:
            if first:
                raise IdentityFatal(f"--token-file {config.token_file}: {exc.strerror or exc}") from None
            raise
        except TokenRefused as exc:  # more than a token's bytes, or not a token
            if first:
                raise IdentityFatal(f"--token-file {config.token_file}: {exc}") from None
            raise CaRefused(f"--token-file {config.token_file}: {exc}") from None
        if text:
            return text, False
        if first:
            raise IdentityFatal(f"--token-file {config.token_file} is empty")
        raise CaRefused(f"--token-file {config.token_file} is empty")
    if config.mint is None:
        reason = "no operator client config to create one with"
        if first:
            raise IdentityFatal(f"this proxy has no token and may not create one ({reason}): "
                                f"{config.how_to_get_a_token()}")
        raise CaRefused(reason)
    log.warning("no token given: creating one for this workload with the operator's client config (local "
                "convenience)", spiffe_id=config.spiffe_id)
    try:
        return await config.mint(), True
    except CaRefused as exc:
        if first:
            raise IdentityFatal(f"this proxy has no token and may not create one ({exc.reason}): "
                                f"{config.how_to_get_a_token()}") from None
        raise
