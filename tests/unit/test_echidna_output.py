"""The echidna recipe without echidna (docs/recipes.md, "echidna"): its report parser on
recorded output in echidna's own formats (tests/fixtures/echidna, each citing the echidna
source it follows), its command line, and the unpacking of a prebuilt project."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from recipes.context import RecipeFailure
from recipes.echidna.command import REPORT_MARGIN_S, echidna_argv, echidna_config, write_config
from recipes.echidna.operations import _result
from recipes.echidna.output import parse_json_report, parse_output, parse_text_report
from recipes.echidna.project import check_prebuilt, unpack_project
from recipes.echidna.recipe import EchidnaPayload

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "echidna"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_the_json_report_is_read_with_its_shrunk_sequence_and_coverage() -> None:
    result = parse_output(fixture("json_foundry_solved.out"))
    assert result["format"] == "json" and result["seed"] == 424242
    statuses = [(t["name"], t["status"], t["echidna_status"]) for t in result["tests"]]
    assert statuses == [
        ("echidna_balance_under_1000", "failed", "solved"),  # named from its log line
        ("name", "passed", "fuzzing"),  # echidna's JSON leaves the others unnamed
        ("name", "error", "error"),
    ]
    failed = result["tests"][0]
    assert failed["reason"] == "ReturnFalse"
    assert [(c["function"], c["arguments"]) for c in failed["call_sequence"]] == [
        ("airdrop", []),
        ("transfer", ["0x0000000000000000000000000000000000010000", "1001"]),
    ]
    assert result["tests"][2]["error"].startswith("UnknownFailure")
    assert result["counts"] == {"passed": 1, "failed": 1, "error": 1}
    # 5 covered instructions (the -1 entry is not one) over 2 codehashes; calls and corpus
    # from the last [status] line
    assert result["coverage"] == {"instructions": 5, "codehashes": 2, "corpus_size": 4}
    assert result["total_calls"] == 50000


def test_the_text_report_is_read_after_the_last_status_line() -> None:
    result = parse_output(fixture("text_hardhat_mixed.out"))
    assert result["format"] == "text"
    by_name = {t["name"]: t for t in result["tests"]}
    assert list(by_name) == [
        "echidna_solvent",
        "echidna_owner_fixed",
        "echidna_paused_blocks",
        "echidna_config",
        "echidna_max_shares",
    ]
    solvent = by_name["echidna_solvent"]
    assert (solvent["status"], solvent["reason"]) == ("failed", "ReturnFalse")
    calls = solvent["call_sequence"]
    assert [(c["contract"], c["function"], c["arguments"]) for c in calls] == [
        ("Vault", "deposit", ["100"]),
        ("Vault", "withdraw", ["101"]),
        (None, "*wait*", None),
    ]
    assert calls[1]["text"] == "Vault.withdraw(101) Value: 0x5"
    assert by_name["echidna_owner_fixed"]["status"] == "passed"
    assert by_name["echidna_paused_blocks"]["echidna_status"] == "passed"
    config = by_name["echidna_config"]
    assert config["status"] == "error" and config["error"].startswith("UnknownFailure")
    shares = by_name["echidna_max_shares"]
    assert shares["max_value"] == "7"
    assert shares["call_sequence"][0]["arguments"] == ["(1,2)", "[3,4]"]
    assert result["counts"] == {"passed": 3, "failed": 1, "error": 1}
    assert result["coverage"] == {"instructions": 931, "codehashes": 2, "corpus_size": 5}
    assert (result["seed"], result["total_calls"]) == (7, 10000)


def test_the_same_campaign_reads_alike_in_both_formats() -> None:
    report = {
        "success": True,
        "error": None,
        "seed": 1,
        "coverage": {"0xaa": [[0, 1, 1], [3, 1, 1]]},
        "tests": [
            {
                "contract": "",
                "name": "name",
                "status": "passed",
                "error": None,
                "reason": None,
                "events": [],
                "type": "property",
                "transactions": None,
            }
        ],
    }
    text = "echidna_ok:  passed! 🎉\n\nUnique instructions: 2\nUnique codehashes: 1\nSeed: 1\n"
    from_json, from_text = parse_json_report(report), parse_text_report(text)
    for key in ("counts", "seed"):
        assert from_json[key] == from_text[key]
    assert from_json["coverage"]["instructions"] == from_text["coverage"]["instructions"] == 2


def test_output_without_a_report_is_refused() -> None:
    log = "[2026-01-05 10:00:00.12] [Worker 0] New coverage: 10 instr, 1 contracts, 1 seqs\n"
    with pytest.raises(ValueError):
        parse_output(log)
    with pytest.raises(ValueError):
        parse_output("")
    truncated = fixture("json_foundry_solved.out")[:-40]  # killed mid-report
    with pytest.raises(ValueError):
        parse_output(truncated)


def payload(**fields: object) -> EchidnaPayload:
    return EchidnaPayload.model_validate(
        {"project_ref": "art_abc", "contract": "TokenTest", **fields}
    )


def test_the_command_line_carries_every_setting() -> None:
    argv = echidna_argv(
        payload(
            test_mode="assertion",
            test_limit=1234,
            seq_len=7,
            shrink_limit=99,
            seed=42,
            workers=3,
            stop_on_fail=True,
        ),
        target="project/app",
        config="cfg.json",
        time_left_s=600.0,
    )
    assert argv[:2] == ["echidna", "project/app"]
    pairs = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert pairs["--contract"] == "TokenTest"
    assert pairs["--test-mode"] == "assertion" and pairs["--test-limit"] == "1234"
    assert pairs["--seq-len"] == "7" and pairs["--shrink-limit"] == "99"
    assert pairs["--workers"] == "3" and pairs["--format"] == "json"
    assert pairs["--config"] == "cfg.json"
    assert argv[argv.index("--seed") + 1] == "42"
    assert argv[argv.index("--timeout") + 1] == str(int(600 - REPORT_MARGIN_S))
    assert "--crytic-args=--foundry-ignore-compile" in argv
    hardhat = echidna_argv(
        payload(operation="hardhat_prebuilt"), target=".", config="c", time_left_s=5.0
    )
    assert "--crytic-args=--hardhat-ignore-compile" in hardhat
    assert "--seed" not in hardhat and "--timeout" not in hardhat  # too little time: killed


def test_stop_on_fail_goes_in_the_config_file(tmp_path: Path) -> None:
    assert echidna_config(payload(stop_on_fail=True)) == {"stopOnFail": True}
    path = write_config(tmp_path, payload())
    assert json.loads(path.read_text()) == {"stopOnFail": False}


def test_the_payload_refuses_bad_settings() -> None:
    for bad in ({"workers": 0}, {"seq_len": 0}, {"contract": "A; rm -rf /"}, {"seed": -1}):
        with pytest.raises(ValueError):
            payload(**bad)


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_prebuilt_foundry_project_is_unpacked_under_its_top_directory(tmp_path: Path) -> None:
    archive = _tarball(
        tmp_path / "p.tar.gz",
        {
            "token/foundry.toml": b"[profile.default]\n",
            "token/src/Token.sol": b"contract Token {}\n",
            "token/out/Token.sol/Token.json": b"{}",
        },
    )
    root = unpack_project(archive, tmp_path / "work")
    assert root == tmp_path / "work" / "token"
    check_prebuilt(root, "foundry_prebuilt")
    with pytest.raises(RecipeFailure, match="not a Hardhat project"):
        check_prebuilt(root, "hardhat_prebuilt")


def test_a_project_without_its_build_or_unsafe_is_invalid_input(tmp_path: Path) -> None:
    unbuilt = _tarball(tmp_path / "u.tgz", {"hardhat.config.js": b"module.exports = {}\n"})
    root = unpack_project(unbuilt, tmp_path / "u")
    with pytest.raises(RecipeFailure, match="no build output in artifacts/") as err:
        check_prebuilt(root, "hardhat_prebuilt")
    assert err.value.code == "invalid_input"
    escape = _tarball(tmp_path / "e.tgz", {"../outside.txt": b"x"})
    with pytest.raises(RecipeFailure, match="project_ref"):
        unpack_project(escape, tmp_path / "e")
    assert not (tmp_path / "outside.txt").exists()
    (tmp_path / "junk.tgz").write_bytes(b"not a tarball")
    with pytest.raises(RecipeFailure, match="project_ref"):
        unpack_project(tmp_path / "junk.tgz", tmp_path / "j")


def test_a_run_killed_before_its_report_fails_as_timeout() -> None:
    with pytest.raises(RecipeFailure) as err:
        _result(payload(), "[2026-01-05 10:00:00.12] [status] tests: 0/1\n", "timeout", None, "")
    assert err.value.code == "timeout"
    with pytest.raises(RecipeFailure, match="crytic-compile failed") as err:
        _result(payload(), "", "exit_nonzero", "exit 1", "crytic-compile failed: no out/")
    assert err.value.code == "invalid_input"
    done = _result(payload(), fixture("json_foundry_solved.out"), "exit_nonzero", None, "")
    assert done["passed"] is False and done["killed_at_timeout"] is False
    assert done["contract"] == "TokenTest" and done["counts"]["failed"] == 1
