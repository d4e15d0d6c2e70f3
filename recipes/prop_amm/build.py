"""Compile a prop_amm strategy into its runner executable (docs/recipes.md, "prop_amm").

The submitted ``lib.rs`` (checked first by :mod:`.source_check`) becomes the library of a small
Cargo package whose binary links it with the evaluator (``native/crates/evaluator``) and the
local stand-ins of ``pinocchio``, ``wincode`` and ``prop_amm_submission_sdk``. The machine's
``cargo`` builds it offline: crates.io is replaced by Debian's ``librust-*-dev`` sources
(``native/.cargo/config.toml``). Builds are cached in a node-local directory by the hash of the
source and of the compiler profile (rustc's version, the build settings, the evaluator's own
sources); every strategy shares one target directory, so the dependencies build once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import RecipeFailure

NATIVE_DIR = Path(__file__).resolve().parent / "native"
CARGO_CONFIG = NATIVE_DIR / ".cargo" / "config.toml"
#: Where builds are cached on this node (``COMPUTALOT_PROP_AMM_CACHE`` overrides it).
CACHE_ENV = "COMPUTALOT_PROP_AMM_CACHE"
#: The build settings every strategy is compiled with (part of the compiler profile).
PROFILE = {"opt-level": 3, "codegen-units": 1, "lto": "off", "panic": "unwind", "debug": False}
#: How long one compile may take (seconds), at most.
BUILD_TIMEOUT_S = 600.0
MAX_ERROR_CHARS = 1500

_MANIFEST = """\
[package]
name = "{package}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
path = "src/lib.rs"

[[bin]]
name = "{package}"
path = "src/main.rs"

[dependencies]
pinocchio = {{ path = "{crates}/pinocchio" }}
wincode = {{ path = "{crates}/wincode" }}
prop-amm-submission-sdk = {{ path = "{crates}/submission-sdk" }}
prop-amm-eval = {{ path = "{crates}/evaluator" }}

[features]
default = []
no-entrypoint = []

[workspace]

[profile.release]
opt-level = {opt}
codegen-units = {cgu}
lto = "{lto}"
panic = "{panic}"
debug = false
"""

_MAIN = """\
fn main() {{
    let (swap, after_swap, name, model_used) = {crate_name}::__computalot_strategy();
    prop_amm_eval::cli::main(prop_amm_eval::cli::Strategy {{ swap, after_swap, name, model_used }});
}}
"""

_SHIM = """

#[doc(hidden)]
#[allow(dead_code)]
pub fn __computalot_strategy() -> (
    fn(&[u8]) -> u64,
    Option<fn(&[u8], &mut [u8])>,
    &'static str,
    &'static str,
) {{
    (compute_swap, {after}, NAME, get_model_used())
}}
"""


def cache_root() -> Path:
    """This node's build cache."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "computalot" / "prop_amm"


def _tool_version(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return "missing"
    return done.stdout.strip() or "missing"


def _evaluator_digest() -> str:
    """A hash of the native workspace's sources (what a strategy is linked with)."""
    digest = hashlib.sha256()
    for path in sorted(NATIVE_DIR.rglob("*")):
        if "target" in path.relative_to(NATIVE_DIR).parts or not path.is_file():
            continue
        if path.suffix in {".rs", ".toml", ".lock"}:
            digest.update(path.relative_to(NATIVE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def compiler_profile() -> dict[str, Any]:
    """What a build depends on besides the source: the toolchain, the settings, the evaluator."""
    return {
        "rustc": _tool_version("rustc", "--version"),
        "cargo": _tool_version("cargo", "--version"),
        "target": "native",
        "profile": dict(PROFILE),
        "evaluator": _evaluator_digest(),
    }


def profile_hash() -> str:
    text = json.dumps(compiler_profile(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def build_key(source: str) -> str:
    """The cache key of a strategy's build: its source's hash and the profile's."""
    return hashlib.sha256(f"{source_hash(source)}:{profile_hash()}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Build:
    """A compiled strategy: its runner executable and how it was made."""

    key: str
    binary: Path
    cached: bool
    seconds: float


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def binary_path(key: str) -> Path:
    return cache_root() / "bins" / key / "runner"


def install_binary(key: str, data: bytes) -> Path:
    """Place a runner built elsewhere (another node) in this node's cache."""
    target = binary_path(key)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".runner-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def _first_errors(stderr: str, build_dir: Path) -> str:
    """The compiler's first error messages, paths shown as ``lib.rs``."""
    text = stderr.replace(str(build_dir / "src" / "lib.rs"), "lib.rs")
    text = text.replace(str(build_dir), ".").replace("src/lib.rs", "lib.rs")
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if re.match(r"^(error|warning)(\[E\d+\])?:", line):
            if current:
                blocks.append("\n".join(current))
            current = [line]
        elif current and line.strip() and not line.lstrip().startswith(("Compiling", "Building")):
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    errors = [b for b in blocks if b.startswith("error")]
    errors = [b for b in errors if not b.startswith("error: could not compile")] or errors
    out = "\n\n".join(errors[:3]) if errors else text.strip()[-MAX_ERROR_CHARS:]
    return out[:MAX_ERROR_CHARS]


def compile_strategy(source: str, has_after_swap: bool, timeout_s: float) -> Build:
    """The strategy's runner, from the cache or compiled now; :class:`RecipeFailure`
    (``invalid_input``) with the compiler's first errors when it does not build."""
    import time

    started = time.monotonic()
    key = build_key(source)
    target = binary_path(key)
    if target.is_file():
        return Build(key, target, True, 0.0)
    root = cache_root()
    with _locked(root / "locks" / f"{key}.lock"):
        if target.is_file():
            return Build(key, target, True, time.monotonic() - started)
        if shutil.which("cargo") is None:
            raise RecipeFailure("cargo is not installed on this node", code="recipe_error")
        package = f"strategy_{key[:16]}"
        build_dir = root / "builds" / key
        (build_dir / "src").mkdir(parents=True, exist_ok=True)
        manifest = _MANIFEST.format(
            package=package,
            crates=(NATIVE_DIR / "crates").as_posix(),
            opt=PROFILE["opt-level"],
            cgu=PROFILE["codegen-units"],
            lto=PROFILE["lto"],
            panic=PROFILE["panic"],
        )
        (build_dir / "Cargo.toml").write_text(manifest)
        lock = NATIVE_DIR / "Cargo.lock"
        if lock.is_file():
            shutil.copyfile(lock, build_dir / "Cargo.lock")
        after = "Some(after_swap)" if has_after_swap else "None"
        (build_dir / "src" / "lib.rs").write_text(source + _SHIM.format(after=after))
        (build_dir / "src" / "main.rs").write_text(_MAIN.format(crate_name=package))
        env = dict(os.environ)
        env["CARGO_TARGET_DIR"] = str(root / "target")
        env.pop("RUSTFLAGS", None)
        argv = [
            "cargo",
            "build",
            "--release",
            "--offline",
            "--quiet",
            "--config",
            str(CARGO_CONFIG),
            "--features",
            "no-entrypoint",
            "--manifest-path",
            str(build_dir / "Cargo.toml"),
        ]
        try:
            done = subprocess.run(
                argv,
                cwd=build_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(1.0, min(timeout_s, BUILD_TIMEOUT_S)),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RecipeFailure(
                f"compiling the strategy took longer than {min(timeout_s, BUILD_TIMEOUT_S):.0f} s",
                code="timeout",
            ) from None
        if done.returncode != 0:
            raise RecipeFailure(
                "the strategy does not compile:\n" + _first_errors(done.stderr, build_dir),
                code="invalid_input",
            )
        built = root / "target" / "release" / package
        install_binary(key, built.read_bytes())
        with contextlib.suppress(OSError):
            built.unlink()
        return Build(key, target, False, time.monotonic() - started)
