from computalot.engine.record_queue import RecordQueue, UnstorableOutcome


def filled(*names: str) -> RecordQueue[str]:
    queue: RecordQueue[str] = RecordQueue()
    for name in names:
        queue.add(name, {"status": "ok", "of": name})
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
    queue.add("d", {"status": "ok"})  # finished while the cycle ran
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
