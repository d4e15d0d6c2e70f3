"""Warm Python runners (issue #18 §1; docs/llms-full.md, "Warm Python runners").

A task whose command is ``python3 script.py …`` or ``python3 -m module …`` starts as a child
forked from a warm interpreter that already imported the revision's ``runtime.preload``
modules, instead of a fresh ``python3`` (tens of milliseconds of start-up and imports saved per
task). The child becomes what the fresh process would be (``zygote_source``); which commands
qualify is ``command``; the worker's zygotes are ``client``.

Behind the platform setting ``warm_python`` (off by default) and the manifest's
``runtime.warm_python``; used only for unconfined tasks (``COMPUTALOT_SANDBOX=none``) so far:
a sandboxed task runs as a fresh process in its own sandbox, with a warning on its job.
"""

from computalot.engine.warm_python.client import ForkedProcess, start_forked
from computalot.engine.warm_python.command import WarmCommand, warm_command, why_not

__all__ = ["ForkedProcess", "WarmCommand", "start_forked", "warm_command", "why_not"]
