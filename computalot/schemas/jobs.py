"""Job submission shape and the public job/task objects (SPEC §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from computalot.schemas.text import reject_nul

JOB_TYPES = ("structured_runner", "sweep", "map_reduce", "benchmark")
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}


class Requirements(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpu: float | None = Field(default=None, gt=0, le=1024)
    memory_mb: int | None = Field(default=None, ge=1, le=16 * 1024 * 1024)
    gpu_count: float | None = Field(default=None, ge=0, le=64)
    gpu_memory_mb: int | None = Field(default=None, ge=0)
    profile: str | None = Field(default=None, max_length=64)
    storage_gb: float | None = Field(default=None, ge=0)


class Checkpointing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    resume_from_latest: bool = True


class JobSubmit(BaseModel):
    """``POST /api/v1/jobs``. Unknown fields are refused so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["structured_runner", "sweep", "map_reduce", "benchmark"] | None = None
    project: str | None = Field(default=None, max_length=63)
    recipe: str | None = Field(default=None, max_length=64)
    runner_command: list[str] | None = Field(default=None, min_length=1, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict)
    fan_out: dict[str, Any] | None = None
    batch_size: int | None = None
    merge_strategy: str | None = None
    merge_key: str | None = None
    weight_field: str | None = None
    timeout_s: int = Field(default=3600, ge=1, le=86400)
    max_retries: int = Field(default=0, ge=0, le=10)
    priority: Literal["high", "normal", "low"] = "normal"
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=20)
    callback_url: str | None = Field(default=None, max_length=2048)
    requirements: Requirements | None = None
    checkpointing: Checkpointing | None = None
    meta: Any = None
    variant: Any = None
    # Later job types (SPEC §5.3-5.5); accepted by the schema, planned when those types land.
    parameters: dict[str, Any] | None = None
    fixed_payload: dict[str, Any] | None = None
    rank_by: Any = None
    split: dict[str, Any] | None = None
    reduce: dict[str, Any] | None = None
    candidates: Any = None
    shared_payload: dict[str, Any] | None = None
    replicas: int | None = None

    @field_validator("runner_command")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any((not isinstance(a, str)) or a == "" for a in value):
            raise ValueError("every argument must be a non-empty string (argv, not a shell line)")
        if value is not None and any("\x00" in a for a in value):
            raise ValueError("arguments may not contain NUL bytes")
        return value

    @field_validator(
        "project", "recipe", "callback_url", "merge_strategy", "merge_key", "weight_field"
    )
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return reject_nul(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag or len(tag) > 64:
                raise ValueError("each tag must be 1-64 characters")
        return value
