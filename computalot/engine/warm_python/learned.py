"""What a revision's warm tasks imported, remembered on the node for its next warm interpreters
(issue #18 §1: preloads learned from a finished task's ``sys.modules``).

A forked task reports the installed and standard-library modules it imported beyond its
zygote's (``zygote_source``: never the project's own files); they are kept per interpreter,
revision (the worker's working directory, which Ray makes per revision) and manifest preload,
in memory and in one small file per key under the node's temporary directory, so every worker
of the revision on this node starts its zygotes with them. At most :data:`MAX_LEARNED` names
per key, shallowest first; the zygote imports them only after a forked trial showed they start
no thread, open no socket and stay under :data:`MAX_RSS_MB`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from computalot.engine.warm_python.command import MODULE_NAME

#: Module names kept per key and given to a zygote, shallowest first (it imports at most 64
#: itself; the modules those import on the way come free).
MAX_LEARNED = 256
MAX_RSS_MB = 1024  # a zygote stops importing learned modules past this resident size
MAX_RESTARTS = 2  # a worker's zygote is restarted this often at most to take new names
READ_EVERY_S = 1.0  # the node's file (other workers' tasks) is looked at this often per key


def _order(names: Iterable[str]) -> tuple[str, ...]:
    """Shallowest first (a package before its modules), then by name; capped."""
    return tuple(sorted(set(names), key=lambda n: (n.count("."), n))[:MAX_LEARNED])


class Learned:
    """The names learned per key; see the module doc."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.by_key: dict[str, set[str]] = {}
        self.read_at: dict[str, float] = {}

    def _dir(self) -> Path:
        return self.directory or Path(tempfile.gettempdir()) / "computalot-warm-learned"

    @staticmethod
    def key(interpreter: str, preload: tuple[str, ...]) -> str:
        """The key of this worker's revision (its working directory) for an interpreter."""
        raw = json.dumps([interpreter, os.getcwd(), list(preload)])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def _read(self, key: str) -> set[str]:
        try:
            names = json.loads((self._dir() / f"{key}.json").read_text())
        except (OSError, ValueError):
            return set()
        if not isinstance(names, list):
            return set()
        return {n for n in names if isinstance(n, str) and MODULE_NAME.match(n)}

    def names(self, key: str) -> tuple[str, ...]:
        """What the revision's tasks imported so far (this worker's and the node's)."""
        with self.lock:
            known = self.by_key.setdefault(key, set())
            now = time.monotonic()
            if now - self.read_at.get(key, -READ_EVERY_S) >= READ_EVERY_S:
                self.read_at[key] = now
                known |= self._read(key)
            return _order(known)

    def add(self, key: str, names: Iterable[str]) -> bool:
        """Remember ``names`` (invalid ones dropped); True when one was new."""
        valid = {n for n in names if isinstance(n, str) and MODULE_NAME.match(n)}
        with self.lock:
            known = self.by_key.setdefault(key, set())
            new = valid - known
            if not new or len(known) >= 2 * MAX_LEARNED:
                return False
            known |= new
            self._write(key, known | self._read(key))
            return True

    def _write(self, key: str, names: set[str]) -> None:
        """Replace the key's file atomically (a reader sees the old or the new list)."""
        directory = self._dir()
        with contextlib.suppress(OSError):
            directory.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}-")
            with os.fdopen(fd, "w") as fh:
                json.dump(sorted(names), fh)
            os.replace(tmp, directory / f"{key}.json")


LEARNED = Learned()
