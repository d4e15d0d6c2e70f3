"""Warming a project revision on one node: its ``runtime.init.commands``, then its
``validation`` checks (docs/llms-full.md, "Projects": init, status, cache_mounts).

Two callers run :func:`ensure_warm` on a worker, inside the revision's runtime_env (so the
working directory is the revision, Ray placed it there):

* ``POST /projects/:name/init`` submits :func:`warm_node` once per alive node, pinned to it
  (``projects.readiness``);
* ``run_task`` calls it before a project task's command, so a node that was never warmed (a
  cold revision, a node that joined later) is warmed by its first task there.

A node-local marker per (project, revision, generation) with a file lock makes that happen once
per node however many tasks start together; ``POST /projects/:name/invalidate`` bumps the
generation, so the next task or init warms again. Every command runs the way a task's command
runs (``engine.runner.run_command``, sandboxed per the attempt's policy), in a scratch copy of
the revision with the project's ``cache_mounts`` bound in: that is how init fills a cache that
the project's tasks on this node then find.

Only the standard library and the sandbox's policy are imported at module level: every worker
imports this module through ``engine.attempt``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from computalot.sandbox.policy import SandboxPolicy
    from computalot.sandbox.task import TaskSandbox

WARM_ROOT = "computalot-warm"
CACHE_ROOT = "computalot-cache"
#: Seconds one init command may run; a validation check gets CHECK_TIMEOUT_S.
INIT_COMMAND_TIMEOUT_S = 900.0
CHECK_TIMEOUT_S = 120.0
#: Characters of a failing command's output kept in the report.
OUTPUT_CHARS = 2000


@dataclass(frozen=True)
class WarmPlan:
    """What warming a revision on a node runs, as the manifest says (plain values: pickled).

    ``commands``: the init commands, each ``{"label", "command", "cwd", "env"}``;
    ``validation``: ``{"executables", "files", "commands"}``; ``cache_mounts``: ``(name, path
    under the revision root, env variable or None)``; ``generation`` counts invalidations."""

    project_id: str
    account_id: str
    revision_id: str
    generation: int = 0
    commands: tuple[dict[str, Any], ...] = ()
    validation: dict[str, Any] = field(default_factory=dict)
    cache_mounts: tuple[tuple[str, str, str | None], ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def has_init(self) -> bool:
        """Whether there is anything to run or check (else a node is warm at once)."""
        v = self.validation
        return bool(self.commands or v.get("executables") or v.get("files") or v.get("commands"))


def plan_from_manifest(
    manifest: dict[str, Any] | None,
    *,
    project_id: str,
    account_id: str,
    revision_id: str,
    generation: int,
) -> WarmPlan:
    """The :class:`WarmPlan` of a revision's (already validated) manifest."""
    manifest = manifest or {}
    runtime = manifest.get("runtime") or {}
    commands = tuple(dict(c) for c in ((runtime.get("init") or {}).get("commands") or []))
    validation = dict(manifest.get("validation") or {})
    mounts = tuple(
        (str(m["name"]), str(m["path"]), m.get("env")) for m in manifest.get("cache_mounts") or []
    )
    return WarmPlan(
        project_id=project_id,
        account_id=account_id,
        revision_id=revision_id,
        generation=generation,
        commands=commands,
        validation=validation,
        cache_mounts=mounts,
        env=dict(runtime.get("env") or {}),
    )


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def cache_dir(plan: WarmPlan, name: str, policy: SandboxPolicy | None) -> Path:
    """The node's writable directory of one cache mount: per account, project and name, kept
    across tasks; owned by the uid the project's commands run as."""
    base = _private_dir(Path(tempfile.gettempdir()) / CACHE_ROOT)
    path = base / plan.account_id / plan.project_id / name
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if policy is not None and policy.mode == "bwrap" and os.geteuid() == 0:
        st = path.stat()
        if st.st_uid != policy.uid:
            os.chown(path, policy.uid, policy.gid)
    return path


def place_cache_mounts(
    plan: WarmPlan, work: Path, policy: SandboxPolicy | None
) -> list[tuple[Path, Path]]:
    """Prepare each cache mount of ``plan`` in the working copy ``work``: ``(host directory,
    mount point in work)``. Unconfined, the mount point is a link to the cache; in a sandbox it
    is an empty directory the cache is bound over (``sandbox.bwrap``, ``binds``)."""
    out = []
    for name, rel, _env in plan.cache_mounts:
        host = cache_dir(plan, name, policy)
        point = work / rel
        if point.is_symlink() or point.is_file():
            point.unlink()
        elif point.is_dir():
            shutil.rmtree(point)
        point.parent.mkdir(parents=True, exist_ok=True)
        if policy is None or policy.mode != "bwrap":
            point.symlink_to(host, target_is_directory=True)
        else:
            point.mkdir()
        out.append((host, point))
    return out


def cache_env(plan: WarmPlan, work_as_seen: str) -> dict[str, str]:
    """``{env: path as the command sees it}`` for the cache mounts that name a variable."""
    return {env: f"{work_as_seen}/{rel}" for _n, rel, env in plan.cache_mounts if env}


def _marker(plan: WarmPlan) -> Path:
    base = _private_dir(Path(tempfile.gettempdir()) / WARM_ROOT / plan.project_id)
    return base / f"{plan.revision_id}-g{plan.generation}.json"


def _check(label: str, ok: bool, output: str) -> dict[str, Any]:
    return {"label": label, "ok": ok, "output": output[-OUTPUT_CHARS:]}


class _Scratch:
    """A scratch copy of the revision where the plan's commands run, with its cache mounts."""

    def __init__(self, plan: WarmPlan, policy: SandboxPolicy | None, source: Path) -> None:
        from computalot.engine.cleanup import owner_tag
        from computalot.engine.run_task import attempt_root

        self.plan = plan
        self.policy = policy if policy is not None and policy.mode == "bwrap" else None
        # named like an attempt directory: swept if this worker dies before removing it
        prefix = f"warm-{plan.revision_id}-{owner_tag()}"
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=attempt_root()))
        self.work = self.root / "work"
        shutil.copytree(source, self.work, symlinks=True)
        (self.root / "tmp").mkdir()
        self.binds = place_cache_mounts(plan, self.work, policy)
        self.count = 0

    def seen(self, path: Path) -> str:
        if self.policy is None:
            return str(path)
        from computalot.sandbox.bwrap import INNER_TASK

        rel = path.relative_to(self.root).as_posix()
        return INNER_TASK if rel == "." else f"{INNER_TASK}/{rel}"

    def run(self, command: dict[str, Any], timeout_s: float) -> tuple[bool, str]:
        """Run one labelled command: (exit 0, its output tail)."""
        from computalot.engine.runner import RunLimits, base_env, run_command

        cwd = self.work / str(command.get("cwd") or ".")
        extra = dict(self.plan.env)
        extra.update(cache_env(self.plan, self.seen(self.work)))
        extra.update(command.get("env") or {})
        extra["TMPDIR"] = self.seen(self.root / "tmp")
        env = base_env(extra, Path(self.seen(cwd)))
        sandbox = self._sandbox()
        if isinstance(sandbox, str):
            return False, sandbox
        try:
            limits = RunLimits() if self.policy is None else _limits(self.policy)
            ran = run_command(
                [str(a) for a in command["command"]],
                cwd=cwd,
                env=env,
                timeout_s=timeout_s,
                limits=limits,
                sandbox=sandbox,
            )
        finally:
            if sandbox is not None:
                sandbox.close()
        output = ran.output_tail
        if ran.status != "ok":
            output = f"{output}\n[{ran.error or ran.status}]".lstrip("\n")
        return ran.status == "ok", output

    def _sandbox(self) -> TaskSandbox | str | None:
        """A fresh sandbox for the next command, or why there cannot be one."""
        if self.policy is None:
            return None
        from computalot.sandbox.task import SandboxUnavailable, TaskSandbox

        self.count += 1
        binds = tuple((str(h), self.seen(p)) for h, p in self.binds)
        try:
            return TaskSandbox(
                self.policy, self.root, name=f"{self.root.name}-{self.count}", binds=binds
            )
        except SandboxUnavailable as exc:
            return f"sandbox unavailable: {exc}"

    def close(self) -> None:
        from computalot.engine.cleanup import CLEANER

        CLEANER.remove(self.root)


def _limits(policy: SandboxPolicy) -> Any:
    from computalot.engine.runner import RunLimits

    limits = policy.limits
    return RunLimits(
        memory_mb=limits.memory_mb or None,
        max_file_mb=limits.disk_mb or None,
        max_open_files=limits.open_files or None,
        cpu_time_s=limits.cpu_time_s or None,
    )


def run_plan(plan: WarmPlan, policy: SandboxPolicy | None, source: Path) -> dict[str, Any]:
    """Run the init commands in order, then every validation check; the report:
    ``{"state": "ready"|"failed", "duration_s", "validation", "error"}``. The first failing
    init command stops the run; validation checks all run (each is reported)."""
    from computalot.engine.runner import runtime_path

    started = time.monotonic()
    checks: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    scratch = _Scratch(plan, policy, source)
    try:
        for command in plan.commands:
            ok, output = scratch.run(command, INIT_COMMAND_TIMEOUT_S)
            if not ok:
                error = _error("init_command", command["label"], output)
                break
        if error is None:
            path = runtime_path(None)
            for exe in plan.validation.get("executables") or []:
                ok = shutil.which(str(exe), path=path) is not None
                checks.append(_check(f"executable {exe}", ok, "" if ok else "not found on PATH"))
            for rel in plan.validation.get("files") or []:
                ok = (scratch.work / str(rel)).exists()
                checks.append(_check(f"file {rel}", ok, "" if ok else "missing"))
            for command in plan.validation.get("commands") or []:
                ok, output = scratch.run(command, CHECK_TIMEOUT_S)
                checks.append(_check(str(command["label"]), ok, output))
            failed = next((c for c in checks if not c["ok"]), None)
            if failed is not None:
                error = _error("validation", failed["label"], failed["output"])
    finally:
        scratch.close()
    return {
        "state": "failed" if error is not None else "ready",
        "duration_s": round(time.monotonic() - started, 3),
        "validation": checks,
        "error": error,
        "generation": plan.generation,
    }


def _error(kind: str, label: str, output: str) -> dict[str, Any]:
    what = "init command" if kind == "init_command" else "validation check"
    return {
        "code": "init_failed",
        "message": f"{what} {label!r} failed",
        "check": label,
        "output": output[-OUTPUT_CHARS:],
    }


def ensure_warm(
    plan: WarmPlan, policy: SandboxPolicy | None, source: Path, *, report_cached: bool = False
) -> dict[str, Any] | None:
    """Warm this node for ``plan`` unless its marker says it already is: the report of this
    run, or None when the node was warm already (with ``report_cached``: the stored report).

    Concurrent callers on one node wait on the marker's lock, so the commands run once; a
    failed run leaves no marker (the next task or init tries again)."""
    if not plan.has_init:
        return {"state": "ready", "duration_s": 0.0, "validation": [], "error": None}
    marker = _marker(plan)
    with open(marker.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.is_file():
                if not report_cached:
                    return None
                with contextlib.suppress(OSError, ValueError):
                    return dict(json.loads(marker.read_text()))
            report = run_plan(plan, policy, source)
            if report["state"] == "ready":
                tmp = marker.with_suffix(".tmp")
                tmp.write_text(json.dumps(report))
                tmp.replace(marker)
            return report
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def warm_here(plan: WarmPlan, policy: SandboxPolicy | None) -> dict[str, Any]:
    """``POST /projects/:name/init`` on this node: the report, with this node's Ray id."""
    import ray

    try:
        report = ensure_warm(plan, policy, Path(os.getcwd()), report_cached=True) or {}
    except Exception as exc:  # a broken node reports, it does not raise through Ray
        report = {
            "state": "failed",
            "duration_s": 0.0,
            "validation": [],
            "error": {
                "code": "init_failed",
                "message": f"the node could not run init: {type(exc).__name__}",
                "check": None,
                "output": str(exc)[-OUTPUT_CHARS:],
            },
        }
    report["node_id"] = ray.get_runtime_context().get_node_id()
    return report
