"""`isthmus up`: the click command; isthmus/up.py runs the control plane."""

from __future__ import annotations

import sys

import click


@click.command()
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
@click.option("--nats-tls", is_flag=True,
              help="Clients must reach the bus over TLS (a bus CA and server certificate are made at start; the "
                   "CA's path goes into isthmus.yaml).")
def up(state_dir: str, nats_port: int, etcd_port: int, demo: bool, outbound_traffic_policy: str,
       nats_tls: bool) -> None:
    """Run a local control plane (nats-server, etcd, auth, registry, pilot, ca, telemetry) until Ctrl-C."""
    from isthmus.up import run_up

    sys.exit(run_up(state_dir, nats_port=nats_port, etcd_port=etcd_port, demo=demo,
                    outbound_traffic_policy=outbound_traffic_policy.upper(), nats_tls=nats_tls))
