"""What launching one attempt needs: its revision, its input artifacts, its ``run_task`` spec
and Ray options.

A task's inputs (its payload's ``_artifacts.download`` and its manifest's ``data_sources``:
``artifacts.inputs``) reach the worker as (artifact id, blob key, path) triples with the
artifact store's config, so the worker streams them itself. The keys are read once per batch of
launches, in one query per account, and cached (an artifact's bytes never change); an input
no longer available gets an empty key, and its attempt fails as ``input_unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from computalot.artifacts.inputs import (
    ARTIFACTS_FIELD,
    artifact_keys,
    manifest_sources,
    task_inputs,
)
from computalot.artifacts.store import StoreConfig
from computalot.auth.task_tokens import mint_task_token
from computalot.engine import checkpoints
from computalot.engine.attempt import AttemptSpec
from computalot.engine.claiming import Launch, UnreadableTask
from computalot.engine.packages import (
    PackageCache,
    Source,
    restore_revision,
    revision_runtime_env,
)
from computalot.engine.project_init import WarmPlan, plan_from_manifest
from computalot.engine.rows import JobInfo, TaskRow
from computalot.jobs.fanout import task_payload
from computalot.projects.warm_state import warm_generations
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
    tarball_key: str | None = None  # to restore a missing directory from the artifact store
    #: (artifact id, mount) of the manifest's data_sources
    sources: tuple[tuple[str, str], ...] = ()
    #: The cache's artifact keys and store, shared by every revision it holds.
    inputs: InputKeys | None = field(default=None, compare=False)
    #: Init commands, validation and cache mounts (``engine.project_init``), with the
    #: project's current generation (re-read every batch: an invalidate bumps it).
    warm: WarmPlan | None = None
    #: ``runtime.preload`` (``engine.warm_python``); None where ``runtime.warm_python`` is false.
    preload: tuple[str, ...] | None = ()


log = logging.getLogger("computalot.dispatcher")


class InputKeys:
    """Blob keys of the input artifacts of recent launches, ``(account, id) -> key`` (an
    artifact's bytes never change), at most ``limit`` of them; and the store they are in."""

    def __init__(self, store: StoreConfig | None, limit: int = 100_000) -> None:
        self.store = store
        self.limit = limit
        self.keys: OrderedDict[tuple[str, str], str] = OrderedDict()
        #: ``{task id: blob key}`` of the checkpoints the next launches restore (read by
        #: ``RevisionCache.load``, taken by ``launch_spec``).
        self.checkpoints: dict[str, str] = {}

    def get(self, account_id: str, artifact_id: str) -> str:
        """The key, or "" for an artifact that is not (or no longer) the account's."""
        return self.keys.get((account_id, artifact_id), "")

    async def load(self, db: AsyncSession, wanted: dict[str, set[str]]) -> None:
        """Read the keys of ``{account: ids}`` not cached yet."""
        for account_id, ids in wanted.items():
            missing = [i for i in ids if (account_id, i) not in self.keys]
            if not missing:
                continue
            found = await artifact_keys(db, account_id, missing)
            for art_id, key in found.items():
                self.keys[(account_id, art_id)] = key
        while len(self.keys) > self.limit:
            self.keys.popitem(last=False)


def _read_requirements(path: Path) -> list[str] | None:
    """The revision's pip requirements, one per line (blocking: run on a thread)."""
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")] or None


async def _revision_info(revision: Revision, inputs: InputKeys) -> RevisionInfo:
    if revision.tarball_key and inputs.store is not None:
        try:
            await asyncio.to_thread(
                restore_revision,
                revision.path,
                revision.content_hash,
                revision.tarball_key,
                inputs.store,
            )
        except Exception as exc:  # packaging then says the directory is missing
            log.warning("revision %s not restored from the artifact store: %s", revision.id, exc)
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
        preload=(
            None
            if runtime.get("warm_python") is False
            else tuple(str(m) for m in runtime.get("preload") or ())
        ),
        tarball_key=revision.tarball_key,
        sources=tuple((a, m) for _i, a, m in manifest_sources(revision.manifest)),
        inputs=inputs,
        warm=plan_from_manifest(
            revision.manifest,
            project_id=revision.project_id,
            account_id=revision.account_id,
            revision_id=revision.id,
            generation=0,
        ),
    )


class RevisionCache:
    """The revisions of recent launches by id, least recently used dropped past ``limit``, and
    the keys of their tasks' input artifacts in ``store`` (:class:`InputKeys`).

    A revision whose directory is missing on this node is restored from its tarball in
    ``store`` when it is read (``engine.packages.restore_revision``)."""

    def __init__(self, store: StoreConfig | None = None, limit: int = 1024) -> None:
        self.limit = limit
        self.revisions: OrderedDict[str, RevisionInfo] = OrderedDict()
        self.inputs = InputKeys(store)

    def __len__(self) -> int:
        return len(self.revisions)

    def get(self, revision_id: str | None) -> RevisionInfo | None:
        info = self.revisions.get(revision_id or "")
        if info is not None:
            self.revisions.move_to_end(revision_id or "")
        return info

    async def load(self, db: AsyncSession, launches: list[Launch]) -> None:
        """Read the revisions of ``launches`` not cached yet, and their input artifacts' keys."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for job, task, _attempt in launches:
            rid = job.revision_id
            if rid and self.get(rid) is None:
                revision = await db.get(Revision, rid)
                if revision is not None:
                    self.put(rid, await _revision_info(revision, self.inputs))
            info = self.get(rid)
            if info is not None:
                wanted[job.account_id].update(a for a, _mount in info.sources)
            if job.spec.get("recipe"):
                wanted[job.account_id].update(a for a, _name in recipe_inputs(job).values())
                continue
            if has_inputs(job, task):
                try:
                    payload = _payload(job, task)
                except UnreadableTask:
                    continue  # its launch says so
                found = task_inputs(payload, ".")
                wanted[job.account_id].update(a for a, _path in found)
        if any(wanted.values()):
            await self.inputs.load(db, wanted)
        resuming = [t.id for j, t, a in launches if a > 1 and checkpoints.wants_resume(j.spec)]
        self.inputs.checkpoints = await checkpoints.load_resume_keys(db, resuming)
        await self._refresh_generations(db, launches)

    async def _refresh_generations(self, db: AsyncSession, launches: list[Launch]) -> None:
        """Give the batch's revisions their project's current warm generation (one query per
        batch: ``POST /projects/:name/invalidate`` bumps it, and the next task warms again)."""
        by_project: dict[str, set[str]] = defaultdict(set)
        for job, _task, _attempt in launches:
            info = self.get(job.revision_id)
            if info is not None and info.warm is not None and job.revision_id:
                by_project[info.warm.project_id].add(job.revision_id)
        if not by_project:
            return
        found = await warm_generations(db, sorted(by_project))
        for project_id, revision_ids in by_project.items():
            generation = found.get(project_id, 0)
            for rid in revision_ids:
                info = self.revisions[rid]
                if info.warm is not None and info.warm.generation != generation:
                    warm = replace(info.warm, generation=generation)
                    self.revisions[rid] = replace(info, warm=warm)

    def put(self, revision_id: str, info: RevisionInfo) -> None:
        self.revisions[revision_id] = info
        while len(self.revisions) > self.limit:
            self.revisions.popitem(last=False)

    def packages(self, launches: list[Launch]) -> dict[str, Source]:
        """``{content_hash: source}`` of the revisions these launches run
        (``PackageCache.ensure``)."""
        out: dict[str, Source] = {}
        for job, _task, _attempt in launches:
            info = self.get(job.revision_id)
            if info is not None:
                store = self.inputs.store
                source = Source(info.path, info.size_bytes, info.tarball_key, store)
                out[info.content_hash] = source
        return out


def _payload(job: JobInfo, task: TaskRow) -> dict[str, Any]:
    payload = task_payload(job, task)
    if isinstance(payload, Unreadable):
        raise UnreadableTask(payload.reason)
    return payload


def has_inputs(job: JobInfo, task: TaskRow) -> bool:
    """Whether the task's payload may name input artifacts, without building it: the job
    payload has ``_artifacts`` (also when the job fans out by it), or an ``items`` element
    of the task does."""
    if ARTIFACTS_FIELD in job.payload:
        return True
    if job.spec.get("kind") != "items" or not isinstance(task.item, list):
        return False
    return any(isinstance(it, dict) and ARTIFACTS_FIELD in it for it in task.item)


def downloads(
    job: JobInfo, task: TaskRow, payload: dict[str, Any], revision: RevisionInfo
) -> tuple[tuple[str, str, str], ...]:
    """The attempt's inputs: ``(artifact id, blob key, path under the revision root)``, the
    manifest's data sources first; a key is "" where the artifact is not available."""
    wanted = list(revision.sources)
    if has_inputs(job, task):
        wanted += task_inputs(payload, revision.workdir)
    if not wanted:
        return ()
    keys = revision.inputs
    return tuple(
        (art_id, keys.get(job.account_id, art_id) if keys is not None else "", path)
        for art_id, path in wanted
    )


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
    payload = _payload(job, task)
    spec = AttemptSpec(
        job_id=job.id,
        account_id=job.account_id,
        task_id=task.id,
        index=task.index,
        attempt=attempt,
        payload=payload,
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
        store=revision.inputs.store if revision.inputs is not None else None,
        downloads=downloads(job, task, payload, revision),
        max_artifact_bytes=settings.max_artifact_bytes,
        warm=revision.warm,
        warm_python=revision.preload if settings.warm_python else None,
        task_token=_task_token(settings, job, task.id, attempt),
        checkpointing=checkpoints.enabled(job.spec),
        checkpoint_key=(
            revision.inputs.checkpoints.pop(task.id, "") if revision.inputs is not None else ""
        ),
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


def _task_token(settings: Settings, job: JobInfo, task_id: str, attempt: int) -> str:
    """The attempt's ``COMPUTALOT_TASK_TOKEN`` (``auth.task_tokens``); "" without a secret."""
    secret = settings.task_token_secret
    if secret is None or not job.project_id:
        return ""
    return mint_task_token(secret.get_secret_value(), task_id, attempt, job.timeout_s)


def recipe_inputs(job: JobInfo) -> dict[str, tuple[str, str]]:
    """A recipe job's ``{field: (artifact id, filename)}`` (``jobs.recipe_submit``)."""
    inputs = job.spec.get("inputs") or {}
    return {field: (str(pair[0]), str(pair[1])) for field, pair in inputs.items()}


def _input_path(field: str, filename: str) -> str:
    """Where a recipe input is placed under the attempt root: its field, the upload's suffix
    (formats are told apart by it)."""
    suffix = "".join(Path(filename).suffixes[-2:]) if filename else ""
    safe = "".join(ch for ch in suffix if ch.isalnum() or ch == ".")[:16]
    return f"inputs/{field}{safe}"


def recipe_launch_spec(
    launch: Launch, inputs: InputKeys, settings: Settings, namespace: str
) -> tuple[AttemptSpec, dict[str, Any]]:
    """The ``run_recipe`` argument and Ray options for one attempt of a recipe task."""
    job, task, attempt = launch
    payload = _payload(job, task)
    placed = {f: (art, _input_path(f, name), name) for f, (art, name) in recipe_inputs(job).items()}
    spec = AttemptSpec(
        job_id=job.id,
        account_id=job.account_id,
        task_id=task.id,
        index=task.index,
        attempt=attempt,
        payload=payload,
        runner_command=[],
        timeout_s=job.timeout_s,
        namespace=namespace,
        kill_grace_s=settings.kill_grace_s,
        api_url=settings.resolved_public_url,
        max_result_bytes=settings.max_result_bytes,
        store=inputs.store,
        downloads=tuple(
            (art, inputs.get(job.account_id, art), rel) for art, rel, _n in placed.values()
        ),
        max_artifact_bytes=settings.max_artifact_bytes,
        recipe={
            "recipe": job.spec["recipe"],
            "operation": job.spec.get("operation"),
            "cpus": max(1, int(job.resources.get("num_cpus") or 1)),
            "inputs": {f: [rel, name] for f, (_art, rel, name) in placed.items()},
        },
    )
    options = dict(job.resources)
    options["name"] = f"computalot-recipe:{job.spec['recipe']}"
    return spec, options


def options_key(job: JobInfo) -> str:
    """Jobs with the same revision (or recipe) and resources launch through the same
    ``run_task.options`` (``run_recipe.options``)."""
    owner = f"recipe:{job.spec['recipe']}" if job.spec.get("recipe") else job.revision_id
    return f"{owner}|{json.dumps(job.resources, sort_keys=True)}"
