"""Fan-out with the Python SDK: push a project, submit 20 chunks, watch live, read the merge.

Run against `computalot up`: COMPUTALOT_TOKEN=$(cat .computalot/admin_key) python examples/sdk_fanout.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from computalot import ComputalotClient
from computalot.sdk.errors import Conflict

RUNNER = """
import json, os, random
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
c = p["chunk"]
rng = random.Random(c["index"])
inside = sum(1 for _ in range(p["samples"]) if rng.random() ** 2 + rng.random() ** 2 <= 1)
print("COMPUTALOT_PROGRESS:" + json.dumps({"chunk": c["index"]}))
json.dump({"pi": 4 * inside / p["samples"]}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def main() -> None:
    client = ComputalotClient()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pi.py").write_text(RUNNER)
        try:
            client.create_project("pi-example")
        except Conflict:
            pass
        client.push_project("pi-example", tmp)
    job = client.submit_job(
        project="pi-example",
        runner_command=["python3", "pi.py"],
        payload={"samples": 20000},
        fan_out={"chunks": 20, "range_field": "samples", "total": 400000},
        merge_strategy="weighted_avg",
    )
    for event in client.stream(job["id"]):
        if event["event"] == "progress":
            print("progress", event["data"]["progress"])
    print(client.get_results(job["id"])["aggregate_result"])


if __name__ == "__main__":
    main()
