"""A Ray cancel reaches run_task even in a worker that inherited SIGINT = SIG_IGN.

Ray stops a running task with ``_thread.interrupt_main()``; a cluster started in the background
(``nohup``, ``&`` in a script) gives its workers SIGINT ignored, which turns that call into a
no-op. These tests run a real process started that way and call ``interrupt_main`` as Ray does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from computalot.engine.run_task import make_interruptible

REPO = Path(__file__).resolve().parents[2]

WORKER = """
    import _thread, json, sys, threading, time
    from pathlib import Path
    from computalot.engine.run_task import make_interruptible
    from computalot.engine.runner import base_env, run_command

    if sys.argv[1] == "fixed":
        make_interruptible()
    cwd = Path(sys.argv[2])
    threading.Timer(0.5, _thread.interrupt_main).start()  # what ray.cancel does in the worker
    started = time.monotonic()
    try:
        out = run_command(["sleep", "30"], cwd=cwd, env=base_env({}, cwd), timeout_s=3,
                          kill_grace_s=0.2)
        print(json.dumps({"interrupted": False, "status": out.status,
                          "seconds": time.monotonic() - started}))
    except KeyboardInterrupt:
        print(json.dumps({"interrupted": True, "seconds": time.monotonic() - started}))
"""


def _run_worker(mode: str, tmp_path: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKER), mode, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_ignored_sigint_swallows_the_cancel_without_the_fix(tmp_path: Path) -> None:
    """The failure this guards against: the interrupt is lost and only the timeout ends it."""
    result = _run_worker("plain", tmp_path)
    assert result["interrupted"] is False
    assert result["status"] == "timeout"


def test_make_interruptible_lets_the_cancel_land(tmp_path: Path) -> None:
    result = _run_worker("fixed", tmp_path)
    assert result["interrupted"] is True
    assert float(result["seconds"]) < 2.5  # interrupted at 0.5 s, well before the 3 s timeout


def test_make_interruptible_keeps_a_custom_handler() -> None:
    def custom(_sig: int, _frame: object) -> None:
        return None

    previous = signal.signal(signal.SIGINT, custom)
    try:
        make_interruptible()
        assert signal.getsignal(signal.SIGINT) is custom
    finally:
        signal.signal(signal.SIGINT, previous)


ATTEMPT = """
    import _thread, json, threading, time
    from computalot.engine.attempt import AttemptSpec
    from computalot.engine.run_task import execute_attempt

    spec = AttemptSpec(job_id="job_1", account_id="acct_1", task_id="task_1", index=0,
                       attempt=1, payload={}, runner_command=["sleep", "30"], timeout_s=20,
                       kill_grace_s=0.2, namespace="none")
    threading.Timer(0.5, _thread.interrupt_main).start()  # what ray.cancel does in the worker
    started = time.monotonic()
    outcome, text = execute_attempt(spec)
    print(json.dumps({"status": outcome.status, "error": outcome.error, "text": text,
                      "seconds": time.monotonic() - started}))
"""


def test_a_cancelled_attempt_returns_a_cancelled_outcome(tmp_path: Path) -> None:
    """run_task turns its own interruption into an outcome, not an exception for the
    dispatcher to guess about."""
    revision = tmp_path / "revision"
    revision.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ATTEMPT)],
        cwd=revision,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "cancelled" and result["text"] is None, result
    assert result["seconds"] < 5, result
