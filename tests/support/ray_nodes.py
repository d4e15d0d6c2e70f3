"""A real multi-node Ray cluster on one machine: ``ray start`` per node, each node in a session
of its own (so it can be lost on its own, as a machine is) with its own temp dir and free ports.

The cluster has a token of its own (``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN`` in the
environment of its processes and of ``ray job submit``): the developer's ``~/.ray/auth_token``
and other Ray instances on the machine are never touched. GCS health checks are tightened so a
killed node is declared dead within a few seconds (a refused connection fails a check at once;
a slow but alive raylet on a busy 2-core machine has 10 s per check, five checks). Every port
comes from outside the kernel's ephemeral range (``quiet_port``): one from inside can be taken by
an outgoing connection before the node binds it, and the node's agent then exits with the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.chaos import quiet_port

RAY = str(Path(sys.executable).with_name("ray"))


def ray_available() -> str | None:
    """Why a ``ray start`` cluster cannot run here, or None."""
    if not Path(RAY).exists():
        return f"no ray command next to {sys.executable}"
    return None


def _children() -> dict[int, list[int]]:
    """Each pid's children, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Ray's raylet, workers, the runners they started)."""
    tree = _children()
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += tree.get(p, [])
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class RayNode:
    """One ``ray start --block`` and everything below it."""

    name: str
    temp_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        return [p for p in descendants(self.proc.pid) if alive(p)]

    def kill(self) -> list[int]:
        """SIGKILL the node's whole process tree at once (a machine lost); the pids killed."""
        pids = self.pids()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return pids


@dataclass
class LocalCluster:
    """A head node and worker nodes started with ``ray start``; :meth:`stop` removes all."""

    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    nodes: list[RayNode] = field(default_factory=list)
    issued_ports: set[int] = field(default_factory=set)
    gcs_port: int = 0
    dashboard_port: int = 0

    def __post_init__(self) -> None:
        self.gcs_port = self.gcs_port or self.port()
        self.dashboard_port = self.dashboard_port or self.port()

    def port(self) -> int:
        """A quiet port not handed to another node of this cluster yet."""
        while (port := quiet_port()) in self.issued_ports:
            pass
        self.issued_ports.add(port)
        return port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self) -> dict[str, str]:
        """The environment of this cluster's processes and of the commands that reach it."""
        # Nothing of another Ray instance (its address, token path) nor a platform setting.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "COMPUTALOT_"))}
        env.update(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": self.token,
                "RAY_health_check_initial_delay_ms": "1000",
                "RAY_health_check_period_ms": "1000",
                "RAY_health_check_timeout_ms": "10000",
                "RAY_health_check_failure_threshold": "5",
                # A busy shared machine starts a raylet slowly; the default 30 s is too short.
                "RAY_raylet_start_wait_time_s": "120",
                "RAY_USAGE_STATS_ENABLED": "0",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        return env

    def _ports(self) -> list[str]:
        return [
            "--node-manager-port", str(self.port()),
            "--object-manager-port", str(self.port()),
            "--metrics-export-port", str(self.port()),
            "--dashboard-agent-listen-port", str(self.port()),
            "--dashboard-agent-grpc-port", str(self.port()),
            "--runtime-env-agent-port", str(self.port()),
        ]  # fmt: skip

    def _start(self, name: str, args: list[str], wait_for: int | None) -> RayNode:
        temp_dir = Path(tempfile.mkdtemp(prefix=f"r{len(self.nodes)}", dir=self.root))
        log = self.root / f"{name}.log"
        argv = [RAY, "start", "--block", "--temp-dir", str(temp_dir), *args, *self._ports()]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node = RayNode(name, temp_dir, proc, log)
        self.nodes.append(node)
        if wait_for is not None:
            self.wait_for_nodes(wait_for, node)
        return node

    def start_head(self, resources: dict[str, float]) -> RayNode:
        """The head: GCS, dashboard (job submission), no CPU for tasks."""
        args = [
            "--head",
            "--node-ip-address", "127.0.0.1",
            "--port", str(self.gcs_port),
            "--num-cpus", "0",
            "--num-gpus", "0",
            "--resources", json.dumps(resources),
            "--include-dashboard", "true",
            "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(self.dashboard_port),
            "--ray-client-server-port", str(self.port()),
            "--disable-usage-stats",
        ]  # fmt: skip
        return self._start("head", args, wait_for=1)

    def add_node(
        self,
        name: str,
        *,
        cpus: int,
        gpus: int = 0,
        resources: dict[str, float] | None = None,
        wait: bool = True,
    ) -> RayNode:
        """Start a worker node; ``wait``: until it is alive (else see :meth:`wait_for_nodes`)."""
        args = [
            "--address", self.address,
            "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(cpus),
            "--num-gpus", str(gpus),
            "--resources", json.dumps(resources or {}),
            "--disable-usage-stats",
        ]  # fmt: skip
        return self._start(name, args, wait_for=len(self.alive_nodes()) + 1 if wait else None)

    def ray_cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RAY, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def state(self, resource: str, **params: Any) -> list[dict[str, Any]]:
        """Ray's state API (``/api/v0/<resource>`` of the dashboard, with the cluster's token);
        [] while the dashboard does not answer."""
        try:
            answer = httpx.get(
                f"{self.dashboard_url}/api/v0/{resource}",
                params={"limit": 1000, **params},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=20,
            )
        except httpx.HTTPError:
            return []
        if answer.status_code != 200:
            return []
        return list(answer.json()["data"]["result"]["result"])

    def diagnosis(self) -> str:
        """What to print when a node is missing: every node the GCS knows (with why a dead one
        died) and, per node started here, its exit status and the tails of its logs."""
        lines = []
        for node in self.state("nodes", detail="true"):
            resources = node.get("resources_total") or {}
            lines.append(
                f"GCS node {node.get('node_id')} {node.get('state')} "
                f"{node.get('state_message') or ''} resources={sorted(resources)}"
            )
        for node in self.nodes:
            lines.append(f"--- {node.name}: ray start exit status {node.proc.poll()}")
            lines.append(node.log.read_text(errors="replace")[-1500:])
            raylet = node.temp_dir / "session_latest" / "logs" / "raylet.out"
            if raylet.exists():
                lines.append(f"--- {node.name} raylet.out")
                lines.append(raylet.read_text(errors="replace")[-2500:])
        return "\n".join(lines)

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.state("nodes") if n.get("state") == "ALIVE"]

    def wait_for_nodes(self, count: int, node: RayNode, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(
                    f"ray start of {node.name} exited: {node.log.read_text()[-3000:]}"
                )
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{count} alive nodes not seen in {timeout_s} s")

    def wait_until_dead(self, node_id: str, timeout_s: float = 60) -> float:
        """Seconds until the GCS declares ``node_id`` dead."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if all(n.get("node_id") != node_id for n in self.alive_nodes()):
                return time.monotonic() - start
            time.sleep(0.5)
        raise RuntimeError(f"node {node_id} still alive after {timeout_s} s")

    def submit(self, entrypoint: list[str], env_vars: dict[str, str], timeout_s: float = 240):  # type: ignore[no-untyped-def]
        """``ray job submit`` (waits for the job's end); the completed process."""
        return self.ray_cli(
            "job", "submit",
            "--address", self.dashboard_url,
            "--runtime-env-json", json.dumps({"env_vars": env_vars}),
            "--", *entrypoint,
            timeout_s=timeout_s,
        )  # fmt: skip

    def stop(self) -> list[int]:
        """Kill every node (workers first, the head last); the pids still alive after (none
        expected). The temp dirs go too."""
        killed = [p for node in reversed(self.nodes) for p in node.kill()]
        time.sleep(0.5)
        left = [p for p in killed if alive(p)]
        for node in self.nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        return left
