"""The pieces that let ``pip install computalot`` (no platform libraries) work, one by one.

The whole of it, built and installed into fresh virtual environments, is
``tests/integration/test_wheel_install.py``; here: the ``[server]`` guard of ``up`` / ``serve``
/ ``admin`` (computalot/cli/extras.py), where the discovery pages are looked for
(packaged first, the checkout's ``docs/`` second), and the JSON depth check without numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer

from computalot import jsonsafe
from computalot.cli import extras
from computalot.discovery import site

ROOT = Path(__file__).resolve().parents[2]


def _server_extra() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        extra: list[str] = tomllib.load(fh)["project"]["optional-dependencies"]["server"]
    return extra


def test_the_installed_metadata_lists_the_server_extra() -> None:
    """The guard reads the extra from the installed package (make install), as pyproject has it."""
    names = extras.extra_requirements("server")
    assert names is not None, "the project is not installed: run make install"
    declared = {r.split("[")[0].split(">")[0].split("=")[0].strip() for r in _server_extra()}
    assert {n.lower() for n in names} == {d.lower() for d in declared}
    assert extras.missing_for_extra("server") == []  # this environment runs the platform


def test_an_unknown_distribution_has_no_metadata() -> None:
    assert extras.extra_requirements("server", distribution="computalot-no-such-dist") is None


def test_the_guard_exits_2_naming_the_extra_and_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        extras, "extra_requirements", lambda extra: ["ray", "computalot-no-such-dist"]
    )
    with pytest.raises(typer.Exit) as exited:
        extras.require_server_extra()
    assert exited.value.exit_code == 2
    err = capsys.readouterr().err
    assert "the platform needs the server extra: pip install 'computalot[server]'" in err
    assert "(missing: computalot-no-such-dist)" in err
    assert len(err.strip().splitlines()) == 1


def test_without_metadata_the_guard_tries_the_platforms_imports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(extras, "extra_requirements", lambda extra: None)
    assert extras.missing_for_extra("server") == []
    monkeypatch.setattr(extras, "SERVER_MODULES", ("ray", "computalot_no_such_module"))
    assert extras.missing_for_extra("server") == ["computalot_no_such_module"]


def test_a_long_missing_list_is_cut_to_one_line() -> None:
    line = extras.extra_line("server", [f"dist{i}" for i in range(10)])
    assert line.endswith("(missing: dist0, dist1, dist2, dist3, dist4, dist5, …)")


def test_up_on_the_real_entry_point_passes_the_guard_here(tmp_path: Path) -> None:
    """With the server extra installed the guard stays silent: ``up --help`` answers."""
    done = subprocess.run(
        [sys.executable, "-m", "computalot.cli", "admin", "grant", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert "server extra" not in done.stdout + done.stderr


# ---- where the discovery pages come from ----------------------------------------------------
def _pages(folder: Path) -> Path:
    folder.mkdir()
    for page in site.PAGES.values():
        (folder / page.filename).write_text(f"# {page.name} in {folder.name}\n")
    return folder


def test_packaged_pages_come_first(tmp_path: Path) -> None:
    packaged, checkout = _pages(tmp_path / "pages"), _pages(tmp_path / "docs")
    assert site.find_docs_dir(packaged, checkout) == packaged


def test_the_checkout_docs_when_nothing_is_packaged(tmp_path: Path) -> None:
    checkout = _pages(tmp_path / "docs")
    assert site.find_docs_dir(tmp_path / "pages", checkout) == checkout
    (tmp_path / "half").mkdir()  # a folder without llms.txt is not a pages folder
    assert site.find_docs_dir(tmp_path / "half", checkout) == checkout


def test_with_neither_the_last_is_named(tmp_path: Path) -> None:
    assert site.find_docs_dir(tmp_path / "a", tmp_path / "b") == tmp_path / "b"


def test_this_checkout_serves_its_own_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The source tree has no packaged copy (the build writes it into the build, not here)."""
    monkeypatch.delenv(site.DOCS_DIR_ENV, raising=False)
    assert not site.PACKAGED_DOCS.exists()
    assert site.docs_dir() == ROOT / "docs"


# ---- JSON depth without numpy -----------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["[]", "[[[1]]]", '{"a": [{"b": "]]]"}]}', "]]][[", "[" * 300 + "]" * 300, "{}[]{}"]
)
def test_depth_is_the_same_with_and_without_numpy(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_numpy = jsonsafe.nesting_depth(text)

    def no_numpy() -> None:
        raise ImportError("No module named 'numpy'")

    monkeypatch.setattr(jsonsafe, "_step_table", no_numpy)
    assert jsonsafe.nesting_depth(text) == with_numpy
    assert jsonsafe.nesting_exceeds(text) == (with_numpy > jsonsafe.MAX_JSON_DEPTH)
