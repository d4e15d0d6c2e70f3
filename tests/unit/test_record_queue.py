from computalot.engine.attempt import Outcome
from computalot.engine.record_queue import RecordQueue, UnstorableOutcome


def filled(*names: str) -> RecordQueue[str]:
    queue: RecordQueue[str] = RecordQueue()
    for name in names:
        queue.add(name, Outcome(status="ok", error=name))
    return queue


def test_a_recorded_batch_leaves_the_queue() -> None:
    queue = filled("a", "b")
    batch = queue.take()
    assert [info for info, _ in batch] == ["a", "b"]
    queue.recorded(batch)
    assert len(queue) == 0 and queue.take() == []


def test_a_failed_batch_comes_back_and_is_then_recorded_one_by_one() -> None:
    queue = filled("a", "b", "c")
    batch = queue.take()
    queue.add("d", Outcome(status="ok"))  # finished while the cycle ran
    queue.failed(batch, RuntimeError("database is locked"), store_ok=True)
    assert [info for info, _ in queue.items] == ["a", "b", "c", "d"]
    seen = []
    for _ in range(3):
        one = queue.take()
        assert len(one) == 1
        seen.append(one[0][0])
        queue.recorded(one)
    assert seen == ["a", "b", "c"]
    assert [info for info, _ in queue.take()] == ["d"]  # isolation over: back to whole batches


def test_a_lone_outcome_the_store_refuses_becomes_unstorable() -> None:
    queue = filled("a", "b")
    queue.failed(queue.take(), RuntimeError("boom"), store_ok=True)
    (first,) = queue.take()
    queue.failed([first], ValueError("invalid byte sequence\n[SQL: INSERT … \x00]"), store_ok=True)
    (again,) = queue.take()
    info, outcome = again
    assert info == "a" and isinstance(outcome, UnstorableOutcome)
    assert str(outcome) == "ValueError: invalid byte sequence"  # first line only
    queue.recorded([again])
    (rest,) = queue.take()
    assert rest[0] == "b" and not isinstance(rest[1], UnstorableOutcome)


def test_an_outage_keeps_the_outcome_as_it_was() -> None:
    queue = filled("a")
    batch = queue.take()
    queue.failed(batch, ConnectionError("connection refused"), store_ok=False)
    (kept,) = queue.take()
    assert kept == batch[0]  # not judged: it is recorded once the store is back


def sized(queue: RecordQueue[str], name: str, result_bytes: int) -> None:
    queue.add(name, Outcome(status="ok", result_bytes=result_bytes))


def test_a_cycle_takes_results_up_to_the_byte_budget() -> None:
    queue: RecordQueue[str] = RecordQueue(budget_bytes=100)
    for name, size in (("a", 40), ("b", 50), ("c", 20), ("d", 5)):
        sized(queue, name, size)
    queue.add("lost", RuntimeError("worker died"))  # an exception weighs nothing
    first = queue.take()
    assert [info for info, _ in first] == ["a", "b"]  # 90; c would make 110
    queue.recorded(first)
    assert [info for info, _ in queue.take()] == ["c", "d", "lost"]


def test_a_result_bigger_than_the_budget_still_goes_alone() -> None:
    queue: RecordQueue[str] = RecordQueue(budget_bytes=100)
    sized(queue, "huge", 500)
    sized(queue, "small", 1)
    assert [info for info, _ in queue.take()] == ["huge"]
    assert [info for info, _ in queue.take()] == ["small"]
    assert queue.take() == []


def test_fifty_megabyte_results_are_recorded_one_per_cycle() -> None:
    queue: RecordQueue[int] = RecordQueue()  # the dispatcher's default budget, 32 MiB
    for i in range(5):
        queue.add(i, Outcome(status="ok", result_bytes=50 * 1024 * 1024))
    taken = []
    while len(queue):
        batch = queue.take()
        assert len(batch) == 1
        taken.append(batch[0][0])
        queue.recorded(batch)
    assert taken == [0, 1, 2, 3, 4]
