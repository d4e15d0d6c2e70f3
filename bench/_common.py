"""Shared helpers for the benchmarks: isolated platform env, deadlines, tables, JSON results.

Every benchmark runs against its own temporary data dir and free ports, so it never touches a
developer's ``.computalot`` or a running ``computalot up``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo root
    sys.path.insert(0, str(REPO))


class DeadlineExceeded(RuntimeError):
    """The benchmark ran past its own time budget (``--max-seconds``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded` in the main thread after ``seconds`` (cleanup still runs)."""

    def fire(_signum: int, _frame: Any) -> None:
        raise DeadlineExceeded(f"benchmark exceeded its budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def isolated_env(extra: dict[str, str] | None = None) -> Path:
    """Point ``COMPUTALOT_*`` at a fresh temp data dir and a free port; return the data dir."""
    for name in list(os.environ):
        if name.startswith("COMPUTALOT_"):
            del os.environ[name]
    data_dir = Path(tempfile.mkdtemp(prefix="computalot-bench-"))
    os.environ.update(
        {
            "COMPUTALOT_DATA_DIR": str(data_dir),
            "COMPUTALOT_PORT": str(free_port()),
            # The per-account budget (6,000/min by default) would turn a load test into a 429
            # test; the limiter still runs on every request, it just never trips.
            "COMPUTALOT_RATE_LIMIT_PER_MINUTE": str(10**9),
        }
    )
    # Only the stop is affected: behind HAProxy each Serve replica otherwise stays reachable
    # for 30 s after serve.shutdown() (a load-balancer deregistration window), which would add
    # 30 s to every run. platform.serve_env() passes RAY_SERVE_* variables through.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    os.environ.update(extra or {})
    return data_dir


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000.0


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"

    def render(row: Sequence[str]) -> str:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    out = [title, line, render(header), line, *(render(r) for r in rows), line]
    return "\n".join(out)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "PASS" if ok else "MISS"


def write_results(name: str, summary: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    summary = {"benchmark": name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary}
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def psutil_module() -> Any:
    """psutil as Ray bundles it (importing ray puts its third-party dir on sys.path)."""
    import ray  # noqa: F401

    return importlib.import_module("psutil")


def machine_state() -> dict[str, Any]:
    """Load average and other local Ray clusters: a busy neighbour skews every figure here."""
    psutil = psutil_module()
    mine = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    foreign = 0
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info.get("cmdline") or []
        if proc.pid not in mine and argv and os.path.basename(argv[0]) == "raylet":
            foreign += 1
    return {"load_avg_1m": round(os.getloadavg()[0], 2), "other_ray_clusters": foreign}


def machine_line(start: dict[str, Any], end: dict[str, Any]) -> str:
    line = (
        f"machine: {os.cpu_count()} cores; load average {start['load_avg_1m']} at start, "
        f"{end['load_avg_1m']} at end; other local Ray clusters running: "
        f"{start['other_ray_clusters']} at start, {end['other_ray_clusters']} at end"
    )
    if start["other_ray_clusters"] or end["other_ray_clusters"]:
        line += "  (figures are skewed by them)"
    return line


@dataclass
class PlatformRun:
    results: dict[str, Any]  # what ``work`` filled in (also when the deadline cut it short)
    status: int  # 0, or 3 when the run passed its budget
    machine_end: dict[str, Any]


def run_on_platform(
    work: Callable[[Any, dict[str, Any]], None],
    *,
    num_cpus: int,
    max_seconds: float,
    include_dashboard: bool = False,
    cleanup: Sequence[Path] = (),
) -> PlatformRun:
    """Start the platform (settings from the environment :func:`isolated_env` set), call
    ``work(running, results)`` within ``max_seconds``, then stop it and remove ``cleanup``.
    Past the budget, what ``work`` already put in ``results`` is kept for the report."""
    from computalot import platform
    from computalot.settings import load_settings

    settings = load_settings()
    results: dict[str, Any] = {}
    status = 0
    started = False
    try:
        with deadline(max_seconds):
            log(f"starting the platform (num_cpus={num_cpus}, dashboard {include_dashboard})")
            t0 = time.monotonic()
            started = True
            running = platform.start(
                settings, num_cpus=num_cpus, include_dashboard=include_dashboard
            )
            log(f"platform ready at {running.url} in {time.monotonic() - t0:.1f} s")
            work(running, results)
    except DeadlineExceeded as exc:
        log(f"{exc}; reporting what finished")
        status = 3
    finally:
        machine_end = machine_state()
        if started:
            log("stopping the platform")
            platform.stop(settings)
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
    return PlatformRun(results, status, machine_end)
