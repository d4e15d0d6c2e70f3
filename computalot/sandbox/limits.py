"""Per-task limits: operator defaults, raised or lowered by a job's ``requirements`` within a
ceiling, and the typed failures a task ends with when it crosses one (docs/sandbox.md).

| limit | default setting | from requirements | enforced by |
|---|---|---|---|
| memory | ``task_memory_mb`` | ``memory_mb`` (≤ ``task_memory_ceiling_mb``) | the task's cgroup |
| processes | ``task_max_processes`` | — | the task's cgroup (pids) |
| open files | ``task_max_open_files`` | — | RLIMIT_NOFILE |
| CPU time | ``task_cpu_time_s`` | — | RLIMIT_CPU, per process |
| disk | ``task_disk_mb`` | ``storage_gb`` (≤ ``task_disk_ceiling_mb``) | RLIMIT_FSIZE + a watch |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Failure codes a limit gives, with what the user can do about each (engine/outcomes ACTIONS).
LIMIT_ACTIONS = {
    "memory_limit": "raise requirements.memory_mb (within the operator's ceiling) or use less "
    "memory",
    "process_limit": "start fewer processes or threads at once (the limit counts both)",
    "cpu_time_limit": "use less CPU time in one process, or split the work with fan_out",
    "disk_limit": "raise requirements.storage_gb (within the operator's ceiling), write less, or "
    "delete temporary files as you go",
    "sandbox_unavailable": "the node cannot confine tasks: the operator installs bubblewrap and "
    "nftables on every node (see GET /ready), or sets COMPUTALOT_SANDBOX=none",
}


@dataclass(frozen=True)
class TaskLimits:
    """What one attempt may use. Sizes in MiB, time in seconds; 0 means "no limit"."""

    memory_mb: int
    processes: int
    open_files: int
    cpu_time_s: int
    disk_mb: int


def task_limits(settings: Any, minimums: dict[str, Any]) -> TaskLimits:
    """The limits of a task whose job asked for ``minimums`` (``requirements`` resolved)."""
    memory = int(minimums.get("memory_mb") or settings.task_memory_mb)
    storage_gb = minimums.get("storage_gb")
    disk = int(float(storage_gb) * 1024) if storage_gb else int(settings.task_disk_mb)
    return TaskLimits(
        memory_mb=memory,
        processes=int(settings.task_max_processes),
        open_files=int(settings.task_max_open_files),
        cpu_time_s=int(settings.task_cpu_time_s),
        disk_mb=disk,
    )


def ceiling_errors(settings: Any, minimums: dict[str, Any]) -> list[tuple[str, str]]:
    """``(requirements field, message)`` for each request above the operator's ceiling."""
    errors = []
    memory_ceiling = int(settings.task_memory_ceiling_mb)
    memory = minimums.get("memory_mb")
    if memory_ceiling and memory and int(memory) > memory_ceiling:
        errors.append(("memory_mb", f"at most {memory_ceiling} MiB per task on this platform"))
    disk_ceiling = int(settings.task_disk_ceiling_mb)
    storage_gb = minimums.get("storage_gb")
    if disk_ceiling and storage_gb and float(storage_gb) * 1024 > disk_ceiling:
        errors.append(
            ("storage_gb", f"at most {disk_ceiling / 1024:g} GB per task on this platform")
        )
    return errors
