"""Worker capabilities: the tools a node has, declared as Ray custom resources (docs/recipes.md,
"Worker capabilities").

A recipe operation that needs a tool outside Python names a capability; a node that has the
tool declares a custom resource of that name (``computalot up`` detects the local machine's at
start, a ``cluster.yaml`` worker type lists its own), and the operation's tasks ask for
:data:`CAPABILITY_SHARE` of it, so Ray places them only on such nodes while the node's CPUs,
not the capability, bound how many run at once. Capabilities:

- ``rustc``: ``cargo`` and ``rustc`` that build offline with the Debian ``librust-*-dev``
  crates the prop_amm build uses (its ``native/.cargo/config.toml``).
- ``sbf``: the Solana SBF toolchain (``cargo-build-sbf``, ``solana``) and an rbpf interpreter
  (``rbpf-cli``), for prop_amm's BPF operations.
- ``echidna``: an ``echidna`` binary whose ``--version`` answers.

Detection runs each probe at most once per process (a few short subprocesses, well under a
second) and never on a request's path.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

#: Every capability a recipe operation may name.
CAPABILITIES = ("rustc", "sbf", "echidna")
#: What a node declares of a capability it has (``resources: {rustc: 1}``).
NODE_AMOUNT = 1.0
#: What one task of an operation asks of its capability: a sliver, so the capability only
#: places the task and never limits how many run on the node.
CAPABILITY_SHARE = 0.001
#: Where Debian's ``librust-*-dev`` packages put crate sources (the offline registry).
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
#: The crates the prop_amm build needs from that registry (name prefixes of its directories;
#: rand_distr 0.4.3 pins the challenge's random streams).
RUSTC_CRATES = ("rand-0.8", "rand_distr-0.4.3", "rand_pcg-0.3", "syn-", "quote-", "proc-macro2-")
#: The SBF toolchain and interpreter programs an ``sbf`` node has on its PATH.
SBF_PROGRAMS = ("cargo-build-sbf", "solana", "rbpf-cli")
#: Seconds a probe's ``--version`` may take.
PROBE_TIMEOUT_S = 10.0


def _answers(argv: list[str]) -> bool:
    """True when ``argv`` runs and exits 0 within :data:`PROBE_TIMEOUT_S`."""
    if shutil.which(argv[0]) is None:
        return False
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def has_crates(registry: Path, crates: Iterable[str] = RUSTC_CRATES) -> bool:
    """True when ``registry`` holds a directory for each crate prefix in ``crates``."""
    try:
        names = [p.name for p in registry.iterdir() if p.is_dir()]
    except OSError:
        return False
    return all(any(name.startswith(prefix) for name in names) for prefix in crates)


def has_rustc(registry: Path = DEBIAN_REGISTRY) -> bool:
    return (
        _answers(["cargo", "--version"])
        and _answers(["rustc", "--version"])
        and has_crates(registry)
    )


def has_sbf() -> bool:
    return all(_answers([program, "--version"]) for program in SBF_PROGRAMS)


def has_echidna() -> bool:
    return _answers(["echidna", "--version"])


PROBES: dict[str, Callable[[], bool]] = {
    "rustc": has_rustc,
    "sbf": has_sbf,
    "echidna": has_echidna,
}


@functools.cache
def detect() -> tuple[str, ...]:
    """The capabilities of this machine, in :data:`CAPABILITIES` order (probed once)."""
    return tuple(name for name in CAPABILITIES if PROBES[name]())


def node_resources(found: Iterable[str] | None = None) -> dict[str, float]:
    """Ray's ``resources=`` for a node with ``found`` (this machine's when None)."""
    names = detect() if found is None else found
    return {name: NODE_AMOUNT for name in names}


def task_resources(capability: str | None) -> dict[str, float]:
    """What one task of an operation that needs ``capability`` asks of Ray's custom
    resources (nothing for an operation that needs none)."""
    return {capability: CAPABILITY_SHARE} if capability else {}


def cluster_has(capability: str, nodes: Iterable[Mapping[str, float]]) -> bool:
    """True when one of ``nodes`` (each alive node's total resources) declares
    ``capability``."""
    return any(node.get(capability, 0.0) >= CAPABILITY_SHARE for node in nodes)
