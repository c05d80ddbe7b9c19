"""The external programs the data-plane benchmark and the tests drive, installed with apt-get where missing."""

from __future__ import annotations

import os
import shutil
import subprocess

# program -> Debian package
TOOLS = {"wrk": "wrk", "hey": "hey", "haproxy": "haproxy", "nginx": "nginx", "taskset": "util-linux"}
# the dashboard's headless-browser test (tests/telemetry/test_dashboard_browser.py): Debian's chromium
BROWSER_TOOLS = {"chromium": "chromium"}
# the real Prometheus that tests/integration/test_prometheus.py scrapes the telemetry service with
PROMETHEUS_TOOLS = {"prometheus": "prometheus"}
# the sidecar's DNS test (tests/integration/test_dns.py): dig asks it, curl fetches by the address it gave
DNS_TOOLS = {"dig": "dnsutils", "curl": "curl"}
# the deployment tests (tests/deploy/): `docker-compose config` checks docker-compose.yml, `systemd-analyze verify`
# the units (the package brings the tool; no systemd needs to run); docs/install-vm.md's walkthrough runs in a
# network namespace of its own (unshare, ip)
DEPLOY_TOOLS = {"docker-compose": "docker-compose", "systemd-analyze": "systemd", "unshare": "util-linux",
                "ip": "iproute2"}


class ToolsMissing(RuntimeError):
    pass


def which(program: str) -> str | None:
    # nginx and haproxy live in /usr/sbin, which a non-login PATH may lack
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/local/sbin")


def missing_tools(tools: dict[str, str] = TOOLS) -> list[str]:
    return [program for program in tools if which(program) is None]


def ensure_tools(install: bool = True, tools: dict[str, str] = TOOLS) -> dict[str, str]:
    """Path of every tool; installs what is missing with `apt-get update && apt-get install -y ...`.

    Raises ToolsMissing when some stay missing (no apt-get, not root, no network...), with the reason.
    """
    missing = missing_tools(tools)
    if missing and install:
        apt = shutil.which("apt-get")
        if apt is None:
            raise ToolsMissing(f"missing {', '.join(missing)} and apt-get is not available")
        sudo: list[str] = []
        if os.geteuid() != 0:
            if shutil.which("sudo") is None:
                raise ToolsMissing(f"missing {', '.join(missing)}; installing them needs root (or sudo)")
            sudo = ["sudo", "-n"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        packages = sorted({tools[p] for p in missing})
        for argv in ([*sudo, apt, "update"], [*sudo, apt, "install", "-y", "--no-install-recommends", *packages]):
            done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=600, check=False)
            if done.returncode != 0:
                tail = "\n".join(done.stdout.splitlines()[-10:])
                raise ToolsMissing(f"`{' '.join(argv)}` failed ({done.returncode}):\n{tail}")
        missing = missing_tools(tools)
    if missing:
        raise ToolsMissing(f"missing {', '.join(missing)} (install: apt-get install -y "
                           f"{' '.join(sorted({tools[p] for p in missing}))})")
    return {program: which(program) or "" for program in tools}


def main() -> int:
    """`make deps`: install the missing tools (apt-get, visible), or say what is missing; 0 when all are there."""
    tools = {**TOOLS, **BROWSER_TOOLS, **PROMETHEUS_TOOLS, **DNS_TOOLS, **DEPLOY_TOOLS}
    missing = missing_tools(tools)
    if missing:
        print(f"benchmark and test tools missing: {', '.join(missing)}; installing with apt-get", flush=True)
    try:
        paths = ensure_tools(tools=tools)
    except ToolsMissing as exc:
        print(f"error: {exc}", flush=True)
        return 1
    if missing:
        print("installed: " + ", ".join(f"{program} ({path})" for program, path in paths.items() if program in missing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
