"""``run_task``: one task attempt, as a Ray task on any node (docs/llms-full.md, "Runner protocol").

The attempt gets a fresh copy of the revision (Ray placed it in the worker's working
directory), its payload file, a result path and an artifact directory, and runs
``runner_command`` through :func:`computalot.engine.runner.run_command`. Progress and output
lines go to the event hub while the process runs; the :class:`~computalot.engine.attempt.Outcome`
(tails, the result's JSON text and metadata: ``engine.result_file``, and the artifacts this
worker streamed into the artifact store: ``engine.task_files``) is the task's return value,
which the dispatcher records. Input artifacts are placed in the attempt's directory before the
command starts (``engine.task_files.place_inputs``).

``run_task`` has two return values: the outcome, which the dispatcher awaits for every attempt,
and a big result's UTF-8 text as a numpy byte array (None when the text is small enough to
travel inside the outcome). The dispatcher fetches the second only while it records the attempt,
without a copy (Ray hands a numpy array over as a view of its object store), and then drops it:
a 50 MB result never sits in the small outcome, nor in the dispatcher's memory while it waits to
be recorded. (Objects a task returns are owned by the caller, so the text outlives the worker.)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from numpy.typing import NDArray

from computalot.engine import checkpoints
from computalot.engine.attempt import AttemptSpec, Outcome
from computalot.engine.cleanup import CLEANER, owner_tag
from computalot.engine.names import HUB_NAME
from computalot.engine.project_init import cache_env, ensure_warm, place_cache_mounts
from computalot.engine.result_file import read_result_file
from computalot.engine.runner import RunLimits, RunOutcome, base_env, run_command
from computalot.engine.task_files import InputUnavailable, place_inputs, upload_artifacts
from computalot.engine.warm_python import warm_command
from computalot.engine.warm_python.client import SandboxClaim, claim_sandboxed
from computalot.sandbox.bwrap import INNER_TASK
from computalot.sandbox.task import SandboxPolicy, SandboxUnavailable, TaskSandbox
from computalot.states import TaskStatus

#: Per-task result cap when the spec carries none (``settings.max_result_bytes``'s default).
DEFAULT_MAX_RESULT_BYTES = 64 * 1024 * 1024
#: A result text up to this size travels inside the outcome (one object, inlined by Ray in the
#: task's reply); a bigger one is the task's second return value.
INLINE_RESULT_BYTES = 64 * 1024
ATTEMPT_ROOT = "computalot-attempts"
#: Seconds after the command's latest possible end (timeout_s + kill grace) by which its
#: artifacts must be stored: the dispatcher stops waiting for an attempt 60 s after that
#: (``dispatcher.BACKSTOP_SLACK_S``) and judges it timed out; a file not stored by then is
#: left out with a warning instead.
UPLOAD_SLACK_S = 40.0
#: The shortest run a command gets when placing its inputs used up its timeout (seconds).
MIN_RUN_S = 0.001
#: How long an attempt waits for the hub to confirm its live events (seconds).
DRAIN_TIMEOUT_S = 10.0

log = logging.getLogger("computalot.run_task")


_HUB: dict[str, Any] = {}


def _hub_handle(namespace: str) -> Any:
    """The event hub's handle, looked up once per worker process.

    ``ray.get_actor`` loads the actor's class in this process (importing the hub's module and
    the store behind it): about a second on a small host, so it is only done once a task
    actually has something to report.
    """
    if namespace not in _HUB:
        try:
            _HUB[namespace] = ray.get_actor(HUB_NAME, namespace=namespace)
        except ValueError:
            return None
    return _HUB[namespace]


class _LiveReporter:
    """Forwards progress/output events to the hub without blocking the runner loop."""

    def __init__(self, spec: AttemptSpec) -> None:
        self.spec = spec
        self.hub: Any = None  # looked up at the first event: a silent task never needs it
        self.looked_up = False
        self.sent = 0

    def drain(self) -> None:
        """Wait until the hub has stored every event sent so far (they precede the outcome).

        A hub that does not confirm in time does not fail the attempt; it is logged, and the
        hub drops whatever of these events arrives after the job's ``end``."""
        if self.hub is None or not self.sent:
            return
        spec = self.spec
        try:
            ray.get(
                self.hub.barrier.remote(spec.task_id, spec.attempt, self.sent),
                timeout=DRAIN_TIMEOUT_S,
            )
        except Exception as exc:
            log.warning(
                "task %s attempt %s: the event hub did not confirm %d live events: %s: %s",
                spec.task_id,
                spec.attempt,
                self.sent,
                type(exc).__name__,
                str(exc)[:200],
            )

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        spec = self.spec
        if not self.looked_up:
            self.looked_up = True
            self.hub = _hub_handle(spec.namespace)
        if self.hub is None:
            return
        self.hub.task_live.remote(
            spec.job_id, spec.account_id, spec.task_id, spec.attempt, kind, data
        )
        self.sent += 1  # counted once handed to Ray: drain() waits for exactly these


def make_interruptible() -> None:
    """Let a Ray cancel reach this thread as ``KeyboardInterrupt``.

    Ray stops a running task with ``_thread.interrupt_main()``, which silently does nothing while
    Python's SIGINT handler is ``SIG_IGN`` -- and a worker inherits SIG_IGN whenever the cluster
    was started in the background (``nohup``, ``&`` in a script). Such a cancel would leave the
    command running until its timeout. Restoring the default handler makes every cancel land.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def attempt_root() -> Path:
    """Where attempt directories live: private to the worker's user (0700)."""
    base = Path(tempfile.gettempdir()) / ATTEMPT_ROOT
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = base.lstat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


def _run_limits(
    policy: SandboxPolicy | None, sandbox: TaskSandbox | None, spec: AttemptSpec
) -> RunLimits:
    if policy is None:  # unconfined: only what the job asked for
        return RunLimits(memory_mb=spec.memory_mb)
    limits = policy.limits
    memory = sandbox.memory_rlimit_mb if sandbox is not None else (limits.memory_mb or None)
    return RunLimits(
        memory_mb=memory,
        max_file_mb=limits.disk_mb or None,
        max_open_files=limits.open_files or None,
        cpu_time_s=limits.cpu_time_s or None,
    )


def _node_id() -> str | None:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _outcome(
    ran: RunOutcome,
    result: dict[str, Any] | None = None,
    artifacts: tuple[list[dict[str, Any]], list[str]] | None = None,
) -> Outcome:
    """What the dispatcher records of an attempt (see ``engine.outcomes.judge_outcome``);
    ``result``: the fields ``engine.result_file`` read from the result file."""
    files, warnings = artifacts if artifacts is not None else ([], [])
    return Outcome(
        status=ran.status,
        exit_code=ran.exit_code,
        error=ran.error,
        stdout=ran.stdout_tail,
        stderr=ran.stderr_tail,
        output_tail=ran.output_tail,
        duration_s=ran.duration_s,
        last_progress=ran.last_progress,
        **(result or {}),
        artifacts=files,
        artifact_warnings=warnings,
        node_id=_node_id(),
    )


#: The outcome of an attempt a Ray cancel interrupted (its command's group is already stopped).
def _cancelled(duration_s: float) -> Outcome:
    """``duration_s``: how long the attempt ran before the cancel (billed like any other)."""
    return Outcome(
        status=TaskStatus.CANCELLED, error="cancelled", node_id=_node_id(), duration_s=duration_s
    )


@dataclass(frozen=True)
class AttemptFiles:
    """The paths of one attempt's directory (``attempt_root``); ``work`` holds the revision."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def payload(self) -> Path:
        return self.root / "payload.json"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def checkpoint(self) -> Path:
        return self.root / checkpoints.DIR_NAME


def _task_env(
    spec: AttemptSpec, files: AttemptFiles, sandbox: TaskSandbox | None
) -> dict[str, str]:
    """The runner's environment (docs/llms-full.md, "Environment"), paths as the command sees
    them (inside the sandbox when there is one)."""
    where = sandbox.inner if sandbox is not None else str
    extra = dict(spec.env)
    extra.update(
        {
            "COMPUTALOT_TASK_PAYLOAD": where(files.payload),
            "COMPUTALOT_TASK_RESULT": where(files.result),
            "COMPUTALOT_ARTIFACT_DIR": where(files.artifacts),
            "COMPUTALOT_JOB_ID": spec.job_id,
            "COMPUTALOT_TASK_ID": spec.task_id,
            "COMPUTALOT_TASK_INDEX": str(spec.index),
            "COMPUTALOT_ATTEMPT": str(spec.attempt),
            "COMPUTALOT_API_URL": spec.api_url,
            "TMPDIR": where(files.tmp),
        }
    )
    if spec.checkpointing:
        extra["COMPUTALOT_CHECKPOINT_DIR"] = where(files.checkpoint)
    if spec.task_token:
        extra["COMPUTALOT_TASK_TOKEN"] = spec.task_token
    cwd = files.work / spec.workdir
    return base_env(extra, Path(where(cwd)))


def _read_result(
    spec: AttemptSpec, ran: RunOutcome, files: AttemptFiles
) -> tuple[dict[str, Any], NDArray[np.uint8] | None]:
    """The result file's fields, and a big result's text apart from them (see the module)."""
    if ran.status != "ok":  # a failed run's result file is never read
        return {}, None
    result = read_result_file(
        files.result,
        batched=spec.batched,
        element_count=spec.element_count,
        max_bytes=spec.max_result_bytes or DEFAULT_MAX_RESULT_BYTES,
    )
    if result.get("result_bytes", 0) <= INLINE_RESULT_BYTES:
        return result, None
    encoded = result.pop("result_text").encode("utf-8")
    result["result_in_ref"] = True
    return result, np.frombuffer(encoded, dtype=np.uint8)


def _run(
    spec: AttemptSpec,
    files: AttemptFiles,
    policy: SandboxPolicy | None,
    sandbox: TaskSandbox | None,
    warmed: dict[str, Any] | None = None,
) -> tuple[Outcome, NDArray[np.uint8] | None]:
    """Fill the attempt's directory, run its command, read what it left; ``warmed`` (see
    :func:`_warm`) goes into the outcome."""
    argv = list(spec.runner_command)
    cwd = files.work / spec.workdir
    env = _task_env(spec, files, sandbox)
    plan = spec.warm
    if plan is not None and plan.cache_mounts:  # bound over the copy: launched once it exists
        env.update(cache_env(plan, sandbox.inner(files.work) if sandbox else str(files.work)))
    elif sandbox is not None and argv:
        with contextlib.suppress(OSError):  # run_command tries again and says why
            sandbox.launch(argv, cwd, env)  # sets up while the directory is filled
    shutil.copytree(os.getcwd(), files.work, symlinks=True)
    if plan is not None and plan.cache_mounts:
        placed = place_cache_mounts(plan, files.work, policy)
        if sandbox is not None:
            sandbox.binds = tuple((str(host), sandbox.inner(point)) for host, point in placed)
    files.artifacts.mkdir()
    files.tmp.mkdir()
    files.payload.write_text(json.dumps(spec.payload))
    begun = time.monotonic()  # timeout_s covers placing the inputs and running the command
    try:
        place_inputs(files.work, list(spec.downloads), spec.store, begun + spec.timeout_s)
    except InputUnavailable as exc:
        missing = RunOutcome(None, "input_unavailable", str(exc), "", "", "", 0.0, None)
        return _outcome(missing), None
    restored = _restore_checkpoint(spec, files, begun + spec.timeout_s)
    reporter = _LiveReporter(spec)
    ran = run_command(
        argv,
        cwd=cwd,
        env=env,
        timeout_s=max(MIN_RUN_S, spec.timeout_s - (time.monotonic() - begun)),
        limits=_run_limits(policy, sandbox, spec),
        on_event=reporter,
        kill_grace_s=spec.kill_grace_s,
        sandbox=sandbox,
        warm=spec.warm_python,
    )
    if sandbox is not None:  # nothing of the task runs on while its files are read
        sandbox.close()
    reporter.drain()
    result, big_text = _read_result(spec, ran, files)
    until = begun + spec.timeout_s + spec.kill_grace_s + UPLOAD_SLACK_S
    stored = upload_artifacts(files.artifacts, spec.store, spec.max_artifact_bytes, until)
    outcome = _outcome(ran, result, stored)
    if spec.checkpointing:  # also after a failure or a timeout (its group is already killed)
        saved, warnings = checkpoints.save_checkpoint(files.checkpoint, spec.store, until)
        warned = [*restored, *warnings, *outcome.artifact_warnings]
        outcome = replace(outcome, checkpoint=saved, artifact_warnings=warned)
    return (replace(outcome, warmed=warmed) if warmed else outcome), big_text


def _restore_checkpoint(spec: AttemptSpec, files: AttemptFiles, deadline: float) -> list[str]:
    """Create the checkpoint directory and restore the task's latest checkpoint into it
    (``engine.checkpoints``); warnings for the result when it could not be restored."""
    if not spec.checkpointing:
        return []
    files.checkpoint.mkdir()
    return checkpoints.restore_checkpoint(
        files.checkpoint, spec.checkpoint_key, spec.store, deadline
    )


def _warm(spec: AttemptSpec) -> dict[str, Any] | None:
    """Warm this node for the task's revision first if it never was (``engine.project_init``:
    once per node, however many tasks start together), before the task's own sandbox exists
    (on cgroup v1 a worker's sandboxes take turns) and before its time limit starts. The
    report, or ``{"generation"}`` when the node was warm already: settling records the node
    under the generation the attempt ran with; None for a task without a project plan."""
    plan = spec.warm
    if plan is None:
        return None
    ran = ensure_warm(plan, spec.sandbox, Path(os.getcwd())) if plan.has_init else None
    return ran or {"generation": plan.generation}


def _init_failed(report: dict[str, Any]) -> Outcome:
    """The outcome of an attempt whose node could not be warmed (``engine.project_init``):
    the task fails as ``init_failed`` naming the check and its output; its command never ran."""
    error = report.get("error") or {}
    output = str(error.get("output") or "")
    message = f"{error.get('message') or 'project init failed'} on this node"
    if output:
        message += f": {output[-500:]}"
    return Outcome(
        status="init_failed",
        error=message,
        output_tail=output,
        duration_s=0.0,
        node_id=_node_id(),
        warmed=report,
    )


def execute_attempt(spec: AttemptSpec) -> tuple[Outcome, NDArray[np.uint8] | None]:
    """Run one attempt in the current process: (the outcome the dispatcher records, the result's
    UTF-8 text as bytes when it is too big to travel inside the outcome, else None).

    A Ray cancel (``KeyboardInterrupt`` here, once ``run_command`` stopped the command) ends it
    with a ``cancelled`` outcome, not an exception."""
    started = time.monotonic()
    make_interruptible()
    base = attempt_root()
    CLEANER.sweep(base)  # what killed workers left behind
    policy = spec.sandbox
    claim = _claim_warm_sandbox(spec, base)
    if claim is not None:  # its warm sandbox's slot is this attempt's directory
        files = AttemptFiles(claim.directory)
    else:
        prefix = f"{spec.task_id}-{spec.attempt}-{owner_tag()}"
        files = AttemptFiles(Path(tempfile.mkdtemp(prefix=prefix, dir=base)))
    sandbox: TaskSandbox | None = None
    try:
        warmed = _warm(spec)
        if warmed is not None and warmed.get("state", "ready") != "ready":
            return _init_failed(warmed), None
        if claim is not None:
            sandbox = claim.lease
        elif policy is not None and policy.mode == "bwrap":
            try:
                sandbox = TaskSandbox(policy, files.root, name=files.root.name)
            except SandboxUnavailable as exc:
                refused = RunOutcome(None, "sandbox_unavailable", str(exc), "", "", "", 0.0, None)
                return _outcome(refused), None
        return _run(spec, files, policy, sandbox, warmed)
    except KeyboardInterrupt:
        log.info("task %s attempt %s cancelled", spec.task_id, spec.attempt)
        return _cancelled(time.monotonic() - started), None
    finally:
        if sandbox is not None:  # an attempt that ended early (an exception, a Ray cancel)
            sandbox.close()
        if claim is not None:  # the slot is emptied (off the critical path) for the next one
            claim.finish(base, CLEANER.remove)
        else:
            CLEANER.remove(files.root)  # off the critical path (see cleanup)


_SLOTS = itertools.count()


def _claim_warm_sandbox(spec: AttemptSpec, base: Path) -> SandboxClaim | None:
    """This worker's warm sandbox for the attempt (``sandbox.warm``), when its command runs
    warm (``engine.warm_python``) and sandboxed; None: a fresh sandbox or process, as always.
    A project with cache mounts binds them per attempt: it runs in a fresh sandbox."""
    policy = spec.sandbox
    if spec.warm_python is None or policy is None or policy.mode != "bwrap":
        return None
    if spec.warm is not None and spec.warm.cache_mounts:
        return None
    env = base_env(dict(spec.env), Path(INNER_TASK))
    command = warm_command(list(spec.runner_command), env["PATH"])
    if command is None:
        return None

    def new_slot() -> Path:
        return base / f"warm-{owner_tag()}{next(_SLOTS)}"

    return claim_sandboxed(command, spec.warm_python, env, policy, new_slot)


@ray.remote(max_retries=0, num_returns=2)
def run_task(spec: AttemptSpec) -> tuple[Outcome, NDArray[np.uint8] | None]:
    return execute_attempt(spec)
