"""What `isthmus join` writes for one workload's sidecar, under a root (/ or a temporary one), and the command
the sidecar then runs. Pure file work: no bus, no systemctl (isthmus/commands/join.py does those).

Layout (the conventions of deploy/systemd/isthmus-sidecar@.service, whose comment documents them):
- <root>/etc/isthmus/sidecar-NAME.env: ISTHMUS_NATS_URL and ISTHMUS_SIDECAR_ARGS (the unit's EnvironmentFile);
- <root>/etc/isthmus/sidecar-NAME.token: the bootstrap token (0600; the unit's LoadCredential=token:);
- <root>/var/lib/isthmus-sidecar-NAME/bus-client.yaml: the sidecar's own bus credentials (0600 in a 0700
  directory; the unit's StateDirectory, where `proxy run --state-dir` looks for them: proxy/control/buscreds.py);
- <root>/etc/systemd/system/isthmus-sidecar@.service: the template, when it is not there yet.
/etc/isthmus is created 0700 (the token and, with --state-dir, nothing else secret lives there).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "isthmus-sidecar@.service"
UNIT_DIR = "etc/systemd/system"
CONFIG_DIR = "etc/isthmus"
STATE_PARENT = "var/lib"
INSTALLED_BIN = "/opt/isthmus/bin/"  # where docs/install-vm.md installs isthmus, as the template names it
_WORD = re.compile(r"[^\s'\"\\$%`]+")  # systemd splits an unbraced $VAR on whitespace: no quoting is possible


class JoinFileError(Exception):
    """str(exc) is one line for the operator."""


@dataclass
class SidecarFiles:
    """The paths of one workload's sidecar files under `root` (see the module docstring)."""

    root: Path
    name: str
    state_dir_override: str = ""
    env: Path = field(init=False)
    token: Path = field(init=False)
    state_dir: Path = field(init=False)
    template: Path = field(init=False)

    def __post_init__(self) -> None:
        config = self.root / CONFIG_DIR
        self.env = config / f"sidecar-{self.name}.env"
        self.token = config / f"sidecar-{self.name}.token"
        self.state_dir = (Path(self.state_dir_override) if self.state_dir_override
                          else self.root / STATE_PARENT / f"isthmus-sidecar-{self.name}")
        self.template = self.root / UNIT_DIR / "isthmus-sidecar@.service"

    @property
    def unit(self) -> str:
        return f"isthmus-sidecar@{self.name}.service"


def sidecar_args(pairs: list[tuple[str, str]]) -> str:
    """ISTHMUS_SIDECAR_ARGS: `--flag value` words; JoinFileError for a value systemd could not pass as one word."""
    words = []
    for flag, value in pairs:
        if not _WORD.fullmatch(value):
            raise JoinFileError(f"{flag} {value[:80]!r}: the unit passes it as one word; give it without spaces, "
                                "quotes, $, % or backslashes")
        words += [flag, value]
    return " ".join(words)


def env_text(nats_url: str, args: str) -> str:
    return ("# written by `isthmus join`; the EnvironmentFile of isthmus-sidecar@<name>.service\n"
            f"ISTHMUS_NATS_URL={nats_url}\nISTHMUS_SIDECAR_ARGS={args}\n")


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped), as systemd's EnvironmentFile reads ours."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def isthmus_program() -> str:
    """The isthmus console script beside the running interpreter (the unit runs the same install)."""
    beside = Path(sys.executable).parent / "isthmus"
    return str(beside) if beside.exists() else (shutil.which("isthmus") or INSTALLED_BIN + "isthmus")


def unit_text(program: str) -> str:
    """The template with its ExecStart naming `program` (the install `isthmus join` runs from)."""
    text = TEMPLATE.read_text()
    return text.replace(INSTALLED_BIN + "isthmus ", program + " ") if program != INSTALLED_BIN + "isthmus" else text


def existing(files: SidecarFiles) -> list[Path]:
    """The files of an earlier join of this workload (refused without --force)."""
    return [p for p in (files.env, files.token, files.state_dir / "bus-client.yaml") if p.exists()]


def private_dir(path: Path) -> None:
    """Create `path` (and parents) with mode 0700; an existing one is tightened to 0700 when it is ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
        path.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from its first byte (never readable by others, even briefly)."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def write(files: SidecarFiles, nats_url: str, args: str, token: str, program: str) -> list[Path]:
    """Write the env file, the token and (when absent) the unit template; the paths written."""
    write_private(files.env, env_text(nats_url, args))
    write_private(files.token, token.strip() + "\n")
    written = [files.env, files.token]
    if not files.template.exists():
        files.template.parent.mkdir(parents=True, exist_ok=True)
        files.template.write_text(unit_text(program))
        files.template.chmod(0o644)
        written.append(files.template)
    return written


def proxy_command(program: str, files: SidecarFiles, nats_url: str, args: str) -> list[str]:
    """The `isthmus proxy run` command line the unit's ExecStart amounts to, with this root's paths."""
    return [program, "--nats", nats_url, "proxy", "run", "--token-file", str(files.token),
            "--state-dir", str(files.state_dir), *shlex.split(args)]
