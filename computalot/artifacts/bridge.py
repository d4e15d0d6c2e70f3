"""Between the event loop and the synchronous store: bytes in both directions, bounded.

:func:`consume` hands an async byte stream (a request body) to a blocking function that reads
it as an ordinary iterator on a worker thread; at most :data:`DEPTH` batches of about
:data:`BATCH_BYTES` wait between the two, so memory stays at a few MiB whatever the size, and a
slow store slows the client down (TCP backpressure) instead of buffering. :func:`produce` does
the reverse for a response body. The threads come from a pool of their own, so long uploads
never starve ``asyncio.to_thread`` elsewhere in the process.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from computalot.settings import MiB

T = TypeVar("T")

#: Bytes gathered from the request before they are handed to the store's thread.
BATCH_BYTES = 1 * MiB
#: Batches that may wait for the store's thread.
DEPTH = 4

POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="artifact-io")


class StreamAborted(Exception):
    """The request body ended abnormally (the client went away): the consumer stops."""


_END = object()


class _Pipe:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: collections.deque[object] = collections.deque()
        self.cv = threading.Condition()
        self.space = asyncio.Event()
        self.closed = False

    async def put(self, item: object) -> bool:
        """Queue ``item``; False once the consumer has stopped reading."""
        while True:
            with self.cv:
                if self.closed:
                    return False
                if len(self.items) < DEPTH or item is _END or isinstance(item, BaseException):
                    self.items.append(item)
                    self.cv.notify()
                    return True
                self.space.clear()
            await self.space.wait()

    def stop(self) -> None:
        """The consumer is done (returned or raised): wake a waiting producer."""
        with self.cv:
            self.closed = True
            self.items.clear()
        self.loop.call_soon_threadsafe(self.space.set)

    def chunks(self) -> Iterator[bytes]:
        while True:
            with self.cv:
                while not self.items:
                    self.cv.wait()
                item = self.items.popleft()
            self.loop.call_soon_threadsafe(self.space.set)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise StreamAborted(str(item)) from item
            assert isinstance(item, bytes | bytearray)
            yield bytes(item)


async def batched(stream: AsyncIterator[bytes], size: int = BATCH_BYTES) -> AsyncIterator[bytes]:
    """Re-chunk ``stream`` into pieces of about ``size`` bytes (the last may be shorter)."""
    buf = bytearray()
    async for chunk in stream:
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


async def consume(stream: AsyncIterator[bytes], fn: Callable[[Iterator[bytes]], T]) -> T:
    """Run ``fn(chunks)`` on a store thread while ``stream`` feeds it; answer what it returns.

    If ``stream`` fails (a client that disconnects, a body over the limit) ``fn`` sees
    :class:`StreamAborted` from its iterator and the stream's own error is raised here once
    ``fn`` has cleaned up; if ``fn`` raises, the rest of the stream is not read."""
    loop = asyncio.get_running_loop()
    pipe = _Pipe(loop)

    def run() -> T:
        try:
            return fn(pipe.chunks())
        finally:
            pipe.stop()

    future = loop.run_in_executor(POOL, run)
    failure: BaseException | None = None
    try:
        async for batch in batched(stream):
            if not await pipe.put(batch):
                break
        else:
            await pipe.put(_END)
    except BaseException as exc:  # the client went away, or the body limit tripped
        failure = exc
        await pipe.put(exc if isinstance(exc, Exception) else StreamAborted("cancelled"))
    try:
        result = await asyncio.shield(future)
    except StreamAborted:
        if failure is not None:
            raise failure from None
        raise
    if failure is not None:
        raise failure
    return result


async def produce(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Pull ``chunks`` (a blocking iterator, e.g. a store read) one by one on a store thread."""
    loop = asyncio.get_running_loop()
    end = object()
    try:
        while True:
            chunk = await loop.run_in_executor(POOL, next, chunks, end)
            if chunk is end:
                return
            assert isinstance(chunk, bytes)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await loop.run_in_executor(POOL, close)


async def run(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a store thread."""
    return await asyncio.get_running_loop().run_in_executor(POOL, fn, *args)
