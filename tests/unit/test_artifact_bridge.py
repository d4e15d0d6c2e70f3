"""``computalot.artifacts.bridge.produce``: a store read handed to the event loop, chunk by chunk."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from computalot.artifacts import bridge


class Source:
    """A blocking chunk iterator that records how far it was read and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.read = 0
        self.closed = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise OSError("the store went away")
                self.read += 1
                yield i.to_bytes(4, "big")
        finally:
            self.closed.set()


async def collect(source: Source, limit: int | None = None) -> list[bytes]:
    got: list[bytes] = []
    stream = bridge.produce(source.chunks())
    try:
        async for chunk in stream:
            got.append(chunk)
            if limit is not None and len(got) == limit:
                break
    finally:
        await stream.aclose()
    return got


def test_every_chunk_arrives_in_order_and_the_source_is_closed() -> None:
    source = Source(50)
    got = asyncio.run(collect(source))
    assert got == [i.to_bytes(4, "big") for i in range(50)]
    assert source.closed.is_set()


def test_a_consumer_that_stops_early_stops_the_reads() -> None:
    source = Source(10_000)
    got = asyncio.run(collect(source, limit=5))
    assert len(got) == 5
    assert source.closed.wait(5)
    assert source.read <= 5 + 1  # what was taken and at most the one in hand


def test_a_store_error_reaches_the_consumer() -> None:
    source = Source(10, fail_at=4)
    with pytest.raises(OSError, match="went away"):
        asyncio.run(collect(source))
    assert source.closed.is_set()
