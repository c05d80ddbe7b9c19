"""Decoding and validation of submissions in a worker process, so pilot's event loop stays free.

    DecodeWorker(limits).decode(text) -> (resources, errors, warnings)     (as decode_documents)

A large or hostile submission costs the worker, not pilot: pilot keeps answering its health subject,
other config requests and keeping its leader lease alive while a document is checked. The worker's
address space is capped at limits.decode_memory_mb (RLIMIT_AS) and each decode at
limits.decode_timeout seconds; a worker over either bound is killed and replaced, and the submission
is refused with an error naming the setting. One worker, started on first use ("spawn": pilot's
etcd client runs threads, which fork would copy in an unknown state); requests to it queue.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from proto.config_api import ConfigError
from proto.resources import Resource
from runtime.log import get_logger
from runtime.settings import ConfigLimits
from services.pilot.validate import decode_documents

log = get_logger("pilot.decode")

Decoded = tuple[list[Resource], list[ConfigError], list[ConfigError]]


def _init_worker(megabytes: int) -> None:
    try:  # die with pilot, even when it is SIGKILLed (Linux)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    limit = megabytes * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass  # a lower hard limit is already in place


def _decode(text: str, limits: ConfigLimits, default_namespace: str = "default") -> tuple[Decoded, bool]:
    """The decoded submission, and whether the worker ran out of memory (then it is replaced)."""
    try:
        return decode_documents(text, limits=limits, default_namespace=default_namespace), False
    except MemoryError:
        return ([], [ConfigError(document=0, message=f"decoding the submission needed more than "
                                 f"{limits.decode_memory_mb} MiB (ISTHMUS_CONFIG_DECODE_MEMORY_MB)")], []), True


class DecodeWorker:
    def __init__(self, limits: ConfigLimits) -> None:
        self.limits = limits
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()  # one decode at a time: the worker is one process

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.limits.decode_memory_mb,))
        return self._pool

    async def start(self) -> None:
        """Start the worker now (it imports the validators once), so the first apply is not slower."""
        async with self._lock:
            await asyncio.wrap_future(self._executor().submit(int))

    async def decode(self, text: str, timeout: float | None = None, default_namespace: str = "default") -> Decoded:
        """`timeout`: seconds this submission may take (the request's deadline); never more than
        limits.decode_timeout. `default_namespace`: of documents that name none."""
        limit = self.limits.decode_timeout if timeout is None else max(0.0, min(timeout, self.limits.decode_timeout))
        async with self._lock:
            future = self._executor().submit(_decode, text, self.limits, default_namespace)
            try:
                decoded, exhausted = await asyncio.wait_for(asyncio.wrap_future(future), limit)
                if exhausted:
                    self._kill()  # a fresh heap for the next submission
                    log.warning("decode ran out of memory: worker replaced", size=len(text))
                return decoded
            except asyncio.TimeoutError:
                self._kill()
                log.warning("decode timed out: worker replaced", seconds=limit, size=len(text))
                what = ("the request's deadline" if limit < self.limits.decode_timeout
                        else "ISTHMUS_CONFIG_DECODE_TIMEOUT")
                return [], [ConfigError(document=0, message=f"checking the submission took longer than "
                                        f"{limit:g}s ({what})")], []
            except BrokenProcessPool:
                self._kill()
                log.warning("decode worker died: replaced", size=len(text))
                return [], [ConfigError(document=0, message=f"checking the submission exhausted the decoder "
                                        f"(more than {self.limits.decode_memory_mb} MiB, "
                                        "ISTHMUS_CONFIG_DECODE_MEMORY_MB)")], []

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):  # no public way to stop a running task
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._kill()
