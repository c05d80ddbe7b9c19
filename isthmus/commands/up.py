"""`isthmus up`: the click command; isthmus/up.py runs the control plane."""

from __future__ import annotations

import re
import sys

import click

from isthmus.options import Duration, check_dns_label

TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+\Z")


def check_trust_domain(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """SPIFFE's trust domain name: lower-case letters, digits, '.', '-' and '_' (spiffe-id.md 2.1)."""
    if not value or len(value) > 255 or not TRUST_DOMAIN.match(value):
        raise click.BadParameter(f"{value[:80]!r} is not a SPIFFE trust domain (lower-case letters, digits, '.', "
                                 "'-', '_'; e.g. cluster.local)")
    return value


def check_bind(value: str) -> str:
    """An IP address to listen on (BadParameter otherwise)."""
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise click.BadParameter(f"{value[:80]!r} is not an IP address (127.0.0.1, ::1, 0.0.0.0)") from None
    return value


def check_plugin_ca(cert: str | None, key: str | None, root: str | None, chain: str | None) -> dict[str, str]:
    """The ca's environment for a plug-in CA, after checking the files as the ca will use them; {} without one.
    BadParameter (one line, exit 2) naming the flag and the fault."""
    from pathlib import Path

    from runtime.plugin_ca import load_plugin_ca

    given = {"--plugin-ca-cert": cert, "--plugin-ca-key": key, "--plugin-root-cert": root}
    if not any(given.values()) and not chain:
        return {}
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise click.BadParameter(f"a plug-in CA needs {', '.join(missing)} as well", param_hint=f"'{missing[0]}'")
    paths = [str(Path(p).resolve()) for p in (cert, key, root)]  # type: ignore[arg-type]
    chain_path = str(Path(chain).resolve()) if chain else ""
    try:
        load_plugin_ca(*paths, chain_path)
    except ValueError as exc:
        flag = str(exc).split(" ", 1)[0]
        raise click.BadParameter(str(exc).split(" ", 1)[1] if flag.startswith("--") else str(exc),
                                 param_hint=f"'{flag}'" if flag.startswith("--") else None) from None
    return {"ISTHMUS_PLUGIN_CA_CERT": paths[0], "ISTHMUS_PLUGIN_CA_KEY": paths[1],
            "ISTHMUS_PLUGIN_CA_ROOT_CERT": paths[2], "ISTHMUS_PLUGIN_CA_CERT_CHAIN": chain_path}


def check_kek(state_dir: str, generate: bool, path: str | None, previous: str | None = None) -> dict[str, str]:
    """The ca's environment for a KEK (runtime/kek.py), after checking the files; {} without one. `generate`:
    the KEK is <state-dir>/ca/kek, made (0600) if absent. `previous`: the KEK being rotated out.
    BadParameter (one line, exit 2) naming the flag."""
    from pathlib import Path

    from runtime.kek import load_kek, make_kek

    if generate and path:
        raise click.BadParameter("give --ca-kek (a KEK kept in the state directory) or --ca-kek-file, not both",
                                 param_hint="'--ca-kek-file'")
    if generate:
        path = str(Path(state_dir).resolve() / "ca" / "kek")
        if make_kek(path):
            click.echo(f"isthmus: made a KEK for the ca at {path} (mode 0600); ca replicas on other machines need "
                       "a copy (--ca-kek-file); keep it out of etcd backups", err=True)
    if not path:
        if previous:
            raise click.BadParameter("needs the new KEK (--ca-kek-file or --ca-kek)",
                                     param_hint="'--ca-previous-kek-file'")
        return {}
    try:
        load_kek(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--ca-kek'" if generate else "'--ca-kek-file'") from None
    env = {"ISTHMUS_CA_KEK_FILE": str(Path(path).resolve())}
    if previous:
        try:
            load_kek(previous)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--ca-previous-kek-file'") from None
        env["ISTHMUS_CA_PREVIOUS_KEK_FILE"] = str(Path(previous).resolve())
    return env


@click.command()
@click.option("--state-dir", type=click.Path(file_okay=False), default=".isthmus", show_default=True,
              help="Where config, data (etcd) and logs live.")
@click.option("--nats-port", type=click.IntRange(1, 65535), default=4222, show_default=True,
              help="nats-server's client port: the bus every service, sidecar and command connects to.")
@click.option("--etcd-port", type=click.IntRange(1, 65534), default=2379, show_default=True,
              help="etcd client port; the peer port is this + 1.")
@click.option("--demo", is_flag=True, help="Also run the bookinfo demo and show live traffic.")
@click.option("--outbound-traffic-policy", type=click.Choice(["ALLOW_ANY", "REGISTRY_ONLY"], case_sensitive=False),
              envvar="ISTHMUS_OUTBOUND_TRAFFIC_POLICY", default="ALLOW_ANY", show_default=True,
              help="What every sidecar does with hosts outside the mesh registry: pass them through, or 502 "
                   "(Istio's meshConfig.outboundTrafficPolicy.mode; env ISTHMUS_OUTBOUND_TRAFFIC_POLICY).")
@click.option("--trust-domain", envvar="ISTHMUS_TRUST_DOMAIN", default="cluster.local", show_default=True,
              callback=check_trust_domain,
              help="SPIFFE trust domain of every workload identity (meshConfig.trustDomain; env ISTHMUS_TRUST_DOMAIN).")
@click.option("--root-namespace", envvar="ISTHMUS_ROOT_NAMESPACE", default="istio-system", show_default=True,
              help="Policies in this namespace apply mesh-wide (meshConfig.rootNamespace; env ISTHMUS_ROOT_NAMESPACE).")
@click.option("--workload-cert-ttl", type=Duration(60, 90 * 86400), default="24h", show_default=True,
              help="Lifetime of a workload certificate when the sidecar asks for none (60s to 90d).")
@click.option("--plugin-ca-cert", type=click.Path(dir_okay=False), metavar="PEM",
              help="Sign as an intermediate under your own root (Istio's plug-in CA): the CA certificate ...")
@click.option("--plugin-ca-key", type=click.Path(dir_okay=False), metavar="PEM", help="... its private key ...")
@click.option("--plugin-root-cert", type=click.Path(dir_okay=False), metavar="PEM", help="... your root ...")
@click.option("--plugin-cert-chain", type=click.Path(dir_okay=False), metavar="PEM",
              help="... and the certificates between them, if any.")
@click.option("--ca-kek", is_flag=True,
              help="Keep the ca's signing key also in etcd, sealed (AES-256-GCM) with a key-encryption key made on "
                   "first start at <state-dir>/ca/kek (0600), so ca replicas on other machines can load it.")
@click.option("--ca-kek-file", type=click.Path(dir_okay=False), metavar="PATH", envvar="ISTHMUS_CA_KEK_FILE",
              help="As --ca-kek, with a KEK you keep elsewhere: 64 hex digits (openssl rand -hex 32), mode 0600 "
                   "(env ISTHMUS_CA_KEK_FILE).")
@click.option("--ca-previous-kek-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="Rotating the KEK: the old one; the ca seals the keys in etcd again with the new one at start "
                   "(docs/security.md).")
@click.option("--dashboard-port", type=click.IntRange(1, 65535), envvar="ISTHMUS_DASHBOARD_PORT", default=20001,
              show_default=True, help="The telemetry service's HTTP port: the dashboard, /metrics for Prometheus, "
                                      "Zipkin's API (Kiali's port; env ISTHMUS_DASHBOARD_PORT).")
@click.option("--dashboard-bind", envvar="ISTHMUS_DASHBOARD_BIND", default="127.0.0.1", show_default=True,
              callback=lambda ctx, param, value: check_bind(value), metavar="ADDRESS",
              help="The address the dashboard port listens on; 0.0.0.0 lets other hosts read the mesh's metrics, "
                   "traces and access logs (docs/telemetry-service.md; env ISTHMUS_DASHBOARD_BIND).")
@click.option("--ingress-port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="With --demo: where the demo's ingress gateway (istio-ingressgateway) serves its Gateway port 80, "
                   "on 127.0.0.1.")
@click.option("--ingress-https-port", type=click.IntRange(1, 65535), default=8443, show_default=True,
              help="With --demo: where the demo's ingress gateway serves its Gateway port 443 (HTTPS), on 127.0.0.1.")
@click.option("--nats-tls", is_flag=True,
              help="Clients must reach the bus over TLS (a bus CA and server certificate are made at start; the "
                   "CA's path goes into isthmus.yaml).")
def up(state_dir: str, nats_port: int, etcd_port: int, demo: bool, outbound_traffic_policy: str, trust_domain: str,
       root_namespace: str, workload_cert_ttl: int, plugin_ca_cert: str | None, plugin_ca_key: str | None,
       plugin_root_cert: str | None, plugin_cert_chain: str | None, ca_kek: bool, ca_kek_file: str | None,
       ca_previous_kek_file: str | None, nats_tls: bool, dashboard_port: int, dashboard_bind: str,
       ingress_port: int, ingress_https_port: int) -> None:
    """Run a local control plane (nats-server, etcd, auth, registry, pilot, ca, telemetry) until Ctrl-C.

    \b
    Environment: ISTHMUS_PORT_RANGE=LOW-HIGH bounds the loopback ports picked
    for what has no port flag (the demo's apps, sidecars, gateway admin port);
    default: 10000 up to the kernel's ephemeral range (docs/cli.md).
    """
    from isthmus.up import run_up

    check_dns_label("--root-namespace", root_namespace)
    plugin = check_plugin_ca(plugin_ca_cert, plugin_ca_key, plugin_root_cert, plugin_cert_chain)
    plugin.update(check_kek(state_dir, ca_kek, ca_kek_file, ca_previous_kek_file))
    sys.exit(run_up(state_dir, nats_port=nats_port, etcd_port=etcd_port, demo=demo,
                    outbound_traffic_policy=outbound_traffic_policy.upper(), nats_tls=nats_tls,
                    dashboard_port=dashboard_port, dashboard_bind=dashboard_bind, ingress_port=ingress_port,
                    ingress_https_port=ingress_https_port,
                    ca_env={"ISTHMUS_TRUST_DOMAIN": trust_domain, "ISTHMUS_ROOT_NAMESPACE": root_namespace,
                            "ISTHMUS_WORKLOAD_CERT_TTL": str(workload_cert_ttl), **plugin}))
