"""The maintenance of one API process: its planner and the sweeps it runs in the background.

Each API replica runs them (started and stopped with the app's lifespan, ``serve_app.deployment``):
the planner writes the big jobs this replica accepted; every :data:`~computalot.jobs.planning.
SWEEP_S` it resumes planning jobs whose planner died; every ``COMPUTALOT_RETENTION_SWEEP_S`` it
runs the retention sweep; every ``COMPUTALOT_CALLBACK_POLL_S`` it sends the job callbacks that
are due (``computalot.callbacks.delivery``). The replicas sit next to the store and are already
several, so no extra process is needed and a dead replica's work is taken over by another; the
dispatcher keeps its event loop for dispatching. Replicas sweep independently (every delete is
idempotent; a callback is claimed before it is sent), each starting at a random point of the
interval so they rarely sweep at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import Any

from computalot.artifacts.store import open_store
from computalot.callbacks.delivery import CallbackSender
from computalot.jobs.planning import Engine, Planner
from computalot.maintenance.retention import sweep
from computalot.settings import Settings
from computalot.store.db import Store

log = logging.getLogger("computalot.maintenance")


class Maintenance:
    def __init__(self, store: Store, engine: Engine | None, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.planner = Planner(store, engine)
        self.callbacks = CallbackSender(store, settings)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the sweeps (on the running event loop); idempotent."""
        if self.tasks:
            return
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self.planner.sweep_forever()),
            loop.create_task(self.retention_forever()),
            loop.create_task(self.callbacks.run_forever()),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def retention_forever(self) -> None:
        interval = self.settings.retention_sweep_s
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            await self.retention_once()
            await asyncio.sleep(interval)

    async def retention_once(self) -> None:
        retention = timedelta(days=self.settings.retention_days)
        try:
            artifacts = open_store(self.settings)
            swept = await sweep(self.store, self.settings.data_dir, retention, artifacts)
        except Exception:
            log.exception(
                "retention sweep failed; next try in %.0f s", self.settings.retention_sweep_s
            )
            return
        if swept.total():
            log.info("retention sweep removed %s", swept)


def maintenance_of(state: Any) -> Maintenance:
    """The app's :class:`Maintenance` (``app.state``), made on first use: an app built without
    the Serve deployment (tests, plain uvicorn) still plans big jobs, without the sweeps."""
    found: Maintenance | None = getattr(state, "maintenance", None)
    if found is None:
        found = Maintenance(state.store, state.engine, state.settings)
        state.maintenance = found
    return found
