"""Istio's standard metrics, recorded per listener: counts kept as plain ints and lists, formatted only when
scraped (proxy/telemetry/exposition.py) or snapshotted for the bus.

    HttpRecorder   istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes,
                   istio_response_bytes: one HttpCounts per (peer, response code, response flags)
    TcpRecorder    istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total,
                   istio_tcp_connections_opened_total, istio_tcp_connections_closed_total: one TcpCounts per
                   (peer, response flags)
    Peer           every other label value of one peer's label set (proxy/telemetry/labels.py), interned per
                   recorder so that equal label sets are one object (and one series)

Buckets. Istio sets none of its own: its stats filter (istio/proxy
source/extensions/filters/http/istio_stats/istio_stats.cc) records the three histograms with
Stats::Utility::histogramFromStatNames, and Istio's bootstrap adds no histogram_bucket_settings unless the
`sidecar.istio.io/statsHistogramBuckets` annotation asks, so Envoy's default buckets apply to all three
(envoyproxy/envoy source/common/stats/histogram_impl.cc, HistogramSettingsImpl::defaultBuckets):
0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
3600000 (milliseconds for the duration, bytes for the sizes). istio_request_bytes / istio_response_bytes
count body bytes, as Istio's metric reference defines them ("HTTP request body sizes"). Envoy's filter
records the downstream wire bytes (head included); bodies are what this proxy counts on its hot path.

Hot path. Per request: one key tuple of objects already at hand (the interned Peer, the status int, the flag
str), one dict.get, and one (duration, request bytes, response bytes) tuple appended to the series' pending
list; every FOLD requests (or when read) they are counted in bulk (HttpCounts.fold). Nothing is formatted.

Cardinality is bounded per recorder: at most `max_series` label sets (ISTHMUS_METRICS_MAX_SERIES, default
MAX_SERIES). What would make one more is folded into one overflow series whose every label but reporter and
request_protocol is "overflow", and counted in `overflowed` (isthmus_metrics_series_overflow_total). No path,
header or other request value is ever a label; peers are interned under the same bound.
"""

from __future__ import annotations

import os
from bisect import bisect_left as bucket
from bisect import bisect_right as at_or_below
from functools import reduce
from operator import add
from typing import Any

from proxy.telemetry.labels import GRPC_STATUS, RESPONSE_CODE, RESPONSE_FLAGS, Values, tcp_values

# Envoy's default histogram buckets (see the module docstring), ms for durations, bytes for sizes
BUCKETS: tuple[float, ...] = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                              300000, 600000, 1800000, 3600000)
# What the hot path bisects: floats for float durations (a float-float compare is cheaper than a mixed one),
# ints for int sizes (for an int, <= 0.5 is <= 0, so the bucket is the same)
DURATION_BOUNDS: tuple[float, ...] = tuple(float(bound) for bound in BUCKETS)
BYTES_BOUNDS: tuple[int, ...] = tuple(int(bound) for bound in BUCKETS)
SLOTS = len(BUCKETS) + 1  # a count per bucket, the last one +Inf
MAX_SERIES = 1000  # label sets per recorder (ISTHMUS_METRICS_MAX_SERIES)
FOLD = 32  # requests a series holds pending before they are folded into its counts (HttpCounts)
OVERFLOW = "overflow"


def max_series_from_env() -> int:
    """ISTHMUS_METRICS_MAX_SERIES (an int >= 1), else MAX_SERIES; ValueError names the variable."""
    text = os.environ.get("ISTHMUS_METRICS_MAX_SERIES", "")
    if not text:
        return MAX_SERIES
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"ISTHMUS_METRICS_MAX_SERIES={text!r} is not a whole number >= 1")
    return int(text)


class Peer:
    """One peer's label values in HTTP_LABELS order (response code and flags ""), and in TCP_LABELS order."""

    __slots__ = ("values", "tcp")

    def __init__(self, values: Values) -> None:
        self.values = values
        self.tcp = tcp_values(values)


def _overflow_values(reporter: str, protocol: str) -> Values:
    from proto.observations import HTTP_LABELS

    return tuple(reporter if n == "reporter" else protocol if n == "request_protocol" else
                 "" if n == "grpc_response_status" else OVERFLOW for n in HTTP_LABELS)


class _Recorder:
    """What both recorders share: the interned peers and the bound on label sets."""

    def __init__(self, name: str, reporter: str, protocol: str, max_series: int = MAX_SERIES) -> None:
        self.name = name  # for isthmus_metrics_series_overflow_total{listener=...}
        self.max_series = max_series
        self.peers: dict[Values, Peer] = {}
        self.overflow_peer = Peer(_overflow_values(reporter, protocol))
        self.overflowed = 0  # recordings folded into the overflow series

    def peer(self, values: Values) -> Peer:
        """The one Peer for these label values (made once); past the bound, the overflow peer."""
        peer = self.peers.get(values)
        if peer is None:
            if len(self.peers) >= self.max_series:
                return self.overflow_peer
            peer = self.peers[values] = Peer(values)
        return peer


class HttpCounts:
    """One HTTP label set's counts: requests, and per histogram the count per bucket (not cumulative) and sum.

    A request's figures are appended to `pending` (`add`, or inline on the hot path: append, then `fold` at
    FOLD), and folded into the counts in bulk: sorted, so a batch's buckets are a few bisects, and the sums
    added in arrival order (each sum is the same float as adding one request at a time). Reading any count
    folds first, so what is read is always every request recorded."""

    __slots__ = ("labels", "pending", "_requests", "_duration", "_duration_sum", "_request_bytes",
                 "_request_bytes_sum", "_response_bytes", "_response_bytes_sum")

    def __init__(self, labels: Values) -> None:
        self.labels = labels  # every value, HTTP_LABELS order
        self.pending: list[tuple[float, int, int]] = []  # (duration ms, request bytes, response bytes) each
        self._requests = 0
        self._duration = [0] * SLOTS
        self._duration_sum = 0.0
        self._request_bytes = [0] * SLOTS
        self._request_bytes_sum = 0
        self._response_bytes = [0] * SLOTS
        self._response_bytes_sum = 0

    def add(self, duration_ms: float, received: int, sent: int) -> None:
        """One request is over: its duration, request and response body bytes."""
        pending = self.pending
        pending.append((duration_ms, received, sent))
        if len(pending) >= FOLD:
            self.fold()

    def fold(self) -> None:
        """The pending requests into the counts."""
        pending = self.pending
        if not pending:
            return
        self.pending = []
        durations, received, sent = zip(*pending)
        self._requests += len(pending)
        _into(self._duration, sorted(durations), DURATION_BOUNDS)
        self._duration_sum = reduce(add, durations, self._duration_sum)  # in order, as one at a time
        if any(received):
            _into(self._request_bytes, sorted(received), BYTES_BOUNDS)
            self._request_bytes_sum += sum(received)
        else:  # most requests have no body: the first bucket
            self._request_bytes[0] += len(pending)
        _into(self._response_bytes, sorted(sent), BYTES_BOUNDS)
        self._response_bytes_sum += sum(sent)

    @property
    def requests(self) -> int:
        self.fold()
        return self._requests

    @property
    def duration(self) -> list[int]:
        self.fold()
        return self._duration

    @property
    def duration_sum(self) -> float:
        self.fold()
        return self._duration_sum

    @property
    def request_bytes(self) -> list[int]:
        self.fold()
        return self._request_bytes

    @property
    def request_bytes_sum(self) -> int:
        self.fold()
        return self._request_bytes_sum

    @property
    def response_bytes(self) -> list[int]:
        self.fold()
        return self._response_bytes

    @property
    def response_bytes_sum(self) -> int:
        self.fold()
        return self._response_bytes_sum


def _into(counts: list[int], values: list[Any], bounds: tuple[Any, ...]) -> None:
    """Count sorted `values` into their buckets (the first whose bound is >= the value, as `bucket` finds it):
    a bisect per bucket from the smallest value's to the largest's, usually one or two."""
    first = bucket(bounds, values[0])
    last = bucket(bounds, values[-1])
    at = 0
    for slot in range(first, last):
        end = at_or_below(values, bounds[slot], at)
        counts[slot] += end - at
        at = end
    counts[last] += len(values) - at


class HttpRecorder(_Recorder):
    def __init__(self, name: str, reporter: str, max_series: int = MAX_SERIES) -> None:
        super().__init__(name, reporter, "http", max_series)
        self.series: dict[tuple[Peer, int, str], HttpCounts] = {}
        self.overflow: HttpCounts | None = None

    def count(self, peer: Peer, status: int, flag: str, received: int, sent: int, duration_ms: float) -> None:
        """One request is over: `received` request body bytes, `sent` response body bytes."""
        series = self.series.get((peer, status, flag))
        if series is None:
            series = self._add(peer, status, flag)
        series.add(duration_ms, received, sent)

    def _add(self, peer: Peer, status: int, flag: str) -> HttpCounts:
        if len(self.series) >= self.max_series or peer is self.overflow_peer:
            self.overflowed += 1
            if self.overflow is None:
                self.overflow = HttpCounts(self.overflow_peer.values)
            return self.overflow
        values = list(peer.values)
        values[RESPONSE_CODE], values[GRPC_STATUS], values[RESPONSE_FLAGS] = str(status), "", flag
        series = self.series[(peer, status, flag)] = HttpCounts(tuple(values))
        return series

    def all(self) -> list[HttpCounts]:
        """Every series, the overflow one last (when something overflowed)."""
        found = list(self.series.values())
        if self.overflow is not None:
            found.append(self.overflow)
        return found


class TcpCounts:
    __slots__ = ("labels", "sent", "received", "opened", "closed")

    def __init__(self, labels: Values) -> None:
        self.labels = labels  # every value, TCP_LABELS order
        self.sent = 0  # bytes sent to the downstream (istio_tcp_sent_bytes_total)
        self.received = 0  # bytes received from the downstream
        self.opened = 0
        self.closed = 0


class TcpRecorder(_Recorder):
    def __init__(self, name: str, reporter: str, max_series: int = MAX_SERIES) -> None:
        super().__init__(name, reporter, "tcp", max_series)
        self.series: dict[tuple[Peer, str], TcpCounts] = {}
        self.overflow: TcpCounts | None = None

    def counts(self, peer: Peer, flag: str) -> TcpCounts:
        """The series a connection with these labels adds to (made on first use; past the bound, the overflow one,
        counted in `overflowed` each time it is asked for)."""
        series = self.series.get((peer, flag))
        if series is not None:
            return series
        if len(self.series) >= self.max_series or peer is self.overflow_peer:
            self.overflowed += 1
            if self.overflow is None:
                self.overflow = TcpCounts(self.overflow_peer.tcp)
            return self.overflow
        values = list(peer.tcp)
        values[RESPONSE_CODE] = flag  # response_flags takes response_code's place in TCP_LABELS
        series = self.series[(peer, flag)] = TcpCounts(tuple(values))
        return series

    def all(self) -> list[TcpCounts]:
        found = list(self.series.values())
        if self.overflow is not None:
            found.append(self.overflow)
        return found
