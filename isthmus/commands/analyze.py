"""`isthmus analyze`: istioctl analyze for Isthmus (isthmus/analyze/; docs/analyze.md lists the codes).

    isthmus analyze [-f FILE|DIR|- ...] [--live/--no-live] [-n NS | -A] [-o table|yaml|json]
                    [--failure-threshold Info|Warning|Error] [-S CODE=RESOURCE ...] [-L] [-v]

As istioctl: the live mesh is analyzed by default, with the files (-f) laid over it ("what if I applied
these?"); `--no-live` (istioctl's --use-kube=false) analyzes the files alone, without a control plane.
Exit codes (istioctl's, istioctl/cmd/sysexits.go): 0 no message at or above the failure threshold (Error);
79 some (istioctl's ExitAnalyzerFoundIssues, for CI); 65 a file could not be parsed (istioctl's ExitDataError);
1 the control plane could not be read; 2 a usage error. Unlike istioctl, whose -o json|yaml always exit 0,
every output format exits 79 on issues: a CI job reading JSON should fail as one reading the lines does.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from isthmus import pilot_client
from isthmus.errors import CliError
from isthmus.manifests import read_manifests

EXIT_ISSUES = 79
EXIT_PARSE = 65
THRESHOLDS = ("Info", "Warning", "Error")


@click.command()
@click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
              help="A file, a directory of *.yaml/*.yml/*.json, or - for stdin. Repeatable.")
@click.option("--live/--no-live", default=True, show_default=True,
              help="Analyze the live mesh (config, registry, ca secrets), the files laid over it; --no-live: the "
                   "files alone, no control plane needed (istioctl's --use-kube=false).")
@click.option("-n", "--namespace", default="default", show_default=True,
              help="Report on resources of this namespace; documents naming none get it.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Report on every namespace.")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True,
              help="One line per message (istioctl's log format), or a yaml/json list.")
@click.option("--failure-threshold", type=click.Choice(THRESHOLDS), default="Error", show_default=True,
              help="The level at which messages make the exit code 79.")
@click.option("-S", "--suppress", "suppress", multiple=True, metavar="CODE=RESOURCE",
              help='Do not report CODE on RESOURCE (`Kind ns/name` or istioctl\'s `Kind name.ns`; `*` matches any '
                   'part), e.g. -S "IST0128=DestinationRule default/*". Repeatable.')
@click.option("-L", "--list-analyzers", is_flag=True, help="List the analyzers and their codes, and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Say which analyzers ran and which were skipped (and why).")
@click.pass_obj
def analyze(obj: dict[str, Any], files: tuple[str, ...], live: bool, namespace: str, all_namespaces: bool,
            output: str, failure_threshold: str, suppress: tuple[str, ...], list_analyzers: bool,
            verbose: bool) -> None:
    """Analyze Istio config (the live mesh, and/or files) and print coded messages (IST0101 ...)."""
    from isthmus.analyze import ALL, run
    from isthmus.analyze.messages import LEVEL_ORDER, TYPES
    from isthmus.analyze.render import render
    from isthmus.analyze.sources import offline, read_files, read_live

    if list_analyzers:
        for analyzer in sorted(ALL, key=lambda a: a.name):
            codes = ", ".join(f"{c} {TYPES[c].name}" for c in analyzer.codes)
            needs = f" (needs {', '.join(sorted(analyzer.inputs))})" if analyzer.inputs else ""
            click.echo(f"* {analyzer.name}:\n    {analyzer.description}{needs}\n    {codes}")
        return
    if not files and not live:
        raise click.UsageError("--no-live needs files to analyze: give -f FILE|DIR|-")
    suppressions = [_suppression(text, TYPES) for text in suppress]
    sources = read_manifests(files)
    loaded = read_files(sources, namespace)
    for problem in loaded.parse_errors:
        click.echo(f"error: {problem}", err=True)
    notes: list[str] = []
    if live:
        pilot_client.quiet_logs()
        timeout = obj.get("timeout", pilot_client.REQUEST_TIMEOUT)
        try:
            inputs = pilot_client.with_bus(obj["nats_url"], lambda bus: read_live(bus, timeout, loaded, notes),
                                           timeout=timeout, auth=obj.get("auth"))
        except CliError as exc:
            raise CliError(f"{exc.format_message()} (--no-live analyzes the files alone)") from None
    else:
        inputs = offline(loaded)
        notes.append("--no-live: the registry, the ca's secrets and pilot's validation were not read (schema errors "
                     "come from decoding the files only)")
    result = run(inputs, None if all_namespaces else namespace)
    result.messages = [m for m in result.messages if not any(_suppressed(m, code, pattern)
                                                             for code, pattern in suppressions)]
    target = "all namespaces" if all_namespaces else f"namespace: {namespace}"
    if verbose:
        click.echo(f"Analyzed resources in {target}", err=True)
        if result.skipped:
            click.echo("Skipped analyzers:\n" + "\n".join(f"\t {s}" for s in result.skipped), err=True)
        click.echo("Executed analyzers:\n" + "\n".join(f"\t {s}" for s in result.executed), err=True)
    for note in notes:
        if verbose or not note.startswith("--no-live"):
            click.echo(f"note: {note}", err=True)
    text = render(result.messages, output, color=output == "table" and sys.stdout.isatty())
    if text:
        click.echo(text)
    if not result.messages and not loaded.parse_errors:
        where = "\n  - ".join(name for name, _ in sources)
        if len(sources) > 1:
            click.echo(f"\u2714 No validation issues found when analyzing:\n  - {where}", err=True)
        else:
            click.echo(f"\u2714 No validation issues found when analyzing {where or target}.", err=True)
    floor = LEVEL_ORDER[failure_threshold]
    if any(LEVEL_ORDER[m.level] >= floor for m in result.messages):
        click.echo(f"Analyzers found issues when analyzing {target}.\nSee docs/analyze.md (and "
                   "https://istio.io/latest/docs/reference/config/analysis) for causes and resolutions.", err=True)
        sys.exit(EXIT_ISSUES)
    if loaded.parse_errors:
        click.echo("Some files couldn't be parsed.", err=True)
        sys.exit(EXIT_PARSE)


def _suppression(text: str, types: dict[str, Any]) -> tuple[str, str]:
    """`CODE=RESOURCE` -> (code, pattern); an unknown code is a warning, as istioctl's (it suppresses nothing)."""
    code, sep, pattern = text.partition("=")
    if not sep or not code or not pattern:
        raise click.BadParameter(f"{text!r} is not CODE=RESOURCE (e.g. 'IST0128=DestinationRule default/api')",
                                 param_hint="'--suppress'")
    if code not in types:
        click.echo(f"Warning: Supplied message code '{code}' is an unknown message code and will not have any "
                   "effect.", err=True)
    return code, pattern


def _suppressed(message: Any, code: str, pattern: str) -> bool:
    """Whether `pattern` names the message's resource, as `Kind ns/name` or as istioctl's `Kind name.ns`."""
    from fnmatch import fnmatchcase

    kind, _, full = message.resource.partition(" ")
    ns, _, name = full.partition("/")
    return message.code == code and (fnmatchcase(message.resource, pattern) or
                                     fnmatchcase(f"{kind} {name}.{ns}", pattern))
