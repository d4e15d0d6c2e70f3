"""Unpack a prebuilt project artifact for Echidna (docs/recipes.md, "echidna").

``project_ref`` is a tarball (``.tar``, ``.tar.gz``/``.tgz``) of a Foundry or Hardhat project
with its build output. It is unpacked with the platform's safe extraction (no links out, no
absolute paths, size and member caps), and the project's root found: the tarball's top
directory, or the one directory it holds. The root must carry the build the operation reads,
else the job fails with ``invalid_input`` naming what is missing.
"""

from __future__ import annotations

from pathlib import Path

from computalot.errors import ComputalotError
from computalot.projects.tarball import extract_tarball

from ..context import RecipeFailure

#: What marks each kind of project, and the build output crytic-compile reads from it.
MARKERS = {
    "foundry_prebuilt": (("foundry.toml",), "out"),
    "hardhat_prebuilt": (
        ("hardhat.config.js", "hardhat.config.ts", "hardhat.config.cjs", "hardhat.config.mjs"),
        "artifacts",
    ),
}
#: Bytes unpacked at most (build output included).
MAX_UNPACKED_BYTES = 2 * 1024**3


def unpack_project(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` (absent or empty); answer the project's root."""
    try:
        extract_tarball(archive, dest, max_unpacked_bytes=MAX_UNPACKED_BYTES)
    except ComputalotError as exc:
        raise RecipeFailure(f"project_ref: {exc.message}") from None
    return project_root(dest)


def project_root(dest: Path) -> Path:
    """``dest`` itself when it holds files, else the one directory it holds."""
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def check_prebuilt(root: Path, operation: str) -> None:
    """``invalid_input`` unless ``root`` is the operation's kind of project, built."""
    markers, build_dir = MARKERS[operation]
    kind = "Foundry" if operation == "foundry_prebuilt" else "Hardhat"
    if not any((root / name).is_file() for name in markers):
        raise RecipeFailure(
            f"project_ref: not a {kind} project (no {' or '.join(markers)} at its top)"
        )
    built = root / build_dir
    if not built.is_dir() or not any(built.iterdir()):
        raise RecipeFailure(
            f"project_ref: the {kind} project has no build output in {build_dir}/ "
            f"({operation} reads a project built beforehand)"
        )
