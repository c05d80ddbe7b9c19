"""`isthmus analyze`: Istio's `istioctl analyze` for Isthmus config.

    run(inputs, namespace=None) -> Result(messages, executed, skipped)

Layout (each importing only those below it):
  analyzers/     one check per file, each declaring its codes and inputs; ALL lists them (Istio's all.go)
  sources.py     files (-f) and the live mesh (config, registry, ca secrets, pilot's validation) -> Inputs
  render.py      messages as istioctl prints them (table), or yaml/json
  context.py     Entry, Inputs, Context, the Analyzer protocol
  hosts.py       host names as Istio resolves them
  messages.py    the one table of codes (code, name, level, template) messages are made from
docs/analyze.md lists every code, what it means and how to fix it.
"""

from __future__ import annotations

import msgspec

from isthmus.analyze.analyzers import ALL
from isthmus.analyze.context import Analyzer, Context, Inputs
from isthmus.analyze.messages import LEVEL_ORDER, TYPES, Message


class Result(msgspec.Struct):
    messages: list[Message]
    executed: list[str]
    skipped: list[str]  # "name (needs registry)"


def run(inputs: Inputs, namespace: str | None = None, analyzers: tuple[Analyzer, ...] = ALL) -> Result:
    """Run every analyzer whose inputs are available; messages about resources of `namespace` only (None: all),
    most severe first, then by resource and code. Raises AssertionError when an analyzer reports a code it did
    not declare (a bug here, caught by the tests)."""
    ctx = Context(inputs)
    executed: list[str] = []
    skipped: list[str] = []
    for analyzer in analyzers:
        missing = sorted(analyzer.inputs - inputs.available)
        if missing:
            skipped.append(f"{analyzer.name} (needs {', '.join(missing)})")
            continue
        before = len(ctx.messages)
        analyzer.analyze(ctx)
        for message in ctx.messages[before:]:
            assert message.code in analyzer.codes and message.code in TYPES, (analyzer.name, message.code)
        executed.append(analyzer.name)
    messages = [m for m in ctx.messages if namespace is None or _namespace_of(m.resource) in (namespace, None)]
    messages.sort(key=lambda m: (-LEVEL_ORDER[m.level], m.resource, m.code, m.message))
    return Result(messages=messages, executed=executed, skipped=skipped)


def _namespace_of(resource: str) -> str | None:
    """`Kind ns/name` -> ns; None when the message names no namespaced resource (a document of a file)."""
    _, _, full = resource.partition(" ")
    ns, slash, _ = full.partition("/")
    return ns if slash else None


__all__ = ["ALL", "Inputs", "Result", "run"]
