"""proxy/dns/answer.py: DNS answers on the wire, built and read with dnspython as a client would."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from proxy.dns.answer import ANSWER_TTL, MAX_QUERY_BYTES, UDP_PAYLOAD_MAX, respond, udp_limit
from proxy.dns.names import NameForms

KNOWN = {"reviews.default.svc.cluster.local": "127.240.3.7", "edition.cnn.com": "127.250.1.9"}
FORMS = NameForms("default", "svc.cluster.local")


def lookup(qname: str) -> tuple[str, bool]:
    fqdn, authoritative = FORMS.lookup(qname, KNOWN)
    return KNOWN.get(fqdn, ""), authoritative


def ask(qname: str, rdtype: str = "A", **options: object) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **options)  # type: ignore[arg-type]
    wire = respond(query.to_wire(), lookup)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id and response.flags & dns.flags.QR
    return response


def addresses(response: dns.message.Message) -> list[str]:
    return [rdata.address for rrset in response.answer for rdata in rrset]


def test_a_service_name_is_answered_with_its_loopback_address_authoritatively() -> None:
    for name in ("reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local"):
        response = ask(name)
        assert response.rcode() == dns.rcode.NOERROR
        assert addresses(response) == ["127.240.3.7"]
        assert response.answer[0].ttl == ANSWER_TTL
        assert response.answer[0].name == dns.name.from_text(name)  # the question's name, as asked
        assert response.flags & dns.flags.AA and not response.flags & dns.flags.RA


def test_the_answer_keeps_the_case_of_the_question() -> None:
    response = ask("ReViEwS.default.svc.cluster.local")
    assert response.answer[0].name.to_text() == "ReViEwS.default.svc.cluster.local."
    assert addresses(response) == ["127.240.3.7"]


def test_a_serviceentry_host_resolves_to_its_loopback_address() -> None:
    assert addresses(ask("edition.cnn.com")) == ["127.250.1.9"]


def test_aaaa_and_other_types_of_a_known_name_are_noerror_without_data() -> None:
    for rdtype in ("AAAA", "MX", "TXT", "SRV"):
        response = ask("reviews", rdtype)
        assert response.rcode() == dns.rcode.NOERROR and response.answer == []
        assert response.flags & dns.flags.AA


def test_any_gets_the_a_record() -> None:
    assert addresses(ask("reviews", "ANY")) == ["127.240.3.7"]


def test_an_unknown_name_under_the_suffix_is_nxdomain_and_elsewhere_refused() -> None:
    response = ask("nope.default.svc.cluster.local")
    assert response.rcode() == dns.rcode.NXDOMAIN and response.flags & dns.flags.AA
    for name in ("example.com", "nope", "nope.default"):
        response = ask(name)
        assert response.rcode() == dns.rcode.REFUSED and not response.flags & dns.flags.AA
        assert response.answer == []


def test_another_class_is_refused() -> None:
    query = dns.message.make_query("reviews", "A", rdclass=dns.rdataclass.CH)
    response = dns.message.from_wire(respond(query.to_wire(), lookup))  # type: ignore[arg-type]
    assert response.rcode() == dns.rcode.REFUSED


def test_two_questions_are_formerr_another_opcode_notimp_edns1_badvers() -> None:
    query = dns.message.make_query("reviews", "A")
    query.question.append(dns.message.make_query("ratings", "A").question[0])
    assert dns.message.from_wire(respond(query.to_wire(), lookup)).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]
    notify = dns.message.make_query("reviews", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(respond(notify.to_wire(), lookup)).rcode() == dns.rcode.NOTIMP  # type: ignore[arg-type]
    edns1 = dns.message.make_query("reviews", "A", use_edns=1)
    assert dns.message.from_wire(respond(edns1.to_wire(), lookup)).rcode() == dns.rcode.BADVERS  # type: ignore[arg-type]


def test_malformed_packets_and_responses_are_dropped() -> None:
    wire = dns.message.make_query("reviews", "A").to_wire()
    assert respond(b"", lookup) is None
    assert respond(wire[:11], lookup) is None  # a header cut short
    assert respond(wire[:-3], lookup) is None  # a question cut short
    assert respond(wire + b"junk", lookup) is None  # trailing bytes
    assert respond(b"\x00" * 12 + b"\xff" * 20, lookup) is None  # no question, then junk
    assert dns.message.from_wire(respond(b"\x00" * 12, lookup)).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]
    response = dns.message.make_response(dns.message.make_query("reviews", "A")).to_wire()
    assert respond(response, lookup) is None  # QR set: never answer a response (no reflection loops)


def padded_query(size: int) -> bytes:
    """A valid query for `reviews` of exactly `size` bytes (an EDNS option pads it)."""
    base = len(dns.message.make_query("reviews", "A", use_edns=0, options=[dns.edns.GenericOption(65001, b"")]).to_wire())
    query = dns.message.make_query("reviews", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(65001, b"x" * (size - base))])
    wire = query.to_wire()
    assert len(wire) == size
    return wire


def test_a_query_of_max_query_bytes_is_answered_and_one_byte_more_dropped() -> None:
    assert MAX_QUERY_BYTES == 512
    assert respond(padded_query(MAX_QUERY_BYTES), lookup) is not None
    assert respond(padded_query(MAX_QUERY_BYTES + 1), lookup) is None


def test_the_udp_limit_is_512_without_edns_and_the_offered_payload_up_to_1232() -> None:
    assert udp_limit(dns.message.make_query("reviews", "A")) == 512
    assert udp_limit(dns.message.make_query("reviews", "A", use_edns=0, payload=4096)) == UDP_PAYLOAD_MAX == 1232
    assert udp_limit(dns.message.make_query("reviews", "A", use_edns=0, payload=900)) == 900
    assert udp_limit(dns.message.make_query("reviews", "A", use_edns=0, payload=100)) == 512


def test_the_longest_name_is_answered_within_512_bytes_without_tc() -> None:
    """One A record always fits a plain UDP response (a 253-character name: 287 bytes), so TC is never set
    for a name we answer; answer.respond still cuts with TC (dnspython's prefer_truncation) were it longer."""
    longest = ".".join(["a" * 61, "b" * 61, "c" * 61, "d" * 49]) + ".svc.cluster.local"
    assert len(longest) == 253
    KNOWN[longest] = "127.240.9.9"
    try:
        wire = respond(dns.message.make_query(longest, "A").to_wire(), lookup)
    finally:
        del KNOWN[longest]
    assert wire is not None and len(wire) <= 512
    response = dns.message.from_wire(wire)
    assert addresses(response) == ["127.240.9.9"] and not response.flags & dns.flags.TC
