"""Job submission shape (``docs/llms-full.md``, "Jobs" and "Fan-out").

Every field is strict: a string or a boolean is never taken for a number (``"10"`` and ``true``
for ``timeout_s`` are errors, not 10 and 1), and every number has a range, so nothing a request
carries can fail later at run time or overflow a column.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from computalot.schemas.text import reject_control, reject_nul

JOB_TYPES = ("structured_runner", "sweep", "map_reduce", "benchmark")
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
#: Fan-out elements (and batch size) per job.
MAX_ELEMENTS = 100_000
#: Linux refuses an exec whose single argument is over 128 KiB or whose arguments and environment
#: together pass its ARG_MAX: a command line that could not start is refused at submit.
MAX_ARG_CHARS = 32 * 1024
MAX_ARGV_CHARS = 256 * 1024
MAX_TAG_CHARS = 64

JobId = Annotated[str, Field(min_length=1, max_length=64)]


class Requirements(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    cpu: float | None = Field(default=None, gt=0, le=1024)
    memory_mb: int | None = Field(default=None, ge=1, le=16 * 1024 * 1024)
    gpu_count: float | None = Field(default=None, ge=0, le=64)
    gpu_memory_mb: int | None = Field(default=None, ge=0, le=16 * 1024 * 1024)
    profile: str | None = Field(default=None, max_length=64)
    storage_gb: float | None = Field(default=None, ge=0, le=1024 * 1024)


class Checkpointing(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool = False
    resume_from_latest: bool = True


class CacheOptions(BaseModel):
    """``"cache": {"max_age_s": N}``: reuse only results at most N seconds old."""

    model_config = ConfigDict(extra="forbid", strict=True)
    max_age_s: int = Field(ge=1, le=10 * 365 * 86400)


class JobSubmit(BaseModel):
    """``POST /api/v1/jobs``. Unknown fields are refused so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["structured_runner", "sweep", "map_reduce", "benchmark"] | None = None
    project: str | None = Field(default=None, max_length=63)
    recipe: str | None = Field(default=None, max_length=64)
    runner_command: list[str] | None = Field(default=None, min_length=1, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict)
    fan_out: dict[str, Any] | None = None
    batch_size: int | None = Field(default=None, ge=1, le=MAX_ELEMENTS)
    merge_strategy: str | None = Field(default=None, max_length=64)
    merge_key: str | None = Field(default=None, max_length=256)
    weight_field: str | None = Field(default=None, max_length=256)
    timeout_s: int = Field(default=3600, ge=1, le=86400)
    max_retries: int = Field(default=0, ge=0, le=10)
    priority: Literal["high", "normal", "low"] = "normal"
    depends_on: list[JobId] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=20)
    callback_url: str | None = Field(default=None, max_length=2048)
    requirements: Requirements | None = None
    checkpointing: Checkpointing | None = None
    #: The result cache (``computalot.jobs.result_cache``): ``true``, ``{"max_age_s": N}`` or
    #: ``"refresh"``; ``false``/absent runs every task as before.
    cache: bool | Literal["refresh"] | CacheOptions | None = None
    meta: Any = None
    variant: Any = None
    # sweep (parameters, fixed_payload, rank_by), map_reduce (split, reduce) and benchmark
    # (candidates, shared_payload, replicas, rank_by): checked with the job type
    # (``computalot.jobs.workflows``).
    parameters: dict[str, Any] | None = None
    fixed_payload: dict[str, Any] | None = None
    rank_by: Any = None
    split: dict[str, Any] | None = None
    reduce: dict[str, Any] | None = None
    candidates: Any = None
    shared_payload: dict[str, Any] | None = None
    replicas: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("runner_command")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if any(a == "" for a in value):
            raise ValueError("every argument must be a non-empty string (argv, not a shell line)")
        if any("\x00" in a for a in value):
            raise ValueError("arguments may not contain NUL bytes")
        longest = max(len(a) for a in value)
        if longest > MAX_ARG_CHARS:
            raise ValueError(
                f"an argument has {longest} characters; at most {MAX_ARG_CHARS} each (pass "
                "data in the payload, not on the command line)"
            )
        if sum(len(a) for a in value) > MAX_ARGV_CHARS:
            raise ValueError(f"the arguments have more than {MAX_ARGV_CHARS} characters in all")
        return value

    @field_validator(
        "project",
        "recipe",
        "merge_strategy",
        "merge_key",
        "weight_field",
        "depends_on",
    )
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return reject_nul(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag or len(tag) > MAX_TAG_CHARS:
                raise ValueError(f"each tag must be 1-{MAX_TAG_CHARS} characters")
            reject_control(tag)
        return value
