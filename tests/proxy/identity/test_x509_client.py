"""proxy/identity/x509_client.py: the sidecar's side of the X.509 worker, with real child processes (the real
worker, and tests/proxy/identity/misbehaving_worker.py for what a broken child may do)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from cryptography import x509

from proxy.identity import x509_client
from proxy.identity.keys import load_key
from proxy.identity.material import MaterialError
from proxy.identity.x509_client import Worker, X509WorkerError
from tests.proxy.identity.testca import TestCa

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child runs with -P (not from its working directory): tests.proxy.identity.misbehaving_worker is found
    through PYTHONPATH, as a test's own module."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

ID = "spiffe://cluster.local/ns/default/sa/reviews"


async def test_a_key_made_in_a_child_is_checked_in_another_against_its_chain_and_roots() -> None:
    ca = TestCa()
    made = await x509_client.make_key(ID)
    public = x509.load_pem_x509_csr(made.csr_pem.encode()).public_key()
    chain = [ca.sign_key(public, ID)]  # type: ignore[arg-type]
    checked = await x509_client.check_chain(made.key_pem, chain, ID, [ca.pem])
    assert checked.material.spiffe_id == ID and checked.material.key_pem == made.key_pem
    assert checked.issuer == ca.fingerprint and [r.subject for r in checked.roots] == [ca.subject]
    load_key(made.key_pem.encode())  # a usable PKCS#8 key came over the pipe
    read = await x509_client.read_roots([ca.pem], checked.material.chain_pem)
    assert read.issuer == ca.fingerprint


async def test_the_childs_refusal_is_a_material_error_in_its_words() -> None:
    other = "spiffe://cluster.local/ns/b/sa/reviews"
    material = TestCa().material(other)
    with pytest.raises(MaterialError, match=f"^the certificate is for {other}, this workload is {ID}$"):
        await x509_client.check_chain(material.key_pem, material.chain_pem, ID)
    with pytest.raises(MaterialError, match="cannot be read"):
        await x509_client.read_roots(["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])


@pytest.mark.parametrize(("how", "error"), [
    ("garbage", "the X.509 worker failed (exit 0): no reply"),
    ("flood", "reply is over"),
    ("crash", "RuntimeError: the worker broke"),
    ("wrong", "the X.509 worker answered RootsRead, not KeyMade"),
])
async def test_a_child_that_answers_wrongly_or_dies_is_a_worker_error(monkeypatch: pytest.MonkeyPatch, how: str,
                                                                      error: str) -> None:
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", how)
    with pytest.raises(X509WorkerError) as caught:
        await x509_client.make_key(ID)
    assert error in str(caught.value)


async def test_a_child_that_does_not_answer_in_time_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", "sleep")
    worker = await Worker.start()
    started = time.monotonic()
    with pytest.raises(X509WorkerError, match="did not answer in 1 s"):
        await x509_client.make_key(ID, worker=worker, timeout=1.0)
    assert time.monotonic() - started < 5 and worker.process.returncode is not None  # killed and reaped


async def test_a_missing_worker_module_is_a_worker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.no_such_worker")
    with pytest.raises(X509WorkerError, match="No module named"):
        await x509_client.make_key(ID)


async def test_a_worker_started_ahead_and_not_needed_is_killed_and_reaped() -> None:
    worker = await Worker.start()
    await worker.close()
    assert worker.process.returncode is not None


async def test_a_cancelled_request_leaves_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", "sleep")
    worker = await Worker.start()
    task = asyncio.create_task(x509_client.make_key(ID, worker=worker))
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert worker.process.returncode is not None


async def test_workers_spawned_before_the_loop_are_adopted_and_answer_or_are_killed() -> None:
    """`proxy run` starts two before it imports the sidecar (spawn_early); the agent adopts them (Ahead.start)."""
    early = x509_client.spawn_early(2)
    assert len(early) == 2 and all(popen.poll() is None for popen in early)
    ahead = x509_client.Ahead()
    await ahead.start(2, 30.0, early)
    assert [worker.process.popen for worker in ahead.workers] == early  # type: ignore[union-attr]
    made = await x509_client.make_key(ID, worker=await ahead.take())
    assert "PRIVATE KEY" in made.key_pem and early[0].poll() == 0
    await ahead.close()
    assert early[1].poll() is not None and ahead.workers == []


async def test_a_proxy_folder_in_the_working_directory_does_not_stand_in_for_the_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m` puts the working directory first on sys.path: a `proxy/` folder where the sidecar runs would be
    run as the worker, and be handed the current key to sign the renewal proof with. The child runs with -P."""
    fake = tmp_path / "proxy" / "identity"
    fake.mkdir(parents=True)
    marker = tmp_path / "ran"
    for init in (tmp_path / "proxy" / "__init__.py", fake / "__init__.py"):
        init.write_text("")
    (fake / "x509_worker.py").write_text(f"open({str(marker)!r}, 'w').write('the key')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH")
    made = await x509_client.make_key(ID)
    assert made.key_pem.startswith("-----BEGIN PRIVATE KEY-----") and not marker.exists()


@pytest.mark.parametrize("adopted", [False, True], ids=["started", "adopted"])
def test_a_child_gone_before_its_request_is_a_worker_error_on_uvloop(monkeypatch: pytest.MonkeyPatch,
                                                                      adopted: bool) -> None:
    """`proxy run` runs the sidecar on uvloop, whose pipe transport raises RuntimeError ("the handler is closed"),
    not BrokenPipeError, when a request is written to a child that already died (the OOM killer took it while the
    ca signed). That is the worker's failure (X509WorkerError, tried again later), not an exception that ends the
    identity loop or the sidecar's start-up."""
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", "exit")

    async def main() -> None:
        worker = await (Worker.adopt(x509_client.spawn_early(1)[0]) if adopted else Worker.start())
        while worker.process.returncode is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the loop sees the pipe's reader gone
        with pytest.raises(X509WorkerError, match=r"\(exit 3\)"):
            await x509_client.make_key(ID, worker=worker)

    uvloop.run(main())


async def test_a_request_over_the_workers_bounds_is_refused_before_any_child_and_its_worker_closed() -> None:
    """The child would refuse it at every try ("request"): the parent says so at once, as the bundle's or chain's
    fault (MaterialError), and kills the worker it was handed."""
    pem = TestCa().pem
    worker = await Worker.start()
    with pytest.raises(MaterialError, match=r"the X\.509 worker cannot take it: .*length <= 32"):
        await x509_client.read_roots([pem] * 33, worker=worker)
    assert worker.process.returncode is not None
    with pytest.raises(MaterialError, match=r"the X\.509 worker cannot take it: the request is over 524288 bytes"):
        await x509_client.read_roots([pem * 60] * 30)


def test_workers_spawned_early_leave_no_open_pipe_once_gone_on_uvloop() -> None:
    """On uvloop (`proxy run`'s loop) a pipe transport stays open after EOF, and with it the Popen's stdout/stderr
    of the workers spawn_early() started, until the loop closes (the sidecar's life): 4 fds per sidecar."""
    uvloop = pytest.importorskip("uvloop")
    early = x509_client.spawn_early(2)

    async def main() -> None:
        ahead = x509_client.Ahead()
        await ahead.start(2, 0.1, early)
        await x509_client.make_key(ID, worker=await ahead.take())  # one used, one killed after its life
        await asyncio.sleep(1.0)
        assert [popen.poll() is not None for popen in early] == [True, True]
        # while the loop runs (the sidecar's life): its closing closes them
        assert [(p.stdout.closed, p.stderr.closed) for p in early] == [(True, True)] * 2  # type: ignore[union-attr]

    uvloop.run(main())


async def test_the_bootstrap_token_is_not_in_a_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """ISTHMUS_TOKEN (a `proxy run` token from the environment) stays in the sidecar: its workers never ask the ca,
    and a child's environment is one more place to read it from. Both ways of starting one."""
    monkeypatch.setenv("ISTHMUS_TOKEN", "bootstrap-secret")
    early = x509_client.spawn_early(1)
    workers = [await Worker.start(), await Worker.adopt(early[0])]
    try:
        for worker in workers:
            pid = worker.process.popen.pid if hasattr(worker.process, "popen") else worker.process.pid
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"ISTHMUS_TOKEN=bootstrap-secret" not in environ and any(e.startswith(b"PATH=") for e in environ)
    finally:
        for worker in workers:
            await worker.close()
