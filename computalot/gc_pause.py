"""Pause Python's cyclic garbage collector around bulk JSON work.

Decoding a 100,000-element job's results builds hundreds of thousands of small dicts and lists.
Each 700 of them start a young-generation collection, and every so often a full one walks the
whole heap of a process that also holds Ray, SQLAlchemy and FastAPI: in the dispatcher and in
result decoding the collector took a large share of the CPU (bench/README.md, "Engine design
figures").

Results, payloads and rows are trees (no reference cycles): reference counting frees them, and
the collector has nothing to find in them. So the bulk sections run with it paused; whatever
survives is looked at once, by the first collection after them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off; nested or concurrent uses are fine (only the
    use that found it on turns it back on, and a collection that is merely late loses nothing)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
