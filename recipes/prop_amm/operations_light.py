"""Submit-time checks of an inline ``rs_source_b64`` (docs/recipes.md, "prop_amm"): light
enough for the API process (no compiler, no engine imports)."""

from __future__ import annotations

import base64
import binascii

from .source_check import check_source


def inline_problems(text: str) -> list[tuple[str, str]]:
    """``(field, message)`` for each rule the inline source breaks, naming the item."""
    try:
        source = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return [("rs_source_b64", "not valid base64 of UTF-8 text")]
    problems, _summary = check_source(source)
    if not problems:
        return []
    return [("rs_source_b64", "; ".join(f"{p.item}: {p.message}" for p in problems))]
