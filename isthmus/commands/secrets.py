"""`isthmus create secret tls|generic`, and the secret kind of `get` and `delete`: gateways' TLS credentials in
the ca's secret store (proto/secrets.py; docs/secrets.md), with kubectl's flags:

    isthmus create secret tls NAME -n NS --cert FILE --key FILE [--ca-cert FILE]
    isthmus create secret generic NAME-cacert -n NS --from-file=ca.crt=FILE     (Istio's MUTUAL companion)
    isthmus create secret generic NAME -n NS --from-file=tls.crt=F --from-file=tls.key=F [--from-file=ca.crt=F]
    isthmus get secrets [NAME] [-n NS | -A] [-o table|yaml|json]                (never a key)
    isthmus delete secret NAME... -n NS

Creating a secret that exists replaces it (a rotation: gateways pick it up without a restart); kubectl
would say AlreadyExists, but `kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -`,
the way Istio's docs rotate, ends the same.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from typing import Any

import click
import msgspec

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.options import check_dns_label
from isthmus.output import dump_reply, format_table, utc_when

SECRET_KINDS = ("secret", "secrets")
# per file, as the ca accepts them (proto/secrets.py)
MAX_CERT, MAX_KEY, MAX_CA = 64 * 1024, 16 * 1024, 256 * 1024
LIST_LIMIT = 1000  # secrets one `get secrets` shows: ~300 bytes each keeps the reply far below max_payload


def is_secret_kind(kind: str) -> bool:
    return kind.lower() in SECRET_KINDS


def _ask(obj: dict[str, Any], subject: str, message: Any, reply_type: type, changes: bool = False) -> Any:
    return pilot_client.ask(obj, subject, message, reply_type, "the ca", changes)


def read_pem(flag: str, path: str, limit: int) -> str:
    """The text of `path`, at most `limit` bytes; CliError naming the flag and file otherwise. A FIFO or
    device is refused rather than read (it may never end, or block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise CliError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CliError(f"{flag} {path}: not a regular file")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise CliError(f"{flag} {path}: larger than {limit} bytes, more than the ca accepts")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CliError(f"{flag} {path}: not PEM text (give a PEM file, not DER)") from None
    if "-----BEGIN" not in text:
        raise CliError(f"{flag} {path}: no PEM block (-----BEGIN ...) in it")
    return text


def _check_name(name: str) -> None:
    from isthmus.options import DNS1123_SUBDOMAIN

    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise click.BadParameter(f"{name[:80]!r} is not a valid DNS-1123 subdomain (lower-case letters, digits, "
                                 "'-' and '.')", param_hint="'NAME'")


def _put(obj: dict[str, Any], namespace: str, name: str, chain: str, key: str, ca_cert: str) -> None:
    from proto.secrets import SecretPutReply, TlsSecretPut
    from proto.subjects import CA_SECRET_PUT

    put = TlsSecretPut(namespace=namespace, name=name, cert_chain_pem=chain, key_pem=key, ca_cert_pem=ca_cert)
    reply = _ask(obj, CA_SECRET_PUT, put, SecretPutReply, changes=True)
    for warning in reply.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if not reply.ok:
        raise CliError(f"secret {namespace}/{name} not stored: {reply.error or 'the ca refused without saying why'}")
    click.echo(f"secret/{name} {'created' if reply.created else 'replaced'}")


NAMESPACE = click.option("-n", "--namespace", default=None,
                         help="The namespace of the gateway that uses it (Istio reads a gateway's own namespace); "
                              "default: `create -n`'s, else default.")


@click.group()
@click.option("-n", "--namespace", "create_namespace", default=None, metavar="NS",
              help="As kubectl takes it before the kind (`kubectl create -n istio-system secret tls ...`, Istio's "
                   "docs); a -n after the kind wins.")
@click.pass_context
def create(ctx: click.Context, create_namespace: str | None) -> None:
    """Create a secret: gateways' TLS credentials (Istio's credentialName)."""
    if isinstance(ctx.obj, dict):
        ctx.obj["create_namespace"] = create_namespace


def _namespace(obj: dict[str, Any], namespace: str | None) -> str:
    """The -n given after the kind, else the one given to `create`, else default."""
    chosen = namespace or (obj.get("create_namespace") if isinstance(obj, dict) else None) or "default"
    check_dns_label("--namespace", chosen)
    return chosen


@create.group("secret")
def secret() -> None:
    """A TLS secret for a Gateway's credentialName, kept in the ca's store (private keys sealed)."""


@secret.command("tls")
@click.argument("name")
@NAMESPACE
@click.option("--cert", "cert", required=True, metavar="FILE", help="The certificate chain (PEM, leaf first).")
@click.option("--key", "key", required=True, metavar="FILE", help="Its private key (PEM, unencrypted).")
@click.option("--ca-cert", "ca_cert", metavar="FILE",
              help="The CAs client certificates must chain to, for MUTUAL servers (Istio's ca.crt).")
@click.pass_obj
def create_tls(obj: dict[str, Any], name: str, namespace: str | None, cert: str, key: str,
               ca_cert: str | None) -> None:
    """Store a kubernetes.io/tls secret NAME (tls.crt, tls.key, ca.crt) in namespace NS; an existing one is replaced."""
    _check_name(name)
    namespace = _namespace(obj, namespace)
    chain = read_pem("--cert", cert, MAX_CERT)
    key_text = read_pem("--key", key, MAX_KEY)
    ca_text = read_pem("--ca-cert", ca_cert, MAX_CA) if ca_cert else ""
    _put(obj, namespace, name, chain, key_text, ca_text)


@secret.command("generic")
@click.argument("name")
@NAMESPACE
@click.option("--from-file", "from_file", multiple=True, required=True, metavar="KEY=FILE",
              help="tls.crt=FILE, tls.key=FILE and optionally ca.crt=FILE (Istio's MUTUAL task: one secret with "
                   "all three; also Istio's cert/key/cacert names), or only ca.crt=FILE for a NAME ending in "
                   "-cacert (Istio's companion holding a MUTUAL server's CAs).")
@click.pass_obj
def create_generic(obj: dict[str, Any], name: str, namespace: str | None, from_file: tuple[str, ...]) -> None:
    """Store NAME from files, as Istio's docs create it with `kubectl create secret generic`: a certificate and key
    (and CA), or NAME-cacert holding only ca.crt."""
    from proto.secrets import CACERT_SUFFIX

    _check_name(name)
    namespace = _namespace(obj, namespace)
    files: dict[str, str] = {}
    for item in from_file:
        key, sep, path = item.partition("=")
        key = GENERIC_KEYS.get(key, "")
        if not sep or not key or key in files:
            raise click.BadParameter(f"{item[:80]!r}: give tls.crt=FILE and tls.key=FILE (and ca.crt=FILE), or only "
                                     "ca.crt=FILE for a <credentialName>-cacert secret, each once: the secret "
                                     "store holds TLS material only", param_hint="'--from-file'")
        files[key] = path
    if set(files) == {"ca.crt"}:
        if not name.endswith(CACERT_SUFFIX):
            raise click.BadParameter(f"a secret of ca.crt alone must be named <credentialName>{CACERT_SUFFIX}, as "
                                     "Istio looks it up; for a certificate and key add tls.crt=FILE and tls.key=FILE",
                                     param_hint="'NAME'")
        _put(obj, namespace, name, "", "", read_pem("--from-file", files["ca.crt"], MAX_CA))
        return
    if "tls.crt" not in files or "tls.key" not in files:
        raise click.BadParameter("give both tls.crt=FILE and tls.key=FILE (or only ca.crt=FILE for a "
                                 "<credentialName>-cacert secret)", param_hint="'--from-file'")
    ca_text = read_pem("--from-file", files["ca.crt"], MAX_CA) if "ca.crt" in files else ""
    _put(obj, namespace, name, read_pem("--from-file", files["tls.crt"], MAX_CERT),
         read_pem("--from-file", files["tls.key"], MAX_KEY), ca_text)


# the generic secret keys Istio's gateways read (istio.io secure-ingress "Key formats"), as the store names them
GENERIC_KEYS = {"tls.crt": "tls.crt", "tls.key": "tls.key", "ca.crt": "ca.crt",
                "cert": "tls.crt", "key": "tls.key", "cacert": "ca.crt"}


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def get_secrets(obj: dict[str, Any], name: str | None, namespace: str, all_namespaces: bool,
                output: str | None) -> None:
    """`isthmus get secrets`: NAME TYPE HOSTS EXPIRES AGE (NAMESPACE first with -A); -o yaml|json: SecretInfo."""
    from proto.secrets import SecretListReply, SecretListRequest
    from proto.subjects import CA_SECRET_LIST

    if not all_namespaces:
        check_dns_label("--namespace", namespace)
    request = SecretListRequest(namespace="" if all_namespaces else namespace, limit=LIST_LIMIT)
    reply = _ask(obj, CA_SECRET_LIST, request, SecretListReply)
    if not reply.ok:
        raise CliError(reply.error or "the ca could not list the secrets")
    if reply.total > len(reply.secrets):
        click.echo(f"Warning: showing the {len(reply.secrets)} oldest of {reply.total} secrets; name a namespace "
                   "(-n) to see the others", err=True)
    infos = [i for i in reply.secrets if name is None or i.name == name]
    if name is not None and not infos:
        where = "any namespace" if all_namespaces else f"namespace {namespace}"
        raise CliError(f'secret "{name}" not found in {where}')
    if output in ("yaml", "json"):
        shown = [_with_times(i) for i in infos]
        value: Any = shown[0] if name is not None else shown
        click.echo(dump_reply(value, output))
        return
    if not infos:
        if sys.stderr.isatty():
            where = "any namespace" if all_namespaces else f"{namespace} namespace"
            click.echo(f"No secrets found in {where}.", err=True)
        return
    now = time.time()
    rows = []
    for i in infos:
        expires = utc_when(i.not_after) + (" (expired)" if i.not_after <= now else "") if i.not_after else "-"
        row = [i.name, i.type, ",".join(i.hosts) or "-", expires, _age(now - i.created)]
        rows.append([i.namespace, *row] if all_namespaces else row)
    headers = ["NAME", "TYPE", "HOSTS", "EXPIRES", "AGE"]
    click.echo(format_table(["NAMESPACE", *headers] if all_namespaces else headers, rows))


def delete_secrets(obj: dict[str, Any], names: tuple[str, ...], namespace: str, ignore_not_found: bool) -> None:
    """`isthmus delete secret NAME... -n NS`; exit 1 when one was not found (unless --ignore-not-found)."""
    from proto.secrets import SecretDeleteReply, SecretDeleteRequest
    from proto.subjects import CA_SECRET_DELETE

    check_dns_label("--namespace", namespace)
    for name in names:
        _check_name(name)
    failed = False
    for name in names:
        reply = _ask(obj, CA_SECRET_DELETE, SecretDeleteRequest(namespace=namespace, name=name), SecretDeleteReply,
                     changes=True)
        if reply.ok:
            click.echo(f'secret "{name}" deleted')
        elif reply.error.startswith("not found"):
            if not ignore_not_found:
                click.echo(f'error: secret "{name}" not found in namespace {namespace}', err=True)
                failed = True
        else:
            raise CliError(reply.error)
    if failed:
        sys.exit(1)


_TIMES = ("not_before", "not_after", "created", "updated")


def _with_times(info: Any) -> dict[str, Any]:
    """A SecretInfo for -o yaml|json with its times as RFC 3339 UTC (as kubectl prints them), not Unix seconds."""
    shown: dict[str, Any] = msgspec.to_builtins(info)
    for key in _TIMES:
        if shown.get(key):
            shown[key] = utc_when(shown[key])
    return shown
