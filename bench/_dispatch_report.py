"""Tables and verdicts printed by bench/dispatch.py."""

from __future__ import annotations

from typing import Any

from _common import (
    fmt,
    table,
    verdict,
)
from _dispatch_support import (
    GOALS,
    HEAD_ROLES,
    RUNNER_ROLE,
    WORKER_ROLE,
)

# ---- report -----------------------------------------------------------------------------------
CPU_ORDER = [
    RUNNER_ROLE,
    WORKER_ROLE,
    *[label for label, _ in HEAD_ROLES],
    "bench client + Ray driver",
    "other Ray processes",
]


def cpu_table(
    title: str,
    columns: dict[str, dict[str, float]],
    machine: dict[str, dict[str, float]] | None = None,
) -> str:
    """CPU seconds by role for one or more runs (where the machine's 2 cores went); with
    ``machine``, the whole machine's busy and idle CPU seconds (/proc/stat) beneath."""
    roles = [r for r in CPU_ORDER if any(c.get(r, 0.0) >= 0.05 for c in columns.values())]
    rows = [[role, *(fmt(c.get(role, 0.0), 1) for c in columns.values())] for role in roles]
    rows.append(["total", *(fmt(sum(c.values()), 1) for c in columns.values())])
    if machine:
        for key, label in (
            ("busy", "machine busy (all processes)"),
            ("idle", "machine idle"),
            ("steal", "stolen by the host (other VMs)"),
        ):
            rows.append([label, *(fmt(m.get(key, 0.0), 1) for m in machine.values())])
    return table(title, ["process (CPU s)", *columns], rows)


def timeline_table(title: str, part: dict[str, Any]) -> str:
    rows = [[stage, f"{fmt(sec, 2)} s"] for stage, sec in part["timeline_s"].items()]
    return table(title, ["stage", "s"], rows)


def report(r: dict[str, Any]) -> bool:
    ok = True
    a = r.get("a")
    if a:
        o_ok = a["overhead_ms"] <= GOALS["overhead_ms"]
        rj_ok = a["ray_jobs_ratio"] >= GOALS["ray_jobs_ratio"] if a["ray_jobs_ratio"] else None
        ok &= o_ok and rj_ok is not False
        print(
            table(
                f"(a) submit -> end latency, trivial runner (median of {a['runs']}; "
                f"Ray Jobs median of {a['ray_jobs_runs']})",
                ["measure", "value", "goal", "verdict"],
                [
                    ["ours (POST + SSE until end)", f"{fmt(a['ours_ms'])} ms", "", ""],
                    ["bare spawn: python3 script.py", f"{fmt(a['spawn_ms'])} ms", "", ""],
                    ["Ray Jobs (JobSubmissionClient)", f"{fmt(a['ray_jobs_ms'])} ms", "", ""],
                    ["ours - spawn", f"{fmt(a['overhead_ms'])} ms", "<= 50 ms", verdict(o_ok)],
                    [
                        "ray jobs / spawn (ceiling of the ratio below)",
                        f"{fmt(a['ray_jobs_ms'] / a['spawn_ms'], 2) if a['ray_jobs_ms'] else '-'}x",
                        "",
                        "",
                    ],
                    [
                        "ray jobs / ours",
                        f"{fmt(a['ray_jobs_ratio'], 2)}x",
                        ">= 15x",
                        verdict(rj_ok),
                    ],
                ],
            )
        )
        rows = [[k, fmt(v)] for k, v in a["breakdown_ms"].items()]
        print(
            table(
                "(a) where ours goes: medians per stage, server timestamps (ms)",
                ["stage", "ms"],
                rows,
            )
        )
    b = r.get("b")
    if b:
        b_ok = b["fanout_ratio"] >= GOALS["fanout_ratio"]
        ok &= b_ok
        print(
            table(
                f"(b) {b['tasks']:,}-task fan-out, wall time submit -> end",
                ["measure", "value", "goal", "verdict"],
                [
                    [
                        "plain ray.remote(num_cpus=1) + subprocess",
                        f"{fmt(b['plain_s'], 2)} s",
                        "",
                        "",
                    ],
                    *[
                        [f"  run {k}", f"{fmt(sec, 2)} s", "", ""]
                        for k, sec in enumerate(b.get("plain_runs_s", []), 1)
                    ],
                    ["ours (fan_out.items, SSE until end)", f"{fmt(b['ours_s'], 2)} s", "", ""],
                    *[
                        [f"  run {k} (after plain run {k})", f"{fmt(sec, 2)} s", "", ""]
                        for k, sec in enumerate(b.get("ours_runs_s", []), 1)
                    ],
                    ["  of which POST /jobs", f"{fmt(b['ours_submit_s'], 2)} s", "", ""],
                    ["plain / ours", f"{b['fanout_ratio']:.2f}x", ">= 0.9x", verdict(b_ok)],
                ],
            )
        )
        print(
            cpu_table(
                "(b) CPU seconds by process, mean of each side's runs",
                {"plain Ray": b["cpu_s_plain"], "ours": b["cpu_s_ours"]},
                {"plain Ray": b.get("machine_s_plain", {}), "ours": b.get("machine_s_ours", {})},
            )
        )
        if b.get("timeline_s"):
            print(timeline_table("(b) where our wall time went (server timestamps)", b))
    c = r.get("c")
    if c:
        c_ok = c["items_per_s"] >= GOALS["items_per_s"]
        ok &= c_ok
        print(
            table(
                f"(c) {c['elements']:,} tiny elements, batch_size {c['batch_size']:,}",
                ["measure", "value", "goal", "verdict"],
                [
                    ["wall time submit -> end", f"{fmt(c['wall_s'], 2)} s", "", ""],
                    ["  of which POST /jobs", f"{fmt(c['submit_s'], 2)} s", "", ""],
                    ["items/s", fmt(c["items_per_s"], 0), ">= 20,000", verdict(c_ok)],
                    [
                        f"bare spawn, one {c['batch_size']:,}-element batch",
                        f"{fmt(c['batch_spawn_ms'])} ms",
                        "",
                        "",
                    ],
                    [
                        "ceiling: tasks x that spawn / cores",
                        fmt(c["spawn_ceiling_items_per_s"], 0),
                        "",
                        "",
                    ],
                    [
                        "results present (all pages)",
                        f"{c['results_checked']:,} / {c['elements']:,} in {c['result_pages']} pages",
                        "all",
                        verdict(c["results_checked"] == c["elements"]),
                    ],
                    [
                        "reading every page (GET /results)",
                        f"{c['results_read_s']:.2f} s",
                        "",
                        "",
                    ],
                ],
            )
        )
        print(cpu_table("(c) CPU seconds by process, submit -> end", {"ours": c["cpu_s"]}))
        if c.get("timeline_s"):
            print(timeline_table("(c) where the wall time went (server timestamps)", c))
    d = r.get("d")
    if d:
        d_ok = d["mb_per_job"] < GOALS["mb_per_job"]
        ok &= d_ok
        rows = [
            [
                role,
                fmt(d["rss_before_mb"].get(role), 1),
                fmt(d["rss_after_mb"].get(role), 1),
                fmt(d["rss_after_mb"].get(role, 0.0) - d["rss_before_mb"].get(role, 0.0), 1),
            ]
            for role in sorted(
                d["rss_before_mb"], key=lambda k: [x for x, _ in HEAD_ROLES].index(k)
            )
        ]
        rows.append(
            [
                "total",
                fmt(d["total_before_mb"]),
                fmt(d["total_after_mb"]),
                fmt(d["total_after_mb"] - d["total_before_mb"]),
            ]
        )
        print(
            table(
                f"(d) head RSS (MB) before/after {d['jobs']:,} queued (blocked) jobs",
                ["process", "before", "after", "delta"],
                rows,
            )
        )
        print(
            table(
                "",
                ["measure", "value", "goal", "verdict"],
                [
                    ["MB per queued job", f"{d['mb_per_job']:.3f}", "< 1 MB", verdict(d_ok)],
                    [
                        f"submit {d['jobs']:,} jobs (/jobs/batch)",
                        f"{fmt(d['submit_s'], 2)} s",
                        "",
                        "",
                    ],
                    ["trivial job latency with them queued", f"{fmt(d['probe_ms'])} ms", "", ""],
                    [
                        "PUT /cancel, 16 at a time",
                        f"{d['cancelled']:,} of {d['jobs']:,} in {fmt(d['cancel_s'], 1)} s",
                        "",
                        "",
                    ],
                    [
                        "jobs left open after cancelling the blocker",
                        str(d["open_jobs_at_end"]),
                        "0",
                        verdict(d["open_jobs_at_end"] == 0),
                    ],
                ],
            )
        )
    return bool(ok)
