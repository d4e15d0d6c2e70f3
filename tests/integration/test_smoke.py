from tests.support.helpers import wait_job


def test_quickstart_roundtrip(admin, make_project):
    script = (
        "import json, os\n"
        "p = json.load(open(os.environ['COMPUTALOT_TASK_PAYLOAD']))\n"
        "json.dump({'echo': p}, open(os.environ['COMPUTALOT_TASK_RESULT'], 'w'))\n"
    )
    name = make_project(admin, {"script.py": script})
    job = admin.post(
        "/api/v1/jobs",
        json={"project": name, "runner_command": ["python3", "script.py"], "payload": {"x": 1}},
    ).json()
    end = wait_job(admin, job["id"])
    assert end["status"] == "completed"
    results = admin.get(f"/api/v1/results/{job['id']}").json()
    assert results["aggregate_result"] == {"echo": {"x": 1}}
