"""``.gitignore``-style exclude rules for ``push_project`` (docs/python-sdk.md, "Projects").

A project directory is packed without what git would leave out: the rules of every
``.gitignore`` (and ``.computalotignore``, for files git keeps but the cluster needs not) in the
tree, plus the patterns a caller passes. The syntax is git's:

- ``#`` starts a comment, blank lines are skipped, ``\\#`` and ``\\!`` escape;
- ``!pattern`` re-includes what an earlier rule excluded (the last matching rule wins; a file
  inside an excluded directory stays excluded, as in git);
- ``pattern/`` matches directories only;
- a pattern with a ``/`` before its end is anchored to the directory of its ignore file,
  otherwise it matches a name at any depth;
- ``*`` and ``?`` never cross a ``/``; ``**`` does (``**/x``, ``x/**``, ``a/**/b``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The ignore files read in every directory of a pushed tree, in this order.
IGNORE_FILES = (".gitignore", ".computalotignore")


@dataclass(frozen=True)
class Rule:
    """One pattern: ``base`` is the directory (archive path, "" = root) of its ignore file."""

    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    base: str

    def matches(self, path: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not path.startswith(self.base + "/"):
                return False
            path = path[len(self.base) + 1 :]
        return self.regex.fullmatch(path) is not None


def _glob_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            body = glob[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end + 1
        elif glob[i] == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def parse_rule(line: str, base: str = "") -> Rule | None:
    """One line of an ignore file as a rule (None for a blank line or a comment)."""
    text = line.rstrip("\n")
    if not text.endswith("\\ "):
        text = text.rstrip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    if negate or text.startswith(("\\#", "\\!")):
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.lstrip("/")
    pattern = _glob_regex(text)
    if not anchored:
        pattern = f"(?:.*/)?{pattern}"
    return Rule(re.compile(pattern, re.DOTALL), negate, dir_only, base)


def parse_rules(lines: Iterable[str], base: str = "") -> list[Rule]:
    return [rule for line in lines if (rule := parse_rule(line, base)) is not None]


def read_rules(directory: Path, base: str) -> list[Rule]:
    """The rules of ``directory``'s ignore files (``base``: its archive path)."""
    rules: list[Rule] = []
    for name in IGNORE_FILES:
        path = directory / name
        if path.is_file() and not path.is_symlink():
            rules.extend(parse_rules(path.read_text(errors="replace").splitlines(), base))
    return rules


def ignored(rules: Iterable[Rule], path: str, is_dir: bool) -> bool:
    """Whether the archive path ``path`` is left out: the last rule that matches decides."""
    verdict = False
    for rule in rules:
        if rule.matches(path, is_dir):
            verdict = not rule.negate
    return verdict
