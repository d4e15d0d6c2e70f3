"""The SDK quickstart (docs/python-sdk.md): the recipe catalog and your last five jobs.

Run against `computalot up`:
    COMPUTALOT_URL=http://127.0.0.1:8000 COMPUTALOT_TOKEN=$(cat .computalot/admin_key) \
        python examples/sdk_quickstart.py
"""

from __future__ import annotations

import os

from computalot import ComputalotClient

client = ComputalotClient(
    controller_url=os.environ.get("COMPUTALOT_URL", "http://127.0.0.1:8000"),
    token=os.environ.get("COMPUTALOT_TOKEN", "YOUR_TOKEN"),
)
recipes = client.list_recipes()
jobs = client.list_jobs(limit=5)
print(len(recipes.get("recipes", [])))
print(len(jobs.get("jobs", [])))
for recipe in recipes.get("recipes", []):
    print("recipe", recipe["name"], len(recipe.get("operations", [])), "operations")
for job in jobs.get("jobs", []):
    print("job", job["id"], job["status"])
