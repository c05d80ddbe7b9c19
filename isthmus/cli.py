"""The `isthmus` command: a local mesh (`up`), config (`apply`, `get`, `delete`) and sidecars (`proxy run`).

Every command but `up` talks to the control plane over NATS only; `--nats URL` (or ISTHMUS_NATS_URL)
says where. docs/cli.md is the user's reference. Exit codes: 0 ok, 1 error (bad input, rejected config,
not found, control plane unreachable), 2 usage error.

The helpers below the commands (reading -f sources, resolving kinds, formatting tables) are plain
functions so the demo and the tests can reuse them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
import yaml

from proto.config_api import ApplyReply, DeleteRequest, GetReply, GetRequest, ResourceRef
from proto.resources import KINDS, kind_from_alias
from proto.subjects import CONFIG_APPLY, CONFIG_DELETE, CONFIG_GET
from runtime.settings import DEFAULT_NATS_URL

T = TypeVar("T")

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DOCUMENT_SEPARATOR = "\n---\n"
REQUEST_TIMEOUT = 10.0


class CliError(click.ClickException):
    """A user-facing error: printed as `error: <message>` on stderr, exit code 1."""

    def show(self, file: TextIO | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


# ------------------------------------------------------------------------------ reading -f sources


def read_manifests(sources: Sequence[str], stdin: TextIO | None = None) -> list[tuple[str, str]]:
    """(name, text) for every -f source, in order: a file, a directory (its *.yaml, *.yml, *.json,
    sorted, not recursive) or `-` (stdin, read once). Raises CliError for a missing path."""
    out: list[tuple[str, str]] = []
    for source in sources:
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin
            out.append(("<stdin>", stream.read()))
            continue
        path = Path(source)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in MANIFEST_SUFFIXES:
                    out.append((str(child), _read_text(child)))
        elif path.is_file():
            out.append((str(path), _read_text(path)))
        else:
            raise CliError(f"the path {source!r} does not exist")
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc


def join_documents(texts: Iterable[str]) -> str:
    """One multi-document stream, so a submission is applied all-or-nothing in one request.

    Blank sources are skipped; each source's own `---` separators are kept, except a leading one
    (it only opens the first document, and kept after our separator it would add an empty document
    and shift the document numbers in error messages).
    """
    parts = [_drop_leading_marker(text).strip("\n") for text in texts if text.strip()]
    return DOCUMENT_SEPARATOR.join(parts) + ("\n" if parts else "")


def _drop_leading_marker(text: str) -> str:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped == "---":
            return "".join(lines[:i] + lines[i + 1:])
        break
    return text


def resolve_kind(text: str) -> str:
    """`vs`, `VirtualServices`, `dr`, ... -> the canonical kind; CliError listing the kinds otherwise."""
    kind = kind_from_alias(text)
    if kind is None:
        known = ", ".join(f"{k} ({'/'.join(info.aliases[-1:])})" for k, info in KINDS.items())
        raise CliError(f"unknown resource kind {text!r}; known kinds: {known}")
    return kind


def collect_refs(sources: Sequence[tuple[str, str]]) -> list[ResourceRef]:
    """The (kind, name, namespace) of every document, parsed locally (YAML, which reads JSON too).
    `kind: List` documents and JSON arrays contribute their items. Raises CliError naming the source and document."""
    refs: list[ResourceRef] = []
    for name, text in sources:
        try:
            documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        except yaml.YAMLError as exc:
            raise CliError(f"{name}: not valid YAML/JSON: {exc}") from exc
        for index, doc in enumerate(documents, start=1):
            if isinstance(doc, list):  # a JSON array of resources
                items = doc
            elif isinstance(doc, dict) and doc.get("kind") == "List":
                items = doc.get("items")
            else:
                items = [doc]
            for item in items or []:
                refs.append(_ref_of(item, f"{name}: document {index}"))
    return refs


def _ref_of(doc: Any, where: str) -> ResourceRef:
    if not isinstance(doc, dict):
        raise CliError(f"{where}: expected a mapping with kind and metadata")
    kind_text = doc.get("kind")
    if not isinstance(kind_text, str) or not kind_text:
        raise CliError(f"{where}: kind is missing")
    kind = kind_from_alias(kind_text)
    if kind is None:
        raise CliError(f"{where}: unknown resource kind {kind_text!r}")
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise CliError(f"{where}: metadata.name is missing")
    namespace = meta.get("namespace") or "default"
    return ResourceRef(kind=kind, name=name, namespace=str(namespace))


# ---------------------------------------------------------------------------------- formatting


def qualified(kind: str) -> str:
    """VirtualService -> virtualservice.networking.istio.io (what kubectl prints)."""
    info = KINDS.get(kind)
    return f"{kind.lower()}.{info.group}" if info else kind.lower()


def format_config_error(error: Any) -> str:
    """`document 2 (VirtualService default/reviews): spec.http[0].route[1].weight: <message>`."""
    subject = ""
    if error.kind or error.name:
        subject = f" ({error.kind or '?'} {error.namespace or 'default'}/{error.name or '?'})"
    path = f"{error.path}: " if error.path else ""
    return f"document {error.document}{subject}: {path}{error.message}"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, like kubectl."""
    table = [list(headers), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table
    )


def short_age(created: str, now: datetime | None = None) -> str:
    """RFC 3339 timestamp -> kubectl-style age (42s, 5m, 3h, 12d, 2y); `<unknown>` if unparsable."""
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds // 86400}d"
    return f"{seconds // (365 * 86400)}y"


def _host_column(kind: str) -> tuple[str, Callable[[dict[str, Any]], str]]:
    def joined(field: str) -> Callable[[dict[str, Any]], str]:
        return lambda spec: ",".join(str(h) for h in spec.get(field) or []) or "-"

    if kind == "DestinationRule":
        return "HOST", lambda spec: str(spec.get("host") or "-")
    if kind == "WorkloadEntry":
        return "ADDRESS", lambda spec: str(spec.get("address") or "-")
    if kind == "RateLimit":  # no hosts: which workloads it selects (none: every workload of its namespace)
        return "SELECTOR", lambda spec: ",".join(
            f"{k}={v}" for k, v in sorted(((spec.get("selector") or {}).get("matchLabels") or {}).items())) or "<all>"
    return "HOSTS", joined("hosts")


def render_table(kind: str, resources: Sequence[dict[str, Any]], now: datetime | None = None) -> str:
    """NAME NAMESPACE HOSTS/HOST/ADDRESS/SELECTOR AGE (or REVISION when the resources carry no creationTimestamp)."""
    title, host_of = _host_column(kind)
    metas = [r.get("metadata") or {} for r in resources]
    use_age = any(m.get("creationTimestamp") for m in metas)
    rows = []
    for resource, meta in sorted(zip(resources, metas), key=lambda rm: (_ns(rm[1]), rm[1].get("name", ""))):
        if use_age:
            last = short_age(meta["creationTimestamp"], now) if meta.get("creationTimestamp") else "<unknown>"
        else:
            last = str(meta.get("resourceVersion") or "-")
        rows.append([str(meta.get("name", "")), _ns(meta), host_of(resource.get("spec") or {}), last])
    return format_table(["NAME", "NAMESPACE", title, "AGE" if use_age else "REVISION"], rows)


def _ns(meta: dict[str, Any]) -> str:
    return str(meta.get("namespace") or "default")


def as_list(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several resources as one document, the way kubectl prints them."""
    return {"apiVersion": "v1", "kind": "List", "items": list(resources), "metadata": {"resourceVersion": ""}}


def render_output(resources: Sequence[dict[str, Any]], output: str, single: bool) -> str:
    """-o yaml|json: one object when a NAME was asked for, else a `kind: List` (possibly empty)."""
    obj: Any = resources[0] if single and resources else as_list(resources)
    if output == "json":
        return json.dumps(obj, indent=4)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")


def not_reconciled(resources: Iterable[dict[str, Any]]) -> list[str]:
    """`virtualservice.networking.istio.io/reviews (default) did not compile: <why>` for every resource
    whose status has a Reconciled condition that is False (set by pilot's get)."""
    lines = []
    for resource in resources:
        conditions = (resource.get("status") or {}).get("conditions") or []
        for condition in conditions:
            if condition.get("type") == "Reconciled" and condition.get("status") == "False":
                meta = resource.get("metadata") or {}
                lines.append(f"{qualified(str(resource.get('kind', '')))}/{meta.get('name', '?')} ({_ns(meta)}) "
                             f"is stored but not in effect: {condition.get('message', '')}")
    return lines


def print_apply_reply(reply: ApplyReply, echo: Callable[..., None] = click.echo) -> bool:
    """kubectl-style result lines on stdout, warnings and errors on stderr; True when ok."""
    for warning in reply.warnings:
        echo(f"Warning: {format_config_error(warning)}", err=True)
    if not reply.ok:
        for error in reply.errors:
            echo(f"error: {format_config_error(error)}", err=True)
        if reply.error or not reply.errors:
            echo(f"error: {reply.error or 'pilot refused the request without saying why'}", err=True)
        return False
    for result in reply.results:
        echo(f"{qualified(result.ref.kind)}/{result.ref.name} {result.action}")
    return True


# ------------------------------------------------------------------------------------------ bus


async def connect_cli(url: str, timeout: float = 3.0) -> Any:
    """A short-lived connection that fails fast (no reconnect loop) when nothing listens."""
    import nats

    from runtime.bus import Bus, BusError

    async def quiet(_: Exception) -> None:
        return None

    try:
        client = await asyncio.wait_for(
            nats.connect(servers=[url], name="isthmus-cli", allow_reconnect=False, connect_timeout=2,
                         max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=quiet),
            timeout,
        )
    except Exception as exc:  # refused, timed out, bad URL
        raise BusError(f"cannot reach the bus at {url}: {exc}") from exc
    return Bus(client)


async def apply_text(bus: Any, text: str, timeout: float = REQUEST_TIMEOUT) -> ApplyReply:
    """Send one YAML/JSON stream to pilot's config API (what `isthmus apply` does)."""
    from runtime.bus import decode

    return decode(await bus.request(CONFIG_APPLY, text.encode(), timeout), ApplyReply)


def with_bus(nats_url: str, work: Callable[[Any], Awaitable[T]], *, changes: bool = False,
             timeout: float = REQUEST_TIMEOUT) -> T:
    """Connect, run `work(bus)`, close; bus failures become one `error:` line and exit code 1.
    `changes`: the request changes config, so a timeout says it was not (and will not be) applied:
    pilot refuses a request whose deadline passed (runtime/bus.py, Isthmus-Deadline)."""
    from runtime.bus import BusError, BusTimeout, NoResponders, PayloadTooLarge

    async def run() -> T:
        bus = await connect_cli(nats_url)
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
        raise CliError(f"pilot did not answer within {timeout:g}s{outcome}") from exc
    except NoResponders as exc:
        raise CliError(f"pilot is not running on {nats_url} (nothing answers): is `isthmus up` running?") from exc
    except PayloadTooLarge as exc:
        raise CliError(f"{exc}; nothing was sent: split the files into several applies") from exc
    except BusError as exc:
        raise CliError(f"cannot reach pilot on {nats_url}: is `isthmus up` running?") from exc


# ------------------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--nats", "nats_url", envvar="ISTHMUS_NATS_URL", default=DEFAULT_NATS_URL, show_default=True,
              metavar="URL", help="The bus (env ISTHMUS_NATS_URL).")
@click.option("--request-timeout", type=click.FloatRange(0.1), envvar="ISTHMUS_REQUEST_TIMEOUT",
              default=REQUEST_TIMEOUT, show_default=True, metavar="SECONDS",
              help="How long apply/get/delete wait for pilot; a change not committed by then never is.")
@click.pass_context
def cli(ctx: click.Context, nats_url: str, request_timeout: float) -> None:
    """Isthmus: Istio's traffic management for VMs and bare metal, with Istio's YAML and without Kubernetes.
    (mTLS, authorization and telemetry are not built yet.)"""
    ctx.obj = {"nats_url": nats_url, "timeout": request_timeout}


def _quiet_logs() -> None:
    from runtime.log import configure

    configure("error")


@cli.command()
@click.option("--state-dir", type=click.Path(file_okay=False), default=".isthmus", show_default=True,
              help="Where config, data (etcd) and logs live.")
@click.option("--nats-port", type=click.IntRange(1, 65535), default=4222, show_default=True)
@click.option("--etcd-port", type=click.IntRange(1, 65534), default=2379, show_default=True,
              help="etcd client port; the peer port is this + 1.")
@click.option("--demo", is_flag=True, help="Also run the bookinfo demo and show live traffic.")
@click.option("--outbound-traffic-policy", type=click.Choice(["ALLOW_ANY", "REGISTRY_ONLY"], case_sensitive=False),
              envvar="ISTHMUS_OUTBOUND_TRAFFIC_POLICY", default="ALLOW_ANY", show_default=True,
              help="What every sidecar does with hosts outside the mesh registry: pass them through, or 502 "
                   "(Istio's meshConfig.outboundTrafficPolicy.mode; env ISTHMUS_OUTBOUND_TRAFFIC_POLICY).")
def up(state_dir: str, nats_port: int, etcd_port: int, demo: bool, outbound_traffic_policy: str) -> None:
    """Run a local control plane (nats-server, etcd, registry, pilot, ca, telemetry) until Ctrl-C."""
    from isthmus.up import run_up

    sys.exit(run_up(state_dir, nats_port=nats_port, etcd_port=etcd_port, demo=demo,
                    outbound_traffic_policy=outbound_traffic_policy.upper()))


FILES = click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
                     help="A file, a directory of *.yaml/*.yml/*.json, or - for stdin. Repeatable.")


@cli.command()
@FILES
@click.pass_obj
def apply(obj: dict[str, Any], files: tuple[str, ...]) -> None:
    """Create or update resources from Istio-format YAML/JSON, all or nothing."""
    if not files:
        raise click.UsageError("give at least one -f FILE|DIR|-")
    text = join_documents(text for _, text in read_manifests(files))
    if not text:
        raise CliError("no objects passed to apply")
    _quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)
    reply = with_bus(obj["nats_url"], lambda bus: apply_text(bus, text, timeout), changes=True, timeout=timeout)
    if not print_apply_reply(reply):
        sys.exit(1)


@cli.command()
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
    elif len(kind_and_names) >= 2:
        kind = resolve_kind(kind_and_names[0])
        refs = [ResourceRef(kind=kind, name=name, namespace=namespace) for name in kind_and_names[1:]]
    else:
        raise click.UsageError("give -f FILE|DIR|- or KIND NAME")
    _quiet_logs()

    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> ApplyReply:
        return await bus.call(CONFIG_DELETE, DeleteRequest(resources=refs), ApplyReply, timeout)

    reply = with_bus(obj["nats_url"], work, changes=True, timeout=timeout)
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


@cli.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True, help="List across every namespace.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), help="Print whole resources.")
@click.pass_obj
def get(obj: dict[str, Any], kind: str, name: str | None, namespace: str, all_namespaces: bool,
        output: str | None) -> None:
    """List resources of KIND (vs, dr, se, we, rl, or the full name), or show one by NAME."""
    canonical = resolve_kind(kind)
    request = GetRequest(kind=canonical, namespace=None if all_namespaces else namespace, name=name)
    _quiet_logs()

    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> GetReply:
        return await bus.call(CONFIG_GET, request, GetReply, timeout)

    reply = with_bus(obj["nats_url"], work, timeout=timeout)
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


@cli.command("proxy-status")
@click.option("-n", "--namespace", default=None, help="Only proxies in this namespace (default: all).")
@click.pass_obj
def proxy_status(obj: dict[str, Any], namespace: str | None) -> None:
    """Show each proxy's sync state: SYNCED, STALE or REJECTED (with the proxy's reason)."""
    from isthmus.proxy_status import HEADERS, rejections, status_rows
    from proto.subjects import XDS_STATUS
    from proto.xds import ProxyStatusReply, ProxyStatusRequest

    _quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)

    async def work(bus: Any) -> ProxyStatusReply:
        return await bus.call(XDS_STATUS, ProxyStatusRequest(namespace=namespace), ProxyStatusReply, timeout)

    reply = with_bus(obj["nats_url"], work, timeout=timeout)
    if not reply.ok:
        raise CliError(reply.error or "pilot could not list the proxies")
    if not reply.proxies:
        click.echo("No proxies have reported.", err=True)
        return
    click.echo(format_table(HEADERS, status_rows(reply)))
    for line in rejections(reply):
        click.echo(f"Warning: {line}", err=True)


@cli.group()
def proxy() -> None:
    """The sidecar proxy."""


def _labels(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, str]:
    from proxy.settings import parse_labels

    try:
        return parse_labels(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _tcp_routes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    from proxy.settings import parse_tcp_route

    try:
        return tuple(parse_tcp_route(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _app_tcp(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    from proxy.settings import parse_app_tcp

    try:
        return tuple(parse_app_tcp(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@proxy.command("run")
@click.option("--service", required=True, help="The service this workload belongs to.")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--service-port", type=click.IntRange(1, 65535), required=True,
              help="The port clients use for the service (reviews:9080).")
@click.option("--app-port", type=click.IntRange(1, 65535), required=True,
              help="Where the app listens on 127.0.0.1.")
@click.option("--labels", callback=_labels, metavar="k=v,k2=v2", help="Workload labels (subsets match these).")
@click.option("--inbound-port", type=click.IntRange(1, 65535), default=15006, show_default=True)
@click.option("--outbound-port", type=click.IntRange(1, 65535), default=15001, show_default=True)
@click.option("--admin-port", type=click.IntRange(1, 65535), default=15000, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="The address peers use to reach this workload's inbound port.")
@click.option("--service-account", default="default", show_default=True)
@click.option("--locality", envvar="ISTHMUS_LOCALITY", default="", metavar="REGION/ZONE/SUBZONE",
              help="Where this workload runs, for localityLbSetting (env ISTHMUS_LOCALITY).")
@click.option("--lease-ttl", type=click.IntRange(1), help="Seconds the registration lives without heartbeats.")
@click.option("--pending-grace", type=click.FloatRange(0), envvar="ISTHMUS_PENDING_GRACE", default=15.0,
              show_default=True, help="Seconds a route waits for a cluster or subset it names before it applies "
                                      "anyway (requests to what is missing get 503 NC); env ISTHMUS_PENDING_GRACE.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Env ISTHMUS_LOG_LEVEL; default info.")
@click.option("--access-log", envvar="ISTHMUS_ACCESS_LOG", default="", metavar="-|PATH",
              help="Write an access line per request and TCP connection: - for stdout, or a file (env "
                   "ISTHMUS_ACCESS_LOG). Off by default.")
@click.option("--retry-buffer-limit", type=click.IntRange(0), envvar="ISTHMUS_RETRY_BUFFER_LIMIT",
              default=1024 * 1024, show_default=True, metavar="BYTES",
              help="Request body bytes kept so a retry can resend them; a larger body is not retried "
                   "(env ISTHMUS_RETRY_BUFFER_LIMIT).")
@click.option("--tcp", multiple=True, callback=_tcp_routes, metavar="HOST:PORT=LOCAL_PORT",
              help="Opaque TCP out: the app connects to 127.0.0.1:LOCAL_PORT to reach HOST:PORT (tcp routes apply). "
                   "Repeatable.")
@click.option("--app-tcp", multiple=True, callback=_app_tcp, metavar="SERVICE_PORT=APP_PORT[@INBOUND_PORT]",
              help="Opaque TCP in: serve the app's APP_PORT as the service's SERVICE_PORT through an inbound TCP "
                   "listener (any free port unless given). Repeatable.")
@click.option("--max-request-headers-kb", envvar="ISTHMUS_MAX_REQUEST_HEADERS_KB", type=click.IntRange(1, 8192),
              default=60, show_default=True, help="Request line + headers, KiB; more gets 431 (Envoy's default).")
@click.option("--max-request-headers", envvar="ISTHMUS_MAX_REQUEST_HEADERS", type=click.IntRange(1, 10_000),
              default=100, show_default=True, help="Headers per request; more gets 431 (Envoy's default).")
@click.option("--max-request-url-kb", envvar="ISTHMUS_MAX_REQUEST_URL_KB", type=click.IntRange(1, 8192),
              default=60, show_default=True, help="Request target, KiB; longer gets 414.")
@click.option("--max-pipelined-requests", envvar="ISTHMUS_MAX_PIPELINED_REQUESTS", type=click.IntRange(1, 1000),
              default=16, show_default=True, help="Requests parsed ahead of the one in flight; then the "
                                                   "connection closes once they are answered.")
@click.option("--request-headers-timeout", envvar="ISTHMUS_REQUEST_HEADERS_TIMEOUT", type=click.FloatRange(0),
              default=10.0, show_default=True, metavar="SECONDS", help="To receive a request head; 408. 0: off.")
@click.option("--request-timeout", envvar="ISTHMUS_REQUEST_TIMEOUT", type=click.FloatRange(0), default=300.0,
              show_default=True, metavar="SECONDS", help="To receive a whole request (head and body); 408. 0: off.")
@click.option("--stream-idle-timeout", envvar="ISTHMUS_STREAM_IDLE_TIMEOUT", type=click.FloatRange(0),
              default=300.0, show_default=True, metavar="SECONDS",
              help="A request with no byte either way for this long ends: 408, or a close. 0: off.")
@click.option("--max-connections", envvar="ISTHMUS_MAX_CONNECTIONS", type=click.IntRange(0), default=10_000,
              show_default=True, help="Open connections per listener; more are closed at once. 0: unlimited.")
@click.option("--max-response-headers-kb", envvar="ISTHMUS_MAX_RESPONSE_HEADERS_KB", type=click.IntRange(1, 8192),
              default=60, show_default=True, help="An upstream's status line + headers, KiB; more gets 502.")
@click.option("--max-response-headers", envvar="ISTHMUS_MAX_RESPONSE_HEADERS", type=click.IntRange(1, 10_000),
              default=100, show_default=True, help="Headers per upstream response; more gets 502.")
@click.pass_obj
def proxy_run(obj: dict[str, Any], service: str, namespace: str, service_port: int, app_port: int,
              labels: dict[str, str], inbound_port: int, outbound_port: int, admin_port: int, address: str,
              service_account: str, locality: str, lease_ttl: int | None, pending_grace: float,
              log_level: str | None, access_log: str, retry_buffer_limit: int,
              tcp: tuple[tuple[str, int, int], ...],
              app_tcp: tuple[tuple[int, int, int], ...], **limit_flags: Any) -> None:
    """Run a sidecar beside one workload until SIGINT/SIGTERM."""
    from proxy.settings import ProxyOptions, build_limits

    extra: dict[str, Any] = {"log_level": log_level} if log_level else {}
    options = ProxyOptions(
        service=service,
        namespace=namespace,
        service_port=service_port,
        app_port=app_port,
        labels=labels,
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        admin_port=admin_port,
        address=address,
        service_account=service_account,
        locality=locality,
        lease_ttl=lease_ttl,
        pending_grace=pending_grace,
        nats_url=obj["nats_url"],
        tcp_routes=tcp,
        app_tcp=app_tcp,
        access_log=access_log,
        retry_buffer_limit=retry_buffer_limit,
        limits=build_limits(**limit_flags),
        **extra,
    )
    from proxy.main import StartError, run_proxy

    try:
        run_proxy(options)
    except StartError as exc:  # a port in use, an unwritable access log: one line naming the flag
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def main() -> None:
    cli(prog_name="isthmus")


if __name__ == "__main__":
    main()
