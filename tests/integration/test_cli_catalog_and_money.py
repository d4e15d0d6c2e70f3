"""The CLI's recipe and money commands against the real server, as a user runs them: the
human view and ``--json`` (the API's answer as it is), and a bad name as one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

COMPUTALOT = Path(sys.executable).with_name("computalot")


def _cli(platform: Any, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMPUTALOT_URL": str(platform.url), "COMPUTALOT_TOKEN": token}
    env["COLUMNS"] = "80"  # what a pipe gets: ids must still be whole
    return subprocess.run(
        [str(COMPUTALOT), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_recipes_recipe_balance_and_ledger(
    platform: Any, admin: httpx.Client, new_account: Any
) -> None:
    member: httpx.Client = new_account()
    token = member.headers["Authorization"].split()[1]

    listed = _cli(platform, token, "recipes", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == member.get("/api/v1/recipes").json()
    shown = _cli(platform, token, "recipes")
    assert shown.returncode == 0 and "packing" in shown.stdout and "lightgbm_train" in shown.stdout

    one = _cli(platform, token, "recipe", "packing")
    assert one.returncode == 0, one.stderr
    assert "eval_batch" in one.stdout and "OPERATION" in one.stdout
    detail = json.loads(_cli(platform, token, "recipe", "packing", "--json").stdout)
    assert detail["name"] == "packing" and "payload_schema" in detail

    missing = _cli(platform, token, "recipe", "no-such-recipe")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr + missing.stdout
    assert "not_found" in missing.stderr or "no-such-recipe" in missing.stderr, missing.stderr

    money = json.loads(_cli(platform, token, "balance", "--json").stdout)
    assert money == member.get("/api/v1/account/balance").json()
    human = _cli(platform, token, "balance")
    assert human.returncode == 0 and "available" in human.stdout

    entries = json.loads(_cli(platform, token, "ledger", "--json", "--limit", "5").stdout)
    assert entries == member.get("/api/v1/account/ledger", params={"limit": 5}).json()
    assert entries["entries"], "the new account's opening grant is in its ledger"
    table = _cli(platform, token, "ledger")
    assert table.returncode == 0
    for entry in entries["entries"]:
        assert entry["id"] in table.stdout  # never cut, even at 80 columns
