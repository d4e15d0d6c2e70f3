"""The package as a user gets it: ``python -m build``, then fresh virtual environments.

The wheel and the sdist are built once from this checkout (``python -m build``, isolated: pip
fetches the build backend). Then:

- **plain** — a fresh venv, ``pip install <wheel>``: the ``computalot`` command and the SDK
  work, no platform library is installed or imported, and ``up`` / ``admin`` say in one line
  which extra to install (exit 2).
- **server** — a fresh venv running the platform from the wheel: ``computalot up`` starts it
  (real Ray, Serve, the bubblewrap sandbox), and the *plain* venv's SDK and CLI push a project,
  run a job on it and read the result; SIGINT stops it.

The server venv does not download ``computalot[server]``: on this machine ``pip install
'<wheel>[server]'`` into a fresh venv took 108 s from PyPI, and 387 s again with pip's cache
warm while other work loaded the two cores (pip unpacks Ray, pyarrow, scipy … each time). Its site-packages
gets a ``.pth`` naming the test environment's site-packages, read *after* its own, and the wheel
is installed there with ``--no-deps``; the test asserts that ``computalot`` (code, pages,
entry points) is imported from the fresh venv and never from this checkout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import site
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_runner_isolation import _quiet_port

pytestmark = [pytest.mark.own_platform, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
EXTRA_LINE = "the platform needs the server extra: pip install 'computalot[server]'"
# pydantic is not here: typer depends on it (it is never imported by the plain install, below).
PLATFORM_DISTS = {"ray", "numpy", "scipy", "sqlalchemy", "asyncpg", "fastapi", "starlette"}
PLATFORM_DISTS |= {"pyarrow", "lightgbm", "boto3", "aiosqlite", "alembic", "eth-account"}


def _env(**extra: str) -> dict[str, str]:
    """This environment without the session's platform settings or a Python path of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPUTALOT_", "RAY_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, "COLUMNS": "80", **extra}


def _run(
    args: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def _venv(path: Path) -> Path:
    _ok(_run([sys.executable, "-m", "venv", str(path)], path.parent))
    return path / "bin"


def _site_packages(bin_dir: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_ok(_run([str(bin_dir / "python"), "-c", code], bin_dir)).strip())


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _ok(_run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], out))
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("computalot-*.whl")
    return wheel


@pytest.fixture(scope="module")
def plain(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install computalot`` (the wheel) in a fresh venv: its ``bin``."""
    bin_dir = _venv(tmp_path_factory.mktemp("plain") / "venv")
    _ok(_run([str(bin_dir / "pip"), "install", "--quiet", str(_wheel(dist))], bin_dir))
    return bin_dir


@pytest.fixture(scope="module")
def server(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel, the platform's libraries reached through a ``.pth``."""
    bin_dir = _venv(tmp_path_factory.mktemp("server") / "venv")
    ours = [p for p in site.getsitepackages() if Path(p, "ray").is_dir()]
    assert ours, "the test environment has no Ray: install computalot[server,dev]"
    (_site_packages(bin_dir) / "zz_platform_libraries.pth").write_text(f"{ours[0]}\n")
    pip = [str(bin_dir / "pip"), "install", "--quiet", "--no-deps", str(_wheel(dist))]
    _ok(_run(pip, bin_dir))
    return bin_dir


# ---- the artefacts ------------------------------------------------------------------------------
def test_the_wheel_carries_pages_migrations_and_the_ui(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        names = set(wheel.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]
    for page in ("llms.txt", "llms-full.md", "skill.md", "python-sdk.md"):
        assert f"computalot/discovery/pages/{page}" in names
    assert "computalot/store/migrations/script.py.mako" in names
    assert any(n.startswith("computalot/store/migrations/versions/") for n in names)
    assert "serve_app/ui/static/index.html" in names
    native = "recipes/prop_amm/native/"  # the Rust sources the recipe builds on a node
    assert {f"{native}Cargo.toml", f"{native}Cargo.lock", f"{native}.cargo/config.toml"} <= names
    assert f"{native}crates/evaluator/src/lib.rs" in names
    assert not [n for n in names if n.startswith((f"{native}target/", "tests/", "docs/", "bench/"))]
    plain = sorted(re.split(r"[<>=\[ ]", r)[0] for r in requires if "extra ==" not in r)
    assert plain == ["httpx", "httpx-sse", "rich", "typer"]
    assert any(r.startswith("ray[") and 'extra == "server"' in r for r in requires)


def test_the_sdist_carries_docs_for_the_build_hook(dist: Path) -> None:
    (sdist,) = dist.glob("computalot-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"docs/llms.txt", "docs/skill.md", "setup.py", "MANIFEST.in", "pyproject.toml"} <= names
    assert "serve_app/ui/static/index.html" in names
    assert "computalot/store/migrations/script.py.mako" in names
    assert "recipes/prop_amm/native/crates/evaluator/src/lib.rs" in names
    assert not [n for n in names if n.startswith("recipes/prop_amm/native/target/")]


# ---- the plain install --------------------------------------------------------------------------
def test_the_plain_install_has_no_platform_library(plain: Path) -> None:
    listed = json.loads(_ok(_run([str(plain / "pip"), "list", "--format", "json"], plain)))
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert "computalot" in names and {"httpx", "typer", "rich"} <= names
    assert not names & PLATFORM_DISTS, names & PLATFORM_DISTS
    code = (
        "import computalot, sys\n"
        "from computalot import ComputalotClient, AsyncComputalotClient\n"
        "import computalot.cli.user\n"
        "assert 'ray' not in sys.modules and 'numpy' not in sys.modules\n"
        "assert 'sqlalchemy' not in sys.modules and 'pydantic' not in sys.modules\n"
        "print(computalot.__file__)\n"
    )
    where = _ok(_run([str(plain / "python"), "-c", code], plain)).strip()
    assert where.startswith(str(plain.parent)), where


def test_the_plain_command_answers_and_up_names_the_extra(plain: Path, tmp_path: Path) -> None:
    help_text = _ok(_run([str(plain / "computalot"), "--help"], tmp_path))
    for command in ("up", "jobs", "submit", "docs"):
        assert command in help_text
    for args in (
        ["up", "--data-dir", str(tmp_path / "data"), "--port", str(_quiet_port())],
        ["serve"],
        ["admin", "grant", "--account", "acct_x", "--amount", "1"],
    ):
        done = _run([str(plain / "computalot"), *args], tmp_path, timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and EXTRA_LINE in lines[0], done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists()


# ---- the platform from the wheel ----------------------------------------------------------------
def test_the_server_venv_imports_the_wheel_not_the_checkout(server: Path) -> None:
    code = (
        "import computalot, serve_app\n"
        "from computalot.discovery.site import docs_dir\n"
        "print(computalot.__file__); print(serve_app.__file__); print(docs_dir())\n"
    )
    lines = _ok(_run([str(server / "python"), "-c", code], server.parent)).split()
    for line in lines:
        assert line.startswith(str(server.parent)) and not line.startswith(str(ROOT)), lines
    assert lines[2].endswith("computalot/discovery/pages")


@pytest.fixture
def running_up(server: Path, tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """``computalot up`` from the server venv: its URL, admin key and process."""
    port = _quiet_port()
    env = _env(
        RAY_SERVE_HAPROXY_STATS_PORT=str(_quiet_port()),
        RAY_SERVE_HAPROXY_METRICS_PORT=str(_quiet_port()),
        PATH=f"{server}:{os.environ['PATH']}",
    )
    command = [str(server / "computalot"), "up", "--data-dir", str(tmp_path / "data")]
    command += ["--port", str(port), "--num-cpus", "1"]
    out_file, err_file = tmp_path / "up.out", tmp_path / "up.err"
    with out_file.open("wb") as out, err_file.open("wb") as err:
        up = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err)
    try:
        url = key = None
        deadline = time.monotonic() + 420
        while key is None and time.monotonic() < deadline and up.poll() is None:
            text = out_file.read_text()
            url = next((x[5:] for x in text.splitlines() if x.startswith("API: ")), None)
            key = next((x[11:] for x in text.splitlines() if x.startswith("Admin key: ")), None)
            time.sleep(0.5)
        assert url and key, (up.poll(), out_file.read_text(), err_file.read_text()[-4000:])
        yield url.strip(), key.strip(), up
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=150)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()


SDK_SCRIPT = """
import json, pathlib, sys
from computalot import ComputalotClient

url, key, folder = sys.argv[1:4]
project = pathlib.Path(folder)
(project / "square.py").write_text(
    "import json, os\\n"
    "p = json.load(open(os.environ['COMPUTALOT_TASK_PAYLOAD']))\\n"
    "json.dump({'square': p['x'] ** 2}, open(os.environ['COMPUTALOT_TASK_RESULT'], 'w'))\\n"
)
with ComputalotClient(controller_url=url, token=key) as client:
    client.create_project("wheel-check")
    client.push_project("wheel-check", project)
    job = client.submit_job(
        project="wheel-check", runner_command=["python3", "square.py"], payload={"x": 12}
    )
    done = client.wait(job["id"], timeout=400)
    results = client.get_results(job["id"])
print(json.dumps({"id": job["id"], "status": done["status"], "results": results}))
"""


def test_up_from_the_wheel_runs_a_job_for_the_plain_sdk_and_cli(
    running_up: tuple[str, str, subprocess.Popen[bytes]], plain: Path, tmp_path: Path
) -> None:
    url, key, up = running_up
    (tmp_path / "project").mkdir()
    script = [str(plain / "python"), "-c", SDK_SCRIPT, url, key, str(tmp_path / "project")]
    answer = json.loads(_ok(_run(script, tmp_path, timeout=600)).strip().splitlines()[-1])
    assert answer["status"] == "completed", answer
    assert answer["results"]["aggregate_result"] == {"square": 144}

    cli = [str(plain / "computalot")]
    auth = ["--url", url, "--token", key]
    listed = _ok(_run([*cli, "jobs", "--limit", "5", *auth], tmp_path, timeout=120))
    assert answer["id"] in listed  # an id is never cut, even at 80 columns
    llms = _ok(_run([*cli, "docs", "--llm", *auth], tmp_path, timeout=120))
    assert "/api/v1/jobs" in llms and url in llms  # the packaged pages, with this server's URL

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=150) == 0


# ---- the editable install of a checkout ---------------------------------------------------------
def test_an_editable_install_stays_a_plain_path_and_copies_no_pages(tmp_path: Path) -> None:
    """``pip install -e .`` (make install): a path ``.pth``, no import-hook finder (it costs
    every Python start ~20 ms), and the build hook leaves the checkout's tree alone."""
    bin_dir = _venv(tmp_path / "venv")
    _ok(_run([str(bin_dir / "pip"), "install", "--quiet", "--no-deps", "-e", str(ROOT)], tmp_path))
    files = [p.name for p in _site_packages(bin_dir).iterdir()]
    assert not [f for f in files if "finder" in f], files
    (pth,) = [f for f in files if f.startswith("__editable__") and f.endswith(".pth")]
    assert (_site_packages(bin_dir) / pth).read_text().strip() == str(ROOT)
    assert not (ROOT / "computalot" / "discovery" / "pages").exists()
