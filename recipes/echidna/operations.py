"""The echidna recipe's operations (docs/recipes.md, "echidna"), on nodes with the ``echidna``
capability (``computalot.capabilities``).

``foundry_prebuilt`` and ``hardhat_prebuilt`` unpack the project artifact into a private
attempt directory, run ``echidna`` on it in the platform's task sandbox (the confinement,
cgroup and rlimits a runner task gets, without network) and read its report
(:mod:`.output`). Echidna's own ``--timeout`` ends the campaign shortly before the task's
deadline so it still prints its report; at the deadline the process group is killed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from computalot.engine.run_task import attempt_root
from computalot.engine.runner import DEFAULT_PATH, RunLimits, run_command

from ..context import RecipeContext, RecipeFailure
from ..sandboxed import sealed_sandbox
from .command import echidna_argv, write_config
from .output import parse_output
from .project import check_prebuilt, unpack_project
from .recipe import EchidnaPayload

OUT_NAME = "echidna.stdout"
#: Files echidna may write (corpus, crytic-compile's export) and open at once.
MAX_FILE_MB = 1024
MAX_OPEN_FILES = 4096


def run_foundry_prebuilt(ctx: RecipeContext, payload: EchidnaPayload) -> dict[str, Any]:
    return run_prebuilt(ctx, payload)


def run_hardhat_prebuilt(ctx: RecipeContext, payload: EchidnaPayload) -> dict[str, Any]:
    return run_prebuilt(ctx, payload)


def run_prebuilt(ctx: RecipeContext, payload: EchidnaPayload) -> dict[str, Any]:
    """Unpack, fuzz, read the report; the recipe's result."""
    program = shutil.which("echidna")
    if program is None:
        raise RecipeFailure("echidna is not installed on this node", code="recipe_error")
    work = Path(tempfile.mkdtemp(prefix="echidna-", dir=attempt_root()))
    try:
        root = unpack_project(ctx.input_path("project_ref"), work / "project")
        check_prebuilt(root, payload.operation)
        config = write_config(work, payload)
        target = str(root.relative_to(work))
        argv = echidna_argv(
            payload,
            target=target,
            config=config.name,
            time_left_s=ctx.time_left(),
            program=program,
        )
        ctx.progress(final=True, message=f"fuzzing {payload.contract}")
        stdout, status, error, stderr = _run(argv, work, ctx.time_left())
        return _result(payload, stdout, status, error, stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(argv: list[str], work: Path, timeout_s: float) -> tuple[str, str, str | None, str]:
    """Run ``argv`` in ``work`` (stdout to a file: the JSON report can be large)."""
    if timeout_s <= 0:
        raise RecipeFailure("no time is left to run echidna", code="timeout")
    with sealed_sandbox(work) as (settings, sandbox):
        # No RLIMIT_AS: echidna's Haskell runtime reserves a large address space up front;
        # its memory is bounded by the sandbox's cgroup where there is one.
        limits = RunLimits(
            memory_mb=None,
            max_file_mb=MAX_FILE_MB,
            max_open_files=MAX_OPEN_FILES,
            cpu_time_s=int(settings.task_cpu_time_s) or None,
        )
        wrapped = ["/bin/sh", "-c", f'exec "$@" > {OUT_NAME}', "echidna", *argv]
        path = os.environ.get("PATH") or DEFAULT_PATH
        env = {"PATH": path, "LANG": "C.UTF-8", "HOME": str(work), "NO_COLOR": "1"}
        ran = run_command(
            wrapped,
            cwd=work,
            env=env,
            timeout_s=timeout_s,
            limits=limits,
            kill_grace_s=2.0,
            sandbox=sandbox,
        )
    try:
        stdout = (work / OUT_NAME).read_text(errors="replace")
    except OSError:
        stdout = ""
    return stdout, ran.status, ran.error, ran.stderr_tail


def _result(
    payload: EchidnaPayload, stdout: str, status: str, error: str | None, stderr: str
) -> dict[str, Any]:
    """The structured report, or the failure that explains why there is none."""
    try:
        report = parse_output(stdout)
    except ValueError:
        report = None
    if report is None:
        if status == "timeout":
            raise RecipeFailure(
                "echidna did not finish before the task's timeout and was killed", code="timeout"
            )
        detail = (stderr.strip() or stdout.strip())[-800:] or error or status
        raise RecipeFailure(f"echidna ended without a report: {detail}", code="invalid_input")
    counts = report["counts"]
    return {
        "operation": payload.operation,
        "contract": payload.contract,
        "test_mode": payload.test_mode,
        "passed": counts["failed"] == 0 and counts["error"] == 0,
        "killed_at_timeout": status == "timeout",
        **report,
    }
