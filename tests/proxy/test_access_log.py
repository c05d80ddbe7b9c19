"""proxy/access_log.py: the line format, and buffering (lines reach the file on flush, not per request)."""

from __future__ import annotations

import asyncio
import re

from proxy.access_log import AccessLog
from proxy.core.access import AccessRecord

LINE = re.compile(r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] (.*)$')


async def test_lines_are_buffered_then_written_in_envoys_terms(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    outbound = log.for_listener("outbound")
    outbound(AccessRecord("GET", "reviews", "/r?x=1", 503, "UO", "outbound|9080||reviews.default.svc.cluster.local",
                          0, 0.42))
    log.for_listener("inbound").tcp("db:5432", "-", 1520, 88, 3002.06, "inbound|5432||")
    assert path.read_text() == ""  # nothing written per request
    await asyncio.sleep(0.7)  # FLUSH_INTERVAL
    lines = [LINE.match(line).group(1) for line in path.read_text().splitlines()]
    assert lines == ['outbound "GET reviews/r?x=1" 503 UO 0 0.4ms outbound|9080||reviews.default.svc.cluster.local',
                     'inbound "TCP db:5432" - - 1520/88 3002.1ms inbound|5432||']
    log.close()
