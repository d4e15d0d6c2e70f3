"""The echidna operation's own plumbing, with a stand-in program named ``echidna`` on the PATH
(docs/recipes.md, "echidna"). Echidna itself is not on this machine: these tests prove what
the recipe does around it (the project unpacked where the command line points, the settings
passed, the report read from the process's stdout, the process group killed at the task's
time), not what Echidna does. The real program runs only on nodes with the ``echidna``
capability."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from computalot.settings import get_settings
from recipes.context import LocalContext, RecipeFailure
from recipes.echidna.operations import run_prebuilt
from recipes.echidna.recipe import EchidnaPayload

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "echidna"


@pytest.fixture()
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory first on the PATH for the stand-in; the unconfined runner (no bwrap)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("COMPUTALOT_SANDBOX", "none")
    monkeypatch.setenv("COMPUTALOT_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield bin_dir
    get_settings.cache_clear()


def _script(bin_dir: Path, body: str) -> None:
    path = bin_dir / "echidna"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _project(tmp_path: Path) -> Path:
    archive = tmp_path / "project.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in {
            "token/foundry.toml": b"[profile.default]\n",
            "token/out/Token.sol/Token.json": b'{"abi": []}',
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def _payload(**fields: object) -> EchidnaPayload:
    base = {"project_ref": "art_abc", "contract": "TokenTest", "seed": 9, "workers": 2}
    return EchidnaPayload.model_validate({**base, **fields})


def test_the_run_reads_the_report_of_the_program_it_started(stand_in: Path, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    report = FIXTURES / "json_foundry_solved.out"
    _script(
        stand_in,
        # what the program was given: its arguments, the project it points at, the config
        f'python3 -c \'import json, os, sys; json.dump({{"argv": sys.argv[1:], '
        f'"toml": os.path.isfile(os.path.join(sys.argv[1], "foundry.toml")), '
        f'"config": open(sys.argv[sys.argv.index("--config") + 1]).read()}}, '
        f'open("{seen}", "w"))\' "$@"\n'
        f'cat "{report}"\nexit 1\n',  # echidna exits 1 when a test failed
    )
    ctx = LocalContext(tmp_path / "out", timeout_s=120, inputs={"project_ref": _project(tmp_path)})
    result = run_prebuilt(ctx, _payload(stop_on_fail=True))
    given = json.loads(seen.read_text())
    assert given["toml"] is True  # the first argument is the unpacked project's root
    assert json.loads(given["config"]) == {"stopOnFail": True}
    argv = given["argv"]
    assert argv[argv.index("--contract") + 1] == "TokenTest"
    assert argv[argv.index("--seed") + 1] == "9" and argv[argv.index("--workers") + 1] == "2"
    assert "--crytic-args=--foundry-ignore-compile" in argv
    assert result["passed"] is False and result["format"] == "json"
    assert result["tests"][0]["name"] == "echidna_balance_under_1000"
    assert result["killed_at_timeout"] is False
    assert not any(Path(p).name.startswith("echidna-") for p in (tmp_path / "out").iterdir())


def test_a_run_past_the_tasks_time_is_killed(stand_in: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    _script(stand_in, f'echo $$ > "{pid_file}"\nexec sleep 600\n')
    ctx = LocalContext(tmp_path / "out", timeout_s=3, inputs={"project_ref": _project(tmp_path)})
    started = time.monotonic()
    with pytest.raises(RecipeFailure) as err:
        run_prebuilt(ctx, _payload())
    assert err.value.code == "timeout"
    assert time.monotonic() - started < 30
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the program is gone, not left running


@pytest.mark.skipif(
    any(Path(d, "echidna").exists() for d in ("/usr/bin", "/bin")), reason="echidna installed"
)
def test_a_node_without_echidna_fails_the_task_plainly(stand_in: Path, tmp_path: Path) -> None:
    ctx = LocalContext(tmp_path / "out", inputs={"project_ref": _project(tmp_path)})
    with pytest.raises(RecipeFailure, match="echidna is not installed") as err:
        run_prebuilt(ctx, _payload())
    assert err.value.code == "recipe_error"
