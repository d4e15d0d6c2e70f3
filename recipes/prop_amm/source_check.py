"""The prop_amm source rules (docs/recipes.md, "prop_amm"), checked before anything compiles.

A strategy is one ``lib.rs`` of safe Rust, as the public challenge requires: no ``unsafe``
anywhere (a token, outside comments and literals); none of the macros and items that reach
outside the file or the language's safe subset (``include!``, ``include_str!``,
``include_bytes!``, ``env!``, ``option_env!``, ``asm!``, ``global_asm!``, ``extern crate``,
``mod x;``); and the items the challenge needs at the top level: ``const NAME: &str`` and
``const MODEL_USED: &str`` (non-empty string literals), ``fn get_model_used`` and
``fn compute_swap``; ``fn after_swap`` is optional. Each broken rule is one :class:`Problem`
naming the item, which the API answers as a 422 in the SPEC's envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The largest source accepted, in bytes (the challenge's strategies are a few KiB).
MAX_SOURCE_BYTES = 1_000_000

BLOCKED_MACROS = (
    "include",
    "include_str",
    "include_bytes",
    "env",
    "option_env",
    "asm",
    "global_asm",
)
REQUIRED_CONSTS = ("NAME", "MODEL_USED")
REQUIRED_FNS = ("get_model_used", "compute_swap")


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``item`` is what is at fault (``unsafe``, ``include!``, ``NAME``)."""

    item: str
    message: str


@dataclass(frozen=True)
class Token:
    kind: str  # ident | str | char | lifetime | num | punct
    text: str
    line: int
    value: str = ""  # a string literal's contents


@dataclass(frozen=True)
class Summary:
    """What the checks found: the metadata and whether ``after_swap`` is there."""

    name: str | None
    model_used: str | None
    has_after_swap: bool


class SourceError(ValueError):
    """The text cannot be read as Rust tokens (an unterminated comment or literal)."""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"(?:r#)?([A-Za-z_][A-Za-z0-9_]*)")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_]*(\.[0-9][0-9A-Za-z_]*)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "\n":  # a line continuation skips the following whitespace
                i += 2
                while i < len(body) and body[i] in " \t\n\r":
                    i += 1
                continue
            if nxt == "u" and (m := re.match(r"\\u\{([0-9a-fA-F_]{1,8})\}", body[i:])):
                out.append(chr(int(m.group(1).replace("_", ""), 16)))
                i += m.end()
                continue
            if nxt == "x" and (m := re.match(r"\\x([0-9a-fA-F]{2})", body[i:])):
                out.append(chr(int(m.group(1), 16)))
                i += m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """Rust tokens enough for the rules: comments dropped, literals kept whole."""
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise SourceError(f"line {line}: a block comment is never closed")
            line += text.count("\n", i, j)
            i = j
        elif (m := re.match(r"b?r(#*)\"", text[i:])) is not None:
            hashes = m.group(1)
            close = '"' + hashes
            end = text.find(close, i + m.end())
            if end < 0:
                raise SourceError(f"line {line}: a raw string is never closed")
            body = text[i + m.end() : end]
            tokens.append(Token("str", text[i : end + len(close)], line, body))
            line += body.count("\n")
            i = end + len(close)
        elif ch == '"' or (ch == "b" and text.startswith('b"', i)):
            j = i + (2 if ch == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise SourceError(f"line {line}: a string is never closed")
            start = i + (2 if ch == "b" else 1)
            body = text[start:j]
            tokens.append(Token("str", text[i : j + 1], line, _unescape(body)))
            line += body.count("\n")
            i = j + 1
        elif ch == "'" or (ch == "b" and text.startswith("b'", i)):
            j = i + (2 if ch == "b" else 1)
            if j < n and text[j] == "\\":
                end = text.find("'", j + 2)
                if end < 0:
                    raise SourceError(f"line {line}: a character literal is never closed")
                tokens.append(Token("char", text[i : end + 1], line))
                i = end + 1
            elif j + 1 < n and text[j + 1] == "'":
                tokens.append(Token("char", text[i : j + 2], line))
                i = j + 2
            elif ch == "'" and (m := _IDENT.match(text, j)) is not None:
                tokens.append(Token("lifetime", "'" + m.group(0), line))
                i = m.end()
            else:
                tokens.append(Token("punct", ch, line))
                i += 1
        elif (m := _WORD.match(text, i)) is not None:
            tokens.append(Token("ident", m.group(1), line))
            i = m.end()
        elif (m := _NUMBER.match(text, i)) is not None:
            tokens.append(Token("num", m.group(0), line))
            i = m.end()
        else:
            tokens.append(Token("punct", ch, line))
            i += 1
    return tokens


def _is(tokens: list[Token], i: int, kind: str, text: str | None = None) -> bool:
    return i < len(tokens) and tokens[i].kind == kind and (text is None or tokens[i].text == text)


def _str_const(tokens: list[Token], i: int) -> tuple[bool, str | None]:
    """At ``const NAME`` (i at NAME): (typed ``&str`` / ``&'static str``, its literal or None)."""
    j = i + 1
    if not _is(tokens, j, "punct", ":"):
        return False, None
    j += 1
    if not _is(tokens, j, "punct", "&"):
        return False, None
    j += 1
    if _is(tokens, j, "lifetime"):
        j += 1
    if not _is(tokens, j, "ident", "str"):
        return False, None
    j += 1
    if not _is(tokens, j, "punct", "="):
        return True, None
    j += 1
    if (
        _is(tokens, j, "str")
        and not tokens[j].text.startswith("b")
        and _is(tokens, j + 1, "punct", ";")
    ):
        return True, tokens[j].value
    return True, None


def check_source(text: str) -> tuple[list[Problem], Summary]:
    """Every rule ``text`` breaks (empty when it may be compiled) and what it declares."""
    problems: list[Problem] = []
    if len(text.encode()) > MAX_SOURCE_BYTES:
        problems.append(Problem("source", f"the source is over the {MAX_SOURCE_BYTES}-byte limit"))
        return problems, Summary(None, None, False)
    try:
        tokens = tokenize(text)
    except SourceError as exc:
        return [Problem("source", f"not readable as Rust: {exc}")], Summary(None, None, False)

    consts: dict[str, tuple[bool, str | None, int]] = {}
    fns: set[str] = set()
    depth = 0
    seen: set[str] = set()

    def once(item: str, message: str) -> None:
        if item not in seen:
            seen.add(item)
            problems.append(Problem(item, message))

    for i, tok in enumerate(tokens):
        if tok.kind == "punct" and tok.text in "{[(":
            depth += 1
            continue
        if tok.kind == "punct" and tok.text in "}])":
            depth -= 1
            continue
        if tok.kind != "ident":
            continue
        if tok.text == "unsafe":
            once(
                "unsafe",
                f"line {tok.line}: `unsafe` is not allowed: submissions are safe Rust only",
            )
        elif tok.text in BLOCKED_MACROS and _is(tokens, i + 1, "punct", "!"):
            if not (i > 0 and _is(tokens, i - 1, "punct", ".")):
                once(f"{tok.text}!", f"line {tok.line}: the `{tok.text}!` macro is not allowed")
        elif tok.text == "extern" and _is(tokens, i + 1, "ident", "crate"):
            once("extern crate", f"line {tok.line}: `extern crate` is not allowed")
        elif tok.text == "mod" and _is(tokens, i + 1, "ident") and _is(tokens, i + 2, "punct", ";"):
            name = tokens[i + 1].text
            once(
                f"mod {name};",
                f"line {tok.line}: `mod {name};` is not allowed: the strategy is one file",
            )
        elif depth == 0 and tok.text == "const" and _is(tokens, i + 1, "ident"):
            name = tokens[i + 1].text
            if name in REQUIRED_CONSTS:
                typed, value = _str_const(tokens, i + 1)
                consts[name] = (typed, value, tok.line)
        elif depth == 0 and tok.text == "fn" and _is(tokens, i + 1, "ident"):
            fns.add(tokens[i + 1].text)

    if depth != 0:
        problems.append(Problem("source", "brackets do not balance"))
    for name in REQUIRED_CONSTS:
        found = consts.get(name)
        if found is None:
            problems.append(Problem(name, f'define `const {name}: &str = "...";` at the top level'))
        elif not found[0] or found[1] is None:
            problems.append(
                Problem(name, f"line {found[2]}: `{name}` must be a `&str` string literal constant")
            )
        elif not found[1].strip():
            hint = ' (use "None" for a human-written strategy)' if name == "MODEL_USED" else ""
            problems.append(Problem(name, f"line {found[2]}: `{name}` must not be empty{hint}"))
    for name in REQUIRED_FNS:
        if name not in fns:
            signature = (
                "fn compute_swap(data: &[u8]) -> u64"
                if name == "compute_swap"
                else "fn get_model_used() -> &'static str"
            )
            problems.append(Problem(name, f"define `{signature}` at the top level"))
    summary = Summary(
        name=(consts.get("NAME") or (False, None, 0))[1],
        model_used=(consts.get("MODEL_USED") or (False, None, 0))[1],
        has_after_swap="after_swap" in fns,
    )
    return problems, summary
