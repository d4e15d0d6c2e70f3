"""Read what Echidna prints into the recipe's result (docs/recipes.md, "echidna").

Echidna's non-interactive modes print its event log and ``[status]`` lines while it runs, then
a final report: with ``--format json`` one JSON object (``success``, ``error``, ``tests``,
``seed``, ``coverage``), with ``--format text`` the test lines (``name: passing``,
``name: failed!💥`` with its ``Reason:`` and ``Call sequence:``, ``name: could not evaluate ☣``,
``name: verified ✅``, ``name: max value: N``) and the ``Unique instructions:``,
``Unique codehashes:``, ``Corpus size:``, ``Seed:``, ``Total calls:`` lines. The JSON report
is read when present, the text one otherwise. Both become::

    {"format", "tests": [{"name", "status": "passed|failed|error", "echidna_status",
      "reason", "error", "call_sequence": [{"contract", "function", "arguments", ...}]}],
     "counts": {"passed", "failed", "error"}, "coverage": {"instructions", "codehashes",
     "corpus_size"}, "seed", "total_calls", "success"}

Echidna's JSON report names every test ``"name"`` with an empty ``contract`` (its own TODO);
those names are kept as printed, and a falsified test's name is taken from the
``Test <name> falsified!`` log line where the log names exactly as many falsified tests.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Echidna's JSON test states, as the recipe's three.
JSON_STATUS = {
    "fuzzing": "passed",  # still open at the test limit: never falsified
    "passed": "passed",
    "verified": "passed",
    "solved": "failed",
    "shrinking": "failed",  # falsified, its sequence not fully shrunk when echidna stopped
    "error": "error",
}

_TEXT_STATES = (
    ("passing", "passed", "fuzzing"),
    ("passed!", "passed", "passed"),
    ("verified", "passed", "verified"),
    ("failed!", "failed", "solved"),
    ("could not evaluate", "error", "error"),
    ("max value:", "passed", "optimization"),
)
_TEST_LINE = re.compile(r"^(?P<name>[^\s\[][^:]*?): (?P<rest>\s?\S.*)$")
_FIGURES = {
    "Unique instructions": "instructions",
    "Unique codehashes": "codehashes",
    "Corpus size": "corpus_size",
    "Seed": "seed",
    "Total calls": "total_calls",
}
_FALSIFIED = re.compile(r"\] Test (?P<name>.+?) falsified!")
_CALL = re.compile(r"^(?:(?P<contract>[A-Za-z_$][\w$]*)\.)?(?P<function>[\w$]+)\((?P<args>.*)\)")
_STATUS_LINE = re.compile(r"\[status\]")
_STATUS_FIGURES = re.compile(r"\[status\] .*?fuzzing: (?P<calls>\d+)/\d+.*?corpus: (?P<corpus>\d+)")


def _last_status(log: str) -> dict[str, int]:
    """Total calls and corpus size from the last ``[status]`` line (``statusLine``)."""
    found = _STATUS_FIGURES.findall(log)
    if not found:
        return {}
    calls, corpus = found[-1]
    return {"total_calls": int(calls), "corpus_size": int(corpus)}


def parse_output(stdout: str) -> dict[str, Any]:
    """The structured result of one Echidna run's stdout (JSON report first, text next);
    ``ValueError`` when neither report is there."""
    report = _last_json_object(stdout)
    if report is not None:
        return parse_json_report(report, stdout)
    return parse_text_report(stdout)


def _last_json_object(stdout: str) -> dict[str, Any] | None:
    """The report object echidna wrote (one line, after its log lines), if any."""
    lines = stdout.splitlines(keepends=True)
    for index in range(len(lines) - 1, -1, -1):
        if not lines[index].startswith("{"):
            continue
        try:
            value = json.loads("".join(lines[index:]))
        except ValueError:
            return None
        return value if isinstance(value, dict) and "tests" in value else None
    return None


def _counts(tests: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "error": 0}
    for test in tests:
        counts[test["status"]] += 1
    return counts


def parse_json_report(report: dict[str, Any], log: str = "") -> dict[str, Any]:
    """The result of ``--format json``'s report; ``log`` (the lines before it) names the
    falsified tests the report leaves unnamed."""
    tests = []
    for raw in report.get("tests") or []:
        state = str(raw.get("status") or "")
        sequence = [
            {
                "contract": tx.get("contract") or None,
                "function": tx.get("function"),
                "arguments": tx.get("arguments"),
                "gas": tx.get("gas"),
                "gasprice": tx.get("gasprice"),
                "value": tx.get("value"),
            }
            for tx in raw.get("transactions") or []
        ]
        tests.append(
            {
                "name": raw.get("name"),
                "contract": raw.get("contract") or None,
                "type": raw.get("type"),
                "status": JSON_STATUS.get(state, "error"),
                "echidna_status": state,
                "reason": raw.get("reason"),
                "error": raw.get("error"),
                "call_sequence": sequence,
            }
        )
    falsified = _FALSIFIED.findall(log)
    failed = [t for t in tests if t["status"] == "failed"]
    if falsified and len(falsified) == len(failed):
        for test, name in zip(failed, falsified, strict=True):
            if test["name"] in (None, "", "name"):
                test["name"] = name
    coverage = report.get("coverage") or {}
    status = _last_status(log)
    instructions = sum(
        1
        for entries in coverage.values()
        for entry in entries
        if isinstance(entry, list) and entry and entry[0] != -1
    )
    return {
        "format": "json",
        "success": bool(report.get("success")),
        "error": report.get("error"),
        "tests": tests,
        "counts": _counts(tests),
        "coverage": {
            "instructions": instructions,
            "codehashes": len(coverage),
            "corpus_size": status.get("corpus_size"),
        },
        "seed": report.get("seed"),
        "total_calls": status.get("total_calls"),
    }


def _parse_call(line: str) -> dict[str, Any]:
    """One call of a text call sequence (``Contract.fn(1,0x…) Value: 5``)."""
    text = line.strip()
    if text.startswith("*wait*"):
        return {"contract": None, "function": "*wait*", "arguments": None, "text": text}
    match = _CALL.match(text)
    if match is None:
        return {"contract": None, "function": None, "arguments": None, "text": text}
    args = match["args"]
    return {
        "contract": match["contract"],
        "function": match["function"],
        "arguments": _split_args(args) if args else [],
        "text": text,
    }


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments (tuples and arrays keep their commas)."""
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in args:
        if ch in "([" and not (ch == "[" and current and current[-1] == " "):
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    out.append("".join(current).strip())
    return out


def _state_of(rest: str) -> tuple[str, str] | None:
    stripped = rest.strip()
    for prefix, status, echidna_status in _TEXT_STATES:
        if stripped.startswith(prefix):
            return status, echidna_status
    return None


def parse_text_report(stdout: str) -> dict[str, Any]:
    """The result of ``--format text``'s final report (after the last ``[status]`` line)."""
    lines = stdout.splitlines()
    last_status = max((i for i, ln in enumerate(lines) if _STATUS_LINE.search(ln)), default=-1)
    body = lines[last_status + 1 :]
    tests: list[dict[str, Any]] = []
    figures: dict[str, int] = {}
    current: dict[str, Any] | None = None
    section = ""
    for line in body:
        figure = line.split(": ", 1)
        if len(figure) == 2 and figure[0] in _FIGURES and figure[1].strip().lstrip("-").isdigit():
            figures[_FIGURES[figure[0]]] = int(figure[1].strip())
            current, section = None, ""
            continue
        match = _TEST_LINE.match(line)
        state = _state_of(match["rest"]) if match is not None else None
        if match is not None and state is not None:
            status, echidna_status = state
            current = {
                "name": match["name"],
                "contract": None,
                "type": "optimization" if echidna_status == "optimization" else None,
                "status": status,
                "echidna_status": echidna_status,
                "reason": None,
                "error": None,
                "call_sequence": [],
            }
            if echidna_status == "optimization":
                current["max_value"] = match["rest"].split("max value:", 1)[1].strip()
            tests.append(current)
            section = "error" if status == "error" else ""
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Reason:"):
            current["reason"] = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("Call sequence"):
            section = "calls"
        elif stripped.startswith("No transactions were needed"):
            section = ""
        elif stripped.startswith("Traces:") or stripped.startswith("Test traces:"):
            section = "traces"
        elif not stripped:
            if section == "calls":
                section = ""
        elif section == "calls" and line.startswith("    "):
            current["call_sequence"].append(_parse_call(line))
        elif section == "error" and current["error"] is None:
            current["error"] = stripped
    if not tests and not figures:
        raise ValueError("echidna printed no final report")
    return {
        "format": "text",
        "success": True,  # the campaign ran to its report (as the JSON report's field)
        "error": None,
        "tests": tests,
        "counts": _counts(tests),
        "coverage": {
            "instructions": figures.get("instructions"),
            "codehashes": figures.get("codehashes"),
            "corpus_size": figures.get("corpus_size"),
        },
        "seed": figures.get("seed"),
        "total_calls": figures.get("total_calls"),
    }
