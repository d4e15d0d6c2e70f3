"""Terminal states of jobs and tasks (no dependencies: imported by light modules too)."""

TERMINAL_JOB = frozenset({"completed", "partial", "failed", "cancelled"})
TERMINAL_TASK = frozenset({"completed", "failed", "cancelled"})
