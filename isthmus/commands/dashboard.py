"""`isthmus dashboard`: print the telemetry service's URL (the dashboard) and open it in a browser when one is
at hand."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
import webbrowser
from typing import Any

import click

from isthmus.errors import CliError

DEFAULT_URL = "http://127.0.0.1:20001/"
PROBE_TIMEOUT = 2.0


def browser_at_hand() -> bool:
    """A graphical browser can open (a display on Linux, always on macOS and Windows): a text browser that
    webbrowser would pick on a headless host would take over the terminal."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def answers(url: str) -> str:
    """"" when the telemetry service answers at `url` (/healthz), else why not."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=PROBE_TIMEOUT) as response:
            return "" if response.status == 200 else f"it answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"it answered {exc.code}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", "") or exc)


@click.command()
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
@click.pass_obj
def dashboard(obj: dict[str, Any], no_browser: bool) -> None:
    """Print the dashboard's URL (the telemetry service `isthmus up` started: its client config says where) and
    open it in a browser when one is at hand. Exit 1 when nothing answers there."""
    url = obj.get("dashboard") or os.environ.get("ISTHMUS_DASHBOARD_URL") or DEFAULT_URL
    click.echo(url)
    problem = answers(url)
    if problem:
        raise CliError(f"the telemetry service does not answer at {url} ({problem}): is `isthmus up` running? "
                       "(it prints the dashboard's URL; --dashboard-port sets the port)")
    if not no_browser and browser_at_hand():
        try:
            webbrowser.open(url)
        except webbrowser.Error:
            pass  # printed: the user can open it by hand
