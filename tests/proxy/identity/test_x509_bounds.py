"""The X.509 worker's bounds (proto/identity_worker.py, proxy/identity/x509_client.py), each at its limit (taken)
and one byte or one item over it (refused), with the real child (and tests/proxy/identity/misbehaving_worker.py
for replies and stderr only a broken child would write)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import msgspec
import pytest
from cryptography import x509

from proto.identity_worker import MAX_REPLY, MAX_REQUEST, ReadRoots, RootsRead, WorkerFailed, WorkerReply
from proxy.identity import x509_client
from proxy.identity.keys import key_pem, new_key
from proxy.identity.material import MaterialError
from proxy.identity.x509_client import STDERR_KEPT, X509WorkerError
from proxy.identity.x509_read import pem
from tests.proxy.identity.testca import TestCa

ROOT = Path(__file__).resolve().parents[3]
ID = "spiffe://cluster.local/ns/default/sa/reviews"
PEM_MAX = 64 * 1024  # characters of one PEM text (proto/identity_worker.py Pem)
LIST_MAX = 32  # texts in a chain or a bundle (PemList)
ID_MAX = 2048  # characters of MakeKey.identity and CheckChain.expected_id
PEM = TestCa().pem


@pytest.fixture(autouse=True)
def tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child runs with -P: the misbehaving worker is found through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def roots_of_size(size: int) -> list[str]:
    """Ten copies of one root, padded with newlines (which PEM reading skips) so that ReadRoots(roots_pem=...)
    encodes in exactly `size` bytes; each text stays a str16 (under 65,536 characters)."""
    roots = [PEM] * 10
    missing = size - len(msgspec.msgpack.encode(ReadRoots(roots_pem=roots)))
    assert 0 <= missing <= 10 * (65535 - len(PEM))
    roots = [PEM + "\n" * (missing // 10 + (i < missing % 10)) for i in range(10)]
    assert len(msgspec.msgpack.encode(ReadRoots(roots_pem=roots))) == size
    return roots


def child(data: bytes) -> WorkerReply:
    """What the real worker child answers to `data` on its stdin."""
    done = subprocess.run(x509_client.argv(), input=data, capture_output=True, timeout=30, env=x509_client.child_env())
    assert done.returncode == 0, done.stderr[-2000:]
    return msgspec.msgpack.Decoder(WorkerReply).decode(done.stdout)  # type: ignore[arg-type]


def test_the_child_reads_a_request_of_max_request_bytes_and_refuses_one_byte_more() -> None:
    at = child(msgspec.msgpack.encode(ReadRoots(roots_pem=roots_of_size(MAX_REQUEST))))
    assert isinstance(at, RootsRead) and len(at.roots) == 10, at
    over = child(msgspec.msgpack.encode(ReadRoots(roots_pem=roots_of_size(MAX_REQUEST + 1))))
    assert over == WorkerFailed(kind="request", error=f"the request is over {MAX_REQUEST} bytes")


async def test_the_sidecar_sends_a_request_of_max_request_bytes_and_refuses_one_byte_more_itself() -> None:
    read = await x509_client.read_roots(roots_of_size(MAX_REQUEST))
    assert len(read.roots) == 10
    with pytest.raises(MaterialError, match=f"^the X\\.509 worker cannot take it: the request is over {MAX_REQUEST} "):
        await x509_client.read_roots(roots_of_size(MAX_REQUEST + 1))


async def test_a_bundle_of_32_roots_is_read_and_33_refused() -> None:
    assert len((await x509_client.read_roots([PEM] * LIST_MAX)).roots) == LIST_MAX
    with pytest.raises(MaterialError, match=f"length <= {LIST_MAX}"):
        await x509_client.read_roots([PEM] * (LIST_MAX + 1))
    with pytest.raises(MaterialError, match=f"length <= {LIST_MAX}"):  # a chain too
        await x509_client.read_roots([PEM], chain_pem=[PEM] * (LIST_MAX + 1))


async def test_a_pem_text_of_64_kib_is_read_and_one_character_more_refused() -> None:
    assert len((await x509_client.read_roots([PEM.ljust(PEM_MAX, "\n")])).roots) == 1
    with pytest.raises(MaterialError, match=f"length <= {PEM_MAX} - at `\\$.roots_pem\\[0\\]`"):
        await x509_client.read_roots([PEM.ljust(PEM_MAX + 1, "\n")])


async def test_an_identity_of_2048_characters_gets_a_key_and_one_character_more_is_refused() -> None:
    prefix = "spiffe://cluster.local/ns/default/sa/"
    made = await x509_client.make_key(prefix + "x" * (ID_MAX - len(prefix)))
    assert "CERTIFICATE REQUEST" in made.csr_pem
    with pytest.raises(MaterialError, match=f"length <= {ID_MAX} - at `\\$.identity`"):
        await x509_client.make_key(prefix + "x" * (ID_MAX + 1 - len(prefix)))
    with pytest.raises(MaterialError, match=f"length <= {ID_MAX} - at `\\$.expected_id`"):
        await x509_client.check_chain(made.key_pem, [PEM], "s" * (ID_MAX + 1))


@pytest.mark.parametrize(("how", "taken"), [("reply_at", True), ("reply_over", False)])
async def test_a_reply_of_max_reply_bytes_is_taken_and_one_byte_more_is_a_worker_error(
        monkeypatch: pytest.MonkeyPatch, how: str, taken: bool) -> None:
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", how)
    if taken:
        made = await x509_client.make_key(ID)
        assert len(made.key_pem) > MAX_REPLY - 100
    else:
        with pytest.raises(X509WorkerError, match=f"reply is over {MAX_REPLY} bytes"):
            await x509_client.make_key(ID)


@pytest.mark.parametrize(("size", "whole"), [(STDERR_KEPT, True), (STDERR_KEPT + 1, False)])
async def test_a_crashed_childs_stderr_is_kept_up_to_stderr_kept_bytes_its_last_ones(
        monkeypatch: pytest.MonkeyPatch, size: int, whole: bool) -> None:
    """One line of `size` bytes, "E" then "x"s: at the bound it is kept whole (the error shows its start, "Exx..."),
    one byte over only its last STDERR_KEPT bytes are ("xxx...")."""
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", "stderr_line")
    monkeypatch.setenv("X509_TEST_STDERR", str(size))
    with pytest.raises(X509WorkerError) as caught:
        await x509_client.make_key(ID)
    shown = "E" + "x" * 299 if whole else "x" * 300
    assert str(caught.value) == f"the X.509 worker failed (exit 1): {shown}"


async def test_a_crashed_childs_long_stderr_is_read_to_its_last_line_not_a_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A traceback's last line says what failed: 256 KiB on stderr (a long chained traceback, a flood of warnings)
    is read to its end, not STDERR_KEPT bytes from its start (the child then blocked on the full pipe, and the
    failure was a timeout with no reason)."""
    monkeypatch.setattr(x509_client, "MODULE", "tests.proxy.identity.misbehaving_worker")
    monkeypatch.setenv("X509_TEST_WORKER", "stderr_long")
    with pytest.raises(X509WorkerError, match=r"^the X\.509 worker failed \(exit 1\): the last line$"):
        await x509_client.make_key(ID, timeout=5.0)


def _leaf_with_sans(ca: TestCa, key: object, sans: int) -> str:
    """A leaf for `key` and ID that also names `sans` DNS names of ~65 characters (~51 KiB of PEM for 560)."""
    import datetime

    from cryptography.hazmat.primitives import hashes

    begin = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    names = [x509.UniformResourceIdentifier(ID)] + [x509.DNSName(f"h{i:05d}.{'a' * 50}.example") for i in range(sans)]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())  # type: ignore[attr-defined]
            .not_valid_before(begin).not_valid_after(begin + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=True).sign(ca.key, hashes.SHA256()))
    return pem(cert)


async def test_a_chain_within_the_request_bounds_whose_fields_read_back_over_max_reply_is_refused_once() -> None:
    """A reply echoes the chain and adds every certificate's names as text (~1.75x its request): a CheckChain within
    every request bound (6 x a 51 KiB leaf of 560 SANs, 309 KB) read back as 535 KB, over MAX_REPLY, and the sidecar
    took that for a broken worker and asked again with a new child at every backoff. The child now refuses it as
    the certificates' fault (MaterialError: said once), in a reply far under the bound."""
    ca, key = TestCa(), new_key()
    leaf = _leaf_with_sans(ca, key, 560)
    chain = [leaf] * 6  # the worker checks the leaf and reads the rest: each copy is echoed with its fields
    with pytest.raises(MaterialError, match=f"read back over {MAX_REPLY} bytes"):
        await x509_client.check_chain(key_pem(key).decode(), chain, ID, [ca.pem])
    one = await x509_client.check_chain(key_pem(key).decode(), [leaf], ID, [ca.pem])  # within the bound: answered
    assert one.material.spiffe_id == ID
