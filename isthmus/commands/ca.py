"""`isthmus token create|list|revoke` (bootstrap tokens) and `isthmus ca bundle|rotate-root`: the operator's
side of the mesh ca, over the bus (proto/ca.py; docs/cli.md, docs/security.md)."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.options import Duration, check_dns_label
from isthmus.output import OUTPUT, format_table
from isthmus.output import dump_reply as _dump
from isthmus.output import utc_when as _when



def _ask(obj: dict[str, Any], subject: str, message: Any, reply_type: type, changes: bool = False) -> Any:
    return pilot_client.ask(obj, subject, message, reply_type, "the ca", changes)


def _left(expires: float, now: float) -> str:
    seconds = int(expires - now)
    if seconds <= 0:
        return "expired"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.group()
def token() -> None:
    """Bootstrap tokens: what a new sidecar shows the ca for its first certificate."""


@token.command("create")
@click.option("-n", "--namespace", required=True, help="The namespace the token's identity is in.")
@click.option("--service-account", required=True, help="The service account the token's identity names.")
@click.option("--ttl", type=Duration(60, 30 * 86400), default="1h", show_default=True,
              help="How long the token can be used (90s, 30m, 24h, 7d).")
@click.option("--uses", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="How many certificates it can pay for (sidecars it can start).")
@click.pass_obj
def token_create(obj: dict[str, Any], namespace: str, service_account: str, ttl: int, uses: int) -> None:
    """Mint a token for spiffe://<trust-domain>/ns/NAMESPACE/sa/SERVICE_ACCOUNT; prints only the token."""
    from proto.ca import TokenCreateReply, TokenCreateRequest
    from proto.subjects import CA_TOKEN_CREATE

    check_dns_label("--namespace", namespace)
    from isthmus.options import DNS1123_SUBDOMAIN

    if len(service_account) > 253 or not DNS1123_SUBDOMAIN.match(service_account):
        raise click.BadParameter(f"{service_account[:80]!r} is not a valid DNS-1123 subdomain",
                                 param_hint="'--service-account'")
    request = TokenCreateRequest(namespace=namespace, service_account=service_account, ttl_seconds=ttl, uses=uses)
    reply = _ask(obj, CA_TOKEN_CREATE, request, TokenCreateReply, changes=True)
    if not reply.ok:
        raise CliError(reply.error or "the ca refused without saying why")
    click.echo(reply.token)
    click.echo(f"token {reply.id} for {namespace}/{service_account}: {uses} use(s), expires {_when(reply.expires)}",
               err=True)


@token.command("list")
@OUTPUT
@click.pass_obj
def token_list(obj: dict[str, Any], output: str | None) -> None:
    """Every token the ca holds (never their secrets): id, identity, uses left, expiry, state."""
    from proto.ca import TokenListReply
    from proto.subjects import CA_TOKEN_LIST

    reply = _ask(obj, CA_TOKEN_LIST, {}, TokenListReply)
    if reply.error:
        raise CliError(reply.error)
    if output:
        click.echo(_dump(reply.tokens, output))
        return
    if not reply.tokens:
        click.echo("No tokens.", err=True)
        return
    now = time.time()
    rows = []
    for t in reply.tokens:
        state = ("revoked" if t.revoked else "expired" if now >= t.expires else "used up" if t.uses <= 0
                 else "active")
        rows.append([t.id, t.namespace, t.service_account, f"{t.uses}/{t.max_uses}", _left(t.expires, now), state])
    click.echo(format_table(["ID", "NAMESPACE", "SERVICE-ACCOUNT", "USES", "EXPIRES", "STATE"], rows))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@click.pass_obj
def token_revoke(obj: dict[str, Any], token_id: str) -> None:
    """Revoke a token by its ID (the part before the dot); certificates it already bought stay valid."""
    from proto.ca import TokenRevokeReply, TokenRevokeRequest
    from proto.subjects import CA_TOKEN_REVOKE

    typed = token_id
    token_id = typed.split(".")[0]  # a whole token pasted: only its id travels
    if not re.fullmatch(r"[0-9a-f]{16}", token_id):  # runtime/bootstrap_tokens.py: ids are 16 hex digits
        raise click.BadParameter(f"{typed[:80]!r} is not a token id: give the 16 hex digits before the dot "
                                 "(isthmus token list shows them)", param_hint="'ID'")
    reply = _ask(obj, CA_TOKEN_REVOKE, TokenRevokeRequest(id=token_id), TokenRevokeReply, changes=True)
    if not reply.ok:
        raise CliError(reply.error or "the ca refused without saying why")
    click.echo(f"token {token_id} revoked")
    # A join's bus credential does not end with its token (it never expires, and renews its certificate):
    # name the ones this token made, so a stolen token's thief is not left on the bus unseen.
    from isthmus.commands.credentials import joined_with

    live = joined_with(obj, token_id)
    if live is None:
        click.echo(f"warning: could not ask the auth service which proxies joined with this token: they keep their "
                   f"bus credentials (`isthmus proxy credentials list --token {token_id}`)", err=True)
    elif live:
        users = " ".join(c.user for c in live)
        click.echo(f"warning: {len(live)} proxy bus credential(s) joined with this token and stay valid (a revoked "
                   f"token does not end them, and they renew their certificates): {users}; revoke each with "
                   "`isthmus proxy credentials revoke USER`", err=True)


@click.group()
def ca() -> None:
    """The mesh certificate authority: its trust bundle and its root."""


@ca.command("bundle")
@OUTPUT
@click.pass_obj
def ca_bundle(obj: dict[str, Any], output: str | None) -> None:
    """Print every root in force as PEM (two while a rotation is under way): `openssl verify -CAfile`."""
    from proto.ca import TrustBundle
    from proto.subjects import CA_BUNDLE

    bundle = _ask(obj, CA_BUNDLE, {}, TrustBundle)
    if output:
        click.echo(_dump(bundle, output))
        return
    click.echo("".join(bundle.roots_pem), nl=False)


@ca.command("rotate-root")
@OUTPUT
@click.pass_obj
def ca_rotate_root(obj: dict[str, Any], output: str | None) -> None:
    """Make a new root that signs from now on; the old one stays trusted until every certificate it signed
    has expired, then leaves the bundle by itself."""
    from proto.ca import RotateRootReply
    from proto.subjects import CA_ROTATE

    reply = _ask(obj, CA_ROTATE, {}, RotateRootReply, changes=True)
    if not reply.ok:
        raise CliError(reply.error or "the ca refused without saying why")
    if output:
        click.echo(_dump(reply, output))
        return
    roots = len(reply.bundle.roots_pem) if reply.bundle else 0
    version = reply.bundle.version if reply.bundle else 0
    click.echo(f"root rotated: bundle version {version} trusts {roots} roots; the old root retires at "
               f"{_when(reply.old_retires_at)} (when the last certificate it signed expires)")
