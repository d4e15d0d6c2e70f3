"""The callback sender each API replica runs (``computalot.maintenance.loop``).

Every ``COMPUTALOT_CALLBACK_POLL_S`` it asks the store for due callbacks (``queue.due_jobs``),
claims each (a compare-and-set, so replicas never send the same attempt twice), POSTs the
terminal job object signed with the account's current ``callback_secret`` (``send.post_once``)
and records the attempt with its ``callback`` event. A failed attempt is retried after the next
delay of ``COMPUTALOT_CALLBACK_RETRY_S`` (with jitter, so many failing receivers do not come
back in step); when the delays are used up, or the target is refused at send time, the
callback is ``failed``. The job itself is never touched: a callback cannot change its state.

Jobs end in many places (the engine's finalize, cancel, a failed dependency, the end of
planning); the sender finds them by query, so none is missed and none of them needs to know.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from datetime import timedelta

from computalot import __version__, views
from computalot.callbacks import queue
from computalot.callbacks.send import Outcome, post_once
from computalot.callbacks.urls import Policy, callback_policy
from computalot.callbacks.verify import SIGNATURE_HEADER, sign_body
from computalot.settings import Settings
from computalot.store.db import Store
from computalot.store.models import Account, Job
from computalot.timeutil import utcnow

log = logging.getLogger("computalot.callbacks")

#: Due callbacks taken per poll; a full batch polls again at once.
BATCH = 32
#: Attempts in flight at once in one replica.
CONCURRENCY = 16
EVENT = "job.finished"
USER_AGENT = f"Computalot-Callback/{__version__}"


def callback_body(job: Job) -> bytes:
    """The exact bytes POSTed (and signed): the job as ``GET /api/v1/jobs/:id`` answers it."""
    return json.dumps(views.job_out(job), separators=(",", ":"), ensure_ascii=False).encode()


def callback_headers(job: Job, secret: str, body: bytes, attempt: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Computalot-Event": EVENT,
        "X-Computalot-Delivery": f"{job.id}.{attempt}",
        "X-Computalot-Attempt": str(attempt),
        "X-Computalot-Timestamp": str(int(time.time())),
        SIGNATURE_HEADER: sign_body(secret, body),
    }


def outcome_data(outcome: Outcome) -> dict[str, object]:
    data: dict[str, object] = {"delivered": outcome.delivered}
    if outcome.status_code is not None:
        data["status_code"] = outcome.status_code
    if outcome.error is not None:
        data["error"] = outcome.error
    return data


class CallbackSender:
    """Delivers due callbacks from ``store``; any number may run against one store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.policy: Policy = callback_policy(settings)
        self.delays = settings.callback_retry_delays
        self.slots = asyncio.Semaphore(CONCURRENCY)

    async def run_forever(self) -> None:
        poll = self.settings.callback_poll_s
        await asyncio.sleep(random.uniform(0, poll))
        while True:
            try:
                taken = await self.run_once()
            except Exception:
                log.exception("callback sweep failed; next try in %.1f s", poll)
                taken = 0
            if taken < BATCH:
                await asyncio.sleep(poll * random.uniform(0.8, 1.2))

    async def run_once(self) -> int:
        """Try every callback due now once; return how many were due."""
        async with self.store.sessions() as db:
            due = await queue.due_jobs(db, utcnow(), BATCH)
        await asyncio.gather(*(self._attempt(item) for item in due))
        return len(due)

    async def _attempt(self, due: queue.Due) -> None:
        async with self.slots:
            try:
                await self.deliver(due)
            except Exception:
                log.exception("callback of %s failed unexpectedly", due.job_id)

    async def deliver(self, due: queue.Due) -> bool:
        """Claim ``due``, POST once, record the outcome; False when another replica had it."""
        async with self.store.sessions() as db:
            if not await queue.claim(db, due, utcnow()):
                await db.rollback()
                return False
            await db.commit()
            job = await db.get(Job, due.job_id, populate_existing=True)
            account = await db.get(Account, job.account_id) if job is not None else None
            await db.commit()
        if job is None:  # deleted meanwhile (retention)
            return False
        attempt = due.attempts + 1
        if account is None or not job.callback_url:
            outcome = Outcome(False, error="refused: the job has no callback target", refused=True)
        else:
            body = callback_body(job)
            headers = callback_headers(job, account.callback_secret, body, attempt)
            outcome = await post_once(
                job.callback_url, self.policy, body, headers, self.settings.callback_timeout_s
            )
        state = queue.next_state(attempt, outcome.delivered, outcome.refused, self.delays)
        next_at = None
        if state == queue.PENDING:
            delay = self.delays[attempt - 1] * random.uniform(0.9, 1.1)
            next_at = utcnow() + timedelta(seconds=delay)
        async with self.store.sessions() as db:
            recorded = await queue.record(db, job, attempt, state, next_at, outcome_data(outcome))
            await db.commit()
        if not outcome.delivered:
            log.info("callback of %s attempt %d: %s -> %s", job.id, attempt, outcome.error, state)
        return recorded
