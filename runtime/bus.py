"""The NATS connection every service and proxy uses: the public entry, `from runtime.bus import ...` for any of
it. One concern per module, each layer importing only the ones below it (pyproject.toml pins the order):

    runtime/bus_connect.py   connect(): retried until a first connection, reconnected forever after, backing off
                             while the bus refuses our credentials; the connect options of a client config
    runtime/bus_core.py      the Bus class (publish, request, call, serve, listen) and its typed errors
    runtime/bus_deadline.py  the Isthmus-Deadline header and what a handler reads of the request it handles
    runtime/bus_codec.py     encode, decode, error_reply: JSON payloads
"""

from __future__ import annotations

from runtime.bus_codec import MalformedRequest, decode, encode, error_reply
from runtime.bus_connect import RECONNECT_WAIT, REFUSED_WAIT_MAX, connect, connect_options, refused_wait, servers
from runtime.bus_core import (HEADER_ALLOWANCE, REPLY_PREFIXES, Bus, BusError, BusTimeout, Handler, Listener,
                              NoResponders, PayloadTooLarge)
from runtime.bus_deadline import (DEADLINE_HEADER, deadline_margin, deadline_passed, request_deadline, request_header,
                                  request_subject)

__all__ = [
    "DEADLINE_HEADER", "HEADER_ALLOWANCE", "RECONNECT_WAIT", "REFUSED_WAIT_MAX", "REPLY_PREFIXES", "Bus", "BusError",
    "BusTimeout", "Handler", "Listener", "MalformedRequest", "NoResponders", "PayloadTooLarge", "connect",
    "connect_options", "deadline_margin", "deadline_passed", "decode", "encode", "error_reply", "refused_wait",
    "request_deadline", "request_header", "request_subject", "servers",
]
