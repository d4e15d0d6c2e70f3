"""Ids in the CLI's tables are never cut: a user copies them into the next command, whatever
the terminal's width or when the output goes to a pipe (rich then assumes 80 columns)."""

from __future__ import annotations

import io

from rich.console import Console

from computalot.cli.render import artifacts_table, human_size, jobs_table, kv_table, projects_table

JOB = {
    "id": "job_g620jXq8Rk2Lh7zPqY5wTA",
    "status": "completed",
    "type": "structured_runner",
    "project": "a-project-with-a-rather-long-name-indeed",
    "task_counts": {"total": 10000, "completed": 9999},
    "progress": 0.9999,
    "created_at": "2026-12-06T01:14:41.701300Z",
}


def _render(table: object, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


def test_job_ids_are_whole_at_80_columns_and_narrower() -> None:
    jobs = [JOB, {**JOB, "id": "job_AAAAAAAAAAAAAAAAAAAAAA", "status": "failed"}]
    for width in (80, 60, 40):
        text = _render(jobs_table(jobs), width)
        for job in jobs:
            assert job["id"] in text, (width, text)


def test_project_names_and_revision_ids_are_whole() -> None:
    project = {
        "name": "quickstart-project-17327",
        "description": "a description long enough to need wrapping at eighty columns " * 2,
        "active_revision": {"id": "rev_DCsTvN3WVwT-bKPuiNVAug", "files": 12, "pushed_at": "x"},
    }
    text = _render(projects_table([project]), 80)
    assert project["name"] in text and "rev_DCsTvN3WVwT-bKPuiNVAug" in text


def test_artifact_ids_and_kv_keys_are_whole_at_80_columns_and_narrower() -> None:
    artifact = {
        "id": "art_Zq8Rk2Lh7zPqY5wTAg620j",
        "filename": "a-training-set-with-a-name-long-enough-to-wrap-at-eighty.parquet",
        "size": 3 * 1024 * 1024 * 1024 + 5,
        "created_at": "2026-12-06T01:14:41.701300Z",
    }
    key = {"key": "runs/2026-12-06/sweep-lr-0.01-depth-5/best", "version": 12, "updated_at": "x"}
    for width in (80, 50):
        assert artifact["id"] in _render(artifacts_table([artifact]), width)
        assert key["key"] in _render(kv_table([key]), width)
    assert "3.0 GiB" in _render(artifacts_table([artifact]), 120)
    assert [human_size(n) for n in (0, 1023, 1536, None)] == ["0 B", "1023 B", "1.5 KiB", ""]
