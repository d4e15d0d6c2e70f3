"""``computalot up`` tells the operator where the Ray dashboard is and where its token is.

A real ``up`` (its own small platform beside the session's): the line it prints leads to a
dashboard that refuses a request without the token and lets one in with the token read from
the place the line names; the token itself never appears in ``up``'s output.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.test_runner_isolation import _quiet_port

DASHBOARD = re.compile(
    r"^Ray dashboard: (?P<url>http://\S+) \(.*`ray get-auth-token`.* kept in (?P<where>.+)\)$"
)


def test_up_prints_the_dashboard_url_and_where_its_token_is(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", _quiet_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPUTALOT_", "RAY_"))}
    env["COMPUTALOT_SANDBOX"] = "none"  # the dashboard does not depend on the sandbox
    # HAProxy's stats/metrics ports are otherwise picked from the ephemeral range, where the
    # session's own Ray workers may take one before this HAProxy binds it.
    env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(_quiet_port())
    env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(_quiet_port())
    command = [str(Path(sys.executable).parent / "computalot"), "up", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--num-cpus", "1"]
    out_file = tmp_path / "up.out"
    with out_file.open("wb") as out, (tmp_path / "up.err").open("wb") as errors:
        up = subprocess.Popen(command, env=env, stdout=out, stderr=errors)
        try:
            line = None
            deadline = time.monotonic() + 150
            while line is None and time.monotonic() < deadline and up.poll() is None:
                line = next(
                    (x for x in out_file.read_text().splitlines() if x.startswith("Ray dash")),
                    None,
                )
                time.sleep(0.5)
            assert line is not None, (tmp_path / "up.err").read_text()[-3000:]
            match = DASHBOARD.match(line)
            assert match is not None, line
            token = Path(match["where"]).read_text().strip()
            assert token and token not in out_file.read_text()
            assert token not in (tmp_path / "up.err").read_text()

            version = f"{match['url']}/api/version"
            assert httpx.get(version, timeout=30).status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            assert httpx.get(version, headers=auth, timeout=30).status_code == 200
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=90)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
