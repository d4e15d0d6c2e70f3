"""What launching one attempt needs: its revision, its ``run_task`` spec and Ray options."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from computalot.engine.attempt import AttemptSpec
from computalot.engine.claiming import Launch, UnreadableTask
from computalot.engine.packages import PackageCache, revision_runtime_env
from computalot.engine.rows import JobInfo, TaskRow
from computalot.jobs.fanout import task_payload
from computalot.sandbox.policy import policy_for
from computalot.settings import Settings
from computalot.store.jsoncodec import Unreadable
from computalot.store.models import Revision


@dataclass(frozen=True)
class RevisionInfo:
    """What launching needs of a revision; revisions are immutable, so they are cached."""

    content_hash: str
    path: str
    size_bytes: int
    requirements: list[str] | None
    env: dict[str, str]
    workdir: str
    network: str  # the manifest's runtime.network: host | none


def _read_requirements(path: Path) -> list[str] | None:
    """The revision's pip requirements, one per line (blocking: run on a thread)."""
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")] or None


async def _revision_info(revision: Revision) -> RevisionInfo:
    runtime = (revision.manifest or {}).get("runtime") or {}
    req_path = Path(revision.path) / str(runtime.get("requirements") or "requirements.txt")
    return RevisionInfo(
        content_hash=revision.content_hash,
        path=revision.path,
        size_bytes=revision.size_bytes,
        requirements=await asyncio.to_thread(_read_requirements, req_path),
        env=dict(runtime.get("env") or {}),
        workdir=str(runtime.get("workdir") or "."),
        network=str(runtime.get("network") or "host"),
    )


class RevisionCache:
    """The revisions of recent launches by id, least recently used dropped past ``limit``."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self.revisions: OrderedDict[str, RevisionInfo] = OrderedDict()

    def __len__(self) -> int:
        return len(self.revisions)

    def get(self, revision_id: str | None) -> RevisionInfo | None:
        info = self.revisions.get(revision_id or "")
        if info is not None:
            self.revisions.move_to_end(revision_id or "")
        return info

    async def load(self, db: AsyncSession, launches: list[Launch]) -> None:
        """Read the revisions of ``launches`` not cached yet."""
        for job, _task, _attempt in launches:
            rid = job.revision_id
            if rid and self.get(rid) is None:
                revision = await db.get(Revision, rid)
                if revision is not None:
                    self.put(rid, await _revision_info(revision))

    def put(self, revision_id: str, info: RevisionInfo) -> None:
        self.revisions[revision_id] = info
        while len(self.revisions) > self.limit:
            self.revisions.popitem(last=False)

    def packages(self, launches: list[Launch]) -> dict[str, tuple[str, int]]:
        """``{content_hash: (path, size)}`` of the revisions these launches run
        (``PackageCache.ensure``)."""
        out: dict[str, tuple[str, int]] = {}
        for job, _task, _attempt in launches:
            info = self.get(job.revision_id)
            if info is not None:
                out[info.content_hash] = (info.path, info.size_bytes)
        return out


def _payload(job: JobInfo, task: TaskRow) -> dict[str, Any]:
    payload = task_payload(job, task)
    if isinstance(payload, Unreadable):
        raise UnreadableTask(payload.reason)
    return payload


def launch_spec(
    launch: Launch,
    revision: RevisionInfo,
    packages: PackageCache,
    settings: Settings,
    namespace: str,
) -> tuple[AttemptSpec, dict[str, Any]]:
    """The ``run_task`` argument and its Ray options for one attempt."""
    job, task, attempt = launch
    minimums = job.spec.get("minimums") or {}
    spec = AttemptSpec(
        job_id=job.id,
        account_id=job.account_id,
        task_id=task.id,
        index=task.index,
        attempt=attempt,
        payload=_payload(job, task),
        runner_command=list(job.spec["runner_command"]),
        timeout_s=job.timeout_s,
        namespace=namespace,
        kill_grace_s=settings.kill_grace_s,
        memory_mb=minimums.get("memory_mb"),
        env=revision.env,
        workdir=revision.workdir,
        api_url=settings.resolved_public_url,
        batched=task.batched,
        element_count=task.element_count,
        max_result_bytes=settings.max_result_bytes,
        sandbox=policy_for(settings, minimums, revision.network),
    )
    options = dict(job.resources)
    uri = packages.uri(revision.content_hash)
    options["runtime_env"] = revision_runtime_env(
        uri, requirements=revision.requirements, env_vars={}
    )
    # One name per revision, not per job: a distinct ``.options()`` re-validates the runtime_env
    # (costly) and makes a wrapper class per call, so jobs that share a revision and resources
    # share one (``options_key``).
    options["name"] = f"computalot-task:{job.revision_id}"
    return spec, options


def options_key(job: JobInfo) -> str:
    """Jobs with the same revision and resources launch through the same ``run_task.options``."""
    return f"{job.revision_id}|{json.dumps(job.resources, sort_keys=True)}"
