"""A deadline for a whole urllib exchange, for pilot's jwksUri fetches (services/pilot/jwks_resolver.py).

urllib's `timeout` bounds each socket operation, not the exchange: a server that sends its status line or
headers a byte at a time, each within the timeout, holds the fetching thread for as long as it likes
(http.client reads up to 100 header lines of 64 KiB). So every connection an opener made here opens is
registered with its Deadline, and when the deadline passes the sockets are shut down: the blocked read
returns at once and the fetch fails (`deadline.expired` says why).

    deadline = Deadline(seconds)
    opener = deadline.opener(*handlers)      urllib's opener, its http and https connections watched
    with deadline: ...opener.open(...)...    the timer runs inside the block; after it nothing is touched

Only socket objects are kept, never file descriptors: a socket closed before the deadline has fd -1, so a
late shutdown cannot reach a descriptor reused by another connection. A TLS handshake in progress is not
cut short (the socket being wrapped is detached): its reads stay bounded by the per-operation timeout.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from typing import Any


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._done:
                self._sockets.append(sock)
            late = self.expired
        if late:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def opener(self, *handlers: Any) -> urllib.request.OpenerDirector:
        deadline = self

        class Http(http.client.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                deadline.watch(self.sock)

        class Https(http.client.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                deadline.watch(self.sock)

        class HttpHandler(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(Http, req)

        class HttpsHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                return self.do_open(Https, req, context=self._context)

        return urllib.request.build_opener(*handlers, HttpHandler(), HttpsHandler())


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed (fd -1) or never connected: nothing to cut
        pass
