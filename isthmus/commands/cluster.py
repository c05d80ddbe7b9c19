"""`isthmus cluster init|nats|etcd|etcd-auth`: a clustered control plane on several machines or containers
(docker-compose.yml, deploy/systemd/, docs/install-vm.md), configured as `isthmus up` configures one node.

    init       once, on one machine: the mesh's credentials under --dir (copy the directory to the control-plane
               machines): secrets/<service>.yaml naming every NATS node and etcd member, nats/auth.conf (the
               bus's users, permissions and auth callout), nats/route-password, the etcd JWT key, ca-kek,
               isthmus.yaml (the operator's)
    nats       on each NATS machine: writes nats/<name>.conf (auth.conf's block, the cluster's routes) and execs
               nats-server
    etcd       on each etcd machine: execs etcd as a member of --initial-cluster, with the shared JWT key
    etcd-auth  once, when the etcd cluster is up: turns on etcd's authentication (idempotent)

The configuration text comes from the same functions the loopback cluster of the tests uses
(isthmus/launch/cluster.py, binaries.py, credentials.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import click

from isthmus.errors import CliError
from isthmus.options import check_nats_url

DIR_HELP = "The cluster's directory of credentials and configs (`isthmus cluster init` writes it)."


@click.group()
def cluster() -> None:
    """A clustered control plane on several machines (docs/install-vm.md, docker-compose.yml)."""


def _private(path: Path, text: str) -> None:
    from isthmus.launch.credentials import _write_private

    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, text)


@cluster.command("init")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False), help=DIR_HELP)
@click.option("--nats", "nats_urls", required=True, callback=check_nats_url, metavar="URL[,URL...]",
              help="Every NATS node's client URL, as services and clients reach them.")
@click.option("--etcd", "etcd_urls", required=True, metavar="URL[,URL...]",
              help="Every etcd member's client URL, as the services reach them.")
def init(directory: str, nats_urls: str, etcd_urls: str) -> None:
    """Write the mesh's credentials and client configs (bus passwords new at every run: restart the NATS nodes
    and services after; etcd's passwords, its JWT key, the route password and the ca's KEK are kept)."""
    from isthmus.launch.credentials import MeshCredentials
    from runtime.clientconfig import save
    from runtime.kek import make_kek
    from runtime.settings import etcd_endpoints

    try:
        etcd_endpoints(etcd_urls)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--etcd") from None
    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    creds = MeshCredentials.create(root)
    creds.write_service_configs(nats_urls, etcd_urls)
    _private(root / "nats" / "auth.conf", creds.nats_authorization())
    route = root / "nats" / "route-password"
    if not route.is_file():
        _private(route, secrets.token_urlsafe(24) + "\n")
    make_kek(root / "ca-kek")
    save(root / "isthmus.yaml", creds.client_config("operator", nats_urls))
    click.echo(f"cluster credentials in {root} (mode 0700): copy it to every control-plane machine")
    click.echo(f"operator's client config: export ISTHMUS_CONFIG={root / 'isthmus.yaml'}")


@cluster.command("nats")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True), help=DIR_HELP)
@click.option("--name", required=True, help="This node's server name (unique in the cluster).")
@click.option("--listen", default="0.0.0.0:4222", show_default=True, metavar="HOST:PORT", help="Client listener.")
@click.option("--cluster-listen", default="0.0.0.0:6222", show_default=True, metavar="HOST:PORT",
              help="Route listener (other nodes only).")
@click.option("--route", "routes", multiple=True, required=True, metavar="HOST:PORT",
              help="Every node's route listener (this one's may be included); repeat the flag.")
@click.option("--dry-run", is_flag=True, help="Write the config and print the command instead of running it.")
def nats_node(directory: str, name: str, listen: str, cluster_listen: str, routes: tuple[str, ...],
              dry_run: bool) -> None:
    """Write <dir>/nats/<name>.conf and exec nats-server with it."""
    from isthmus.launch import LaunchError, nats_server_binary
    from isthmus.launch.binaries import nats_base_config
    from isthmus.launch.cluster import nats_cluster_block

    root = Path(directory).resolve()
    try:
        auth = (root / "nats" / "auth.conf").read_text()
        password = (root / "nats" / "route-password").read_text().strip()
        binary = nats_server_binary()
    except (OSError, LaunchError) as exc:
        raise CliError(f"{exc} (run `isthmus cluster init --dir {root}` first)") from None
    conf = root / "nats" / f"{name}.conf"
    _private(conf, nats_base_config(listen, name) + auth + nats_cluster_block(cluster_listen, list(routes), password))
    _exec([binary, "-c", str(conf)], dry_run)


@cluster.command("etcd")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True), help=DIR_HELP)
@click.option("--name", required=True, help="This member's name, as in --initial-cluster.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="etcd's data (mode 0700).")
@click.option("--client-url", required=True, metavar="URL", help="The client URL others reach this member at.")
@click.option("--peer-url", required=True, metavar="URL", help="The peer URL other members reach this one at.")
@click.option("--listen-client-url", default="", metavar="URL", help="Default --client-url (e.g. http://0.0.0.0:2379).")
@click.option("--listen-peer-url", default="", metavar="URL", help="Default --peer-url (e.g. http://0.0.0.0:2380).")
@click.option("--initial-cluster", required=True, metavar="NAME=PEER_URL,...", help="Every member.")
@click.option("--dry-run", is_flag=True, help="Print the command instead of running it.")
def etcd_member(directory: str, name: str, data_dir: str, client_url: str, peer_url: str, listen_client_url: str,
                listen_peer_url: str, initial_cluster: str, dry_run: bool) -> None:
    """Exec etcd as one member of the cluster, signing auth tokens with the cluster's JWT key."""
    from isthmus.launch import LaunchError
    from isthmus.launch.binaries import etcd_argv

    root = Path(directory).resolve()
    keys = root / "secrets" / "etcd-jwt.key", root / "secrets" / "etcd-jwt.pub"
    if not all(k.is_file() for k in keys):
        raise CliError(f"no etcd JWT key in {root / 'secrets'} (run `isthmus cluster init --dir {root}` first)")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    try:
        argv = etcd_argv(name, data_dir, client_url, peer_url, initial_cluster, keys,
                         listen_client_url=listen_client_url, listen_peer_url=listen_peer_url)
    except LaunchError as exc:
        raise CliError(str(exc)) from None
    _exec(argv, dry_run)


@cluster.command("etcd-auth")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True), help=DIR_HELP)
@click.option("--etcd", "etcd_urls", required=True, metavar="URL[,URL...]", help="The etcd cluster's members.")
@click.option("--wait", default=60.0, show_default=True, type=click.FloatRange(0, 3600), metavar="SECONDS",
              help="How long to wait for the etcd cluster to answer.")
def etcd_auth(directory: str, etcd_urls: str, wait: float) -> None:
    """Turn on etcd's authentication: the root user and the services' user `isthmus` (idempotent)."""
    import json

    from isthmus.launch.credentials import ETCD_SERVICE_USER
    from isthmus.launch.etcdauth import enable_auth
    from runtime.settings import etcd_endpoints

    path = Path(directory).resolve() / "secrets" / "etcd.json"  # etcd's passwords, kept by `init`
    try:
        passwords = json.loads(path.read_text())
        root_password, service_password = passwords["root"], passwords["service"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"cannot read etcd's passwords from {path}: {exc} (run `isthmus cluster init` first)") from None
    try:
        host, port = etcd_endpoints(etcd_urls)[0]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--etcd") from None
    deadline = time.monotonic() + wait
    while True:
        try:
            changed = asyncio.run(enable_auth(f"http://{host}:{port}", root_password, ETCD_SERVICE_USER,
                                              service_password))
            click.echo("etcd authentication enabled" if changed else "etcd authentication was already on")
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise CliError(f"cannot enable etcd's authentication at {host}:{port}: {exc}") from None
            time.sleep(1.0)


def _exec(argv: list[str], dry_run: bool) -> None:
    if dry_run:
        click.echo(" ".join(argv))
        return
    os.execv(argv[0], argv)  # the program replaces us: systemd and docker supervise and signal it directly
