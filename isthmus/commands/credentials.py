"""`isthmus proxy credentials list|revoke`: the proxies' bus credentials, over the bus to the auth service
(proto/busauth.py; docs/cli.md, docs/security.md "How to rotate the bus credentials").

A subgroup of `proxy` (beside `proxy run`) because these are the sidecars' own credentials: the ones
`proxy run` joins with. `token` stays top level as it is the ca's, and `proxy-status` is istioctl's name."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.output import OUTPUT, format_table
from isthmus.output import dump_reply as _dump
from isthmus.output import utc_when as _when

_CRED = re.compile(r"(?:proxy\.)?([0-9a-f]{16})")  # services/auth/creds.py: user proxy.<16 hex>


def _ask(obj: dict[str, Any], subject: str, message: Any, reply_type: type, changes: bool = False) -> Any:
    return pilot_client.ask(obj, subject, message, reply_type, "the auth service", changes)


def _ago(epoch: float, now: float) -> str:
    if not epoch:
        return "never"
    seconds = max(0, int(now - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


@click.group()
def credentials() -> None:
    """The proxies' bus credentials (user proxy.<id>): who holds one, and cutting one off."""


@credentials.command("list")
@click.option("-n", "--namespace", default="", help="Only credentials of this namespace (default: all).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="Show at most this many (oldest first).")
@click.option("--token", "token_id", default="", metavar="ID",
              help="Only the credentials that joined with this bootstrap token (its id, `isthmus token list`).")
@OUTPUT
@click.pass_obj
def credentials_list(obj: dict[str, Any], namespace: str, limit: int, token_id: str, output: str | None) -> None:
    """Every proxy bus credential (never a secret): user, identity, when and how issued, last connection,
    state."""
    from proto.busauth import BusCredsListReply, BusCredsListRequest
    from proto.subjects import BUS_CREDS_LIST

    if len(namespace) > 253:
        raise click.BadParameter(f"{namespace[:64]!r}... is longer than 253 characters", param_hint="'--namespace'")
    if token_id and not re.fullmatch(r"[0-9a-f]{16}", token_id.split(".")[0]):
        raise click.BadParameter(f"{token_id[:80]!r} is not a token id: give the 16 hex digits before the dot",
                                 param_hint="'--token'")
    reply = _ask(obj, BUS_CREDS_LIST, BusCredsListRequest(namespace=namespace, limit=limit,
                                                          token_id=token_id.split(".")[0]), BusCredsListReply)
    if not reply.ok:
        raise CliError(reply.error or "the auth service refused without saying why")
    if output:
        click.echo(_dump(reply.credentials, output))
        return
    if not reply.credentials:
        click.echo("No proxy credentials.", err=True)
        return
    now = time.time()
    rows = []
    for c in reply.credentials:
        state = (f"revoked {_ago(c.revoked_at, now)}" if c.revoked
                 else "expired" if c.expires and now >= c.expires else "active")
        rows.append([c.user, c.namespace, c.service_account, _when(c.created), c.issued_by or "-",
                     _ago(c.last_seen, now), _when(c.expires) if c.expires else "never", state])
    click.echo(format_table(["USER", "NAMESPACE", "SERVICE-ACCOUNT", "ISSUED", "ISSUED-BY", "LAST-SEEN", "EXPIRES",
                             "STATE"], rows))
    if reply.total > len(reply.credentials):
        click.echo(f"Showing {len(reply.credentials)} of {reply.total}: use --limit or -n.", err=True)


@credentials.command("revoke")
@click.argument("user", metavar="USER|ID")
@click.pass_obj
def credentials_revoke(obj: dict[str, Any], user: str) -> None:
    """Revoke a proxy's bus credential (proxy.<id>, or the id): its open connections are closed now and it
    cannot connect again. Its workload certificate stays valid until it expires (no renewal)."""
    from proto.busauth import BusCredsRevokeReply, BusCredsRevokeRequest
    from proto.subjects import BUS_CREDS_REVOKE

    if not _CRED.fullmatch(user):  # not match(): "$" also matches before a trailing newline
        raise click.BadParameter(f"{user[:80]!r} is not a proxy credential: give proxy.<16 hex digits> or the 16 "
                                 "hex digits (isthmus proxy credentials list shows them)", param_hint="'USER|ID'")
    reply = _ask(obj, BUS_CREDS_REVOKE, BusCredsRevokeRequest(user=user), BusCredsRevokeReply, changes=True)
    if not reply.ok:
        raise CliError(reply.error or "the auth service refused without saying why")
    if reply.already_revoked_at:  # said, so a second revoke is not mistaken for the first
        verb = f"was already revoked {_ago(reply.already_revoked_at, time.time())}"
    else:
        verb = "revoked"
    if reply.kick_error:
        click.echo(f"bus credential {reply.user} {verb}")
        click.echo(f"warning: its open connections could not be closed now ({reply.kick_error}); they end "
                   f"within {reply.session_seconds}s", err=True)
        return
    click.echo(f"bus credential {reply.user} {verb}; {reply.disconnected} open connection(s) closed")


def joined_with(obj: dict[str, Any], token_id: str) -> list[Any] | None:
    """The live (not revoked) credentials that joined with `token_id`, oldest first; None when the auth
    service could not be asked (a revoked token does not end them: they renew their certificates)."""
    from proto.busauth import BusCredsListReply, BusCredsListRequest
    from proto.subjects import BUS_CREDS_LIST

    try:
        reply = _ask(obj, BUS_CREDS_LIST, BusCredsListRequest(token_id=token_id, limit=10_000), BusCredsListReply)
    except CliError:
        return None
    if not reply.ok:
        return None
    return [c for c in reply.credentials if not c.revoked]
