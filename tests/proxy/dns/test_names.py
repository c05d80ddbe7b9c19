"""proxy/dns/names.py: the query name forms a client in the sidecar's namespace means a service by."""

from __future__ import annotations

import pytest

from proxy.dns.names import NameForms

KNOWN = {"reviews.default.svc.cluster.local", "ratings.other.svc.cluster.local", "edition.cnn.com"}


@pytest.mark.parametrize("qname, expected", [
    ("reviews", ("reviews.default.svc.cluster.local", True)),
    ("reviews.", ("reviews.default.svc.cluster.local", True)),
    ("REVIEWS", ("reviews.default.svc.cluster.local", True)),
    ("reviews.default", ("reviews.default.svc.cluster.local", True)),
    ("reviews.default.svc", ("reviews.default.svc.cluster.local", True)),
    ("reviews.default.svc.cluster.local", ("reviews.default.svc.cluster.local", True)),
    ("Reviews.Default.Svc.Cluster.Local.", ("reviews.default.svc.cluster.local", True)),
    ("ratings.other", ("ratings.other.svc.cluster.local", True)),
    ("ratings.other.svc", ("ratings.other.svc.cluster.local", True)),
    ("edition.cnn.com", ("edition.cnn.com", True)),  # a ServiceEntry host: as the mesh knows it
])
def test_known_names_in_every_form(qname: str, expected: tuple[str, bool]) -> None:
    assert NameForms("default", "svc.cluster.local").lookup(qname, KNOWN) == expected


def test_a_short_name_means_our_namespace_only() -> None:
    assert NameForms("default", "svc.cluster.local").lookup("ratings", KNOWN) == ("", False)
    assert NameForms("other", "svc.cluster.local").lookup("ratings", KNOWN) == \
        ("ratings.other.svc.cluster.local", True)


@pytest.mark.parametrize("qname", ["nope.default.svc.cluster.local", "svc.cluster.local", "a.b.c.svc.cluster.local"])
def test_unknown_names_under_the_suffix_are_ours_to_deny(qname: str) -> None:
    assert NameForms("default", "svc.cluster.local").lookup(qname, KNOWN) == ("", True)


@pytest.mark.parametrize("qname", ["example.com", "nope", "nope.default", "nope.default.svc", "www.edition.cnn.com",
                                   "cluster.local", ""])
def test_unknown_names_elsewhere_are_not_ours(qname: str) -> None:
    assert NameForms("default", "svc.cluster.local").lookup(qname, KNOWN) == ("", False)


def test_another_domain_suffix() -> None:
    forms = NameForms("default", "mesh.internal")
    known = {"reviews.default.mesh.internal"}
    assert forms.lookup("reviews", known) == ("reviews.default.mesh.internal", True)
    assert forms.lookup("reviews.default", known) == ("reviews.default.mesh.internal", True)
    # the `.svc` form is the suffix's first label, as proxy/outbound/logical.py searches it
    assert forms.lookup("reviews.default.mesh", known) == ("reviews.default.mesh.internal", True)
    assert forms.lookup("reviews.default.svc", known) == ("", False)
    assert forms.lookup("x.default.mesh.internal", known) == ("", True)
