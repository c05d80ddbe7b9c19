"""Loopback ports: picking a free one for a child to bind, and checking whether one is taken or serving."""

from __future__ import annotations

import os
import random
import socket

LOOPBACK = "127.0.0.1"

PORT_FLOOR = 10_000  # free_port's range starts here and ends below the kernel's ephemeral range
# "LOW-HIGH" (inclusive): where free_port picks instead. Processes that pick at the same moment from disjoint
# ranges cannot pick the same port (the tests give each pytest worker its own: tests/conftest.py).
PORT_RANGE_VARIABLE = "ISTHMUS_PORT_RANGE"
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def port_range() -> tuple[int, int]:
    """[low, high) that free_port picks from: ISTHMUS_PORT_RANGE's "LOW-HIGH", else PORT_FLOOR up to the kernel's
    ephemeral range. ValueError naming the variable for a value that is not two ports, low <= high, in order."""
    given = os.environ.get(PORT_RANGE_VARIABLE, "")
    if not given:
        return PORT_FLOOR, _ephemeral_floor()
    low, sep, high = given.partition("-")
    ascii_digits = sep and all(part.strip().isascii() and part.strip().isdigit() for part in (low, high))
    if not (ascii_digits and 1 <= int(low) <= int(high) <= 65_535):
        raise ValueError(f"{PORT_RANGE_VARIABLE}={given!r}: expected LOW-HIGH, two ports with LOW <= HIGH")
    return int(low), int(high) + 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now, for a process to bind a moment later.

    Picked below the kernel's ephemeral range, so the gap before the bind cannot be lost to a port the
    kernel hands out meanwhile (an outgoing connection's source port, or another process's bind to port
    0); never the same port twice in one process. ISTHMUS_PORT_RANGE narrows the range (port_range). Falls
    back to the kernel's pick when the default range is too small; RuntimeError when a given range has no
    free port left.
    """
    low, top = port_range()
    given = bool(os.environ.get(PORT_RANGE_VARIABLE))
    if given or top - low >= 1_000:
        for _ in range(200):
            port = random.randrange(low, top)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
        if given:  # the kernel's pick would leave the range that keeps this process apart from others
            raise RuntimeError(f"no free port found in {PORT_RANGE_VARIABLE}={os.environ[PORT_RANGE_VARIABLE]}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_port_pair() -> int:
    """A port p on 127.0.0.1 with p and p + 1 both free right now, as free_port picks them: for etcd, whose
    peer port is its client port + 1 (`isthmus up --etcd-port`). Neither is handed out again in this process.
    Tries free_port's picks until one's successor binds too; RuntimeError after 200 tries."""
    top = port_range()[1]
    for _ in range(200):
        port = free_port()
        # the successor of free_port's highest pick is past its range (the ephemeral range's first port, the
        # kernel's to hand out meanwhile, or another worker's slice), and that of a kernel pick may be past 65535
        if port + 1 in _handed_out or port < top <= port + 1 or port >= 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port + 1))
            except OSError:
                continue
        _handed_out.add(port + 1)
        return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when a listener holds host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
