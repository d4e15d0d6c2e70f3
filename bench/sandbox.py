"""What the task sandbox costs one attempt (docs/sandbox.md).

For a trivial runner (``/bin/true``, and ``python3 -c pass`` with the runtime's interpreter)
this times one attempt's runner the way ``engine.run_task`` runs it, with and without the
sandbox, alternating run by run (so drift in the machine's speed does not favour either side):

- plain: ``run_command`` (spawn, rlimits, pipes, exit);
- sandboxed: the task's sandbox made (cgroup, attempt directory handed to the task's uid,
  firewall already in place), ``run_command`` through bubblewrap, the sandbox closed.

It prints the medians side by side and their difference, the figure the goal is about
(added time <= 5 ms on a trivial runner).

    .venv/bin/python bench/sandbox.py            # 200 runs of each
    .venv/bin/python bench/sandbox.py --runs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from computalot.engine.runner import RunLimits, base_env, run_command  # noqa: E402
from computalot.sandbox.limits import TaskLimits  # noqa: E402
from computalot.sandbox.policy import SandboxPolicy  # noqa: E402
from computalot.sandbox.task import TaskSandbox  # noqa: E402

POLICY = SandboxPolicy(
    mode="bwrap",
    network="host",
    uid=65534,
    gid=65534,
    limits=TaskLimits(
        memory_mb=4096, processes=1024, open_files=4096, cpu_time_s=86400, disk_mb=10240
    ),
    open_ports=(8000,),
)


def _attempt(root: Path, n: int) -> Path:
    directory = root / f"attempt-{n}"
    (directory / "work").mkdir(parents=True)
    return directory


def plain(argv: list[str], directory: Path) -> float:
    started = time.perf_counter()
    ran = run_command(
        argv,
        cwd=directory / "work",
        env=base_env({}, directory / "work"),
        timeout_s=30,
        limits=RunLimits(max_open_files=4096),
    )
    assert ran.status == "ok", ran
    return time.perf_counter() - started


def sandboxed(argv: list[str], directory: Path) -> float:
    started = time.perf_counter()
    sandbox = TaskSandbox(POLICY, directory, directory.name)
    try:
        ran = run_command(
            argv,
            cwd=directory / "work",
            env=base_env({}, Path("/task/work")),
            timeout_s=30,
            limits=RunLimits(
                memory_mb=sandbox.memory_rlimit_mb,
                max_file_mb=POLICY.limits.disk_mb,
                max_open_files=POLICY.limits.open_files,
                cpu_time_s=POLICY.limits.cpu_time_s,
            ),
            sandbox=sandbox,
        )
    finally:
        sandbox.close()
    assert ran.status == "ok", ran
    return time.perf_counter() - started


def measure(name: str, argv: list[str], runs: int, root: Path) -> float:
    mine: list[float] = []
    bare: list[float] = []
    for warm in range(3):
        plain(argv, _attempt(root, -1 - 2 * warm))
        sandboxed(argv, _attempt(root, -2 - 2 * warm))
    for i in range(runs):
        bare.append(plain(argv, _attempt(root, 2 * i)))
        mine.append(sandboxed(argv, _attempt(root, 2 * i + 1)))
    p, s = statistics.median(bare) * 1000, statistics.median(mine) * 1000
    print(f"{name:<22} plain {p:7.2f} ms   sandboxed {s:7.2f} ms   added {s - p:+6.2f} ms")
    return s - p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"sandbox cost per attempt ({args.runs} runs each, median; load {load:.2f})")
    with tempfile.TemporaryDirectory(prefix="computalot-bench-sandbox-") as scratch:
        root = Path(scratch)
        worst = max(
            measure("/bin/true", ["/bin/true"], args.runs, root),
            measure("python3 -c pass", [sys.executable, "-c", "pass"], args.runs, root),
        )
    verdict = "PASS" if worst <= 5.0 else "FAIL"
    print(f"goal: added <= 5 ms on a trivial runner: {verdict} (worst {worst:+.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
