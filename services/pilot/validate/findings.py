"""The problems found in one document: errors and warnings, each with its field path.

    f = Findings(document, kind, name, namespace, prefix)
    f.error(path, message); f.warn(path, message)    -> f.errors, f.warnings: [ConfigError]

The shape of Istio's Validation and AppendValidation (pkg/config/validation/agent/validation.go): a check
appends and carries on, so one submission reports every problem at once, and warnings (accepted, but
probably not what was meant) are kept apart from errors (refused). `prefix` is prepended to every path
(`items[3]` for an item of a List). A leaf: it imports nothing of pilot's.
"""

from __future__ import annotations

from proto.config_api import ConfigError


class Findings:
    """Errors and warnings of one document, each with its path, kind and name."""

    def __init__(self, document: int, kind: str = "", name: str = "", namespace: str = "", prefix: str = "") -> None:
        self.document, self.kind, self.name, self.namespace, self.prefix = document, kind, name, namespace, prefix
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []

    def _make(self, path: str, message: str) -> ConfigError:
        full = f"{self.prefix}.{path}" if self.prefix and path else (self.prefix or path)
        return ConfigError(document=self.document, message=message, path=full, kind=self.kind,
                           name=self.name, namespace=self.namespace)

    def error(self, path: str, message: str) -> None:
        self.errors.append(self._make(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(self._make(path, message))
