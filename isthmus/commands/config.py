"""`isthmus apply`, `get` and `delete`: Istio-format config through pilot's config API (docs/cli.md)."""

from __future__ import annotations

import sys
from typing import Any

import click

from isthmus import pilot_client
from isthmus.commands.secrets import delete_secrets, get_secrets, is_secret_kind
from isthmus.errors import CliError
from isthmus.manifests import collect_refs, join_documents, read_manifests, resolve_kind
from isthmus.output import not_reconciled, print_apply_reply, qualified, render_output, render_table
from isthmus.pilot_client import REQUEST_TIMEOUT, apply_text, quiet_logs
from proto.config_api import ApplyReply, DeleteRequest, GetReply, GetRequest, ResourceRef
from proto.subjects import CONFIG_DELETE, CONFIG_GET

FILES = click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
                     help="A file, a directory of *.yaml/*.yml/*.json, or - for stdin. Repeatable.")


@click.command()
@FILES
@click.option("-n", "--namespace", default=None,
              help="The namespace of documents that name none (default: default); a document naming another "
                   "namespace is refused, as kubectl apply -n refuses it.")
@click.pass_obj
def apply(obj: dict[str, Any], files: tuple[str, ...], namespace: str | None) -> None:
    """Create or update resources from Istio-format YAML/JSON, all or nothing."""
    if not files:
        raise click.UsageError("give at least one -f FILE|DIR|-")
    text = join_documents(text for _, text in read_manifests(files))
    if not text:
        raise CliError("no objects passed to apply")
    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)
    reply = pilot_client.with_bus(obj["nats_url"], lambda bus: apply_text(bus, text, timeout, namespace), changes=True,
                                  timeout=timeout, auth=obj.get("auth"))
    if not print_apply_reply(reply):
        sys.exit(1)


@click.command()
@FILES
@click.argument("kind_and_names", nargs=-1, metavar="[KIND NAME...]")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--ignore-not-found", is_flag=True, help="Do not fail when a resource does not exist.")
@click.pass_obj
def delete(obj: dict[str, Any], files: tuple[str, ...], kind_and_names: tuple[str, ...], namespace: str,
           ignore_not_found: bool) -> None:
    """Delete the resources named in files (-f), or KIND NAME... in one namespace."""
    if files and kind_and_names:
        raise click.UsageError("give either -f FILE or KIND NAME, not both")
    if files:
        refs = collect_refs(read_manifests(files))
        if not refs:
            raise CliError("no objects passed to delete")
    elif len(kind_and_names) >= 2 and is_secret_kind(kind_and_names[0]):  # the ca's store, not pilot's config
        delete_secrets(obj, kind_and_names[1:], namespace, ignore_not_found)
        return
    elif len(kind_and_names) >= 2:
        kind = resolve_kind(kind_and_names[0])
        refs = [ResourceRef(kind=kind, name=name, namespace=namespace) for name in kind_and_names[1:]]
    else:
        raise click.UsageError("give -f FILE|DIR|- or KIND NAME")
    quiet_logs()

    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> ApplyReply:
        return await bus.call(CONFIG_DELETE, DeleteRequest(resources=refs), ApplyReply, timeout)

    reply = pilot_client.with_bus(obj["nats_url"], work, changes=True, timeout=timeout, auth=obj.get("auth"))
    if not reply.ok:
        print_apply_reply(reply)
        sys.exit(1)
    failed = False
    for result in reply.results:
        ref = result.ref
        if result.action == "not found":
            if not ignore_not_found:
                click.echo(f'error: {qualified(ref.kind)} "{ref.name}" not found in namespace {ref.namespace}',
                           err=True)
                failed = True
        else:
            click.echo(f'{qualified(ref.kind)} "{ref.name}" {result.action}')
    if failed:
        sys.exit(1)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across every namespace.")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]),
              help="Print whole resources (yaml, json), or the table (the default).")
@click.pass_obj
def get(obj: dict[str, Any], kind: str, name: str | None, namespace: str, all_namespaces: bool,
        output: str | None) -> None:
    """List resources of KIND (vs, dr, se, we, pa, ap, ra, rl, or the full name), or show one by NAME.
    `secrets`: the gateways' TLS secrets in the ca's store (never a key)."""
    if output == "table":
        output = None
    if is_secret_kind(kind):  # the ca's store, not pilot's config
        get_secrets(obj, name, namespace, all_namespaces, output)
        return
    canonical = resolve_kind(kind)
    request = GetRequest(kind=canonical, namespace=None if all_namespaces else namespace, name=name)
    quiet_logs()

    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> GetReply:
        return await bus.call(CONFIG_GET, request, GetReply, timeout)

    reply = pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    resources = list(reply.resources)
    not_found = reply.ok and not resources or not reply.ok and "not found" in reply.error.lower()
    if name is not None and not_found:
        where = "any namespace" if all_namespaces else f"namespace {namespace}"
        raise CliError(f'{qualified(canonical)} "{name}" not found in {where}')
    if not reply.ok:
        raise CliError(reply.error or "pilot could not list the resources")
    for line in not_reconciled(resources):
        click.echo(f"Warning: {line}", err=True)
    if output:
        click.echo(render_output(resources, output, single=name is not None))
    elif resources:
        click.echo(render_table(canonical, resources))
    elif sys.stderr.isatty():
        where = "any namespace" if all_namespaces else f"{namespace} namespace"
        click.echo(f"No resources found in {where}.", err=True)
