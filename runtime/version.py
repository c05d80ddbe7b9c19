"""This installation's Isthmus version (the package's metadata), which every component reports
(`isthmus version`: docs/cli.md)."""

from __future__ import annotations

from importlib import metadata


def _version() -> str:
    try:
        return metadata.version("isthmus")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0+unknown"


VERSION = _version()
