"""Neutral placeholders for the host's internals in the text a public answer carries.

Task, job and result answers never show raw runtime paths (attempt directories, Ray's session
directory and its runtime_env resources), the platform's data dir or install paths, workers'
node ids or private addresses, or image digests (docs/llms-full.md, "Results"). The engine writes
what it sees (an exception's message, a runner's traceback, a path that failed); the answers
(``computalot.views``) pass every such text through :func:`redact`, so a runner that fails in a
new way cannot leak more than one that fails in a known way.

Rules are literal-guarded: a text without any rule's needle costs one substring search per
rule, so output tails of ordinary tasks are not run through regular expressions at all.
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where attempt directories live under a worker's temp dir (``engine.run_task.ATTEMPT_ROOT``).
ATTEMPT_ROOT = "computalot-attempts"
TASK_DIR = "<task-dir>"
PROJECT = "<project>"
RUNTIME = "<runtime>"
DATA_DIR = "<data-dir>"
PLATFORM = "<platform>"
NODE = "<node>"
NODE_IP = "<node-ip>"
IMAGE = "<image>"

#: A path's leading directories (absolute), before the part a rule recognises.
_PATH_HEAD = r"(?:/[\w.@+\-]+)*"


@dataclass(frozen=True, slots=True)
class Rule:
    """Replace ``pattern`` with ``placeholder`` in texts that contain one of ``needles``."""

    needles: tuple[str, ...]
    pattern: re.Pattern[str]
    placeholder: str

    def apply(self, text: str) -> str:
        if any(needle in text for needle in self.needles):
            return self.pattern.sub(self.placeholder, text)
        return text


def _rule(needles: str | tuple[str, ...], pattern: str, placeholder: str) -> Rule:
    found = (needles,) if isinstance(needles, str) else needles
    return Rule(found, re.compile(pattern), placeholder)


#: What every platform has, wherever it runs. A path's root is replaced and the rest kept
#: (``<task-dir>/work/run.sh``), so a traceback still names the file that failed.
_FIXED: tuple[Rule, ...] = (
    # Attempt directories, wherever the worker's temp dir is.
    _rule(ATTEMPT_ROOT, _PATH_HEAD + "/" + ATTEMPT_ROOT + r"(?:/[^\s/'\"]+)?", TASK_DIR),
    # A revision's files as Ray unpacked them on a node (its runtime_env working_dir).
    _rule(
        "runtime_resources",
        _PATH_HEAD + r"/runtime_resources/working_dir_files/[^\s/'\"]+",
        PROJECT,
    ),
    # Ray's session directories (logs, sockets, the rest of its runtime_env resources).
    _rule("session_", _PATH_HEAD + r"/session_(?:\d|latest)[^\s/'\"]*", RUNTIME),
    _rule("runtime_resources", _PATH_HEAD + r"/runtime_resources", RUNTIME),
    _rule("ray_tmp", _PATH_HEAD + r"/ray_tmp", RUNTIME),
    _rule("/tmp/ray", r"(?<![\w.\-/])/tmp/ray(?![\w.\-])", RUNTIME),
    # Image references by digest.
    _rule("sha256:", r"(?:[\w./\-]+(?::[\w.\-]+)?@)?sha256:[0-9a-f]{64}", IMAGE),
    # Private, loopback and link-local IPv4 addresses (the cluster's own), with a port.
    _rule(
        ("10.", "127.", "169.254.", "172.", "192.168."),
        r"(?<![\w.])(?:10|127|169\.254|172\.(?:1[6-9]|2\d|3[01])|192\.168)"
        r"(?:\.\d{1,3}){2,3}(?::\d{1,5})?(?![\w.])",
        NODE_IP,
    ),
)
#: Ray's node, worker and actor ids (56 hex characters): only in the engine's own messages.
_NODE_ID = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{56}(?![0-9a-fA-F])")


def _host_rule(path: Path, placeholder: str) -> Rule | None:
    text = str(path)
    if len(Path(text).parts) < 3:  # never "/", "/usr", "/tmp": too broad to be internal
        return None
    return _rule(text, re.escape(text) + r"(?![\w.\-])", placeholder)


def _install_rules() -> list[Rule]:
    """This process's own install: the package's checkout or site-packages, and a venv."""
    rules = [_host_rule(Path(__file__).resolve().parents[1], PLATFORM)]
    if sys.prefix != sys.base_prefix:
        rules.append(_host_rule(Path(sys.prefix).resolve(), PLATFORM))
    rules.append(_host_rule(Path(tempfile.gettempdir()).resolve() / "ray", RUNTIME))
    rules.append(_host_rule(Path(tempfile.gettempdir()).resolve() / ATTEMPT_ROOT, TASK_DIR))
    return [rule for rule in rules if rule is not None]


_rules: list[Rule] = [*_FIXED, *_install_rules()]


def register_data_dir(data_dir: Path) -> None:
    """Redact the platform's data dir too (the API calls this once it has its settings)."""
    rule = _host_rule(data_dir.resolve(), DATA_DIR)
    if rule is not None and all(r.needles != rule.needles for r in _rules):
        _rules.append(rule)


def rules_version() -> int:
    """Changes when a rule is added: an answer redacted before is stale after
    (``serve_app.answer_cache``)."""
    return len(_rules)


def redact_output(text: str) -> str:
    """``text`` with every host path, private address and image digest replaced: what a
    runner's process can see (its output tails)."""
    for rule in _rules:
        text = rule.apply(text)
    return text


def redact(text: str) -> str:
    """:func:`redact_output`, and Ray's ids: for the engine's own messages (errors, warnings,
    events), which may quote a Ray exception."""
    text = redact_output(text)
    if len(text) >= 56 and _NODE_ID.search(text):
        text = _NODE_ID.sub(NODE, text)
    return text


def redact_value(value: Any) -> Any:
    """Every string inside a JSON-like value (dicts, lists) redacted; other values unchanged.
    Returns the value itself when nothing in it changed (answers are built often)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        out = {key: redact_value(item) for key, item in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list):
        items = [redact_value(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
