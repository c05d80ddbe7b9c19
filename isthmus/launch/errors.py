"""What launching can fail with.

    LaunchError          a process could not be started or never became ready
    └── PortInUse        the port it must listen on is taken (carries .port)
"""

from __future__ import annotations

from isthmus.launch.ports import LOOPBACK


class LaunchError(Exception):
    """The local mesh could not start as asked (a binary missing, a port taken, a process not ready)."""


class PortInUse(LaunchError):
    def __init__(self, port: int, what: str = "") -> None:
        self.port = port
        super().__init__(f"port {port}{f' ({what})' if what else ''} on {LOOPBACK} is already in use")
