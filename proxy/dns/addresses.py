"""A loopback address per service name, the same on every run: what the sidecar's DNS answers and where it
listens for the service's ports (docs/dns.md "Addresses").

    LoopbackAddresses(network).update(names) -> {name: "127.x.y.z"}

The whole of 127.0.0.0/8 is loopback on Linux, so binding any of these needs no privilege and no interface
configuration. The range is 127.240.0.0/12 (127.240.0.1 to 127.255.255.254, last octet 1-254): far from
127.0.0.1, systemd-resolved's 127.0.0.53/54 and Debian's 127.0.1.1, and about a million slots, so collisions
are rare (1,000 services: about one expected).

A name's home slot is a hash of the name (BLAKE2b of "<name>#0"); on a collision the later one probes
"<name>#1", "#2"... A name keeps its address as long as it is known (a newcomer never moves it), and names
that arrive together are placed in sorted order, so the outcome depends only on the names and the order in
which they appeared, never on dict order or the process.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from runtime.log import get_logger

log = get_logger("proxy.dns")

DEFAULT_NETWORK = "127.240.0.0/12"
MAX_PROBES = 64  # slots tried per name; past them the name gets no address (logged): never with a sparse range


class LoopbackAddresses:
    """Keeps name -> address for the names last given to update(); at most one name per address."""

    def __init__(self, network: str = DEFAULT_NETWORK) -> None:
        net = ipaddress.IPv4Network(network)
        if not net.is_loopback or net.num_addresses < 256:
            raise ValueError(f"{network} is not a loopback network of at least 256 addresses")
        self._base = int(net.network_address)
        self._slots = (net.num_addresses // 256) * 254  # last octet 1-254 in every /24
        self.by_name: dict[str, str] = {}
        self.by_address: dict[str, str] = {}

    def home(self, name: str, attempt: int = 0) -> str:
        """The address `name` takes on probe `attempt` (0: its home slot)."""
        digest = hashlib.blake2b(f"{name}#{attempt}".encode(), digest_size=8).digest()
        slot = int.from_bytes(digest, "big") % self._slots
        return str(ipaddress.IPv4Address(self._base + (slot // 254) * 256 + slot % 254 + 1))

    def update(self, names: Iterable[str]) -> dict[str, str]:
        """Addresses for exactly `names`: known names keep theirs, gone names free theirs, new names (in sorted
        order) take their first free probe. Returns name -> address (a copy)."""
        wanted = set(names)
        for name in [n for n in self.by_name if n not in wanted]:
            del self.by_address[self.by_name.pop(name)]
        for name in sorted(wanted - self.by_name.keys()):
            for attempt in range(MAX_PROBES):
                address = self.home(name, attempt)
                if address not in self.by_address:
                    self.by_name[name], self.by_address[address] = address, name
                    break
            else:
                log.warning("no free loopback address for a service name", name=name, probes=MAX_PROBES)
        return dict(self.by_name)
