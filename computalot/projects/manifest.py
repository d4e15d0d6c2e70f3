"""The ``computalot.project.json`` manifest at a project tarball's root (docs/llms-full.md, "Projects").

The manifest is optional; every field has a default, so a tarball without one runs as a plain
``python`` runtime. Models forbid unknown keys so a typo (``"requirments"``) is a 422 naming the
field rather than a silently ignored setting.

Every path in the manifest (``runtime.workdir``, ``runtime.requirements``, ``runtime.dockerfile``,
command ``cwd``, ``validation.files``, ``data_sources[].mount``, ``cache_mounts[].path``) is a
relative POSIX path from the tarball root and may not contain ``..``: the manifest must never
point a job outside its own revision.

``runtime.kind == "oci"`` (or a root ``Dockerfile`` with no manifest) asks for an image build.
Where the cluster has no OCI builder the revision still runs, as a ``python`` runtime_env, and
the caller gets a warning to show on the push, the status and every job of that revision.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from computalot.errors import ValidationFailed
from computalot.jsonsafe import loads_strict

MANIFEST_NAME = "computalot.project.json"
DOCKERFILE = "Dockerfile"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_REPORTED_ERRORS = 5
OCI_NOT_BUILT_WARNING = (
    "Dockerfile was not built: this cluster has no OCI builder, so the revision runs as a python "
    "runtime_env; imports the Dockerfile would install may be missing"
)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MAX_PRELOAD = 64
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _relative_path(value: str) -> str:
    """Normalize to a relative POSIX path ('.' for the root); refuse absolute paths and '..'."""
    if not value or value.startswith(("/", "\\")):
        raise PydanticCustomError("relative_path", "must be a non-empty relative path")
    if ".." in value.split("/"):
        raise PydanticCustomError("relative_path", "must not contain '..'")
    return posixpath.normpath(value)


def _mount_path(value: str) -> str:
    """A mount point: a relative path that is not the project root itself."""
    if value == ".":
        raise PydanticCustomError("relative_path", "must name a directory below the root")
    return value


def _version_one(value: object) -> object:
    """Only the JSON integer 1 (not true, 1.0 or "1"): later versions may change meaning."""
    if type(value) is not int or value != 1:
        raise PydanticCustomError("version", "must be the integer 1")
    return value


RelPath = Annotated[str, AfterValidator(_relative_path)]
MountPath = Annotated[str, AfterValidator(_relative_path), AfterValidator(_mount_path)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
EnvMap = dict[EnvName, str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Command(_Model):
    """A labelled argv (never a shell string) run in ``cwd`` with extra ``env``."""

    label: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    cwd: RelPath = "."
    env: EnvMap = Field(default_factory=dict)


class RuntimeInit(_Model):
    commands: list[Command] = Field(default_factory=list)


class Runtime(_Model):
    kind: Literal["python", "oci"] = "python"
    workdir: RelPath = "."
    requirements: RelPath = "requirements.txt"
    env: EnvMap = Field(default_factory=dict)
    init: RuntimeInit = Field(default_factory=RuntimeInit)
    dockerfile: RelPath | None = None
    sandbox: str | None = None
    #: ``host``: the node's network (the platform's own ports closed, docs/sandbox.md);
    #: ``none``: no network at all, loopback only.
    network: Literal["host", "none"] = "host"
    #: Modules a warm interpreter imports before it forks the revision's tasks
    #: (``engine.warm_python``); installed or standard-library packages, never project files.
    preload: list[Annotated[str, Field(pattern=MODULE_PATTERN, max_length=200)]] = Field(
        default_factory=list, max_length=MAX_PRELOAD
    )
    #: False: every task of the revision starts a fresh interpreter even where the platform's
    #: ``warm_python`` setting is on; None/True: follow the platform.
    warm_python: StrictBool | None = None


class Entrypoint(_Model):
    command: list[str] = Field(min_length=1)


class Validation(_Model):
    executables: list[str] = Field(default_factory=list)
    files: list[RelPath] = Field(default_factory=list)
    commands: list[Command] = Field(default_factory=list)


class DataSource(_Model):
    """An immutable artifact placed at ``mount`` before a task starts."""

    name: str = Field(pattern=NAME_PATTERN)
    artifact: str = Field(pattern=r"^art_[A-Za-z0-9_-]+$")
    mount: MountPath


class CacheMount(_Model):
    """A writable per-node directory at ``path``, kept across tasks; ``env`` names a variable
    that will hold its absolute path."""

    name: str = Field(pattern=NAME_PATTERN)
    path: MountPath
    env: EnvName | None = None


_Named = TypeVar("_Named", DataSource, CacheMount)


class ProjectManifest(_Model):
    version: Annotated[Literal[1], BeforeValidator(_version_one)] = 1
    runtime: Runtime = Field(default_factory=Runtime)
    entrypoint: Entrypoint | None = None
    validation: Validation = Field(default_factory=Validation)
    data_sources: list[DataSource] = Field(default_factory=list)
    cache_mounts: list[CacheMount] = Field(default_factory=list)

    @field_validator("data_sources", "cache_mounts")
    @classmethod
    def _unique_names(cls, items: list[_Named]) -> list[_Named]:
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise PydanticCustomError("unique", "names must be unique")
        return items

    @model_validator(mode="after")
    def _distinct_mounts(self) -> ProjectManifest:
        mounts = [d.mount for d in self.data_sources] + [c.path for c in self.cache_mounts]
        if len(set(mounts)) != len(mounts):
            raise PydanticCustomError(
                "unique", "data_sources[].mount and cache_mounts[].path must all differ"
            )
        return self


@dataclass
class ManifestResult:
    """The parsed manifest plus what the platform will actually do with it.

    ``runtime_kind`` is the effective kind ("python" when an OCI build is impossible);
    ``requirements_file`` is the tree-relative requirements path if that file exists.
    """

    manifest: ProjectManifest
    runtime_kind: str
    warnings: list[str] = field(default_factory=list)
    requirements_file: str | None = None


def _invalid(loc: list[str | int], msg: str) -> ValidationFailed:
    where = ".".join(str(p) for p in loc)
    prefix = f"{MANIFEST_NAME}: {where}: " if loc else f"{MANIFEST_NAME}: "
    return ValidationFailed(prefix + msg, details=[{"loc": ["manifest", *loc], "msg": msg}])


def _from_pydantic(exc: PydanticValidationError) -> ValidationFailed:
    """One 422 listing every schema violation, each with its path under ``manifest``."""
    errors = exc.errors(include_url=False, include_input=False)
    details: list[dict[str, Any]] = []
    parts: list[str] = []
    for err in errors:
        loc = [p for p in err["loc"] if isinstance(p, str | int)]
        details.append({"loc": ["manifest", *loc], "msg": err["msg"]})
        where = ".".join(str(p) for p in loc)
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    summary = "; ".join(parts[:MAX_REPORTED_ERRORS])
    if len(parts) > MAX_REPORTED_ERRORS:
        summary += f" (and {len(parts) - MAX_REPORTED_ERRORS} more)"
    return ValidationFailed(f"{MANIFEST_NAME}: {summary}", details=details)


def _read(path: Path) -> ProjectManifest:
    raw = path.read_bytes()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _invalid([], f"is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = loads_strict(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid([], f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _invalid([], "must be a JSON object")
    try:
        return ProjectManifest.model_validate(data)
    except PydanticValidationError as exc:
        raise _from_pydantic(exc) from None


def load_manifest(
    tree_dir: Path, files: list[str], *, oci_builder_available: bool = False
) -> ManifestResult:
    """Read and validate the manifest of the extracted tree at ``tree_dir``.

    ``files`` are the tree's regular files as relative POSIX paths (``FileEntry.path``). Raises
    :class:`ValidationFailed` (422) for a malformed manifest; soft problems become ``warnings``.
    """
    present = set(files)
    warnings: list[str] = []
    if MANIFEST_NAME in present:
        manifest = _read(tree_dir / MANIFEST_NAME)
        wants_oci = manifest.runtime.kind == "oci"
    else:
        wants_oci = DOCKERFILE in present
        manifest = ProjectManifest(runtime=Runtime(kind="oci" if wants_oci else "python"))

    runtime_kind = "python"
    if wants_oci:
        dockerfile = manifest.runtime.dockerfile or DOCKERFILE
        if dockerfile not in present:
            raise _invalid(
                ["runtime", "dockerfile"], f"runtime.kind is 'oci' but {dockerfile!r} is missing"
            )
        if oci_builder_available:
            runtime_kind = "oci"
        else:
            warnings.append(OCI_NOT_BUILT_WARNING)

    requirements: str | None = manifest.runtime.requirements
    if requirements not in present:
        if "requirements" in manifest.runtime.model_fields_set:
            warnings.append(
                f"runtime.requirements {requirements!r} is not in the tarball; "
                "no pip requirements will be installed"
            )
        requirements = None

    for missing in (f for f in manifest.validation.files if f not in present):
        warnings.append(
            f"validation.files: {missing!r} is not in the tarball; validation will fail "
            "until a revision that contains it is pushed"
        )
    return ManifestResult(manifest, runtime_kind, warnings, requirements)
