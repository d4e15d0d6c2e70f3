"""The seed's SDK snippet, as a new user would paste it, against the real server (issue #20:
"nothing tests it against the real server"): the recipe catalog and the caller's last five jobs,
with the keys the snippet reads."""

from __future__ import annotations

from typing import Any

import httpx

from computalot import ComputalotClient
from tests.support.helpers import submit_job, wait_job


def test_the_seed_snippet_lists_recipes_and_jobs(
    platform: Any, new_account: Any, make_project: Any
) -> None:
    member: httpx.Client = new_account()
    project = make_project(member, {"runner.py": "print('hi')\n"})
    for _ in range(6):
        wait_job(member, submit_job(member, project))
    token = member.headers["Authorization"].split()[1]

    client = ComputalotClient(controller_url=str(platform.url), token=token)
    try:
        recipes = client.list_recipes()
        jobs = client.list_jobs(limit=5)
    finally:
        client.close()

    names = {recipe["name"] for recipe in recipes.get("recipes", [])}
    assert {"packing", "lightgbm_train", "prop_amm", "echidna"} <= names
    assert len(jobs.get("jobs", [])) == 5  # six jobs exist: the limit holds, newest first
    created = [job["created_at"] for job in jobs["jobs"]]
    assert created == sorted(created, reverse=True)
