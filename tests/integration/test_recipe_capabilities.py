"""Worker capabilities through real HTTP and real Ray (docs/recipes.md, "Worker capabilities"):
the session's node declares what this machine has as Ray custom resources, ``GET /recipes``
says per operation whether the cluster can run it now, operations whose capability no alive
node has are refused at submit with 409 ``not_available`` naming it (nothing is created), and
an operation whose capability the node has runs (its task asks Ray for that resource)."""

from __future__ import annotations

import base64
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from computalot.capabilities import detect
from tests.support.helpers import assert_envelope, wait_job

API = "/api/v1"
STRATEGIES = Path(__file__).parent / "prop_amm_strategies"
HAS = set(detect())


@pytest.fixture(scope="module")
def member(new_account: Callable[..., httpx.Client]) -> httpx.Client:
    return new_account()


def _ops(client: httpx.Client, name: str) -> dict[str, dict[str, Any]]:
    answer = client.get(f"{API}/recipes/{name}")
    assert answer.status_code == 200, answer.text
    return {op["name"]: op for op in answer.json()["operations"]}


def test_the_node_declares_this_machines_capabilities(platform: Any) -> None:
    resources = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for name in ("rustc", "sbf", "echidna"):
        declared = any(r.get(name, 0.0) >= 1.0 for r in resources)
        assert declared == (name in HAS), name


def test_prop_amm_says_per_operation_what_runs_here(member: httpx.Client) -> None:
    ops = _ops(member, "prop_amm")
    native = ("eval", "eval_chunk", "validate", "concavity_check", "build")
    bpf = ("bpf_eval", "bpf_eval_chunk", "validate_full")
    assert set(ops) == {*native, *bpf}
    for name in native:
        assert ops[name]["capability"] == "rustc"
        assert ops[name]["available"] == ("rustc" in HAS), ops[name]
        assert (ops[name]["reason"] is None) == ("rustc" in HAS)
    for name in bpf:
        op = ops[name]
        assert op["capability"] == "sbf" and op["available"] is False
        assert op["description"] and "sbf" in str(op["reason"])


@pytest.mark.skipif("echidna" in HAS, reason="this machine runs echidna")
def test_the_catalog_shows_echidna_unavailable_naming_its_capability(
    member: httpx.Client,
) -> None:
    listed = {r["name"]: r for r in member.get(f"{API}/recipes").json()["recipes"]}
    assert listed["echidna"]["available"] is False
    assert "'echidna'" in listed["echidna"]["unavailable_reason"]
    ops = _ops(member, "echidna")
    assert {op["capability"] for op in ops.values()} == {"echidna"}
    assert not any(op["available"] for op in ops.values())


@pytest.mark.parametrize("operation", ["bpf_eval", "bpf_eval_chunk", "validate_full"])
def test_bpf_operations_are_refused_naming_sbf(member: httpx.Client, operation: str) -> None:
    before = member.get(f"{API}/jobs").json()
    source = (STRATEGIES / "constant_product_5pct.rs").read_bytes()
    payload = {"operation": operation, "rs_source_b64": base64.b64encode(source).decode()}
    for answer in (
        member.post(f"{API}/recipes/prop_amm/jobs", json={"payload": payload}),
        member.post(f"{API}/jobs", json={"recipe": "prop_amm", "payload": payload}),
    ):
        err = assert_envelope(answer, 409, "not_available")
        detail = err["details"][0]
        assert (detail["capability"], detail["operation"]) == ("sbf", operation)
        assert "'sbf'" in err["message"] and err["recommended_action"]
    assert member.get(f"{API}/jobs").json() == before  # nothing was created


def _project_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in {
            "token/foundry.toml": b"[profile.default]\n",
            "token/out/Token.sol/Token.json": b"{}",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.skipif("echidna" in HAS, reason="this machine runs echidna")
@pytest.mark.parametrize("operation", ["foundry_prebuilt", "hardhat_prebuilt"])
def test_echidna_operations_are_refused_naming_echidna(
    member: httpx.Client, operation: str
) -> None:
    uploaded = member.post(
        f"{API}/artifacts",
        content=_project_tarball(),
        headers={"X-Artifact-Filename": "token.tar.gz"},
    )
    assert uploaded.status_code == 201, uploaded.text
    before = member.get(f"{API}/jobs").json()
    payload = {
        "operation": operation,
        "project_ref": uploaded.json()["id"],
        "contract": "Token",
        "stop_on_fail": True,
        "seed": 7,
    }
    err = assert_envelope(
        member.post(f"{API}/recipes/echidna/jobs", json={"payload": payload}),
        409,
        "not_available",
    )
    assert err["details"][0]["capability"] == "echidna"
    assert member.get(f"{API}/jobs").json() == before


def test_a_bad_echidna_payload_is_still_a_422_first(member: httpx.Client) -> None:
    answer = member.post(
        f"{API}/recipes/echidna/jobs",
        json={"payload": {"project_ref": "art_x", "contract": "T", "workers": 0}},
    )
    err = assert_envelope(answer, 422, "validation_error")
    assert err["details"][0]["loc"] == ["payload", "workers"]


@pytest.mark.skipif("rustc" not in HAS, reason="no cargo + Debian crates on this machine")
def test_a_native_operation_runs_on_the_node_that_declares_rustc(member: httpx.Client) -> None:
    source = (STRATEGIES / "constant_product_5pct.rs").read_bytes()
    payload = {"operation": "validate", "rs_source_b64": base64.b64encode(source).decode()}
    answer = member.post(f"{API}/recipes/prop_amm/jobs", json={"payload": payload})
    assert answer.status_code == 201, answer.text
    job = wait_job(member, answer.json()["id"], timeout_s=900)
    assert job["status"] == "completed", job
    result = member.get(f"{API}/results/{job['id']}").json()["aggregate_result"]
    assert result["passed"] is True
