"""IST0106 and IST0133: pilot's own validation of the files, errors and warnings (Istio's schema.ValidationAnalyzer,
analyzers/schema/validation.go, which runs Istio's validation the same way). The errors are what `isthmus apply`
would refuse; they come from pilot's config.validate (apply's checks, nothing stored), so the CLI and pilot
never disagree. When pilot cannot be asked (files only, --no-live, no control plane), they come from decoding
the files against the resource schemas (proto/), which finds type and unknown-field errors only.

Pilot's warnings that another analyzer here reports with its own code (unreachable rules: IST0130/IST0131;
missing subsets and gateways: IST0101) are left to it, as Istio maps them to those codes."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context

# pilot's warnings (services/pilot/validate/virtual_service.py, references.py) that other analyzers report
COVERED = ("virtualService rule ", "is not defined by any DestinationRule", "does not exist: the virtual service binds")


class SchemaAnalyzer:
    name: ClassVar[str] = "schema.ValidationAnalyzer"
    description: ClassVar[str] = "Runs pilot's validation on the files (what `isthmus apply` would refuse)"
    codes: ClassVar[tuple[str, ...]] = ("IST0106", "IST0133")
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        for origin, error, is_error in ctx.inputs.validation:
            if not is_error and any(marker in error.message for marker in COVERED):
                continue
            text = f"{error.path}: {error.message}" if error.path else error.message
            if error.kind or error.name:
                resource = f"{error.kind or '?'} {error.namespace or 'default'}/{error.name or '?'}"
            else:
                resource = f"document {error.document}" if error.document else "the file"
            ctx.report("IST0106" if is_error else "IST0133", None, text, resource=resource, origin=origin)
