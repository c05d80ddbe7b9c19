"""The sidecar's side of the X.509 worker (x509_worker.py): a child process per request, so `cryptography` never
loads into the long-lived sidecar. The sidecar holds only PEM texts and the fields the child parsed.

    made = await make_key(identity, proof_key_pem="", roots_pem=())        -> KeyMade (key, CSR, proof, roots)
    checked = await check_chain(key_pem, chain_pem, expected_id, roots_pem) -> material.Checked
    read = await read_roots(roots_pem, chain_pem)                          -> RootsRead
    worker = await Worker.start()   # start a child before its request is known (while the ca signs), then
    await check_chain(..., worker=worker)                                  # (or `await worker.close()`)
    popens = spawn_early(2)         # before the event loop (`proxy run`, before the sidecar's imports), then
    worker = await Worker.adopt(popens[0])                                 # in the loop

Errors:
    MaterialError      the child read the request and refused it (its words): not our key, another identity,
                       an unreadable key, chain or root; or the request is over the child's bounds (said here,
                       no child started: it would refuse it at every try)
    X509WorkerError    the child could not be started, died, took longer than `timeout`, or answered with
                       something that is not a reply (or over MAX_REPLY bytes)

The child is `sys.executable -P -m proxy.identity.x509_worker` (argv()), exec'd directly (never a shell); its stdin gets the
request (with a key only to sign a proof or to check a stored chain against), its stdout brings the reply
(with a new key: the only way a new key reaches this process), its stderr only a traceback on a crash. A
child not answered in time, or no longer needed, is killed and reaped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TypeVar

import msgspec

from proto.identity_worker import (MAX_REPLY, MAX_REQUEST, ChainChecked, CheckChain, KeyMade, MakeKey, ReadRoots,
                                   RootsRead, WorkerFailed, WorkerReply, WorkerRequest)
from proxy.identity.material import Checked, MaterialError
from runtime.log import get_logger

log = get_logger("proxy.identity")
MODULE = "proxy.identity.x509_worker"
TIMEOUT = 10.0  # seconds from the request to the reply: the work takes milliseconds, Python's start ~0.1 s
STDERR_KEPT = 4096  # bytes of a crashed child's stderr kept for the error: its last ones (a traceback ends with why)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerReply)  # type: ignore[arg-type]
_request_decoder = msgspec.msgpack.Decoder(WorkerRequest)  # type: ignore[arg-type]
R = TypeVar("R", KeyMade, ChainChecked, RootsRead)


class X509WorkerError(Exception):
    """The X.509 worker child did not answer: the work was not done (try again later)."""


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Until EOF, but no more than limit + 1 bytes (one more says "over the limit")."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Until EOF, keeping only the last `keep` bytes. Read to the end: a child blocked on a full stderr pipe would
    never close its stdout (a timeout with no reason), and a traceback's last line is the one that says why."""
    tail = b""
    while chunk := await stream.read(64 * 1024):
        tail = (tail + chunk)[-keep:]
    return tail


def argv() -> list[str]:
    """The child's command line. `-P`: the sidecar's working directory is not put first on sys.path, so a
    `proxy/` folder there cannot stand in for the worker (it would be handed the key to sign with)."""
    return [sys.executable, "-P", "-m", MODULE]


CHILD_ENV_DROPPED = ("ISTHMUS_TOKEN",)  # the bootstrap token: the worker never asks the ca, so it is not handed it


def child_env() -> dict[str, str]:
    """The sidecar's environment (PATH, PYTHONPATH, locale...) without what the worker has no use for and must not
    hold: the bootstrap token (readable in /proc/<pid>/environ by whoever may read the child's)."""
    return {name: value for name, value in os.environ.items() if name not in CHILD_ENV_DROPPED}


def spawn_early(count: int) -> list[subprocess.Popen[bytes]]:
    """Start `count` workers now, without an event loop: `proxy run` calls this before it imports the sidecar, so
    `cryptography` loads in the children while the sidecar loads its own modules (~0.2 s). [] when they cannot be
    started (then they are started when needed). Hand them to Worker.adopt() in the loop."""
    try:
        return [subprocess.Popen(argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=child_env()) for _ in range(count)]
    except OSError:
        return []


class _Adopted:
    """A child spawn_early() started, with the part of asyncio.subprocess.Process that Worker uses."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader,
                 stderr: asyncio.StreamReader, reading: Sequence[asyncio.BaseTransport] = ()) -> None:
        self.popen, self.stdin, self.stdout, self.stderr = popen, stdin, stdout, stderr
        self.reading = reading  # the stdout and stderr transports: closed once the child is reaped

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        self.popen.kill()
        self.stdin.close()

    async def wait(self) -> int:
        while (code := self.popen.poll()) is None:  # it has closed its stdout, or was killed: a few ms at most
            await asyncio.sleep(0.005)
        for transport in self.reading:
            # uvloop keeps a pipe transport open after EOF (StreamReaderProtocol asks to stay half-open), and with it
            # the pipe's fd until the loop closes; asyncio closed it at EOF (then this does nothing)
            transport.close()
        return code


async def _reader(loop: asyncio.AbstractEventLoop, pipe: object) -> tuple[asyncio.BaseTransport, asyncio.StreamReader]:
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return transport, reader


class Worker:
    """One child process, for one request."""

    def __init__(self, process: asyncio.subprocess.Process | _Adopted) -> None:
        self.process = process

    @classmethod
    async def adopt(cls, popen: subprocess.Popen[bytes]) -> "Worker":
        """A worker spawn_early() started, its pipes now on this event loop."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, popen.stdin)
        stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        (out_pipe, stdout), (err_pipe, stderr) = await _reader(loop, popen.stdout), await _reader(loop, popen.stderr)
        return cls(_Adopted(popen, stdin, stdout, stderr, (out_pipe, err_pipe)))

    @classmethod
    async def start(cls) -> "Worker":
        """X509WorkerError when the child cannot be started."""
        try:
            process = await asyncio.create_subprocess_exec(
                *argv(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=child_env())
        except OSError as exc:
            raise X509WorkerError(f"the X.509 worker cannot be started: {exc}") from exc
        return cls(process)

    async def ask(self, request: WorkerRequest, timeout: float = TIMEOUT) -> WorkerReply:
        """The child's reply (a WorkerFailed too: the caller maps it); X509WorkerError. The child is gone after."""
        try:
            return await asyncio.wait_for(self._exchange(_encoder.encode(request)), timeout)
        except asyncio.TimeoutError:
            raise X509WorkerError(f"the X.509 worker did not answer in {timeout:g} s") from None
        finally:
            await self.close()

    async def _exchange(self, data: bytes) -> WorkerReply:
        process = self.process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        try:
            process.stdin.write(data)
            await process.stdin.drain()
            process.stdin.close()
        except (OSError, RuntimeError):
            # it died before reading: what it wrote on stderr says why (below). asyncio raises BrokenPipeError or
            # ConnectionResetError; uvloop (`proxy run`'s loop) RuntimeError, its pipe transport already closed
            pass
        out, err = await asyncio.gather(_read_at_most(process.stdout, MAX_REPLY),
                                        _read_tail(process.stderr, STDERR_KEPT))
        code = await process.wait()
        if len(out) > MAX_REPLY:
            raise X509WorkerError(f"the X.509 worker's reply is over {MAX_REPLY} bytes")
        try:
            return _decoder.decode(out)
        except msgspec.DecodeError as exc:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"no reply ({str(exc)[:100]})"]
            raise X509WorkerError(f"the X.509 worker failed (exit {code}): {last[0][:300]}") from None

    async def close(self) -> None:
        """Kill the child if it still runs, and reap it."""
        process = self.process
        if process.returncode is None:
            try:
                process.kill()
            except ProcessLookupError:
                pass  # it exited between the check and the kill: reaped below all the same
        await process.wait()


class Ahead:
    """Workers started before their requests are known, so their start (Python, `cryptography`: ~0.1 s) overlaps
    other work; taken in order, else a new one is started. close() kills those not taken (an idle one holds
    ~30 MB), as does the timer start() sets."""

    def __init__(self) -> None:
        self.workers: list[Worker] = []

    async def start(self, count: int, life: float, early: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """Adopt the `early` workers (spawn_early), then start more up to `count`; close them after `life` seconds
        if still not taken. X509WorkerError."""
        try:
            for popen in early:
                try:
                    self.workers.append(await Worker.adopt(popen))
                except OSError as exc:  # its pipes cannot join this loop: killed, and one started when needed
                    log.warning("an X.509 worker started early cannot be used", error=str(exc))
                    popen.kill()
                    popen.wait(timeout=5)
            while len(self.workers) < count:
                self.workers.append(await Worker.start())
        finally:
            asyncio.get_running_loop().call_later(life, lambda: asyncio.ensure_future(self.close()))

    async def take(self) -> Worker:
        return self.workers.pop(0) if self.workers else await Worker.start()

    async def close(self) -> None:
        workers, self.workers = self.workers, []
        for worker in workers:
            await worker.close()


def _within_bounds(request: WorkerRequest) -> None:
    """MaterialError when the child would refuse `request` at every try (over MAX_REQUEST bytes, or a list or text
    over proto/identity_worker.py's bounds: a bundle of more than 32 roots, say): the bundle's or chain's fault,
    said once here, rather than a worker failure tried again (and a child started) every few seconds."""
    data = _encoder.encode(request)
    if len(data) > MAX_REQUEST:
        raise MaterialError(f"the X.509 worker cannot take it: the request is over {MAX_REQUEST} bytes")
    try:
        _request_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise MaterialError(f"the X.509 worker cannot take it: {exc}") from None


async def _ask(request: WorkerRequest, expected: type[R], worker: Worker | None, timeout: float) -> R:
    try:
        _within_bounds(request)
    except MaterialError:
        if worker is not None:
            await worker.close()  # handed to us for this request: no one else will close it
        raise
    reply = await (worker or await Worker.start()).ask(request, timeout)
    if isinstance(reply, expected):
        return reply
    if isinstance(reply, WorkerFailed):
        if reply.kind == "material":
            raise MaterialError(reply.error)
        raise X509WorkerError(f"the X.509 worker failed ({reply.kind}): {reply.error}")
    raise X509WorkerError(f"the X.509 worker answered {type(reply).__name__}, not {expected.__name__}")


async def make_key(identity: str, proof_key_pem: str = "", worker: Worker | None = None,
                   timeout: float = TIMEOUT, roots_pem: Sequence[str] = ()) -> KeyMade:
    """A new key and its CSR for `identity`; with `proof_key_pem` (the current key), the renewal proof too; with
    `roots_pem`, those roots read (KeyMade.roots, or KeyMade.roots_error)."""
    return await _ask(MakeKey(identity=identity, proof_key_pem=proof_key_pem, roots_pem=list(roots_pem)), KeyMade,
                      worker, timeout)


async def check_chain(key_pem: str, chain_pem: Sequence[str], expected_id: str, roots_pem: Sequence[str] = (),
                      worker: Worker | None = None, timeout: float = TIMEOUT) -> Checked:
    """The chain checked against `key_pem` and `expected_id`, with the root among `roots_pem` that issued it."""
    reply = await _ask(CheckChain(key_pem=key_pem, chain_pem=list(chain_pem), expected_id=expected_id,
                                  roots_pem=list(roots_pem)), ChainChecked, worker, timeout)
    return Checked.of(key_pem, reply)


async def read_roots(roots_pem: Sequence[str], chain_pem: Sequence[str] = (),
                     worker: Worker | None = None, timeout: float = TIMEOUT) -> RootsRead:
    """Every root parsed (MaterialError when one cannot be read) and the one that issued `chain_pem`'s top."""
    return await _ask(ReadRoots(roots_pem=list(roots_pem), chain_pem=list(chain_pem)), RootsRead, worker, timeout)
