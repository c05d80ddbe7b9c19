"""What the CLI says when the bus is up but the service behind a command is not serving (restarting, or
not started), for every service a command talks to; and identifiers the user typed are echoed as typed
or refused, never mangled before they are sent. No sockets: the bus is a stand-in."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from isthmus import cli, pilot_client
from runtime.bus import NoResponders

URL = "nats://127.0.0.1:4222"


class NobodyServes:
    """A bus that connected fine, where no instance serves the subject (nats-py's no-responders)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.messages: list[Any] = []

        class Client:
            async def close(self) -> None:
                return None

        self.client = Client()

    async def call(self, subject: str, message: Any = None, *_: Any, **__: Any) -> Any:
        self.sent.append(subject)
        self.messages.append(message)
        raise NoResponders(f"nothing answers on {subject}: is the service running?")

    async def request(self, subject: str, *_: Any, **__: Any) -> Any:
        return await self.call(subject)


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> NobodyServes:
    fake = NobodyServes()

    async def connect_cli(*_: Any, **__: Any) -> NobodyServes:
        return fake

    monkeypatch.setattr(pilot_client, "connect_cli", connect_cli)
    return fake


def run(*args: str) -> Any:
    return CliRunner().invoke(cli.cli, ["--nats", URL, *args], env={"ISTHMUS_CONFIG": None})  # type: ignore[dict-item]


@pytest.mark.parametrize("args,service", [
    (("token", "create", "-n", "shop", "--service-account", "cart"), "the ca"),
    (("token", "list"), "the ca"),
    (("ca", "bundle"), "the ca"),
    (("proxy", "credentials", "list"), "the auth service"),
    (("proxy", "credentials", "revoke", "proxy.0123456789abcdef"), "the auth service"),
    (("get", "vs"), "pilot"),
    (("proxy-status",), "pilot"),
])
def test_a_service_that_does_not_answer_on_a_live_bus_is_said_to_be_restarting(bus: NobodyServes,
                                                                             args: tuple[str, ...],
                                                                             service: str) -> None:
    result = run(*args)
    assert result.exit_code == 1 and bus.sent, result.output
    assert result.output == (f"error: {service} did not answer on {URL} (nothing serves it): the bus is up, so "
                             f"{service} is restarting or was not started; try again in a few seconds, else see "
                             "`isthmus up`'s output and <state-dir>/logs/\n")
    assert "is `isthmus up` running" not in result.output


@pytest.mark.parametrize("args,typed", [
    (("token", "revoke", "../../etc"), "'../../etc' is not a token id"),
    (("token", "revoke", ".hidden"), "'.hidden' is not a token id"),
    (("token", "revoke", "0123456789ABCDEF"), "'0123456789ABCDEF' is not a token id"),
    (("proxy", "credentials", "revoke", "../../etc"), "'../../etc' is not a proxy credential"),
    (("proxy", "credentials", "revoke", "proxy."), "'proxy.' is not a proxy credential"),
    # "$" also matches before a final newline: this one passed the check and was sent
    (("proxy", "credentials", "revoke", "proxy.0123456789abcdef\n"), "'proxy.0123456789abcdef\\n' is not a proxy"),
    (("token", "revoke", "0123456789abcdef\n"), "'0123456789abcdef\\n' is not a token id"),
])
def test_a_malformed_id_is_refused_naming_what_was_typed_and_nothing_is_sent(bus: NobodyServes,
                                                                          args: tuple[str, ...], typed: str) -> None:
    result = run(*args)
    assert result.exit_code == 2 and typed in result.output, result.output
    assert bus.sent == []


def test_a_whole_token_pasted_into_revoke_sends_only_its_id(bus: NobodyServes) -> None:
    run("token", "revoke", "0123456789abcdef." + "s" * 43)
    assert bus.sent == ["isthmus.ca.token.revoke"] and bus.messages[0].id == "0123456789abcdef"


def test_a_revocation_whose_kick_failed_says_the_session_bound_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    from proto.busauth import BusCredsRevokeReply

    class Answers:
        async def call(self, *_: Any, **__: Any) -> Any:
            return BusCredsRevokeReply(ok=True, user="proxy.0123456789abcdef", kick_error="no nats-server answered",
                                       session_seconds=600)

    monkeypatch.setattr(pilot_client, "with_bus", lambda url, work, **_: __import__("asyncio").run(work(Answers())))
    result = CliRunner().invoke(cli.cli, ["--nats", URL, "proxy", "credentials", "revoke", "0123456789abcdef"])
    assert result.exit_code == 0  # revoked all the same: refused at its next connection
    assert result.stdout == "bus credential proxy.0123456789abcdef revoked\n"
    assert result.stderr == ("warning: its open connections could not be closed now (no nats-server answered); "
                             "they end within 600s\n")


def test_proxy_run_refuses_an_app_host_that_is_not_an_ip_address():
    result = CliRunner().invoke(cli.cli, ["proxy", "run", "--service", "a", "--service-port", "1", "--app-port", "2",
                                       "--app-host", "app.local"])
    assert result.exit_code == 2 and "'app.local' is not an IP address" in result.output
