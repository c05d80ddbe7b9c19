"""docs/bus.md as a reader uses it: every Python snippet runs as written against the real bus (only the
URL is this test's), and the example replies have the shape real replies have."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from isthmus.launch import project_env
from tests.integration.conftest import ControlPlane, apply, eventually

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "bus.md").read_text()
DOC_URL = "nats://127.0.0.1:4222"
DOC_CONFIG = ".isthmus/isthmus.yaml"  # the operator's client config, as `isthmus up` writes it


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def snippet(plane: ControlPlane, containing: str) -> str:
    [code] = [code for code in blocks("python") if containing in code]
    assert DOC_URL in code and DOC_CONFIG in code
    return code.replace(DOC_URL, plane.nats_url).replace(DOC_CONFIG, str(plane.config_path))


def key_paths(value: Any, at: str = "") -> set[str]:
    """Every key of a JSON value, as dotted paths (`results[].ref.namespace`)."""
    if isinstance(value, dict):
        return {path for key, item in value.items() for path in {f"{at}{key}", *key_paths(item, f"{at}{key}.")}}
    if isinstance(value, list):
        return {path for item in value for path in key_paths(item, f"{at.rstrip('.')}[].")}
    return set()


def run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=project_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_python_snippet_is_one_this_file_runs() -> None:
    assert len(blocks("python")) == 3  # apply, get/delete, watch: a new snippet needs its test below


async def test_the_apply_snippet_applies_and_its_reply_has_the_documented_shape(mesh: ControlPlane) -> None:
    reply = json.loads(await asyncio.to_thread(run, snippet(mesh, "isthmus.config.apply")))
    documented = json.loads([b for b in blocks("json") if '"ok": true' in b][0])
    assert reply["ok"] and reply["results"][0]["ref"] == {"kind": "VirtualService", "name": "reviews",
                                                          "namespace": "default"}
    assert key_paths(reply) - {"warnings[].document", "warnings[].message", "warnings[].path", "warnings[].kind",
                               "warnings[].name", "warnings[].namespace"} == key_paths(documented)


async def test_a_rejected_submission_replies_exactly_as_documented(mesh: ControlPlane) -> None:
    text = (ROOT / "examples" / "bookinfo" / "virtual-service-reviews-80-10-10.yaml").read_text()
    reply = await apply(mesh, text.replace("weight: 80", "weight: eighty"))
    documented = json.loads([b for b in blocks("json") if '"ok": false' in b][0])
    assert reply == documented


async def test_the_get_and_delete_snippet_lists_then_deletes(mesh: ControlPlane) -> None:
    assert (await apply(mesh, (ROOT / "examples" / "bookinfo" / "virtual-service-reviews-v1.yaml").read_text()))["ok"]
    listed, deleted = (await asyncio.to_thread(run, snippet(mesh, "isthmus.config.delete"))).splitlines()
    assert "reviews" in ast.literal_eval(listed)  # the snippet prints a Python list of names
    reply = json.loads(deleted)
    assert reply["ok"] and reply["results"][0]["action"] == "deleted"
    assert reply["results"][0]["ref"]["namespace"] == "default"


async def test_the_watch_snippet_prints_each_change_as_documented(mesh: ControlPlane) -> None:
    watcher = subprocess.Popen([sys.executable, "-u", "-c", snippet(mesh, "isthmus.config.events")], cwd=ROOT,
                               env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    assert watcher.stdout is not None
    reader = loop.run_in_executor(None, lambda: [loop.call_soon_threadsafe(lines.put_nowait, line)
                                                 for line in iter(watcher.stdout.readline, "")])
    try:
        vs = (ROOT / "examples" / "bookinfo" / "virtual-service-reviews-v1.yaml").read_text()
        flip = iter(["v2", "v1"] * 50)

        async def applied_and_seen() -> dict | None:  # apply until the watcher (subscribing meanwhile) prints
            reply = await apply(mesh, vs.replace("subset: v1", f"subset: {next(flip)}"))
            assert reply["ok"], reply
            try:
                return json.loads(await asyncio.wait_for(lines.get(), 1.0))
            except asyncio.TimeoutError:
                assert watcher.poll() is None, watcher.stderr.read() if watcher.stderr else ""
                return None

        event = await eventually(applied_and_seen, 30)
        assert set(event) == {"type", "kind", "namespace", "name", "revision"}
        assert (event["kind"], event["namespace"], event["name"]) == ("VirtualService", "default", "reviews")
        assert event["type"] in ("ADDED", "MODIFIED")
    finally:
        watcher.terminate()
        watcher.wait(10)
        await reader
