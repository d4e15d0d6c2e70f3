"""A parameter sweep with the Python SDK: push a tiny project, run a 15-point grid, print the ranking.

Run against `computalot up`: COMPUTALOT_TOKEN=$(cat .computalot/admin_key) python examples/sweep.py
(COMPUTALOT_URL picks another platform). Each task "trains" a toy model whose validation loss is
a known function of ``lr`` and ``depth``, so the best point is easy to check: lr 0.01, depth 5.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from computalot import ComputalotClient
from computalot.sdk.errors import Conflict

RUNNER = """
import json, math, os
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
val_loss = (math.log10(p["lr"]) + 2) ** 2 + 0.1 * (p["depth"] - 5) ** 2 + p["noise"]
json.dump({"val_loss": round(val_loss, 6)}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def main() -> None:
    client = ComputalotClient()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "train.py").write_text(RUNNER)
        try:
            client.create_project("sweep-example")
        except Conflict:
            pass
        client.push_project("sweep-example", tmp)
    job = client.submit_job(
        project="sweep-example",
        type="sweep",
        runner_command=["python3", "train.py"],
        parameters={
            "lr": {"min": 1e-4, "max": 1, "num": 5, "scale": "log"},
            "depth": [3, 5, 7],
        },
        fixed_payload={"noise": 0.01},
        rank_by={"field": "val_loss", "order": "min"},
    )
    done = client.wait(job["id"], timeout=600)
    aggregate = client.get_results(job["id"])["aggregate_result"]
    print(f"job {job['id']} {done['status']}: {len(aggregate['ranking'])} points ranked")
    # The top 3 of the ranking; the full one is in aggregate_result.ranking.
    print(json.dumps({**aggregate, "ranking": aggregate["ranking"][:3]}, indent=2))


if __name__ == "__main__":
    main()
