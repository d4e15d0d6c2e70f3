"""SIGINT and SIGTERM both mean "stop cleanly" to ``computalot up`` and ``serve``, from the
first moment (docs/operating.md, "Stopping and restarting").

Before, SIGTERM during start-up killed ``up`` outright (its Ray instance left running), and
SIGINT raised wherever the start happened to be. Here either raises :class:`KeyboardInterrupt`
in the main thread once; a second one while the stop is under way is ignored rather than
cutting the stop short (SIGKILL remains, and the watchdog cleans up after it).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    stopping()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_stop_signals() -> None:
    """From now on the first SIGINT or SIGTERM raises KeyboardInterrupt in the main thread."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def stopping() -> None:
    """The stop is under way: further SIGINT/SIGTERM are ignored."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (which raises KeyboardInterrupt: catch it)."""
    interrupt_on_stop_signals()
    forever = threading.Event()
    while True:
        forever.wait(3600)
