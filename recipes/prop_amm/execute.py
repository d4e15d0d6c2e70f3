"""Run a compiled strategy's runner (docs/recipes.md, "prop_amm"): a separate process in the
platform's task sandbox, never inside the Ray worker.

The strategy is untrusted code. Each run copies the runner into a private attempt directory
and starts it through the engine's ``run_command`` with the operator's sandbox settings (the
same bubblewrap confinement, cgroup and rlimits a runner task gets, without network); it is
killed at the time left to the task. Its answer is the JSON file it writes
(``native/crates/evaluator/src/cli.rs``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from computalot.engine.run_task import attempt_root
from computalot.engine.runner import DEFAULT_PATH, RunLimits, run_command

from ..context import RecipeFailure
from ..sandboxed import sealed_sandbox

#: The runner writes only its answer: a small file-size and open-file budget.
MAX_FILE_MB = 64
MAX_OPEN_FILES = 64
OUT_NAME = "out.json"


def run_runner(binary: Path, args: list[str], timeout_s: float) -> dict[str, Any]:
    """The runner's JSON answer to ``args`` (after the command word, the output file is added);
    :class:`RecipeFailure` when it times out, crosses a limit or dies."""
    if timeout_s <= 0:
        raise RecipeFailure("no time is left to run the strategy", code="timeout")
    work = Path(tempfile.mkdtemp(prefix="prop_amm-", dir=attempt_root()))
    try:
        runner = work / "runner"
        shutil.copyfile(binary, runner)
        os.chmod(runner, 0o755)
        with sealed_sandbox(work) as (settings, sandbox):
            memory = (
                sandbox.memory_rlimit_mb
                if sandbox is not None
                else int(settings.task_memory_mb) or None
            )
            limits = RunLimits(
                memory_mb=memory,
                max_file_mb=MAX_FILE_MB,
                max_open_files=MAX_OPEN_FILES,
                cpu_time_s=int(settings.task_cpu_time_s) or None,
            )
            argv = ["./runner", args[0], OUT_NAME, *args[1:]]
            env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "RUST_BACKTRACE": "0"}
            ran = run_command(
                argv,
                cwd=work,
                env=env,
                timeout_s=timeout_s,
                limits=limits,
                kill_grace_s=1.0,
                sandbox=sandbox,
            )
        return _answer(
            ran.status, ran.error, ran.exit_code, ran.stderr_tail, work / OUT_NAME, timeout_s
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _answer(
    status: str,
    error: str | None,
    exit_code: int | None,
    stderr: str,
    out: Path,
    timeout_s: float,
) -> dict[str, Any]:
    if status == "timeout":
        raise RecipeFailure(
            f"the strategy did not finish within the {timeout_s:.1f} s left to the task and was "
            "killed (a compute_swap that never returns?)",
            code="timeout",
        )
    if status not in ("ok", "exit_nonzero"):
        code = status if status.endswith("_limit") else "recipe_error"
        raise RecipeFailure(f"the strategy's process: {error or status}", code=code)
    answer: dict[str, Any] | None = None
    try:
        loaded = json.loads(out.read_text())
        answer = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError):
        answer = None
    if answer is not None and answer.get("ok") is False and "error" in answer:
        where = f" in simulation seed {answer['seed']}" if "seed" in answer else ""
        raise RecipeFailure(f"the strategy failed{where}: {answer['error']}", code="invalid_input")
    if answer is None or exit_code != 0:
        detail = stderr.strip()[-500:] or error or f"exit code {exit_code}"
        raise RecipeFailure(
            f"the strategy's process ended without an answer: {detail}", code="invalid_input"
        )
    return answer
