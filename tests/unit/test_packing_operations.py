"""The packing recipe's payload, ``eval`` and ``eval_batch`` (docs/recipes.md, "packing")."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from recipes.context import LocalContext, RecipeFailure
from recipes.packing import operations
from recipes.packing.recipe import EXAMPLE_CANDIDATE, RECIPE
from recipes.packing.schema import PackingPayload
from recipes.packing.scoring import evaluate, evaluate_batch


def _payload(**fields: Any) -> PackingPayload:
    return PackingPayload(**fields)


def _error_fields(exc: ValidationError) -> list[str]:
    return [".".join(str(p) for p in err["loc"]) for err in exc.errors()]


def _batch(n: int, seed: int = 0) -> np.ndarray:
    """Copies of the example: even rows spread out by random factors (valid, each radius
    different), odd rows jittered (mostly overlapping)."""
    rng = np.random.default_rng(seed)
    out = np.array(EXAMPLE_CANDIDATE) + rng.normal(0.0, 0.05, (n, 45))
    scale = rng.uniform(1.0, 1.3, n // 2 + n % 2)[:, None]
    out[0::2] = np.array(EXAMPLE_CANDIDATE)
    out[0::2, 0::3] *= scale
    out[0::2, 1::3] *= scale
    return out


def test_recipe_module_is_light() -> None:
    code = (
        "import sys, recipes.packing.recipe as r; "
        "assert r.RECIPE.name == 'packing'; "
        "assert 'numpy' not in sys.modules and 'scipy' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_examples_are_valid_payloads() -> None:
    assert RECIPE.default_operation == "eval"
    assert [op.name for op in RECIPE.operations] == [
        "eval",
        "eval_batch",
        "feasible_optimize",
        "basin_hopping",
        "differential_evolution",
    ]
    for example in RECIPE.examples:
        payload = PackingPayload(**example["payload"])
        assert payload.problems() == [], example
    for name, field in PackingPayload.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([0.0] * 44, "candidate"),
        ([0.0] * 44 + [float("nan")], "candidate.44"),
        ([float("inf")] + [0.0] * 44, "candidate.0"),
    ],
)
def test_bad_candidates_are_refused_naming_the_field(value: list[float], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _payload(candidate=value)
    assert field in _error_fields(exc.value)


def test_payload_rules_name_the_field() -> None:
    assert _payload(candidate=EXAMPLE_CANDIDATE).problems() == []
    assert [f for f, _ in _payload().problems()] == ["candidate"]
    both = _payload(candidate=EXAMPLE_CANDIDATE, candidate_ref="art_x")
    assert [f for f, _ in both.problems()] == ["candidate"]
    assert [f for f, _ in _payload(operation="eval_batch").problems()] == ["candidates"]
    wrong = _payload(candidate=EXAMPLE_CANDIDATE, hop_scale=0.2, population_size=8)
    messages = dict(wrong.problems())
    assert "only applies to" in messages["hop_scale"]
    assert "differential_evolution" in messages["population_size"]
    opt = _payload(operation="basin_hopping", candidate=EXAMPLE_CANDIDATE, candidate_ref="art_a")
    assert [f for f, _ in opt.problems()] == ["candidate_ref"]
    assert _payload(operation="differential_evolution", population_size=8).problems() == []
    with pytest.raises(ValidationError) as exc:
        _payload(candidate_ref="not-an-id")
    assert "candidate_ref" in _error_fields(exc.value)
    with pytest.raises(ValidationError) as exc:
        _payload(operation="eval_batch", candidates=[[0.0] * 45, [0.0] * 46])
    assert "candidates.1" in _error_fields(exc.value)
    with pytest.raises(ValidationError):
        _payload(candidate=EXAMPLE_CANDIDATE, bogus=1)


def test_eval_matches_the_kernel(tmp_path: Path) -> None:
    ctx = LocalContext(tmp_path)
    result = operations.run_eval(ctx, _payload(candidate=EXAMPLE_CANDIDATE, penalty=5.0))
    assert result == evaluate(EXAMPLE_CANDIDATE, 5.0)
    assert result["valid"] and math.isclose(result["score"], result["mec"]["r"])
    json.dumps(result, allow_nan=False)


def test_candidate_ref_accepts_a_list_or_a_best_candidate_object(tmp_path: Path) -> None:
    plain, obj, best = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    plain.write_text(json.dumps(EXAMPLE_CANDIDATE))
    obj.write_text(json.dumps({"candidate": EXAMPLE_CANDIDATE, "score": 4.0}))
    best.write_text(json.dumps({"best_candidate": EXAMPLE_CANDIDATE}))
    expected = evaluate(EXAMPLE_CANDIDATE)
    for path in (plain, obj, best):
        ctx = LocalContext(tmp_path / "out", inputs={"candidate_ref": path})
        assert operations.run_eval(ctx, _payload(candidate_ref="art_x")) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2, 3]", "candidate_ref: candidate must have 45 numbers"),
        (json.dumps([0.0] * 44 + [float("nan")]), "candidate_ref: candidate[44] is not finite"),
        ('{"score": 1}', 'candidate_ref: a JSON object must hold a "candidate"'),
        ("not json", "candidate_ref: not a readable JSON file"),
        ('"text"', "candidate_ref: expected a list of 45 numbers"),
    ],
)
def test_bad_candidate_ref_is_a_recipe_failure(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cand.json"
    path.write_text(content)
    ctx = LocalContext(tmp_path / "out", inputs={"candidate_ref": path})
    with pytest.raises(RecipeFailure) as exc:
        operations.run_eval(ctx, _payload(candidate_ref="art_x"))
    assert exc.value.message.startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}', "candidates_ref: expected a JSON list"),
        (json.dumps([[0.0] * 45, [0.0] * 45, [0.0] * 44]), "candidates_ref[2]: expected 45"),
        (json.dumps([[0.0] * 45, 3]), "candidates_ref[1]: expected a list"),
        (json.dumps([[0.0] * 45, [0.0] * 44 + [float("inf")]]), "candidates_ref: candidates[1]"),
    ],
)
def test_bad_candidates_ref_is_a_recipe_failure(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "batch.json"
    path.write_text(content)
    ctx = LocalContext(tmp_path / "out", inputs={"candidates_ref": path})
    with pytest.raises(RecipeFailure) as exc:
        operations.run_eval_batch(ctx, _payload(operation="eval_batch", candidates_ref="art_x"))
    assert exc.value.message.startswith(message)


def test_eval_batch_from_a_ref_equals_the_kernel(tmp_path: Path) -> None:
    batch = _batch(50)
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch.tolist()))
    ctx = LocalContext(tmp_path / "out", inputs={"candidates_ref": path})
    result = operations.run_eval_batch(
        ctx, _payload(operation="eval_batch", candidates_ref="art_x")
    )
    assert result == evaluate_batch(batch.tolist())
    assert 0 < result["n_valid"] < 50


def test_eval_batch_chunked_equals_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(1_200, seed=3)
    batch[100] = batch[700] = EXAMPLE_CANDIDATE  # the smallest, in both chunks: the first wins
    payload = _payload(operation="eval_batch", candidates=batch.tolist())
    whole = operations.run_eval_batch(LocalContext(tmp_path / "one", cpus=1), payload)
    calls: list[int] = []

    class Counting(LocalContext):
        def parallel(self, fn: Any, calls_: Any, *, num_cpus: float = 1) -> list[Any]:
            calls.append(len(calls_))
            return super().parallel(fn, calls_, num_cpus=num_cpus)

    monkeypatch.setattr(operations, "CHUNK_ABOVE", 500)
    chunked = operations.run_eval_batch(Counting(tmp_path / "two", cpus=2), payload)
    assert calls and calls[0] >= 2
    assert chunked == whole
    assert whole["best_index"] == 100 and 550 < whole["n_valid"] < 1_200
