"""The dispatcher: one detached, named Ray actor that owns scheduling.

It writes task and job status (a cancel's first step is the API's: ``engine.cancelling``), and
the events reporting each change in the same transaction (``computalot.store.events``). Each
cycle it records finished attempts (``recording``, ``settling``), stops cancelled jobs'
attempts, releases jobs whose dependencies completed (``dependencies``), and claims queued tasks
(``claiming``) to launch into free slots (``launching``): about BACKLOG_S of work beyond the
CPUs (``scheduling.inflight_target``), never more than ``max_inflight_tasks``, so a
100,000-task job never becomes 100,000 ObjectRefs. On start it reconciles the store
(``reconciling``): attempts a dead incarnation left ``running`` are requeued (infrastructure
loss) or failed with ``worker_lost``. What it knows of the cluster is ``engine.cluster``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from typing import Any, cast

import numpy as np
import ray
from numpy.typing import NDArray
from ray import ObjectRef
from ray._private.worker import RemoteFunction0
from ray.actor import ActorHandle
from ray.exceptions import RayError
from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts.store import store_config
from computalot.engine import cancelling, claiming, dependencies, reconciling, recording
from computalot.engine.attempt import AttemptSpec, Outcome
from computalot.engine.claiming import Launch, UnreadableTask
from computalot.engine.cluster import ClusterView, alive_nodes
from computalot.engine.inflight import Inflight, stops_due
from computalot.engine.launching import (
    RevisionCache,
    launch_spec,
    options_key,
    recipe_launch_spec,
)
from computalot.engine.names import DISPATCHER_NAME, HUB_NAME
from computalot.engine.packages import PackageCache
from computalot.engine.placement import PlacementWatch, resources_key
from computalot.engine.quarantine import quarantine_job
from computalot.engine.record_queue import Ended, RecordQueue
from computalot.engine.rows import JobCache
from computalot.engine.run_recipe import run_recipe
from computalot.engine.run_task import run_task
from computalot.engine.scheduling import (
    Demand,
    allocate,
    batch_window,
    inflight_target,
    rotate,
)
from computalot.engine.settling import WarmNodes
from computalot.gc_pause import gc_paused
from computalot.metrics.engine import EngineMetrics
from computalot.sandbox import firewall
from computalot.sandbox.policy import api_ports
from computalot.settings import Secrets, load_settings_with
from computalot.states import TERMINAL_TASK
from computalot.store.db import Store
from computalot.store.events import Events, write_events

log = logging.getLogger("computalot.dispatcher")
#: ``run_task`` with one job's Ray options.
AttemptRefs = tuple[ObjectRef[Outcome], ObjectRef[NDArray[np.uint8] | None]]
RunTask = RemoteFunction0[tuple[Outcome, NDArray[np.uint8] | None], AttemptSpec]

BACKSTOP_SLACK_S = 60.0
SWEEP_INTERVAL_S = 2.0


class Dispatcher:
    def __init__(self, secret_settings: Secrets | None = None) -> None:
        # The secret settings come as the argument, never from this process's environment.
        self.settings = load_settings_with(secret_settings)
        # Tasks of this platform keep reaching its API whichever platform on this host installs
        # the task firewall next (sandbox.firewall).
        firewall.hold_api_ports(api_ports(self.settings))
        self.store = Store(self.settings.resolved_database_url, inline=True)
        self.epoch = uuid.uuid4().hex[:16]
        self.namespace = self.settings.ray_namespace
        self.inflight: dict[str, Inflight] = {}
        self.finished: RecordQueue[Inflight] = RecordQueue()
        self.wakeup = asyncio.Event()
        self.packages = PackageCache()
        self.rotation: list[str] = []
        self.cluster = ClusterView(self.settings.max_inflight_tasks, alive_nodes())
        self.placement = PlacementWatch(self.settings.node_wait_s)
        self.completions: deque[float] = deque(maxlen=128)
        self.ready = False
        self.check_cancels = True
        self.check_deps = True
        self.may_have_blocked = True  # False once no job waits on dependencies
        # Queued work may exist unless the last claim left none and nothing queued any since
        # (a submit, a retry, a released dependency): then a cycle skips the runnable query.
        self.queue_gen = 1
        self.claimed_gen = 0
        self.urgent = False
        self.urgent_wakeup = asyncio.Event()  # cuts a batch window short (submit, cancel)
        self.last_sweep = 0.0
        self._hub: ActorHandle | None = None
        self._remotes: dict[str, RunTask] = {}
        self.jobs = JobCache()
        self.revisions = RevisionCache(store_config(self.settings))
        self.warm = WarmNodes()
        self.quarantined = 0  # jobs set aside because their stored definition is unreadable
        self.last_cycle_at = time.monotonic()  # when a cycle last completed (or start-up)
        self.last_error: str | None = None  # the last failed cycle's error, until one succeeds
        self.metrics = EngineMetrics(
            self.store, self.namespace, self.epoch, self.settings.metrics_push_interval_s
        )
        self.metrics.reporter.start()  # docs/metrics.md
        loop = asyncio.get_running_loop()
        self._main_task = loop.create_task(self._main())
        self._cluster_task = loop.create_task(self.cluster.follow(self._new_slots))

    # ---- public actor methods -------------------------------------------------------------
    async def ping(self) -> dict[str, Any]:
        """Health for ``/ready``: answered on the dispatcher's own event loop, so a blocked loop
        shows as no answer; ``cycle_age_s`` says how long ago a cycle last completed."""
        if not self.ready:
            raise RuntimeError("dispatcher is still reconciling the store")
        return {
            "epoch": self.epoch,
            "inflight": len(self.inflight),
            "capacity": self.capacity(),
            "max_inflight": self.cluster.max_inflight,
            "cluster_cpus": self.cluster.cpus,
            "cycle_age_s": round(time.monotonic() - self.last_cycle_at, 3),
            "last_error": self.last_error,
            "quarantined": self.quarantined,
        }

    def capacity(self) -> int:
        return inflight_target(
            self.cluster.cpus, self.completions, time.monotonic(), self.cluster.max_inflight
        )

    def kick(self, blocked: bool = False) -> None:
        """New work arrived; ``blocked`` = it waits on other jobs (check dependencies)."""
        if blocked:
            self.check_deps = True
            self.may_have_blocked = True
        self.queue_gen += 1
        self._make_urgent()

    def _make_urgent(self) -> None:
        self.urgent = True
        self.urgent_wakeup.set()
        self.wakeup.set()

    def cancel(self, job_id: str) -> None:
        """The API cancelled ``job_id`` and committed its events (``cancelling.cancel_job``):
        wake its streams, and stop its running attempts in the next cycle."""
        self.check_cancels = True
        self.check_deps = self.check_deps or self.may_have_blocked  # its dependents fail now
        self._make_urgent()
        self._tell_hub({job_id: 1}, [])

    def nodes(self) -> list[dict[str, float]]:
        """Total resources of each alive node (for ``unsatisfiable_requirements``), as of the
        last refresh (``engine.cluster``)."""
        return self.cluster.nodes

    def _new_slots(self) -> None:
        self.queue_gen += 1  # the cluster's CPUs changed: claim again
        self.wakeup.set()

    # ---- main loop --------------------------------------------------------------------------
    @property
    def hub(self) -> ActorHandle:
        if self._hub is None:
            self._hub = ray.get_actor(HUB_NAME, namespace=self.namespace)
        return self._hub

    async def _commit(
        self, db: AsyncSession, events: Events, launches: list[Launch] | None = None
    ) -> None:
        """Write ``events`` in ``db``'s transaction, commit, launch the tasks it claimed, then
        tell the hub (streams can wait; the tasks should not)."""
        await write_events(db, events)
        await db.commit()
        self.warm.committed()
        if launches:
            await self.packages.ensure(self.revisions.packages(launches))
        for launch in launches or []:
            self._launch(launch)
        self._announce(events)

    def _announce(self, events: Events) -> None:
        if not events:
            return
        counts = Counter(event.job_id for event in events)
        ended = [
            str(event.data.get("task_id"))
            for event in events
            if event.event == "task" and event.data.get("status") in TERMINAL_TASK
        ]
        self._tell_hub(dict(counts), ended)

    def _tell_hub(self, counts: dict[str, int], ended_tasks: list[str]) -> None:
        try:
            self.hub.written.remote(counts, ended_tasks)
        except Exception as exc:
            # The events are stored; streams find them at their next poll (a few seconds).
            self._hub = None
            log.warning(
                "could not reach the event hub (%s); streams of jobs %s will poll for new events",
                type(exc).__name__,
                ", ".join(sorted(counts)[:5]),
            )

    async def _main(self) -> None:
        while not self.ready:
            try:
                with gc_paused():
                    async with self.store.sessions() as db:
                        events = await reconciling.reconcile(
                            db, self.epoch, lost_budget=self.settings.worker_lost_retries
                        )
                        await self._commit(db, events)
                self.ready = True
            except Exception:
                log.exception("reconcile failed; retrying")
                await asyncio.sleep(1.0)
        while True:
            try:
                await self._cycle()
                self.last_cycle_at = time.monotonic()
                self.last_error = None
            except Exception as exc:
                log.exception("dispatch cycle failed")
                self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                await asyncio.sleep(0.2)
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.settings.dispatch_interval_s)
            except TimeoutError:
                pass
            self.wakeup.clear()
            window = (
                0.0
                if self.urgent
                else batch_window(
                    len(self.inflight), self.cluster.cpus, self.completions, time.monotonic()
                )
            )
            if window > 0:
                # Only completions woke us and Ray still holds a backlog of launched tasks:
                # gather more completions so one cycle (one transaction, one event batch)
                # serves several tasks instead of one each. A submit or cancel ends the wait.
                self.urgent_wakeup.clear()
                try:
                    await asyncio.wait_for(self.urgent_wakeup.wait(), window)
                except TimeoutError:
                    pass
            self.urgent = False

    async def _cycle(self) -> None:
        # A cycle's garbage is trees of rows, results and events: reference counting frees
        # them, and the collector runs (if due) between cycles over what survived (gc_pause).
        with gc_paused():
            await self._cycle_paused()

    async def _cycle_paused(self) -> None:
        batch = self.finished.take()
        try:
            await self._cycle_with(batch)
        except Exception as exc:
            self.warm.rolled_back()
            # A lone outcome that records fine on its own was not the cause; one that does not,
            # while the store answers, is unstorable (see record_queue).
            if len(batch) == 1 and await self._record_alone(batch):
                self._recorded(batch)
            else:
                store_ok = bool(batch) and await self._store_ok()
                self.finished.failed(batch, exc, store_ok=store_ok)
            raise
        self._recorded(batch)

    def _recorded(self, batch: list[tuple[Inflight, Ended]]) -> None:
        self.finished.recorded(batch)
        for info, _outcome in batch:
            info.text_ref = None  # frees a big result's object (stored now)
        if self.finished:
            self._make_urgent()  # attempts beyond this cycle's byte budget: record them next

    async def _store_ok(self) -> bool:
        try:
            await self.store.ping()
            return True
        except Exception:
            return False

    async def _record_alone(self, batch: list[tuple[Inflight, Ended]]) -> bool:
        try:
            async with self.store.sessions() as db:
                recorded = await self._record(db, batch)
                await self._commit(db, recorded)
        except Exception:
            self.warm.rolled_back()
            log.exception("recording task %s on its own failed", batch[0][0].task_id)
            return False
        self._note_recorded(recorded)
        return True

    def _note_recorded(self, recorded: Events) -> None:
        names = {event.event for event in recorded}
        if "end" in names and self.may_have_blocked:
            self.check_deps = True  # a finished job may release its dependents
            self.wakeup.set()
        if "retry" in names:
            self.queue_gen += 1

    async def _cycle_with(self, batch: list[tuple[Inflight, Ended]]) -> None:
        events: Events = []
        async with self.store.sessions() as db:
            if batch:
                recorded = await self._record(db, batch)
                self._note_recorded(recorded)
                events += recorded
            # Cancels and dependencies are looked at when something may have changed them, and
            # on a slow sweep as a safety net; the hot path (submit → launch) skips both queries.
            sweep = time.monotonic() - self.last_sweep >= SWEEP_INTERVAL_S
            if sweep:
                self.last_sweep = time.monotonic()
            if self.check_cancels or sweep:
                self.check_cancels = False
                events += await self._apply_cancels(db)
            if self.check_deps or sweep:
                self.check_deps = False
                released, self.may_have_blocked = await dependencies.release_dependencies(db)
                if released:
                    self.queue_gen += 1
                events += released
            self._backstop_timeouts()
            if sweep:
                self._stop_unplaceable()
            launches, launch_events = await self._claim(db, sweep)
            events += launch_events
            events += await self._set_aside(db)
            await self._commit(db, events, launches)
        self.jobs.forget(event.job_id for event in events if event.event == "end")

    async def _set_aside(self, db: AsyncSession) -> Events:
        """Fail the jobs this cycle found unreadable (``engine.quarantine``), alone."""
        events: Events = []
        for job_id, fields in self.jobs.take_unreadable().items():
            set_aside = await quarantine_job(db, job_id, fields)
            self.quarantined += bool(set_aside)
            events += set_aside
        return events

    # ---- recording outcomes -----------------------------------------------------------------
    async def _record(self, db: AsyncSession, batch: list[tuple[Inflight, Ended]]) -> Events:
        return await recording.record_batch(db, batch, self.settings, self.jobs, self.warm)

    # ---- cancels and timeouts ---------------------------------------------------------------
    async def _apply_cancels(self, db: AsyncSession) -> Events:
        """Stop the running attempts of cancelled jobs (``run_task`` stops its command's group:
        SIGTERM, SIGKILL after the kill grace); they are recorded as they end."""
        jobs, events = await cancelling.pending_cancels(db)
        stopping = set(jobs)
        for info in self.inflight.values():
            if info.job_id in stopping and not info.cancel_sent and info.ref is not None:
                info.mark_cancel_sent(time.monotonic(), self.settings.kill_grace_s)
                ray.cancel(info.ref, force=False)
        return events

    def _backstop_timeouts(self) -> None:
        """run_task enforces timeout_s and cancels itself; this force-kills the worker of an
        attempt that is past its deadline or ignored its cancel (see ``inflight``)."""
        for info in stops_due(self.inflight.values(), time.monotonic()):
            log.warning(
                "force-stopping task %s attempt %d (%s)",
                info.task_id,
                info.attempt,
                "past its deadline" if info.backstop else "cancel did not take effect",
            )
            if info.ref is not None:
                ray.cancel(info.ref, force=True)

    def _stop_unplaceable(self) -> None:
        """Stop the launched attempts whose resources no alive node has offered for
        ``node_wait_s`` (``engine.placement``): Ray would keep them queued forever. Judged
        ``node_lost`` (an earlier attempt was lost with its node) or
        ``unsatisfiable_requirements``."""
        waiting = [
            info
            for info in self.inflight.values()
            if info.ref is not None
            and not (info.unplaceable or info.backstop or info.forced or info.cancel_sent)
        ]
        if not waiting:
            self.placement.since.clear()
            return
        keys = {info.resources_key for info in waiting}
        stuck = self.placement.unplaceable(keys, self.cluster.nodes, time.monotonic())
        for info in waiting:
            if info.resources_key in stuck and info.ref is not None:
                log.warning(
                    "stopping task %s attempt %d: no alive node offers %s",
                    info.task_id,
                    info.attempt,
                    info.resources_key,
                )
                info.unplaceable = True
                ray.cancel(info.ref, force=True)

    # ---- launching --------------------------------------------------------------------------
    async def _claim(self, db: AsyncSession, sweep: bool) -> tuple[list[Launch], Events]:
        free = self.capacity() - len(self.inflight)
        if free <= 0 or (self.claimed_gen == self.queue_gen and not sweep):
            return [], []
        gen = self.queue_gen
        runnable = await claiming.runnable_jobs(db)
        demands = [
            Demand(job.id, job.account_id, job.priority, job.created_at, job.n_queued)
            for job in runnable
        ]
        grants = allocate(demands, free, self.rotation)
        if all(d.queued <= grants.get(d.job_id, 0) for d in demands):
            self.claimed_gen = gen  # this claim takes every queued task there was
        if not grants:
            return [], []
        served = [d.account_id for d in demands if d.job_id in grants]
        self.rotation = rotate(
            self.rotation + [a for a in served if a not in self.rotation], served
        )
        statuses = {job.id: job.status for job in runnable}
        launches, events = await claiming.claim_tasks(db, grants, self.epoch, self.jobs, statuses)
        self.metrics.claimed(launches, {job.id: job for job in runnable})
        await self.revisions.load(db, launches)
        return launches, events

    def _launch(self, launch: Launch) -> None:
        job, task, attempt = launch
        try:
            if job.spec.get("recipe"):
                spec, options = recipe_launch_spec(
                    launch, self.revisions.inputs, self.settings, self.namespace
                )
                remote = self._remote_for(options_key(job), options, run_recipe)
            else:
                revision = self.revisions.get(job.revision_id)
                if revision is None:
                    raise RuntimeError(f"revision {job.revision_id} of job {job.id} not found")
                spec, options = launch_spec(
                    launch, revision, self.packages, self.settings, self.namespace
                )
                remote = self._remote_for(options_key(job), options)
            refs = remote.remote(spec)  # two returns: see run_task
            ref, text_ref = cast(AttemptRefs, refs)
        except Exception as exc:
            log.exception("could not launch task %s of job %s", task.id, job.id)
            info = Inflight(task.id, job.id, job.account_id, attempt, None, time.monotonic(), 0.0)
            failure = exc if isinstance(exc, UnreadableTask) else None
            self.finished.add(info, failure or RuntimeError(f"launch failed: {exc}"))
            self.wakeup.set()
            return
        now = time.monotonic()
        deadline = now + job.timeout_s + self.settings.kill_grace_s + BACKSTOP_SLACK_S
        info = Inflight(task.id, job.id, job.account_id, attempt, ref, now, deadline)
        info.text_ref = text_ref
        info.resources_key = resources_key(options)
        info.lost_before = task.lost_attempts > 0
        self.inflight[task.id] = info
        asyncio.get_running_loop().create_task(self._watch(info))

    def _remote_for(self, key: str, options: dict[str, Any], fn: Any = run_task) -> RunTask:
        """``run_task.options(...)`` once per revision and resources (``launching.options_key``):
        Ray re-processes the runtime_env on every ``.options()`` call, which cost more than the
        launch itself, and each call makes a wrapper class the cyclic collector must free."""
        found = self._remotes.get(key)
        if found is None:
            if len(self._remotes) > 256:
                self._remotes.clear()
            found = self._remotes[key] = fn.options(**options)
        return found

    async def _watch(self, info: Inflight) -> None:
        outcome: Ended
        try:
            if info.ref is None:
                raise RuntimeError("the attempt was never launched")
            outcome = await info.ref
        except (RayError, Exception) as exc:
            outcome = exc
        self.inflight.pop(info.task_id, None)
        self.metrics.ended(info.started)
        if self.inflight:
            self.completions.append(time.monotonic())
        else:
            # Nothing left running: the next burst's rate must not be averaged over this pause
            # (a rate too low makes batch windows long enough to leave CPUs idle).
            self.completions.clear()
        self.finished.add(info, outcome)
        self.wakeup.set()


def dispatcher_actor_options(namespace: str) -> dict[str, Any]:
    return {
        "name": DISPATCHER_NAME,
        "namespace": namespace,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": -1,
        "max_concurrency": 1000,
        "get_if_exists": True,
    }


DispatcherActor = ray.remote(Dispatcher)
