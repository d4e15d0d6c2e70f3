"""Rows as the database driver hands them back, turned into values only when needed (issue #18
§3, bench/README.md "API throughput").

A job row's values cost more to build than to read: on SQLite each of its JSON columns is
parsed and each timestamp is parsed and given its zone, ~20 us a row. The API answers a job from
its row alone (``computalot.views``), so the *raw* row (strings, numbers, ``None``: what the
driver returned) is a complete key for the answer's bytes. A read here returns the raw tuple;
:meth:`RawColumns.values` builds the values the typed select would have given only when the
answer is not already encoded (``serve_app.answer_cache``).

:meth:`RawColumns.values` applies each column type's own result processor, the one SQLAlchemy
applies to a typed select (its ``_cached_result_processor``, the cache SQLAlchemy itself
reads), so the two cannot drift apart: ``tests/integration/test_hot_reads.py`` holds them
equal on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Dialect, type_coerce
from sqlalchemy.sql.elements import Label
from sqlalchemy.types import NullType

Processor = Callable[[Any], Any] | None


class RawColumns:
    """The untyped twin of a list of labelled columns: :attr:`raw` selects the same columns
    with no result processing (``NullType``), :meth:`values` types a raw row afterwards."""

    def __init__(self, columns: Sequence[Label[Any]]) -> None:
        self.keys = tuple(column.key for column in columns)
        self.types = [column.type for column in columns]
        self.raw: list[Label[Any]] = [
            type_coerce(column.element, NullType()).label(column.key) for column in columns
        ]
        self._processors: dict[tuple[int, tuple[Any, ...]], list[Processor]] = {}

    def index(self, key: str) -> int:
        return self.keys.index(key)

    def processors(self, dialect: Dialect, description: Any) -> list[Processor]:
        """Each column's result processor for this dialect and the driver's type codes (a
        cursor's ``description``; SQLite's are all None), computed once."""
        codes = tuple(entry[1] for entry in description) if description else ()
        if len(codes) != len(self.types):
            codes = (None,) * len(self.types)
        key = (id(dialect), codes)
        found = self._processors.get(key)
        if found is None:
            found = [
                kind._cached_result_processor(dialect, code)
                for kind, code in zip(self.types, codes, strict=True)
            ]
            self._processors[key] = found
        return found

    def values(self, raw: Sequence[Any], processors: Sequence[Processor]) -> SimpleNamespace:
        """The row's values as the typed select gives them, as attributes (what ``views``
        reads of a model)."""
        out = SimpleNamespace()
        out.__dict__.update(
            zip(
                self.keys,
                [
                    value if fn is None else fn(value)
                    for fn, value in zip(processors, raw, strict=True)
                ],
                strict=True,
            )
        )
        return out
