"""Pure logic of the auth service's credential housekeeping: when a record may be swept (each bound at it
and one second over), the sweep's settings, the bounded pass, and a kick that cannot be done. No sockets."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from proto.busauth import BusCredsRecord
from runtime.bus import encode
from services.auth import sweep
from services.auth.kick import KickFailed, kick_user
from services.auth.sweep import SweepConfig, Sweeper, due

SESSION = 600.0
IDLE = 30 * 86400.0
NOW = 1_900_000_000.0


def record(**fields: Any) -> BusCredsRecord:
    return BusCredsRecord(**{"id": "0" * 16, "namespace": "ns", "service_account": "sa", "secret_sha256": "x",
                             "created": NOW - 100 * 86400, **fields})


def test_a_revoked_record_stays_for_the_session_bound_then_goes() -> None:
    revoked = record(revoked=True, revoked_at=NOW - SESSION)
    assert due(revoked, NOW, IDLE, SESSION) == ""  # at the bound: a connection could still hold it
    assert due(revoked, NOW + 1, IDLE, SESSION) == "revoked"
    assert due(record(revoked=True, revoked_at=NOW), NOW, IDLE, SESSION) == ""


def test_an_expired_record_stays_for_the_session_bound_after_expiry() -> None:
    expired = record(expires=NOW - SESSION)
    assert due(expired, NOW, IDLE, SESSION) == ""
    assert due(expired, NOW + 1, IDLE, SESSION) == "expired"


def test_a_live_record_goes_only_after_the_idle_bound_counted_from_its_last_connection() -> None:
    seen = record(last_seen=NOW - IDLE)
    assert due(seen, NOW, IDLE, SESSION) == ""  # at the bound
    assert due(seen, NOW + 1, IDLE, SESSION) == "idle"  # one second over
    never = record(created=NOW - IDLE)  # never connected: counted from its issue
    assert due(never, NOW, IDLE, SESSION) == "" and due(never, NOW + 1, IDLE, SESSION) == "idle"
    assert due(record(last_seen=NOW - 60), NOW, IDLE, SESSION) == ""  # old, but seen a minute ago


@pytest.mark.parametrize("env,idle,interval", [
    ({}, 30 * 86400, 60.0),
    ({"ISTHMUS_BUS_CREDS_IDLE": "1h"}, 3600, 60.0),  # the least
    ({"ISTHMUS_BUS_CREDS_IDLE": "3650d", "ISTHMUS_BUS_CREDS_SWEEP_INTERVAL": "0.1"}, 3650 * 86400, 0.1),
    ({"ISTHMUS_BUS_CREDS_IDLE": "7200", "ISTHMUS_BUS_CREDS_SWEEP_INTERVAL": "3600"}, 7200, 3600.0),
])
def test_the_sweep_settings_at_their_bounds(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], idle: float,
                                           interval: float) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert SweepConfig.from_env() == SweepConfig(idle=idle, interval=interval)


@pytest.mark.parametrize("name,value", [
    ("ISTHMUS_BUS_CREDS_IDLE", "3599"), ("ISTHMUS_BUS_CREDS_IDLE", "3651d"), ("ISTHMUS_BUS_CREDS_IDLE", "nan"),
    ("ISTHMUS_BUS_CREDS_IDLE", "soon"), ("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL", "0.09"),
    ("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL", "3601"), ("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL", "1m"),
])
def test_a_sweep_setting_over_its_bound_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, name: str,
                                                            value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        SweepConfig.from_env()


@dataclass
class Entry:
    key: str
    value: bytes
    mod_revision: int


class FakeStore:
    """The three calls the sweep makes, over a dict; counts reads."""

    def __init__(self, records: dict[str, BusCredsRecord]) -> None:
        self.data = {f"/isthmus/bus/creds/{k}": (encode(r), 1) for k, r in records.items()}
        self.gets = 0

    async def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    async def get(self, key: str) -> Entry | None:
        self.gets += 1
        value = self.data.get(key)
        return Entry(key, *value) if value else None

    async def delete_if_revision(self, key: str, revision: int) -> bool:
        if key in self.data and self.data[key][1] == revision:
            del self.data[key]
            return True
        return False


def test_a_sweep_pass_reads_at_most_a_batch_and_the_next_one_goes_on_from_there() -> None:
    gone = {f"{i:016x}": record(id=f"{i:016x}", revoked=True, revoked_at=NOW - 2 * SESSION) for i in range(10)}
    kept = {f"{i:016x}": record(id=f"{i:016x}", last_seen=NOW) for i in range(10, 15)}
    store = FakeStore({**gone, **kept})
    sweeper = Sweeper(store, IDLE, SESSION, batch=4)  # type: ignore[arg-type]
    first = asyncio.run(sweeper.sweep(NOW))
    assert len(first) == 4 and store.gets == 4 and set(first.values()) == {"revoked"}
    for _ in range(3):
        asyncio.run(sweeper.sweep(NOW))
    assert store.gets == 16
    assert sorted(k.rsplit("/", 1)[-1] for k in store.data) == sorted(kept)  # every revoked one, no live one
    assert sweep.SWEEP_BATCH == 256


class Unanswered:
    """A system connection whose servers never answer (nats-server down or stopped)."""

    def new_inbox(self) -> str:
        return "_INBOX.auth-system.x"

    async def subscribe(self, subject: str, **kw: Any) -> Any:
        class Sub:
            async def next_msg(self, timeout: float) -> Any:
                await asyncio.sleep(timeout)
                raise TimeoutError

            async def unsubscribe(self) -> None:
                return None

        return Sub()

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "", **kw: Any) -> None:
        assert subject == "$SYS.REQ.SERVER.PING.CONNZ" and json.loads(payload)["user"] == "proxy.x"


def test_a_kick_that_cannot_be_done_says_why_instead_of_raising_anything_else() -> None:
    with pytest.raises(KickFailed, match="no system-account connection"):
        asyncio.run(kick_user(None, "proxy.x"))
    with pytest.raises(KickFailed, match="no nats-server answered"):
        asyncio.run(kick_user(Unanswered(), "proxy.x", timeout=0.05))  # type: ignore[arg-type]


def test_a_credential_id_with_a_trailing_newline_is_not_an_id() -> None:
    """`re.match("^...$")` takes "<id>\\n": the service looked the key up instead of refusing the shape."""
    from services.auth.creds import cred_id_of

    assert cred_id_of("proxy.0123456789abcdef") == cred_id_of("0123456789abcdef") == "0123456789abcdef"
    assert cred_id_of("proxy.0123456789abcdef\n") == cred_id_of("0123456789abcdef\n") == ""
