"""Where the dashboard's files are: ours (this package's static/) and the browser libraries, served from the
wheels that ship them (no CDN: mesh hosts often have no internet; no copy in our repo).

    LIBRARIES   URL name under /static/lib/ -> (package, glob inside it), resolved once at import
    ASSET_NAMES our own files under /static/ (a fixed set: no path from a request reaches the filesystem)

Errors: AssetMissing when an installed wheel lacks the file it should ship (a broken or changed install):
the service answers 500 for that file and logs why, the rest of the page still loads.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

# plotly's wheel ships plotly.js (the charts, the trace waterfall); pyvis's wheel ships vis-network (the
# service graph) under lib/vis-<version>/: the highest version it ships is taken.
LIBRARIES: dict[str, tuple[str, str]] = {
    "plotly.min.js": ("plotly", "package_data/plotly.min.js"),
    "vis-network.min.js": ("pyvis", "lib/vis-*/vis-network.min.js"),
    "vis-network.css": ("pyvis", "lib/vis-*/vis-network.css"),
}

STATIC_DIR = Path(__file__).with_name("static")
ASSET_NAMES: frozenset[str] = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())


class AssetMissing(LookupError):
    """An installed library wheel lacks the file the dashboard serves from it."""


def _version_key(path: Path) -> tuple[int, ...]:
    # lib/vis-9.1.2/... -> (9, 1, 2): numeric, so 10.0 sorts after 9.1
    version = path.parent.name.rpartition("-")[2]
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def library_path(name: str) -> Path:
    """The installed file behind /static/lib/<name>. Raises KeyError for a name not in LIBRARIES and
    AssetMissing when the package is not installed or does not ship the file."""
    package, pattern = LIBRARIES[name]
    try:
        root = Path(str(importlib.resources.files(package)))
    except ModuleNotFoundError as exc:
        raise AssetMissing(f"{name}: the package {package!r} is not installed") from exc
    found = sorted(root.glob(pattern), key=_version_key)
    if not found:
        raise AssetMissing(f"{name}: {package} ({root}) has no {pattern}")
    return found[-1]


def static_path(name: str) -> Path:
    """One of our own files under static/. Raises KeyError for any other name."""
    if name not in ASSET_NAMES:
        raise KeyError(name)
    return STATIC_DIR / name
