"""One DNS query in, one response out: the wire format is dnspython's (dns.message), the policy ours.

    respond(wire, lookup, max_size) -> bytes | None    None: drop the packet (malformed, or not a query)

`lookup(qname)` -> (address or "", authoritative) (proxy/dns/sidecar.py joins names.py and addresses.py).
What is answered, per the question (one question, class IN or ANY):
- a name the mesh knows: AA set; type A or ANY gets one A record (TTL ANSWER_TTL); any other type (AAAA, MX...)
  NOERROR with no data, so a client asking A and AAAA together takes the A and moves on;
- an unknown name under the domain suffix: NXDOMAIN (AA); any other unknown name: REFUSED (no recursion);
- more or fewer than one question: FORMERR; an opcode other than QUERY: NOTIMP; an EDNS version above 0: BADVERS.
Dropped with a debug log (at most one line per DROP_LOG_INTERVAL, with a count): a packet over MAX_QUERY_BYTES, one dnspython cannot parse, a response (QR set).
A response longer than `max_size` is cut to fit with TC set (RFC 1035 4.2.1), and the client asks again over
TCP. Over UDP `max_size` is 512 bytes, or the EDNS payload size the client offers up to UDP_PAYLOAD_MAX.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from runtime.log import get_logger

log = get_logger("proxy.dns")

ANSWER_TTL = 30  # seconds; Istio's DNS proxy answers with 30 s (pkg/dns/server defaultTTLInSeconds)
MAX_QUERY_BYTES = 512  # a query (one question, an OPT record) fits easily: a longer packet is no query of ours
UDP_PAYLOAD_MAX = 1232  # largest UDP response, whatever EDNS payload a client offers (DNS Flag Day 2020)
UDP_PLAIN = 512  # a client without EDNS takes at most this over UDP (RFC 1035 4.2.1)
DROP_LOG_INTERVAL = 1.0  # seconds between two debug lines about dropped packets (each gives the count)

Lookup = Callable[[str], tuple[str, bool]]

# what from_wire raises on bytes that are no DNS message, besides its own DNSException tree
_MALFORMED = (dns.exception.DNSException, ValueError, UnicodeError, IndexError, KeyError)


def udp_limit(query: dns.message.Message) -> int:
    """The largest UDP response `query`'s sender takes: its EDNS payload size, between 512 and UDP_PAYLOAD_MAX."""
    if query.edns < 0:
        return UDP_PLAIN
    return max(UDP_PLAIN, min(query.payload, UDP_PAYLOAD_MAX))


class _DropLog:
    """At most one debug line per DROP_LOG_INTERVAL seconds for dropped packets, with the count since the last:
    with the level at debug, a flood of junk packets wrote one line each (the log's volume was the sender's)."""

    def __init__(self) -> None:
        self.dropped = 0
        self.next_at = 0.0

    def __call__(self, event: str, **fields: object) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now < self.next_at:
            return
        log.debug(event, dropped=self.dropped, **fields)
        self.dropped, self.next_at = 0, now + DROP_LOG_INTERVAL


_dropped = _DropLog()


def parse(wire: bytes) -> dns.message.Message | None:
    """The query in `wire`, or None (logged at debug, rate-limited) when it is too long, malformed or not a query."""
    if len(wire) > MAX_QUERY_BYTES:
        _dropped("dns packet dropped: too long", bytes=len(wire), max_bytes=MAX_QUERY_BYTES)
        return None
    try:
        query = dns.message.from_wire(wire)
    except _MALFORMED as exc:
        _dropped("dns packet dropped: malformed", bytes=len(wire), error=str(exc) or type(exc).__name__)
        return None
    if query.flags & dns.flags.QR:
        _dropped("dns packet dropped: a response, not a query", id=query.id)
        return None
    return query


def respond(wire: bytes, lookup: Lookup, max_size: int | None = None) -> bytes | None:
    """The response to the query in `wire`, at most `max_size` bytes (None: UDP's limit for this query;
    TCP passes 65535), or None to drop the packet."""
    query = parse(wire)
    if query is None:
        return None
    response = dns.message.make_response(query, our_payload=UDP_PAYLOAD_MAX)
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
    elif query.edns > 0:
        response.set_rcode(dns.rcode.BADVERS)
    elif len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    else:
        _answer(query.question[0], response, lookup)
    limit = udp_limit(query) if max_size is None else max_size
    return response.to_wire(max_size=limit, prefer_truncation=True)


def _answer(question: dns.rrset.RRset, response: dns.message.Message, lookup: Lookup) -> None:
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        response.set_rcode(dns.rcode.REFUSED)
        return
    address, authoritative = lookup(question.name.to_text(omit_final_dot=True))
    if authoritative:
        response.flags |= dns.flags.AA
    if address:
        if question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            response.answer.append(dns.rrset.from_text(question.name, ANSWER_TTL, dns.rdataclass.IN,
                                                       dns.rdatatype.A, address))
    elif authoritative:
        response.set_rcode(dns.rcode.NXDOMAIN)
    else:
        response.set_rcode(dns.rcode.REFUSED)
