"""The client config: where the bus (and, for services, etcd) is, and the credentials to use there.

`isthmus up` writes one for the operator (`<state-dir>/isthmus.yaml`) and one per service
(`<state-dir>/secrets/<service>.yaml`), each mode 0600; a proxy's bus credentials can be kept the
same way. Shape (YAML; every key optional but nats.url):

    nats:
      url: nats://127.0.0.1:4222
      user: operator              # nats-server user (static roles) or proxy.<id> (auth callout)
      password: ...
      inbox_prefix: _INBOX.operator   # the only inbox this user may read (proto/busauth.py)
      tls_ca: /path/nats-ca.pem   # the CA of the bus's TLS certificate, when `isthmus up --nats-tls`
    etcd:                         # control-plane services only
      url: http://127.0.0.1:2379
      user: isthmus
      password: ...
    dashboard: http://127.0.0.1:20001/   # the telemetry service's HTTP port (`isthmus dashboard` opens it)

Where it is read from: `--config`, else ISTHMUS_CONFIG, else `.isthmus/isthmus.yaml` under the working
directory if it exists (find_config). Errors: ConfigFileError naming the file and what is wrong.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import msgspec
import msgspec.yaml

from runtime.files import read_bounded

ENV = "ISTHMUS_CONFIG"
DEFAULT_RELATIVE = Path(".isthmus") / "isthmus.yaml"
MAX_BYTES = 64 * 1024  # a client config is a few hundred bytes; refuse anything absurd before parsing


class ConfigFileError(Exception):
    pass


class NatsClient(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    url: str = ""
    user: str = ""
    password: str = ""
    inbox_prefix: str = ""
    tls_ca: str = ""

    def tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context trusting tls_ca (None without one)."""
        if not self.tls_ca:
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


class EtcdClient(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    url: str = ""
    user: str = ""
    password: str = ""


class ClientConfig(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    nats: NatsClient = msgspec.field(default_factory=NatsClient)
    etcd: EtcdClient | None = None
    dashboard: str = ""  # the telemetry service's URL, as `isthmus up` started it


def find_config(flag: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The config file to read: `flag`, else $ISTHMUS_CONFIG, else ./.isthmus/isthmus.yaml if it exists,
    else None. A file named by the flag or the variable must exist (ConfigFileError otherwise)."""
    env = dict(os.environ) if env is None else env
    named = flag or env.get(ENV) or ""
    if named:
        path = Path(named).expanduser()
        source = "--config" if flag else ENV
        try:
            found, kind = path.is_file(), "a directory" if path.is_dir() else "not a regular file (a device, a pipe?)"
            missing = not found and not path.exists()
        except OSError as exc:  # a directory on the way we may not enter, a name too long
            raise ConfigFileError(f"{source} {named}: cannot be read ({exc.strerror or exc})") from None
        if missing:
            raise ConfigFileError(f"{source} {named}: no such file (`isthmus up` writes it and prints its path)")
        if not found:  # "no such file" sent users looking for a file that is there
            raise ConfigFileError(f"{source} {named}: {kind}, not a client config file")
        return path
    try:  # run from a directory this user may not enter (or one since deleted): no default config there
        default = (cwd or Path.cwd()) / DEFAULT_RELATIVE
        return default if default.is_file() else None
    except OSError:
        return None


def load(path: str | Path) -> ClientConfig:
    path = Path(path)
    try:
        data = read_bounded(path, MAX_BYTES)
    except OSError as exc:
        raise ConfigFileError(f"cannot read the client config {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigFileError(f"the client config {path} is over {MAX_BYTES} bytes: not a client config")
    try:
        return msgspec.yaml.decode(data, type=ClientConfig)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ConfigFileError(f"the client config {path} is not valid: {exc}") from None


def save(path: str | Path, config: ClientConfig) -> Path:
    """Write `config` to `path` with mode 0600 (created so; an existing file is narrowed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, b"# written by isthmus: secrets, keep it mode 0600\n" + msgspec.yaml.encode(config))
    finally:
        os.close(fd)
    return path


def load_optional(flag: str | None = None) -> ClientConfig | None:
    """find_config + load; None when there is no config to read."""
    path = find_config(flag)
    return load(path) if path else None


def exposure(path: str | Path, config: ClientConfig) -> str:
    """A one-line warning when a client config holding a password is readable by group or others ("" when
    not): found by an attack, an operator's isthmus.yaml at 0644 (any user on the machine reads the operator
    password, which creates tokens for any identity) was used without a word. Warned, not refused: the file is
    the operator's own and refusing would stop every command; KEK files, which nothing else protects, are."""
    if not (config.nats.password or (config.etcd and config.etcd.password)):
        return ""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return ""
    if not mode & 0o077:
        return ""
    return (f"warning: the client config {path} is mode {mode:04o}: other users can read its password; "
            f"chmod 600 {path}")

