"""``engine.project_init`` on this host without Ray, unconfined (COMPUTALOT_SANDBOX=none's
path; the sandboxed path runs in tests/integration/test_project_init.py): init runs once per
node however many processes ask together, a failure names its check and leaves no marker, a new
generation runs it again, and cache mounts are per project."""

from __future__ import annotations

import multiprocessing
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from computalot.engine import project_init
from computalot.engine.project_init import WarmPlan, cache_env, ensure_warm, place_cache_mounts


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Markers, caches and scratch copies under this test's own directory."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "node-tmp"))
    (tmp_path / "node-tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)


def _plan(count: Path, *, check: str = "print('fine')", generation: int = 0) -> WarmPlan:
    append = f"open({str(count)!r}, 'a').write('x'); import time; time.sleep(0.2)"
    return WarmPlan(
        project_id=f"prj_{uuid.uuid4().hex[:8]}",
        account_id="acct_test",
        revision_id="rev_test",
        generation=generation,
        commands=({"label": "count", "command": [sys.executable, "-c", append]},),
        validation={
            "executables": ["sh"],
            "files": ["job.py"],
            "commands": [{"label": "probe", "command": [sys.executable, "-c", check]}],
        },
        cache_mounts=(("data", ".cache/data", "DATA_CACHE"),),
    )


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "revision"
    source.mkdir(exist_ok=True)
    (source / "job.py").write_text("print('job')\n")
    return source


def _warm_in_child(args: tuple[WarmPlan, str, str]) -> Any:
    plan, source, tmpdir = args
    import os
    import tempfile

    os.environ["TMPDIR"] = tmpdir
    tempfile.tempdir = None
    return ensure_warm(plan, None, Path(source))


def test_init_runs_once_per_node_however_many_processes_ask_together(tmp_path: Path) -> None:
    count = tmp_path / "count"
    plan = _plan(count)
    source = _source(tmp_path)
    args = [(plan, str(source), str(tmp_path / "node-tmp"))] * 4
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        reports = pool.map(_warm_in_child, args)
    ran = [r for r in reports if r is not None]
    assert len(ran) == 1 and ran[0]["state"] == "ready", reports
    assert count.read_text() == "x", "the init command ran once"
    labels = [c["label"] for c in ran[0]["validation"]]
    assert labels == ["executable sh", "file job.py", "probe"]
    assert all(c["ok"] for c in ran[0]["validation"])
    cached = ensure_warm(plan, None, source, report_cached=True)
    assert cached is not None and cached["state"] == "ready" and count.read_text() == "x"

    again = ensure_warm(WarmPlan(**{**plan.__dict__, "generation": 1}), None, source)
    assert again is not None and again["state"] == "ready"
    assert count.read_text() == "xx", "a new generation (invalidate) runs init again"


def test_a_failing_check_names_itself_with_its_output_and_leaves_no_marker(
    tmp_path: Path,
) -> None:
    count = tmp_path / "count"
    plan = _plan(count, check="import sys; print('weights missing'); sys.exit(3)")
    source = _source(tmp_path)
    report = ensure_warm(plan, None, source)
    assert report is not None and report["state"] == "failed"
    assert report["error"]["code"] == "init_failed" and report["error"]["check"] == "probe"
    assert "weights missing" in report["error"]["output"]
    probe = report["validation"][-1]
    assert probe["ok"] is False and "exited with code 3" in probe["output"]
    assert ensure_warm(plan, None, source) is not None, "no marker: the next task tries again"
    assert count.read_text() == "xx"


def test_a_failing_init_command_stops_before_validation(tmp_path: Path) -> None:
    plan = WarmPlan(
        project_id="prj_a",
        account_id="acct_a",
        revision_id="rev_a",
        commands=(
            {"label": "boom", "command": [sys.executable, "-c", "raise SystemExit('no disk')"]},
        ),
        validation={"files": ["job.py"]},
    )
    report = ensure_warm(plan, None, _source(tmp_path))
    assert report is not None and report["state"] == "failed"
    assert report["error"]["check"] == "boom" and "no disk" in report["error"]["output"]
    assert report["validation"] == []


def test_cache_mounts_are_kept_per_project_and_never_shared(tmp_path: Path) -> None:
    one, two = _plan(tmp_path / "c1"), _plan(tmp_path / "c2")
    first = tmp_path / "work-1"
    first.mkdir()
    ((host, point),) = place_cache_mounts(one, first, None)
    assert point == first / ".cache/data" and point.resolve() == host.resolve()
    (point / "weights.bin").write_text("w")
    later = tmp_path / "work-2"
    later.mkdir()
    ((_host_again, point_again),) = place_cache_mounts(one, later, None)
    assert (point_again / "weights.bin").read_text() == "w", "kept across tasks"
    other = tmp_path / "work-3"
    other.mkdir()
    ((host_other, point_other),) = place_cache_mounts(two, other, None)
    assert host_other != host and not (point_other / "weights.bin").exists()
    assert cache_env(one, "/task/work") == {"DATA_CACHE": "/task/work/.cache/data"}
    assert project_init.CACHE_ROOT in str(host)
