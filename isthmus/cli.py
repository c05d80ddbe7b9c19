"""The `isthmus` command: a local mesh (`up`), config (`apply`, `get`, `delete`, `analyze`) and sidecars (`proxy run`,
`proxy-status`).

Every command but `up` talks to the control plane over NATS only; `--nats URL` (or ISTHMUS_NATS_URL)
says where. docs/cli.md is the user's reference. Exit codes: 0 ok, 1 error (bad input, rejected config,
not found, control plane unreachable), 2 usage error.

This module is the root group and the console script's entry point (`isthmus.cli:main`); the commands
live in isthmus/commands/ (config.py, proxy.py, up.py, analyze.py, ca.py: `token` and `ca`, credentials.py: `proxy credentials`,
secrets.py: `create secret` and the secret kind of `get`/`delete`), the helpers they share in isthmus/manifests.py
(reading -f sources), isthmus/output.py (tables, printing) and isthmus/pilot_client.py (the bus). The
helpers are re-exported here so the demo, the tests and scripts can keep importing them from isthmus.cli.
"""

from __future__ import annotations

import sys

import click

import importlib

from isthmus.errors import CliError
from isthmus.options import Finite, check_nats_url
from isthmus.manifests import collect_refs, join_documents, read_manifests, resolve_kind
from isthmus.output import (
    as_list,
    format_config_error,
    format_table,
    not_reconciled,
    print_apply_reply,
    qualified,
    render_output,
    render_table,
    short_age,
)
from isthmus.pilot_client import REQUEST_TIMEOUT, apply_text, connect_cli, with_bus
from runtime.settings import DEFAULT_NATS_URL

__all__ = [
    "REQUEST_TIMEOUT", "CliError", "apply_text", "as_list", "cli", "collect_refs", "connect_cli",
    "format_config_error", "format_table", "join_documents", "main", "not_reconciled", "print_apply_reply",
    "qualified", "read_manifests", "render_output", "render_table", "resolve_kind", "short_age", "with_bus",
]


# Each command's module is imported when the command runs (or help lists it), not by every `isthmus` process: a
# sidecar (`isthmus proxy run`) loads the proxy group alone, not the 18 others (~2.3 MB of RSS per sidecar,
# tests/proxy/test_sidecar_imports.py). Name -> (module, attribute), in the order they were added.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("isthmus.commands.up", "up"), "apply": ("isthmus.commands.config", "apply"),
    "create": ("isthmus.commands.secrets", "create"), "delete": ("isthmus.commands.config", "delete"),
    "get": ("isthmus.commands.config", "get"), "analyze": ("isthmus.commands.analyze", "analyze"),
    "proxy-status": ("isthmus.commands.proxy", "proxy_status"),
    "proxy-config": ("isthmus.commands.proxy_config", "proxy_config"), "proxy": ("isthmus.commands.proxy", "proxy"),
    "gateway": ("isthmus.commands.gateway", "gateway"), "token": ("isthmus.commands.ca", "token"),
    "ca": ("isthmus.commands.ca", "ca"), "dashboard": ("isthmus.commands.dashboard", "dashboard"),
    "admin": ("isthmus.commands.admin", "admin"), "version": ("isthmus.commands.version", "version"),
    "x": ("isthmus.commands.describe", "experimental"), "bug-report": ("isthmus.commands.bug_report", "bug_report"),
    "cluster": ("isthmus.commands.cluster", "cluster"), "join": ("isthmus.commands.join", "join"),
}


def _proxy_group() -> click.Group:
    from isthmus.commands.credentials import credentials
    from isthmus.commands.proxy import proxy
    from isthmus.commands.proxy_config import proxy_log

    proxy.add_command(credentials)  # `isthmus proxy credentials list|revoke`, beside `proxy run`
    proxy.add_command(proxy_log)  # `isthmus proxy log PROXY --level`
    return proxy


class LazyGroup(click.Group):
    """The root group, whose commands are imported by name when first looked up (click's lazy loading pattern:
    click.palletsprojects.com, "Lazily Loading Subcommands")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            command = _proxy_group() if cmd_name == "proxy" else getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:  # click suggests from the commands loaded: all of them here
            raise click.exceptions.NoSuchCommand(exc.command_name, possibilities=self.list_commands(ctx),
                                                 ctx=ctx) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ISTHMUS_CONFIG", metavar="FILE",
              help="The client config `isthmus up` writes (bus URL and credentials; env ISTHMUS_CONFIG; "
                   "default .isthmus/isthmus.yaml when it exists).")
@click.option("--nats", "nats_url", envvar="ISTHMUS_NATS_URL", default=None, metavar="URL",
              callback=check_nats_url, help=f"The bus (env ISTHMUS_NATS_URL; overrides the config's URL; "
                                            f"default {DEFAULT_NATS_URL}).")
@click.option("--request-timeout", type=Finite(0.1, 3600), envvar="ISTHMUS_PILOT_TIMEOUT",
              default=REQUEST_TIMEOUT, show_default=True, metavar="SECONDS",
              help="How long apply/get/delete wait for pilot; a change not committed by then never is.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, nats_url: str | None, request_timeout: float) -> None:
    """Isthmus: Istio's traffic management and security (mTLS, authorization, JWT) for VMs and bare metal, with
    Istio's YAML and without Kubernetes; Istio's metrics, traces and a dashboard (`isthmus dashboard`)."""
    from runtime.clientconfig import ConfigFileError, exposure, find_config, load

    auth = None
    config = None
    if ctx.invoked_subcommand != "up":  # `up` writes the config; it reads none
        try:
            path = find_config(config_path, env={})  # click already read ISTHMUS_CONFIG into config_path
            config = load(path) if path else None
        except ConfigFileError as exc:
            raise CliError(str(exc)) from None
        if path and config:
            warning = exposure(path, config)
            if warning:
                click.echo(warning, err=True)
        auth = config.nats if config else None
    url = nats_url or (auth.url if auth and auth.url else DEFAULT_NATS_URL)
    ctx.obj = {"nats_url": url, "timeout": request_timeout, "auth": auth,
               "dashboard": config.dashboard if config else ""}


def main() -> None:
    """Run the CLI. Usage errors are one line too (`error: <click's message> (see '<command> --help')`,
    exit 2), like every other error, instead of click's usage block (docs/cli.md)."""
    try:
        code = cli.main(prog_name="isthmus", standalone_mode=False)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "isthmus"
        click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
