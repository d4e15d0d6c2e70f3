"""``run_task``: one task attempt, as a Ray task on any node (SPEC §6 runner protocol).

The attempt gets a fresh copy of the revision (Ray placed it in the worker's working
directory), its payload file, a result path and an artifact directory, and runs
``runner_command`` through :func:`computalot.engine.runner.run_command`. Progress and output
lines go to the event hub while the process runs; the outcome (result, tails, artifacts) is the
task's return value, which the dispatcher records.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray

from computalot.engine.cleanup import CLEANER, owner_tag
from computalot.engine.names import HUB_NAME
from computalot.engine.runner import RunLimits, base_env, run_command
from computalot.jsonsafe import load_result

MAX_RESULT_BYTES = 64 * 1024 * 1024
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
ATTEMPT_ROOT = "computalot-attempts"


def _read_result(path: Path) -> tuple[str, Any, str | None, bool]:
    """(state, value, error, needs scrub): state is ok | missing | invalid; values the store
    cannot keep (NaN, lone surrogates) are replaced when the attempt is judged."""
    if not path.exists():
        return "missing", None, None, False
    size = path.stat().st_size
    if size > MAX_RESULT_BYTES:
        limit = f"result file is {size} bytes; the limit is {MAX_RESULT_BYTES}"
        return "invalid", None, limit, False
    try:
        with path.open("rb") as fh:
            value, needs_scrub = load_result(fh)
            return "ok", value, None, needs_scrub
    except (ValueError, UnicodeDecodeError) as exc:
        return "invalid", None, f"result file is not valid JSON: {exc}", False
    except RecursionError:
        return "invalid", None, "result file is nested too deeply to read", False


def _collect_artifacts(directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    total = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
        size = path.stat().st_size
        rel = path.relative_to(directory).as_posix()
        if total + size > MAX_ARTIFACT_BYTES:
            warnings.append(f"artifact {rel} skipped: over {MAX_ARTIFACT_BYTES} bytes in total")
            continue
        total += size
        out.append({"path": rel, "size": size, "data": path.read_bytes()})
    return out, warnings


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

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.hub: Any = None  # looked up at the first event: a silent task never needs it
        self.looked_up = False
        self.sent = 0

    def drain(self) -> None:
        """Wait until the hub has stored every event sent so far (they precede the outcome)."""
        if self.hub is not None and self.sent:
            spec = self.spec
            ray.get(
                self.hub.barrier.remote(spec["task_id"], spec["attempt"], self.sent), timeout=10
            )

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        spec = self.spec
        if not self.looked_up:
            self.looked_up = True
            self.hub = _hub_handle(spec["namespace"])
        if self.hub is None:
            return
        self.hub.task_live.remote(
            spec["job_id"], spec["account_id"], spec["task_id"], spec["attempt"], kind, data
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


def execute_attempt(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt in the current process; returns the outcome dict the dispatcher stores."""
    make_interruptible()
    started = time.time()
    base = Path(tempfile.gettempdir()) / ATTEMPT_ROOT
    base.mkdir(parents=True, exist_ok=True)
    CLEANER.sweep(base)  # what killed workers left behind
    prefix = f"{spec['task_id']}-{spec['attempt']}-{owner_tag()}"
    attempt_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        workdir = attempt_dir / "work"
        shutil.copytree(os.getcwd(), workdir, symlinks=True)
        payload_path = attempt_dir / "payload.json"
        result_path = attempt_dir / "result.json"
        artifact_dir = attempt_dir / "artifacts"
        artifact_dir.mkdir()
        payload_path.write_text(json.dumps(spec["payload"]))
        extra = dict(spec.get("env") or {})
        extra.update(
            {
                "COMPUTALOT_TASK_PAYLOAD": str(payload_path),
                "COMPUTALOT_TASK_RESULT": str(result_path),
                "COMPUTALOT_ARTIFACT_DIR": str(artifact_dir),
                "COMPUTALOT_JOB_ID": spec["job_id"],
                "COMPUTALOT_TASK_ID": spec["task_id"],
                "COMPUTALOT_TASK_INDEX": str(spec["index"]),
                "COMPUTALOT_ATTEMPT": str(spec["attempt"]),
                "COMPUTALOT_API_URL": spec.get("api_url", ""),
                "TMPDIR": str(attempt_dir),
            }
        )
        cwd = workdir / spec.get("workdir", ".")
        reporter = _LiveReporter(spec)
        outcome = run_command(
            list(spec["runner_command"]),
            cwd=cwd,
            env=base_env(extra, cwd),
            timeout_s=float(spec["timeout_s"]),
            limits=RunLimits(memory_mb=spec.get("memory_mb")),
            on_event=reporter,
            kill_grace_s=float(spec.get("kill_grace_s", 5.0)),
        )
        try:
            reporter.drain()
        except Exception:  # a slow hub must not fail the attempt
            pass
        state, value, result_error, needs_scrub = _read_result(result_path)
        artifacts, artifact_warnings = _collect_artifacts(artifact_dir)
        return {
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "error": outcome.error,
            "stdout": outcome.stdout_tail,
            "stderr": outcome.stderr_tail,
            "output_tail": outcome.output_tail,
            "duration_s": outcome.duration_s,
            "last_progress": outcome.last_progress,
            "result_state": state,
            "result": value,
            "result_error": result_error,
            "result_needs_scrub": needs_scrub,
            "artifacts": artifacts,
            "artifact_warnings": artifact_warnings,
            "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None,
            "started_at": started,
        }
    finally:
        CLEANER.remove(attempt_dir)  # off the critical path (see cleanup)


@ray.remote(max_retries=0)
def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    return execute_attempt(spec)
