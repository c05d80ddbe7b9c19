"""Istio's TCP metrics for opaque TCP relays (proxy/tcp/relay.py): istio_tcp_connections_opened_total,
istio_tcp_connections_closed_total, istio_tcp_sent_bytes_total (to the downstream), istio_tcp_received_bytes_total
(from the downstream), reporter=source on `--tcp` listeners and destination on `--app-tcp` ones.

    TcpMetrics(recorder, me, outbound)   one per direction, shared by that direction's TcpListeners (and,
                                         outbound, the outbound listener's CONNECT tunnels: HTTPS_PROXY)
        .opened(relay)     the downstream connection is made (inbound: its caller's principal read now)
        .track(relay, host)  a CONNECT tunnel began (swept by sweep_tunnels until it closes)
        .closed(relay)     the relay is over: the rest of its bytes, and closed += 1
        .sweep(relays)     before a scrape or snapshot: open, connected relays' bytes so far (and opened)

Nothing is counted per read: a relay's byte counts (_Side.read) are taken when it closes or when the metrics are
read, the difference since the last time added, so a long-lived connection's bytes show while it is open (as
Istio reports open connections periodically). A connection is counted as opened under its labels once its
upstream is connected, or at its close if it never was (then with its response flag: UF, UO, NR, ...), so its
opened and closed land in the same series. Inbound TCP carries no peer metadata exchange: source_workload and
the other source labels but the principal and namespace (from the caller's certificate) are "unknown".
"""

from __future__ import annotations

from proxy.core.target import Target
from proxy.tcp.relay import Relay
from proxy.telemetry import labels
from proxy.telemetry.http_metrics import target_host
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.metrics import Peer, TcpRecorder
from proxy.tls.peer import peer_principal

PEER_CACHE = 1024  # endpoints whose Peer is kept


class TcpMetrics:
    def __init__(self, recorder: TcpRecorder, me: LocalWorkload, outbound: bool) -> None:
        self.recorder = recorder
        self.me = me
        self.outbound = outbound
        self.by_endpoint: dict[int, tuple[object, str, object, Peer]] = {}
        self.tunnels: dict[Relay, str] = {}  # open CONNECT tunnels (no listener of their own) -> the host asked

    def track(self, relay: Relay, asked: str) -> None:
        """A CONNECT tunnel of the outbound listener (proxy/http/connect_tunnel.py), swept with the listeners'
        relays until `closed`."""
        self.tunnels[relay] = asked

    def sweep_tunnels(self) -> None:
        for relay, asked in list(self.tunnels.items()):
            if relay.up is not None and not relay.closed:
                self._account(relay, asked)

    def opened(self, relay: Relay) -> None:
        if not self.outbound and relay.down.transport is not None:  # the caller is known once, now
            principal = peer_principal(relay.down.transport)
            relay.peer = self.recorder.peer(labels.inbound(self.me, "tcp", principal, None))

    def closed(self, relay: Relay, asked: str = "") -> None:
        asked = self.tunnels.pop(relay, asked)
        self._account(relay, asked).closed += 1

    def sweep(self, relays: set[Relay], asked: str = "") -> None:
        for relay in relays:
            if relay.up is not None and not relay.closed:
                self._account(relay, asked)

    def _account(self, relay: Relay, asked: str) -> object:
        peer = relay.peer
        first = relay.seen is None
        if peer is None:
            peer = relay.peer = self._peer(relay.target, asked)
        counts = self.recorder.counts(peer, relay.flag)
        if first:
            counts.opened += 1
            relay.seen = (0, 0)
        received, sent = relay.down.read, relay.up.read if relay.up is not None else 0
        seen_received, seen_sent = relay.seen  # type: ignore[misc]
        counts.received += received - seen_received
        counts.sent += sent - seen_sent
        relay.seen = (received, sent)
        return counts

    def _peer(self, target: Target | None, asked: str) -> Peer:
        if not self.outbound:  # made before the caller was known (no transport): an unknown caller
            return self.recorder.peer(labels.inbound(self.me, "tcp", None, None))
        endpoint = target.endpoint if target is not None else None
        if endpoint is not None:
            found = self.by_endpoint.get(id(endpoint))
            if found is not None and found[0] is endpoint and found[2] is target.tls and found[1] == target.cluster:
                return found[3]
        host, name, namespace = target_host(self.me, target, asked)
        peer = self.recorder.peer(labels.outbound(self.me, "tcp", host, name, namespace, endpoint,
                                                  target is not None and target.tls is not None))
        if endpoint is not None:
            if len(self.by_endpoint) >= PEER_CACHE:
                self.by_endpoint.clear()
            self.by_endpoint[id(endpoint)] = (endpoint, target.cluster, target.tls, peer)  # type: ignore[union-attr]
        return peer
