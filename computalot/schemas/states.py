"""Terminal states of jobs and tasks (no dependencies: imported by light modules too)."""

TERMINAL_JOB = frozenset({"completed", "partial", "failed", "cancelled"})
TERMINAL_TASK = frozenset({"completed", "failed", "cancelled"})
JOB_STATES = frozenset({"planning", "queued", "running"}) | TERMINAL_JOB
TASK_STATES = frozenset({"queued", "running"}) | TERMINAL_TASK
