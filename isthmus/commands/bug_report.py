"""`isthmus bug-report [-o FILE]`: one tar.gz for a bug report: every config resource pilot stores, proxy-status,
each proxy's config dump (over the bus: certificates, never keys), the control plane's versions, and the last
lines of the state directory's logs. Bounded (--max-proxies, --tail, --max-bytes) and redacted (isthmus/redact.py:
private keys, secret fields, every secret the state directory holds) before anything is written."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import click

from isthmus import pilot_client
from isthmus.pilot_client import REQUEST_TIMEOUT, quiet_logs

MAX_LINE = 4096  # characters kept of one log line


def tail_lines(path: Path, lines: int) -> str:
    """The last `lines` lines of a log, each cut at MAX_LINE characters, read in one pass with a bounded deque."""
    with path.open("r", errors="replace") as handle:
        kept = deque((line[:MAX_LINE].rstrip("\n") for line in handle), maxlen=lines)
    return "\n".join(kept) + ("\n" if kept else "")


class Archive:
    """A tar.gz in memory, no larger than `max_bytes` of content; what does not fit is named in MANIFEST."""

    def __init__(self, max_bytes: int, secrets: set[str]) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w:gz")
        self.max_bytes = max_bytes
        self.secrets = secrets
        self.size = 0
        self.manifest: list[str] = []

    def add(self, name: str, text: str) -> None:
        from isthmus.redact import redact

        data = redact(text, self.secrets).encode()
        if self.size + len(data) > self.max_bytes:
            self.manifest.append(f"left out {name} ({len(data)} bytes): past --max-bytes {self.max_bytes}")
            return
        self.size += len(data)
        info = tarfile.TarInfo(f"bug-report/{name}")
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
        self.tar.addfile(info, io.BytesIO(data))
        self.manifest.append(f"{name} ({len(data)} bytes)")

    def close(self) -> bytes:
        manifest = "\n".join(self.manifest).encode() + b"\n"
        info = tarfile.TarInfo("bug-report/MANIFEST")
        info.size, info.mtime, info.mode = len(manifest), int(time.time()), 0o600
        self.tar.addfile(info, io.BytesIO(manifest))
        self.tar.close()
        return self.buffer.getvalue()


@click.command("bug-report")
@click.option("-o", "--output", "output", default="", metavar="FILE",
              help="The archive (default bug-report-<UTC time>.tar.gz here); written mode 0600.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".isthmus", show_default=True,
              help="`isthmus up`'s state directory: its logs/ are included, its secrets redacted everywhere.")
@click.option("--tail", "tail", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Lines kept from the end of each log.")
@click.option("--max-proxies", type=click.IntRange(0, 10_000), default=100, show_default=True,
              help="Config dumps collected (the first proxies by namespace, service and id).")
@click.option("--max-bytes", type=click.IntRange(1024, 2**31), default=64 * 1024 * 1024, show_default=True,
              help="The archive's content, before compression; what does not fit is named in its MANIFEST.")
@click.pass_obj
def bug_report(obj: dict[str, Any], output: str, state_dir: str, tail: int, max_proxies: int, max_bytes: int) -> None:
    """Collect config, proxy status, config dumps and recent logs into one archive, with no key, token or
    password in it."""
    from isthmus.errors import CliError
    from isthmus.proxy_debug import fetch_section, proxy_statuses
    from isthmus.proxy_status import as_records
    from isthmus.redact import known_secrets
    from proto.config_api import GetReply, GetRequest
    from proto.resources import KINDS
    from proto.subjects import CONFIG_GET
    from runtime.version import VERSION

    quiet_logs()
    timeout = obj.get("timeout", REQUEST_TIMEOUT)
    state = Path(state_dir)
    archive = Archive(max_bytes, known_secrets(state) | {s for s in [getattr(obj.get("auth"), "password", "")] if s})
    archive.add("version.txt", f"client version: {VERSION}\n")
    problems: list[str] = []

    async def work(bus: Any) -> None:
        for kind in sorted(KINDS):
            try:
                reply = await bus.call(CONFIG_GET, GetRequest(kind=kind), GetReply, timeout)
            except Exception as exc:  # one kind lost is no reason to lose the report
                problems.append(f"config {kind}: {exc}")
                continue
            if reply.ok and reply.resources:
                archive.add(f"config/{kind}.json", json.dumps(reply.resources, indent=2))
            elif not reply.ok:
                problems.append(f"config {kind}: {reply.error}")
        try:
            statuses = await proxy_statuses(bus, timeout)
        except (CliError, Exception) as exc:
            problems.append(f"proxy-status: {exc}")
            return
        archive.add("proxy-status.json", json.dumps(as_records(statuses), indent=2))
        for status in statuses.proxies[:max_proxies]:
            try:
                dump = await fetch_section(bus, status, "all", min(timeout, 5.0))
            except (CliError, Exception) as exc:
                problems.append(f"config dump of {status.proxy_id}: {exc}")
                continue
            archive.add(f"proxies/{status.proxy_id}.json", json.dumps(dump, indent=2))
        if len(statuses.proxies) > max_proxies:
            problems.append(f"{len(statuses.proxies) - max_proxies} proxies past --max-proxies left out")

    try:
        pilot_client.with_bus(obj["nats_url"], work, timeout=timeout, auth=obj.get("auth"))
    except CliError as exc:  # the control plane is away: the logs are what the report needs most
        problems.append(str(exc))
    logs = state / "logs"
    if not logs.is_dir():  # a cluster (docs/install-vm.md) keeps its logs elsewhere: say so, not silently none
        problems.append(f"no logs: {logs} is not a directory (give --state-dir the directory whose logs/ holds "
                        "the services' logs)")
    for path in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        try:
            archive.add(f"logs/{path.name}", tail_lines(path, tail))
        except OSError as exc:
            problems.append(f"log {path.name}: {exc}")
    if problems:
        archive.add("problems.txt", "\n".join(problems) + "\n")
    data = archive.close()
    target = Path(output or time.strftime("bug-report-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime()))
    try:
        target.touch(mode=0o600, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc}") from exc
    click.echo(f"wrote {target} ({len(data)} bytes, {archive.size} before compression)")
    for problem in problems:
        click.echo(f"Warning: {problem}", err=True)
