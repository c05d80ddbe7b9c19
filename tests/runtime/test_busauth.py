"""Pure logic of the bus lockdown: the NATS JWTs the auth callout signs, the roles' allow-lists, the
client config's lookup order and file mode, and the nats-server authorization block. No sockets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nacl.signing
import nkeys
import pytest

from isthmus.launch.credentials import MeshCredentials
from proto import subjects as s
from proto.busauth import OPERATOR, SERVICES, join_permissions, proxy_inbox_prefix, proxy_permissions
from runtime import natsjwt
from runtime.clientconfig import ClientConfig, ConfigFileError, NatsClient, find_config, load, save


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(public: str) -> bytes:
    return base64.b32decode(public + "=" * (-len(public) % 8))[1:-2]  # prefix byte, key, crc16


def test_a_user_jwt_is_signed_by_the_account_key_and_carries_the_permissions() -> None:
    seed = natsjwt.new_account_seed()
    assert seed.startswith("SA")
    account = natsjwt.public_key(seed)
    user = nkeys.from_seed(nkeys.encode_seed(b"\x01" * 32, nkeys.PREFIX_BYTE_USER)).public_key.decode()
    token = natsjwt.user_jwt(user, "proxy.x", proxy_permissions("x", "ns", "sa"), seed, expires=2_000_000_000)
    header, claims, signature = token.split(".")
    nacl.signing.VerifyKey(_raw_public(account)).verify(f"{header}.{claims}".encode(), _unb64(signature))
    body = natsjwt.decode_claims(token)
    assert json.loads(_unb64(header)) == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert (body["iss"], body["sub"], body["aud"], body["exp"]) == (account, user, "$G", 2_000_000_000)
    assert body["nats"]["type"] == "user" and body["nats"]["pub"]["allow"] == list(proxy_permissions("x", "ns", "sa").publish)
    assert body["nats"]["sub"]["allow"][-2:] == ["_INBOX.proxy.x.>", "isthmus.proxy.debug.x"]
    # it answers the requests it was sent (only the operator may send on its debug subject), one reply each
    assert body["nats"]["resp"] == {"max": 1, "ttl": 0}


def test_an_authorization_response_names_the_server_and_the_connection() -> None:
    seed = natsjwt.new_account_seed()
    refused = natsjwt.decode_claims(natsjwt.authorization_response("UABC", "NSERVER", seed, error="revoked"))
    assert (refused["sub"], refused["aud"]) == ("UABC", "NSERVER")
    assert refused["nats"] == {"type": "authorization_response", "version": 2, "error": "revoked"}
    granted = natsjwt.decode_claims(natsjwt.authorization_response("UABC", "NSERVER", seed, jwt="a.b.c"))
    assert granted["nats"]["jwt"] == "a.b.c" and "error" not in granted["nats"]


@pytest.mark.parametrize("bad", ["", "a.b", "!!.??.xx", "e30.e30.e30", "x" * (natsjwt.MAX_JWT + 1)])
def test_what_is_not_a_nats_jwt_is_refused(bad: str) -> None:
    with pytest.raises(natsjwt.JwtError):
        natsjwt.decode_claims(bad)


def test_a_proxy_may_not_push_configure_answer_services_or_read_other_inboxes() -> None:
    proxy = proxy_permissions("abc", "ns", "sa")
    for forbidden in (s.XDS_PUSH, s.CONFIG_APPLY, s.CONFIG_DELETE, s.CONFIG_GET, s.XDS_STATUS, s.CA_TOKEN_CREATE,
                      s.CA_ROTATE, s.BUS_CREDS_ISSUE, s.CA_BUNDLE_UPDATES, s.REGISTRY_EVENTS):
        assert forbidden not in proxy.publish
    for forbidden in (s.CA_SIGN, s.REGISTRY_REGISTER, s.XDS_SNAPSHOT, s.XDS_ACK, "_INBOX.>", ">", s.AUTH_CALLOUT):
        assert forbidden not in proxy.subscribe
    # it answers only what it was sent: its own debug subject (operator only) is the one it serves
    assert proxy.responses
    assert proxy.subscribe[-2:] == (f"{proxy_inbox_prefix('abc')}.>", s.proxy_debug_subject("abc"))
    assert not any(p.startswith(s.PROXY_DEBUG) for p in proxy.publish)
    assert s.proxy_debug_subject("*") not in proxy.subscribe and f"{s.PROXY_DEBUG}.>" not in proxy.subscribe
    # registry requests only on its own identity's subjects
    assert [p for p in proxy.publish if p.startswith("isthmus.registry")] == [
        "isthmus.registry.register.ns.sa", "isthmus.registry.heartbeat.ns.sa", "isthmus.registry.deregister.ns.sa"]
    assert join_permissions("d").publish == (s.BUS_JOIN,) and join_permissions("d").subscribe == ("_INBOX.join.d.>",)


def test_only_pilot_pushes_and_only_the_operator_uses_the_config_api() -> None:
    publishers = {name: p.publish for name, p in {**SERVICES, "operator": OPERATOR}.items()}
    assert [n for n, pub in publishers.items() if s.XDS_PUSH in pub] == ["pilot"]
    assert [n for n, pub in publishers.items() if s.CONFIG_APPLY in pub] == ["operator"]
    assert [n for n, p in SERVICES.items() if s.CONFIG_APPLY in p.subscribe] == ["pilot"]
    assert [n for n, p in SERVICES.items() if s.AUTH_CALLOUT in p.subscribe] == ["auth"]
    assert all(p.responses for p in SERVICES.values()) and not OPERATOR.responses
    for name, perms in SERVICES.items():  # each reads its own inbox only
        assert [sub for sub in perms.subscribe if sub.startswith("_INBOX")] == [f"_INBOX.{name}.>"]


def test_the_config_is_found_by_flag_then_env_then_working_directory(tmp_path: Path) -> None:
    a, b = save(tmp_path / "a.yaml", ClientConfig()), save(tmp_path / "b.yaml", ClientConfig())
    assert find_config(str(a), env={"ISTHMUS_CONFIG": str(b)}, cwd=tmp_path) == a
    assert find_config(None, env={"ISTHMUS_CONFIG": str(b)}, cwd=tmp_path) == b
    assert find_config(None, env={}, cwd=tmp_path) is None
    default = save(tmp_path / ".isthmus" / "isthmus.yaml", ClientConfig())
    assert find_config(None, env={}, cwd=tmp_path) == default
    with pytest.raises(ConfigFileError, match="--config .*missing.yaml: no such file"):
        find_config(str(tmp_path / "missing.yaml"), env={}, cwd=tmp_path)
    with pytest.raises(ConfigFileError, match="ISTHMUS_CONFIG"):
        find_config(None, env={"ISTHMUS_CONFIG": str(tmp_path / "missing.yaml")}, cwd=tmp_path)


def test_a_saved_config_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("old")
    path.chmod(0o644)
    config = ClientConfig(nats=NatsClient(url="nats://h:1", user="operator", password="p", inbox_prefix="_INBOX.o"))
    save(path, config)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load(path) == config


@pytest.mark.parametrize("text,reason", [("nats: {usr: x}", "not valid"), ("nats: [", "not valid"),
                                         ("x" * 70_000, "over 65536 bytes")])
def test_a_broken_config_is_an_error_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=reason):
        load(path)


def test_the_nats_authorization_lists_every_role_and_the_callout(tmp_path: Path) -> None:
    creds = MeshCredentials.create(tmp_path)
    block = creds.nats_authorization()
    for role in ("operator", *SERVICES):
        assert f'user: "{role}", password: "{creds.bus[role]}"' in block
    assert f'issuer: "{natsjwt.public_key(creds.account_seed)}"' in block
    assert 'auth_users: ["operator", "registry", "pilot", "ca", "telemetry", "auth", "auth-system"]' in block
    # the system account's one user may only list connections and kick them, and read its own inbox
    assert "system_account: SYS" in block
    assert (f'{{user: "auth-system", password: "{creds.bus["auth-system"]}", permissions: {{publish: {{allow: '
            '["$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.SERVER.*.KICK"]}, subscribe: {allow: ["_INBOX.auth-system.>"]}}}'
            in block)
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    for name in ("auth-account.nk", "etcd.json", "etcd-jwt.key"):
        assert (tmp_path / "secrets" / name).stat().st_mode & 0o777 == 0o600
    again = MeshCredentials.create(tmp_path)  # a restart: new bus passwords, the same etcd passwords
    assert again.bus["operator"] != creds.bus["operator"] and again.etcd_service == creds.etcd_service


def test_only_the_operator_lists_and_revokes_bus_credentials_and_only_auth_system_kicks() -> None:
    from proto.busauth import AUTH_SYSTEM

    roles = {**SERVICES, "operator": OPERATOR, "proxy": proxy_permissions("x", "ns", "sa"),
             "join": join_permissions("d")}
    for subject in (s.BUS_CREDS_LIST, s.BUS_CREDS_REVOKE, s.BUS_CREDS_ISSUE):
        assert [n for n, p in roles.items() if subject in p.publish] == ["operator"]
        assert [n for n, p in roles.items() if subject in p.subscribe] == ["auth"]
    for subject in (s.SYS_CONNZ_PING, s.SYS_KICK_ANY):  # no role in the global account has any $SYS right
        assert not any(subject in p.publish or subject in p.subscribe for p in roles.values())
    assert AUTH_SYSTEM.publish == (s.SYS_CONNZ_PING, s.SYS_KICK_ANY) and not AUTH_SYSTEM.responses
    assert AUTH_SYSTEM.subscribe == ("_INBOX.auth-system.>",)
    assert s.kick_subject("NABC") == "$SYS.REQ.SERVER.NABC.KICK"


def test_a_config_path_that_cannot_be_looked_at_is_an_error_or_no_default_never_a_traceback(tmp_path: Path) -> None:
    """A working directory this user may not enter made every `isthmus` command print a PermissionError traceback
    (the default ./.isthmus/isthmus.yaml looked up there). Root enters every directory, so the same OSError is
    made with a name longer than a file name may be (ENAMETOOLONG)."""
    unreadable = tmp_path / ("x" * 300)
    assert find_config(env={}, cwd=unreadable) is None
    with pytest.raises(ConfigFileError, match="cannot be read"):
        find_config(flag=str(unreadable / "isthmus.yaml"), env={})
    with pytest.raises(ConfigFileError, match="ISTHMUS_CONFIG .* cannot be read"):
        find_config(env={"ISTHMUS_CONFIG": str(unreadable / "isthmus.yaml")})


def test_a_config_path_that_is_a_directory_or_a_device_is_named_as_such_not_missing(tmp_path: Path) -> None:
    """`isthmus --config /tmp` said "/tmp: no such file", which sends the user looking for a file that is not
    missing: a directory, or a device such as /dev/null, is not a client config, and the error says so."""
    with pytest.raises(ConfigFileError, match=f"^--config {tmp_path}: a directory, not a client config file$"):
        find_config(str(tmp_path), env={})
    with pytest.raises(ConfigFileError, match="^ISTHMUS_CONFIG /dev/null: not a regular file"):
        find_config(env={"ISTHMUS_CONFIG": "/dev/null"})
