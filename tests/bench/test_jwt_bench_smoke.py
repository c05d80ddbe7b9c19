"""bench/dataplane/jwt.py runs and gives a figure for every case, the cached ones far cheaper than a signature
check (a smoke run: few requests, no timing claim beyond that ordering)."""

from __future__ import annotations

from bench.dataplane.jwt import run


def test_smoke_run_gives_every_case_and_the_cache_beats_a_signature_check() -> None:
    figures = run(requests=400, chunks=2)
    assert set(figures) == {"no token", "RS256, verified each time", "ES256, verified each time", "RS256, cached",
                            "ES256, cached", "refused (wrong audience, 403)"}
    assert all(us >= 0 for us in figures.values())
    assert figures["RS256, cached"] < figures["RS256, verified each time"]
    assert figures["ES256, cached"] < figures["ES256, verified each time"]
