"""Semicircle packing with the sealed `packing` recipe: optimise, watch, re-check, continue.

Runs `basin_hopping` on two CPUs for a short budget while printing its progress events, scores
the best candidate again with `eval`, then starts `feasible_optimize` from the best-candidate
artifact of the first run.

Run against `computalot up`:
    COMPUTALOT_TOKEN=$(cat .computalot/admin_key) python examples/packing_optimize.py [seconds]
"""

from __future__ import annotations

import sys

from computalot import ComputalotClient


def optimise(client: ComputalotClient, payload: dict, budget_s: float) -> dict:
    job = client.submit_recipe_job(
        "packing",
        {**payload, "time_budget_s": budget_s},
        requirements={"cpu": 2},
        timeout_s=int(budget_s) + 120,
    )
    for event in client.stream(job["id"]):
        if event["event"] == "progress":
            p = event["data"]["progress"]
            print(f"progress {p.get('fraction', 0):.2f} best valid radius {p.get('best_score')}")
    done = client.get_job(job["id"])
    if done["status"] != "completed":
        sys.exit(f"job {job['id']} ended {done['status']}: {done.get('error')}")
    return dict(client.get_results(job["id"])["aggregate_result"])


def main() -> None:
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    client = ComputalotClient()
    first = optimise(client, {"operation": "basin_hopping", "seed": 1}, budget)
    print(f"basin_hopping: radius {first['best_score']:.6f} valid {first['valid']}")
    check = client.submit_recipe_job("packing", {"candidate": first["best_candidate"]})
    client.wait(check["id"], timeout=120)
    verdict = client.get_results(check["id"])["aggregate_result"]
    print(f"eval: radius {verdict['score']} valid {verdict['valid']}")
    start = first["best_candidate_artifact"]
    second = optimise(
        client, {"operation": "feasible_optimize", "candidate_ref": start, "seed": 2}, budget
    )
    print(f"feasible_optimize from {start}: radius {second['best_score']:.6f}")
    print({"first": first["best_score"], "eval": verdict["score"], "second": second["best_score"]})


if __name__ == "__main__":
    main()
