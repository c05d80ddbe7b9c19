"""Files an operator names are read bounded and never block (runtime/files.py): a FIFO given as
`--token-file` or `--ca-kek-file` hung `proxy run` and `isthmus up` silently in open(), and
`--plugin-ca-cert /dev/zero` read without end (MemoryError) before the size check."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime import bootstrap_tokens, clientconfig, kek, plugin_ca
from runtime.files import read_bounded


def _within(seconds: float, call: Callable[[], object], fifo: Path | None = None) -> BaseException | object:
    """call()'s result or exception, failing the test if it has not returned within `seconds` (a FIFO's
    reader blocked in open() is then released by opening the write end, so the thread ends)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() and fifo is not None:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # let the blocked open() go
        thread.join(5)
        pytest.fail(f"{call} blocked on the FIFO {fifo}")
    assert outcome, "it did not return"
    return outcome[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    return path


def test_a_fifo_is_refused_at_once_by_every_reader(fifo: Path) -> None:
    readers: dict[str, Callable[[], object]] = {
        "token file": lambda: bootstrap_tokens.read_token_file(str(fifo)),
        "KEK": lambda: kek.load_kek(fifo),
        "plugin CA": lambda: plugin_ca._read("--plugin-ca-cert", str(fifo)),
        "client config": lambda: clientconfig.load(fifo),
    }
    for name, call in readers.items():
        result = _within(3, call, fifo)
        assert isinstance(result, (OSError, ValueError, clientconfig.ConfigFileError)), (name, result)
        assert "FIFO" in str(result) or "not a regular file" in str(result), (name, result)


def test_an_endless_device_is_read_only_up_to_the_bound() -> None:
    result = _within(10, lambda: plugin_ca._read("--plugin-ca-cert", "/dev/zero"))
    assert isinstance(result, ValueError) and f"larger than {plugin_ca.MAX_PEM_FILE} bytes" in str(result), result
    result = _within(10, lambda: clientconfig.load("/dev/zero"))
    assert isinstance(result, clientconfig.ConfigFileError) and "over" in str(result), result


def test_read_bounded_reads_one_byte_past_the_limit_and_no_more(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    assert read_bounded(path, 100) == b"a" * 100  # at the bound
    assert read_bounded(path, 99) == b"a" * 100  # one over: the caller sees len > limit
    assert read_bounded(path, 10) == b"a" * 11
    with pytest.raises(OSError, match="directory"):
        read_bounded(tmp_path, 10)
