"""Telling nats-server's unanswered auth callout from the auth service's refusal (pure logic)."""

from __future__ import annotations

from runtime.clientconfig import NatsClient


def test_a_refusal_as_slow_as_the_callout_timeout_is_the_callout_unanswered() -> None:
    from proxy.control.buscreds import CALLOUT_SLOW, callout_unanswered

    proxy = NatsClient(user="proxy.0123456789abcdef", password="p")
    assert callout_unanswered(CALLOUT_SLOW, None) and callout_unanswered(CALLOUT_SLOW, proxy)  # at the bound
    assert not callout_unanswered(CALLOUT_SLOW - 0.01, proxy)  # an answer
    assert not callout_unanswered(10, NatsClient(user="operator", password="p"))  # not called out for
