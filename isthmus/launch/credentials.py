"""The mesh's credentials, made by `isthmus up` (and the test fixtures) under <state-dir>/secrets (0700):

    secrets/<role>.yaml     a client config (runtime/clientconfig.py), 0600, per service: bus user and
                            password, its inbox prefix, the bus CA; etcd's service user for the services
    secrets/auth-account.nk the auth callout's account nkey seed (the auth service signs user JWTs with it)
    secrets/auth-system.yaml the auth service's system-account user (closes a revoked proxy's connections),
                            passed to it as ISTHMUS_AUTH_SYSTEM_CONFIG
    secrets/etcd.json       etcd's root and service passwords: kept across restarts (etcd keeps its users)
    secrets/etcd-jwt.*      the key etcd signs its auth tokens with (kept across restarts)
    isthmus.yaml            the operator's client config (written by isthmus/up.py)

Bus passwords and the account key are new at every start (restarting `isthmus up` rotates them); etcd's
passwords are made once, since etcd's data (and its users) outlive a restart. nats-server's side is the
`authorization` block of its config (nats_authorization), with each role's permissions from
proto/busauth.py, and a system account `SYS` whose one user (`auth-system`) may only list and kick
connections (proto/busauth.py AUTH_SYSTEM).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proto.busauth import AUTH_SYSTEM, OPERATOR, SERVICES, SYSTEM_USER, Permissions, inbox_prefix
from runtime.clientconfig import ClientConfig, EtcdClient, NatsClient, save
from runtime.natsjwt import new_account_seed, public_key

ETCD_SERVICE_USER = "isthmus"
ROLES = ("operator", *SERVICES)
SYSTEM_ACCOUNT = "SYS"  # nats-server's system account (`system_account`); its only user is SYSTEM_USER


def _password() -> str:
    return secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: safe inside nats-server's config quoting


@dataclass
class MeshCredentials:
    """Passwords per bus role, the callout account seed, etcd's passwords, the bus CA (when TLS is on)."""

    secrets_dir: Path
    bus: dict[str, str] = field(default_factory=dict)
    account_seed: str = ""
    etcd_root: str = ""
    etcd_service: str = ""
    nats_ca: str = ""  # path of the CA file clients trust for the bus's TLS certificate

    @classmethod
    def create(cls, state_dir: str | Path) -> "MeshCredentials":
        secrets_dir = Path(state_dir) / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(secrets_dir, 0o700)
        creds = cls(secrets_dir, bus={role: _password() for role in (*ROLES, SYSTEM_USER)}, account_seed=new_account_seed())
        etcd_file = secrets_dir / "etcd.json"
        if etcd_file.is_file():
            saved = json.loads(etcd_file.read_text())
            creds.etcd_root, creds.etcd_service = saved["root"], saved["service"]
        else:
            creds.etcd_root, creds.etcd_service = _password(), _password()
            _write_private(etcd_file, json.dumps({"root": creds.etcd_root, "service": creds.etcd_service}))
        _write_private(secrets_dir / "auth-account.nk", creds.account_seed + "\n")
        if not (secrets_dir / "etcd-jwt.key").is_file():
            key = ec.generate_private_key(ec.SECP256R1())
            _write_private(secrets_dir / "etcd-jwt.key", key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
            (secrets_dir / "etcd-jwt.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return creds

    @property
    def etcd_jwt_keys(self) -> tuple[Path, Path]:
        """(private, public) key files etcd signs its auth tokens with (kept across restarts)."""
        return self.secrets_dir / "etcd-jwt.key", self.secrets_dir / "etcd-jwt.pub"

    @property
    def seed_file(self) -> Path:
        return self.secrets_dir / "auth-account.nk"

    @property
    def system_config(self) -> Path:
        """secrets/auth-system.yaml: the auth service's system-account client config (ISTHMUS_AUTH_SYSTEM_CONFIG)."""
        return self.secrets_dir / "auth-system.yaml"

    def client_config(self, role: str, nats_url: str, etcd_url: str = "") -> ClientConfig:
        """The client config of one role (etcd credentials for the services, none for the operator)."""
        nats = NatsClient(url=nats_url, user=role, password=self.bus[role], inbox_prefix=inbox_prefix(role),
                          tls_ca=self.nats_ca)
        etcd = EtcdClient(url=etcd_url, user=ETCD_SERVICE_USER, password=self.etcd_service) if role in SERVICES else None
        return ClientConfig(nats=nats, etcd=etcd)

    def write_service_configs(self, nats_url: str, etcd_url: str) -> dict[str, Path]:
        """secrets/<service>.yaml for every service, and secrets/auth-system.yaml (the auth service's
        system-account user, no etcd); returns the services' paths by service name."""
        save(self.system_config, self.client_config(SYSTEM_USER, nats_url))
        return {name: save(self.secrets_dir / f"{name}.yaml", self.client_config(name, nats_url, etcd_url))
                for name in SERVICES}

    def nats_authorization(self) -> str:
        """The `authorization` block of nats-server's config: the static roles as users with permissions
        (they bypass the callout: auth_users), and the auth callout for everyone else; then the system
        account with its one user, the auth service's `auth-system` (listed in auth_users too: the callout
        never decides it), allowed only CONNZ and KICK (proto/busauth.py AUTH_SYSTEM)."""
        users = ",\n".join(f"    {{user: {json.dumps(role)}, password: {json.dumps(self.bus[role])}, "
                           f"permissions: {_permissions(OPERATOR if role == 'operator' else SERVICES[role])}}}"
                           for role in ROLES)
        system = (f"{{user: {json.dumps(SYSTEM_USER)}, password: {json.dumps(self.bus[SYSTEM_USER])}, "
                  f"permissions: {_permissions(AUTH_SYSTEM)}}}")
        return ("authorization {\n  timeout: 2\n  users: [\n" + users + "\n  ]\n"
                f"  auth_callout {{\n    issuer: {json.dumps(public_key(self.account_seed))}\n"
                f"    auth_users: {json.dumps([*ROLES, SYSTEM_USER])}\n  }}\n}}\n"
                f"accounts {{\n  {SYSTEM_ACCOUNT}: {{\n    users: [\n      {system}\n    ]\n  }}\n}}\n"
                f"system_account: {SYSTEM_ACCOUNT}\n")


def _permissions(perms: Permissions) -> str:
    parts = [f"publish: {{allow: {json.dumps(list(perms.publish))}}}" if perms.publish else "publish: {deny: [\">\"]}",
             f"subscribe: {{allow: {json.dumps(list(perms.subscribe))}}}"]
    if perms.responses:
        parts.append("allow_responses: true")
    return "{" + ", ".join(parts) + "}"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
