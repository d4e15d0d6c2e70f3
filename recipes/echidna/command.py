"""Echidna's command line and config file for one job (docs/recipes.md, "echidna").

The project arrives built (``foundry_prebuilt``: ``forge build``'s ``out/``;
``hardhat_prebuilt``: ``npx hardhat compile``'s ``artifacts/``), so crytic-compile is told to
read that output instead of compiling (``--foundry-ignore-compile`` /
``--hardhat-ignore-compile``). Every campaign setting with a flag of its own is passed as that
flag; ``stopOnFail`` has none and goes in the config file (``--config``; flags override it).
The report is asked for as JSON (``--format json``, which also turns the interactive UI off).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: crytic-compile's flag that reads a prebuilt project, per operation.
IGNORE_COMPILE = {
    "foundry_prebuilt": "--foundry-ignore-compile",
    "hardhat_prebuilt": "--hardhat-ignore-compile",
}
CONFIG_NAME = "computalot-echidna.json"
#: Seconds echidna's own ``--timeout`` stops before the task's deadline, so it still prints
#: its report (the process is killed at the deadline regardless).
REPORT_MARGIN_S = 15.0


def echidna_config(payload: Any) -> dict[str, Any]:
    """The config file's settings (those without a command-line flag)."""
    return {"stopOnFail": bool(payload.stop_on_fail)}


def write_config(work: Path, payload: Any) -> Path:
    path = work / CONFIG_NAME
    path.write_text(json.dumps(echidna_config(payload)))  # JSON is YAML: echidna reads it
    return path


def echidna_argv(
    payload: Any, *, target: str, config: str, time_left_s: float, program: str = "echidna"
) -> list[str]:
    """``echidna <target> --contract … --test-mode … …`` for ``payload`` (an
    :class:`~recipes.echidna.recipe.EchidnaPayload`); ``target``: the project directory
    relative to the working directory; ``time_left_s``: seconds left to the task."""
    argv = [
        program,
        target,
        "--contract",
        payload.contract,
        "--config",
        config,
        "--format",
        "json",
        "--test-mode",
        payload.test_mode,
        "--test-limit",
        str(payload.test_limit),
        "--seq-len",
        str(payload.seq_len),
        "--shrink-limit",
        str(payload.shrink_limit),
        "--workers",
        str(payload.workers),
        f"--crytic-args={IGNORE_COMPILE[payload.operation]}",
    ]
    if payload.seed is not None:
        argv += ["--seed", str(payload.seed)]
    budget = int(time_left_s - REPORT_MARGIN_S)
    if budget >= 1:
        argv += ["--timeout", str(budget)]
    return argv
