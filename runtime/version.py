"""This installation's Isthmus version (the package's metadata), which every component reports
(`isthmus version`: docs/cli.md).

    dist_version("nats-py") -> "2.16.0"    an installed distribution's version, as importlib.metadata.version
                                           gives it; PackageNotFoundError when none is installed

Read here from the distribution's METADATA (or an egg-info's PKG-INFO) found on sys.path, the files and order
importlib.metadata uses, without importing it: with zipfile, csv, email, lzma and bz2 it costs every process
that loads it ~2 MB of RSS, every sidecar included (docs/performance.md). Anything unusual (a zip on sys.path,
a distribution found twice in one directory) is left to importlib.metadata itself.
"""

from __future__ import annotations

import os
import re
import sys

_NORMALIZE = re.compile(r"[-_.]+")


class _Unusual(Exception):
    pass


def _from_directory(directory: str, wanted: str) -> str | None:
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return None
    found = []
    for entry in names:
        stem, dot, suffix = entry.rpartition(".")
        if dot and suffix in ("dist-info", "egg-info") and \
                _NORMALIZE.sub("_", stem.partition("-")[0]).lower() == wanted:
            found.append(entry)
    if not found:
        return None
    if len(found) > 1:
        raise _Unusual(directory)
    path = os.path.join(directory, found[0])
    meta = os.path.join(path, "METADATA" if found[0].endswith(".dist-info") else "PKG-INFO")
    try:
        with open(meta, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break
                if line.startswith("Version:"):
                    return line[len("Version:"):].strip()
    except OSError:
        pass
    raise _Unusual(path)


def dist_version(name: str) -> str:
    """The version importlib.metadata.version(name) gives; importlib.metadata.PackageNotFoundError when none."""
    wanted = _NORMALIZE.sub("_", name).lower()
    try:
        for directory in sys.path:
            if not os.path.isdir(directory or "."):
                if directory and os.path.exists(directory):
                    raise _Unusual(directory)  # a zip or egg file: importlib.metadata reads those
                continue
            version = _from_directory(directory, wanted)
            if version is not None:
                return version
    except _Unusual:
        pass
    from importlib import metadata

    return metadata.version(name)


def _version() -> str:
    try:
        return dist_version("isthmus")
    except Exception as exc:  # run from a source tree that was never installed
        if type(exc).__name__ != "PackageNotFoundError":
            raise
        return "0.0.0+unknown"


VERSION = _version()
