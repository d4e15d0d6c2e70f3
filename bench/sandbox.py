"""What the task sandbox costs one attempt (docs/sandbox.md).

For a trivial runner (``/bin/true``, and ``python3 -c pass`` with the runtime's interpreter)
this times whole attempts as a worker runs them (``engine.run_task.execute_attempt``: attempt
directory, working copy of a small revision, payload, runner, result, clean-up), with the
sandbox (``COMPUTALOT_SANDBOX=bwrap``) and without (``none``), alternating run by run so drift
in the machine's speed does not favour either side. It prints the medians side by side and
their difference, the figure the goal is about (added time <= 5 ms on a trivial runner).

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

from computalot.engine.attempt import AttemptSpec  # noqa: E402
from computalot.engine.run_task import execute_attempt  # noqa: E402
from computalot.sandbox.limits import TaskLimits  # noqa: E402
from computalot.sandbox.policy import SandboxPolicy  # noqa: E402

LIMITS = TaskLimits(
    memory_mb=4096, processes=1024, open_files=4096, cpu_time_s=86400, disk_mb=10240
)


def _spec(argv: list[str], mode: str, n: int) -> AttemptSpec:
    policy = SandboxPolicy(mode, "host", 65534, 65534, LIMITS, (8000,))
    return AttemptSpec(
        job_id="job_bench",
        account_id="acc_bench",
        task_id=f"tsk_bench{n}",
        index=0,
        attempt=1,
        payload={"x": n},
        runner_command=argv,
        timeout_s=30,
        namespace="bench",
        sandbox=policy,
    )


def attempt(argv: list[str], mode: str, n: int) -> float:
    started = time.perf_counter()
    outcome, _ = execute_attempt(_spec(argv, mode, n))
    assert outcome.status == "ok", outcome
    return time.perf_counter() - started


def measure(name: str, argv: list[str], runs: int) -> float:
    for _warm in range(3):
        attempt(argv, "none", -1)
        attempt(argv, "bwrap", -1)
    bare: list[float] = []
    mine: list[float] = []
    for i in range(runs):
        bare.append(attempt(argv, "none", i))
        mine.append(attempt(argv, "bwrap", i))
    p, s = statistics.median(bare) * 1000, statistics.median(mine) * 1000
    print(f"{name:<18} unconfined {p:7.2f} ms   sandboxed {s:7.2f} ms   added {s - p:+6.2f} ms")
    return s - p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"sandbox cost per attempt ({args.runs} runs each, median; load {load:.2f})")
    if os.geteuid() != 0:
        print("(not root: bubblewrap runs in a user namespace and no firewall is installed)")
    with tempfile.TemporaryDirectory(prefix="computalot-bench-sandbox-") as revision:
        (Path(revision) / "runner.py").write_text("pass\n")  # the revision's working copy
        os.chdir(revision)  # a Ray worker runs in the revision's directory
        worst = max(
            measure("/bin/true", ["/bin/true"], args.runs),
            measure("python3 -c pass", [sys.executable, "-c", "pass"], args.runs),
        )
    verdict = "PASS" if worst <= 5.0 else "FAIL"
    print(f"goal: added <= 5 ms on a trivial runner: {verdict} (worst {worst:+.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
