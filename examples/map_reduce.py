"""map_reduce with the Python SDK: estimate pi from 400,000 samples in 8 chunks, reduced by the platform.

Run against `computalot up`: COMPUTALOT_TOKEN=$(cat .computalot/admin_key) python examples/map_reduce.py
(COMPUTALOT_URL picks another platform). Each task draws its chunk's samples; ``reduce`` sums the
hits and the samples, averages the per-chunk estimates and bins them in a histogram.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from computalot import ComputalotClient
from computalot.sdk.errors import Conflict

RUNNER = """
import json, os, random
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
rng = random.Random(p["chunk"]["index"])
inside = sum(1 for _ in range(p["samples"]) if rng.random() ** 2 + rng.random() ** 2 <= 1)
result = {"inside": inside, "samples": p["samples"], "pi": 4 * inside / p["samples"]}
result["spread"] = result["pi"]
json.dump(result, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))
"""


def main() -> None:
    client = ComputalotClient()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pi.py").write_text(RUNNER)
        try:
            client.create_project("map-reduce-example")
        except Conflict:
            pass
        client.push_project("map-reduce-example", tmp)
    job = client.submit_job(
        project="map-reduce-example",
        type="map_reduce",
        runner_command=["python3", "pi.py"],
        split={"range_field": "samples", "total": 400_000, "chunks": 8},
        reduce={
            "inside": "sum",
            "samples": "sum",
            "pi": "weighted_mean:samples",
            "spread": "histogram:4",
        },
    )
    done = client.wait(job["id"], timeout=600)
    aggregate = client.get_results(job["id"])["aggregate_result"]
    print(
        f"job {job['id']} {done['status']}: pi ~ {4 * aggregate['inside'] / aggregate['samples']}"
    )
    print(json.dumps(aggregate, indent=2))


if __name__ == "__main__":
    main()
