"""One attempt's two seams: the :class:`AttemptSpec` the dispatcher hands ``run_task`` and the
:class:`Outcome` it returns.

Both travel through Ray (pickled), so they hold plain values only, and this module imports
nothing but the standard library and the sandbox's policy (the artifact store's config only
for type checking): every worker imports it.
The result fields are those ``engine.result_file`` reads from the runner's result file
(docs/llms-full.md, "Exit status and result"); ``engine.outcomes.judge_outcome`` turns an
Outcome into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from computalot.sandbox.policy import SandboxPolicy

if TYPE_CHECKING:
    from computalot.artifacts.store import StoreConfig
    from computalot.engine.project_init import WarmPlan


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    """What ``run_task`` needs to run one attempt, as the dispatcher decided it
    (``engine.launching.launch_spec``).

    ``payload`` is the task's payload (docs/llms-full.md, "Fan-out"); ``env`` and ``workdir``
    come from the revision's manifest; ``timeout_s`` and ``kill_grace_s`` are seconds;
    ``memory_mb`` the job's minimum (the limit when there is no sandbox); ``batched``,
    ``element_count`` and ``max_result_bytes`` say how the result file is read
    (``engine.result_file``); ``namespace`` is where the event hub lives; ``sandbox`` None runs
    the command unconfined. ``store`` is the artifact store the worker streams the task's
    artifacts into and its inputs from; ``downloads`` the inputs, each ``(artifact id, blob key,
    path under the revision root)`` (``artifacts.inputs``).
    """

    job_id: str
    account_id: str
    task_id: str
    index: int
    attempt: int
    payload: dict[str, Any]
    runner_command: list[str]
    timeout_s: float
    namespace: str
    kill_grace_s: float = 5.0
    memory_mb: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "."
    api_url: str = ""
    batched: bool = False
    element_count: int = 1
    max_result_bytes: int | None = None
    sandbox: SandboxPolicy | None = None
    store: StoreConfig | None = None
    downloads: tuple[tuple[str, str, str], ...] = ()
    max_artifact_bytes: int = 2 * 1024**3  # one artifact file (bytes); a bigger one is skipped
    #: A recipe task (``engine.run_recipe``): ``{"recipe", "operation", "cpus", "inputs":
    #: {field: [path under the attempt root, filename]}}``; None for a project task.
    recipe: dict[str, Any] | None = None
    #: ``COMPUTALOT_TASK_TOKEN`` (``auth.task_tokens``): "" for a recipe task. Never shown.
    task_token: str = field(default="", repr=False)
    #: ``COMPUTALOT_CHECKPOINT_DIR`` is set and saved (``engine.checkpoints``); the blob key of
    #: the checkpoint to restore first ("" = start empty).
    checkpointing: bool = False
    checkpoint_key: str = field(default="", repr=False)
    #: A project task's init commands, validation and cache mounts (``engine.project_init``):
    #: run once per node before its first task there; None for a recipe task.
    warm: WarmPlan | None = None
    #: The revision's ``runtime.preload`` when the command may start forked from a warm
    #: interpreter (``engine.warm_python``); None: a fresh process, as always.
    warm_python: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as its worker saw it.

    ``status``: ok | exit_nonzero | timeout | cancelled | spawn_failed | killed |
    sandbox_unavailable, or the limit a sandboxed task crossed (``sandbox.limits``).
    ``duration_s`` is seconds of the command's run; the tails hold the last characters of each
    stream. ``artifacts`` holds each file the worker stored in the artifact store: its
    ``path`` (relative to the artifact directory), ``size``, ``sha256`` and blob ``key``
    (``engine.task_files``); the dispatcher only writes their rows.
    """

    status: str
    exit_code: int | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    output_tail: str = ""
    duration_s: float | None = None
    last_progress: dict[str, Any] | None = None
    #: ok | invalid (``result_code`` says why); None when the result file was not read
    result_state: str | None = None
    result_code: str | None = None
    result_error: str | None = None
    #: The result's JSON text when small; a big one is ``run_task``'s second return value.
    result_text: str | None = None
    result_bytes: int = 0  # UTF-8 bytes of the result text
    result_quality: float = 1.0
    result_warnings: list[str] = field(default_factory=list)
    result_in_ref: bool = False  # the text is the second return value, not ``result_text``
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    artifact_warnings: list[str] = field(default_factory=list)
    node_id: str | None = None  # the Ray node that ran it (warm-node tracking)
    #: The attempt's saved checkpoint directory ``{key, size, sha256}`` (``engine.checkpoints``).
    checkpoint: dict[str, Any] | None = None
    #: The init report when this attempt warmed its node (``engine.project_init.run_plan``):
    #: ``{"state", "duration_s", "validation", "error", "generation"}``; None when it did not.
    warmed: dict[str, Any] | None = None

    @property
    def has_output(self) -> bool:
        return bool(self.stdout or self.stderr)
