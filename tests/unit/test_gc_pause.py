"""gc_paused: the collector is off inside, back on after, however the body ends."""

from __future__ import annotations

import asyncio
import gc

import pytest

from computalot.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def _collector_on():
    gc.enable()
    yield
    gc.enable()


def test_off_inside_and_on_after() -> None:
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_use_keeps_it_off_until_the_outer_one_ends() -> None:
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_exception_turns_it_back_on() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_it_leaves_a_collector_someone_else_turned_off_alone() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_coroutines_never_leave_it_off() -> None:
    """Interleaved uses (a Serve replica's concurrent requests): whichever order they end in,
    the collector is on once all have ended, including a cancelled one."""

    async def use(hold: float) -> None:
        with gc_paused():
            await asyncio.sleep(hold)

    async def main() -> None:
        slow = asyncio.create_task(use(0.05))
        await asyncio.sleep(0)
        await asyncio.gather(use(0.01), use(0.02))
        cancelled = asyncio.create_task(use(10))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await slow

    asyncio.run(main())
    assert gc.isenabled()


def test_a_cyclic_leftover_is_collected_once_it_is_back_on() -> None:
    class Node:
        pass

    with gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
    assert gc.collect() >= 2
