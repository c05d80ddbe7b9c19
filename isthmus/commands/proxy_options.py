"""The options `isthmus proxy run` and `isthmus gateway run` share (shared_options), and how they become
ProxyOptions (proxy_settings) and how a proxy that cannot start exits (run_or_exit)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from isthmus.errors import CliError
from isthmus.options import Finite
from isthmus.commands.proxy_telemetry import telemetry_settings, telemetry_options

F = TypeVar("F", bound=Callable[..., Any])


def _identity_env() -> dict[str, Any]:
    """ISTHMUS_SECRET_TTL and ISTHMUS_SECRET_GRACE_PERIOD_RATIO[_JITTER] (Istio's SECRET_TTL and
    SECRET_GRACE_PERIOD_RATIO[_JITTER]), checked here so a bad value is one line, not a traceback."""
    import os

    from proxy.identity.schedule import GRACE_JITTER, GRACE_RATIO, check_grace

    values: dict[str, Any] = {}
    for name, key, default, kind in (
            ("ISTHMUS_SECRET_TTL", "secret_ttl", "0", int),
            ("ISTHMUS_SECRET_GRACE_PERIOD_RATIO", "secret_grace_ratio", str(GRACE_RATIO), float),
            ("ISTHMUS_SECRET_GRACE_PERIOD_RATIO_JITTER", "secret_grace_jitter", str(GRACE_JITTER), float)):
        text = os.environ.get(name, default)
        try:
            values[key] = kind(text)
        except ValueError:
            raise CliError(f"{name} is {text[:40]!r}: give a {'whole number of seconds' if kind is int else 'number'}")
    if values["secret_ttl"] < 0:
        raise CliError(f"ISTHMUS_SECRET_TTL is {values['secret_ttl']}: give seconds (0: the ca's default)")
    try:
        check_grace(values["secret_grace_ratio"], values["secret_grace_jitter"])
    except ValueError as exc:
        raise CliError(f"ISTHMUS_SECRET_GRACE_PERIOD_RATIO and _JITTER: {exc}") from None
    return values


# The options `proxy run` and `gateway run` (isthmus/commands/gateway.py) share, in the order --help shows them;
# they become ProxyOptions through proxy_settings().
_SHARED = [
    click.option("--token", envvar="ISTHMUS_TOKEN", default="", metavar="TOKEN",
                 help="Bootstrap token for the first certificate (`isthmus token create`; env ISTHMUS_TOKEN). Not needed "
                      "while --state-dir holds a valid certificate. Without one the proxy creates its own where the bus "
                      "allows it."),
    click.option("--token-file", type=click.Path(dir_okay=False), default="", metavar="FILE",
                 help="Read the bootstrap token from FILE (kept out of `ps`; read again at each try)."),
    click.option("--state-dir", type=click.Path(file_okay=False), default="", metavar="DIR",
                 help="Keep the workload key and certificate here (0700 dir, 0600 files), so a restart within the "
                      "certificate's life needs no token."),
    click.option("--locality", envvar="ISTHMUS_LOCALITY", default="", metavar="REGION/ZONE/SUBZONE",
                 help="Where this workload runs, for localityLbSetting (env ISTHMUS_LOCALITY)."),
    click.option("--workload-name", envvar="ISTHMUS_WORKLOAD_NAME", default="", metavar="NAME",
                 help="The workload's name in metrics (source_workload / destination_workload, a Deployment's name in "
                      "Kubernetes); default <service>-<version label>, else <service> (env ISTHMUS_WORKLOAD_NAME)."),
    click.option("--cluster", envvar="ISTHMUS_CLUSTER", default="", metavar="NAME",
                 help="The cluster the workload runs in, for metrics (source_cluster / destination_cluster); default "
                      "unknown (env ISTHMUS_CLUSTER)."),
    click.option("--lease-ttl", type=click.IntRange(1, 300), help="Seconds the registration lives without heartbeats."),
    click.option("--pending-grace", type=Finite(0, 3600), envvar="ISTHMUS_PENDING_GRACE", default=15.0,
                 show_default=True, help="Seconds a route waits for a cluster or subset it names before it applies "
                                         "anyway (requests to what is missing get 503 NC); env ISTHMUS_PENDING_GRACE."),
    click.option("--tls-transport", type=click.Choice(["aiofastnet", "uvloop"]), envvar="ISTHMUS_TLS_TRANSPORT",
                 default="aiofastnet", show_default=True,
                 help="What carries mutual TLS connections: aio-libs' aiofastnet or uvloop's SSL transport (both on "
                      "the uvloop event loop); env ISTHMUS_TLS_TRANSPORT."),
    click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                 help="Env ISTHMUS_LOG_LEVEL; default info."),
    click.option("--access-log", envvar="ISTHMUS_ACCESS_LOG", default="", metavar="-|PATH",
                 help="Write an access line per request and TCP connection: - for stdout, or a file (env "
                      "ISTHMUS_ACCESS_LOG). Off by default."),
    click.option("--access-log-format", type=click.Choice(["text", "json"]), envvar="ISTHMUS_ACCESS_LOG_FORMAT",
                 default="text", show_default=True,
                 help="Access log lines: Istio's default text format, or JSON with Istio's keys, one object a line "
                      "(env ISTHMUS_ACCESS_LOG_FORMAT). Also for a Telemetry's `envoy` provider."),
    click.option("--retry-buffer-limit", type=click.IntRange(0, 1 << 30), envvar="ISTHMUS_RETRY_BUFFER_LIMIT",
                 default=1024 * 1024, show_default=True, metavar="BYTES",
                 help="Request body bytes kept so a retry can resend them; a larger body is not retried "
                      "(env ISTHMUS_RETRY_BUFFER_LIMIT)."),
    click.option("--max-request-headers-kb", envvar="ISTHMUS_MAX_REQUEST_HEADERS_KB", type=click.IntRange(1, 8192),
                 default=60, show_default=True, help="Request line + headers, KiB; more gets 431 (Envoy's default)."),
    click.option("--max-request-headers", envvar="ISTHMUS_MAX_REQUEST_HEADERS", type=click.IntRange(1, 10_000),
                 default=100, show_default=True, help="Headers per request; more gets 431 (Envoy's default)."),
    click.option("--max-request-url-kb", envvar="ISTHMUS_MAX_REQUEST_URL_KB", type=click.IntRange(1, 8192),
                 default=60, show_default=True, help="Request target, KiB; longer gets 414."),
    click.option("--max-pipelined-requests", envvar="ISTHMUS_MAX_PIPELINED_REQUESTS", type=click.IntRange(1, 1000),
                 default=16, show_default=True, help="Requests parsed ahead of the one in flight; then the "
                                                      "connection closes once they are answered."),
    click.option("--request-headers-timeout", envvar="ISTHMUS_REQUEST_HEADERS_TIMEOUT", type=Finite(0, 86400),
                 default=10.0, show_default=True, metavar="SECONDS", help="To receive a request head; 408. 0: off."),
    click.option("--request-timeout", envvar="ISTHMUS_REQUEST_TIMEOUT", type=Finite(0, 86400), default=300.0,
                 show_default=True, metavar="SECONDS", help="To receive a whole request (head and body); 408. 0: off."),
    click.option("--stream-idle-timeout", envvar="ISTHMUS_STREAM_IDLE_TIMEOUT", type=Finite(0, 86400),
                 default=300.0, show_default=True, metavar="SECONDS",
                 help="A request with no byte either way for this long ends: 408, or a close. 0: off."),
    click.option("--max-connections", envvar="ISTHMUS_MAX_CONNECTIONS", type=click.IntRange(0, 1_000_000), default=10_000,
                 show_default=True, help="Open connections per listener; more are closed at once. 0: unlimited."),
    click.option("--max-response-headers-kb", envvar="ISTHMUS_MAX_RESPONSE_HEADERS_KB", type=click.IntRange(1, 8192),
                 default=60, show_default=True, help="An upstream's status line + headers, KiB; more gets 502."),
    click.option("--max-response-headers", envvar="ISTHMUS_MAX_RESPONSE_HEADERS", type=click.IntRange(1, 10_000),
                 default=100, show_default=True, help="Headers per upstream response; more gets 502."),
    click.option("--max-pending-heads-mb", envvar="ISTHMUS_MAX_PENDING_HEADS_MB", type=click.IntRange(0),
                 default=32, show_default=True, help="Incomplete request heads held per listener, MiB; the head "
                                                     "past it gets 503 (flag OM) and a close. 0: unlimited."),
]


def shared_options(command: F) -> F:
    """The proxy's identity, logging, limit and telemetry flags."""
    command = telemetry_options(command)
    for option in reversed(_SHARED):
        command = option(command)
    return command


def proxy_settings(obj: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """ProxyOptions' fields from the shared flags (shared_options), checked: the bootstrap token, the telemetry
    and limit flags, the ISTHMUS_SECRET_* environment."""
    from proxy.settings import build_limits

    flags = dict(flags)
    token, token_file, log_level = flags.pop("token"), flags.pop("token_file"), flags.pop("log_level")
    if token and token_file:
        raise click.BadParameter("give --token (or ISTHMUS_TOKEN) or --token-file, not both", param_hint="--token-file")
    if token.strip():  # checked here, before the bus sees it (a 70 KiB one overflows NATS's control line)
        from runtime.bootstrap_tokens import TokenRefused, split
        try:
            split(token)
        except TokenRefused as exc:
            raise click.BadParameter(str(exc), param_hint="'--token'") from None
    bus_token, bus_token_problem = _bootstrap_token(token, token_file)
    out: dict[str, Any] = {"log_level": log_level} if log_level else {}
    out.update(telemetry_settings(flags))
    out.update(_identity_env())
    plain = ("state_dir", "locality", "workload_name", "cluster", "lease_ttl", "pending_grace", "tls_transport",
             "access_log", "access_log_format", "retry_buffer_limit")
    out.update({name: flags.pop(name) for name in plain})
    out.update(token=token.strip(), token_file=token_file, bus_token=bus_token, bus_token_problem=bus_token_problem,
               nats_url=obj["nats_url"], bus_auth=obj.get("auth"), limits=build_limits(**flags))
    return out


def run_or_exit(run: Callable[[], None]) -> None:
    """Run a proxy; what stops it from starting is one line on stderr and exit 1 or 2."""
    from proxy.identity.agent import IdentityFatal
    from proxy.main import CredentialsError, StartError

    try:
        run()
    except CredentialsError as exc:  # no bus credentials, or the control plane refused them
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except StartError as exc:  # a port in use, an unwritable access log: one line naming the flag
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except IdentityFatal as exc:  # the ca refused the token (its reason), or no token and none may be made
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _bootstrap_token(token: str, token_file: str) -> tuple[str, str]:
    """(token, why there is none): the bootstrap token the sidecar joins the bus with (proxy/control/buscreds.py)
    before the ca spends it on its first certificate: --token (env ISTHMUS_TOKEN), else what --token-file holds
    now. An unreadable or empty file is not an error yet (a --state-dir may make the token unnecessary): the
    reason is said if the token is needed. A file that holds something else than a token is a usage error, as a
    malformed --token is (read at most MAX_TOKEN_FILE bytes of it)."""
    if token.strip():
        return token.strip(), ""
    if not token_file:
        return "", ""
    from runtime.bootstrap_tokens import TokenRefused, read_token_file, split

    try:
        text = read_token_file(token_file)
        if text:
            split(text)
    except OSError as exc:
        return "", f"--token-file {token_file}: {exc.strerror or exc}"
    except TokenRefused as exc:
        raise click.BadParameter(f"{token_file}: {exc}", param_hint="'--token-file'") from None
    return text, "" if text else f"--token-file {token_file} is empty"
