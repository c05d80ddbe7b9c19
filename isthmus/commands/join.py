"""`isthmus join`: a machine joins the mesh with one command (Consul's `consul services register`, Kuma's
`kumactl install ...` pattern). It checks that the bus answers, redeems the bootstrap token for this workload's own
bus credentials (proxy/control/buscreds.py: obtain, save), writes the sidecar's files (isthmus/join_files.py) and
then either starts the unit (`--systemd`), runs the sidecar in the foreground (`--run`), or prints the command.
The token and the bus password are never printed; the files holding them are 0600 in 0700 directories."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from isthmus.errors import CliError
from isthmus.options import check_nats_url, check_dns_label

PROBE_TIMEOUT = 3.0  # seconds per bus node for the TCP check


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> str:
    """Why the bus node at `url` cannot be reached over TCP ("" when it can): refused, timed out, no such host."""
    parts = urlsplit(url)
    port = parts.port or 4222
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return ""
    except socket.gaierror as exc:
        return f"no such host ({exc.strerror})"
    except ConnectionRefusedError:
        return "connection refused (is nats-server running there, and the port open?)"
    except TimeoutError:
        return f"no answer in {timeout:g}s (a firewall, or the wrong address)"
    except OSError as exc:
        return exc.strerror or str(exc)


def check_reachable(nats_url: str) -> list[str]:
    """The bus nodes that answer; CliError naming each node and its cause when none does."""
    urls = [u.strip() for u in nats_url.split(",") if u.strip()]
    causes = {url: probe(url) for url in urls}
    up = [url for url, cause in causes.items() if not cause]
    if not up:
        raise CliError("cannot reach the bus: " + "; ".join(f"{url}: {cause}" for url, cause in causes.items()))
    for url, cause in causes.items():
        if cause:
            click.echo(f"warning: {url}: {cause} (the sidecar moves to it when it answers)", err=True)
    return up


def check_ports_free(ports: list[tuple[str, str, int]]) -> None:
    """CliError naming the first (flag, host, port) another process holds (TCP; the DNS port UDP too)."""
    for flag, host, port in ports:
        if not port:
            continue
        kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if flag == "--dns-port" else (socket.SOCK_STREAM,)
        for kind in kinds:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError as exc:
                    what = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                    raise CliError(f"{flag} {port}: {host}:{port} ({what}) is taken: {exc.strerror} (another "
                                   "sidecar or app? pick a free port)") from None


def redeem(nats_url: str, token: str, namespace: str, service_account: str, wait: float, tls_ca: str = "") -> Any:
    """This workload's bus credentials for `token` (a NatsClient); CliError with the bus's reason when refused."""
    from proxy.control import buscreds
    from runtime.clientconfig import NatsClient
    from runtime.log import configure

    configure("warning")  # buscreds logs at info; the operator sees our lines, not JSON
    buscreds.CONNECT_WAIT = wait  # a CLI waits briefly; the sidecar itself waits longer
    try:
        return asyncio.run(buscreds.obtain(nats_url, NatsClient(tls_ca=tls_ca) if tls_ca else None, namespace,
                                           service_account, token))
    except buscreds.CredentialsError as exc:
        raise CliError(str(exc)) from None


@click.command("join")
@click.option("--token", envvar="ISTHMUS_TOKEN", default="", metavar="TOKEN",
              help="The bootstrap token (`isthmus token create`; env ISTHMUS_TOKEN). Never printed.")
@click.option("--token-file", type=click.Path(dir_okay=False), default="", metavar="FILE",
              help="Read the token from FILE instead (kept out of `ps` and shell history).")
@click.option("--control-plane", "nats_url", required=True, callback=check_nats_url, metavar="URL[,URL...]",
              help="The bus: one or more NATS nodes, comma-separated (nats://10.0.0.11:4222,...).")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
              help="The CA of the bus's TLS certificate (tls:// URLs; `isthmus up --nats-tls`, nats-ca.pem); copied "
                   "beside the sidecar's bus credentials.")
@click.option("--service", required=True, help="The service this workload serves (reviews).")
@click.option("--service-port", type=click.IntRange(1, 65535), required=True, help="The port clients use (9080).")
@click.option("--app-port", type=click.IntRange(1, 65535), required=True, help="Where the app listens on 127.0.0.1.")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--labels", default="", metavar="k=v,k2=v2", help="Workload labels (subsets match these).")
@click.option("--service-account", default="", metavar="SA",
              help="The workload's identity (the token's service account); default the service's name.")
@click.option("--dns-port", type=click.IntRange(0, 65535), default=0, show_default=True, metavar="PORT",
              help="The sidecar answers DNS for mesh names on 127.0.0.1:PORT (docs/dns.md). 0: off.")
@click.option("--address", default="", metavar="IP", help="The address peers reach this workload at (proxy run's).")
@click.option("--inbound-port", type=click.IntRange(1, 65535), default=15006, show_default=True)
@click.option("--outbound-port", type=click.IntRange(1, 65535), default=15001, show_default=True)
@click.option("--admin-port", type=click.IntRange(1, 65535), default=15000, show_default=True)
@click.option("--state-dir", default="", metavar="DIR",
              help="Where the sidecar keeps its key, certificate and bus credentials; default "
                   "<root>/var/lib/isthmus-sidecar-<service> (the unit's StateDirectory). Not with --systemd.")
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Write everything under DIR (tests, image builds); systemctl is then not run, only printed.")
@click.option("--systemd", is_flag=True, help="Install and start isthmus-sidecar@<service> "
                                              "(systemctl daemon-reload; systemctl enable --now).")
@click.option("--run", "run_now", is_flag=True, help="Run the sidecar in the foreground (without --systemd).")
@click.option("--force", is_flag=True, help="Replace an earlier join of this service on this machine.")
@click.option("--wait", type=click.FloatRange(0.5, 300), default=30.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the control plane's credentials.")
def join(token: str, token_file: str, nats_url: str, tls_ca: str | None, service: str, service_port: int,
         app_port: int, namespace: str,
         labels: str, service_account: str, dns_port: int, address: str, inbound_port: int, outbound_port: int,
         admin_port: int, state_dir: str, root: str, systemd: bool, run_now: bool, force: bool, wait: float) -> None:
    """Join this machine's workload to the mesh: check the bus, redeem the token for the sidecar's bus
    credentials, write the sidecar's config, and start it (--systemd), run it (--run) or print its command."""
    from isthmus import join_files as jf
    from runtime.bootstrap_tokens import TokenRefused, read_token_file, split

    if systemd and (run_now or state_dir):
        raise click.UsageError("--systemd runs the unit: not with --run or --state-dir (the unit's StateDirectory)")
    check_dns_label("--service", service)
    check_dns_label("--namespace", namespace)
    if token and token_file:
        raise click.UsageError("give --token (or ISTHMUS_TOKEN) or --token-file, not both")
    if token_file:
        try:
            token = read_token_file(token_file)
        except (OSError, TokenRefused) as exc:
            raise CliError(f"--token-file {token_file}: {exc}") from None
    token = token.strip()
    if not token:
        raise click.UsageError("no token: give --token, env ISTHMUS_TOKEN or --token-file (`isthmus token create`)")
    try:
        split(token)
    except TokenRefused as exc:
        raise CliError(f"--token: {exc}") from None
    service_account = service_account or service
    pairs = [("--service", service), ("--namespace", namespace), ("--service-account", service_account),
             ("--service-port", str(service_port)), ("--app-port", str(app_port)),
             ("--inbound-port", str(inbound_port)), ("--outbound-port", str(outbound_port)),
             ("--admin-port", str(admin_port))]
    pairs += [("--labels", labels)] if labels else []
    pairs += [("--address", address)] if address else []
    pairs += [("--dns-port", str(dns_port))] if dns_port else []
    try:
        args = jf.sidecar_args(pairs)
    except jf.JoinFileError as exc:
        raise CliError(str(exc)) from None
    ports = [p for p in [("--app-port", app_port), ("--inbound-port", inbound_port), ("--outbound-port", outbound_port),
                         ("--admin-port", admin_port), ("--dns-port", dns_port)] if p[1]]
    seen: dict[int, str] = {}
    for flag, port in ports:
        if port in seen:
            raise click.UsageError(f"{flag} {port} is also {seen[port]}: give each its own port")
        seen[port] = flag
    files = jf.SidecarFiles(Path(root), service, state_dir)
    earlier = jf.existing(files)
    if earlier and not force:
        raise CliError(f"{service} already joined on this machine ({earlier[0]} exists): --force replaces it")
    listen = address or "127.0.0.1"
    check_ports_free([("--inbound-port", listen, inbound_port), ("--outbound-port", "127.0.0.1", outbound_port),
                      ("--admin-port", "127.0.0.1", admin_port), ("--dns-port", "127.0.0.1", dns_port)])
    check_reachable(nats_url)
    creds = redeem(nats_url, token, namespace, service_account, wait, tls_ca or "")
    from proxy.control import buscreds

    program = jf.isthmus_program()
    try:
        written = jf.write(files, nats_url, args, token, program)
        jf.private_dir(files.state_dir)
        if tls_ca:  # where the sidecar's user reads it (not /etc/isthmus, 0700 root's)
            ca = files.state_dir / "bus-ca.pem"
            jf.write_private(ca, Path(tls_ca).read_text())
            creds.tls_ca = str(ca.absolute())
            written.append(ca)
        buscreds.save(str(files.state_dir), creds)
    except OSError as exc:
        raise CliError(f"cannot write the sidecar's files: {exc.strerror or exc} ({getattr(exc, 'filename', '')})")
    for path in [*written, files.state_dir / buscreds.SAVED_FILE]:
        click.echo(f"wrote {path}", err=True)
    click.echo(f"joined {namespace}/{service_account} as bus user {creds.user}", err=True)
    if systemd:
        _systemctl(files.unit, root)
    elif run_now:
        command = jf.proxy_command(program, files, nats_url, args)
        sys.stdout.flush()
        os.execv(command[0], command)
    else:
        click.echo(shlex.join(jf.proxy_command(program, files, nats_url, args)))


def _systemctl(unit: str, root: str) -> None:
    """daemon-reload and enable --now `unit`; under a --root other than /, print the commands instead."""
    commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit]]
    if Path(root).resolve() != Path("/"):
        for command in commands:
            click.echo(f"would run: {shlex.join(command)}")
        return
    for command in commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CliError(f"{shlex.join(command)}: {exc}") from None
        if result.returncode:
            raise CliError(f"{shlex.join(command)} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    click.echo(f"started {unit} (journalctl -u {unit} -f)")
