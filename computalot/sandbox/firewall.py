"""Keep tasks on the host's network away from the platform's own ports (docs/sandbox.md).

A task with ``runtime.network: host`` shares the node's network, so it could reach every port
that listens on it: Ray's GCS, raylet, object manager and dashboard, the Serve proxy behind the
ingress, HAProxy's stats, a local PostgreSQL. Sandboxed tasks run as one dedicated host uid, so
one nftables table per node, matched on that uid, is enough and costs nothing per task:

- to this node's own addresses (anything routed through ``lo``) only the public API port and
  DNS are open;
- to the cluster's other nodes every TCP port but the API's is closed (Ray listens on many);
- everything else (the internet, package indexes) is open: tasks may download.

The table is the platform's alone (``inet computalot_sandbox``) and replaced as a whole, in one
transaction, whenever a worker process first needs it or what it holds changes. Installing it
needs root (CAP_NET_ADMIN); where that fails, a host-network task is refused with
``sandbox_unavailable`` rather than run with the platform's ports open.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import threading

TABLE = "computalot_sandbox"
DNS_PORT = 53

_LOCK = threading.Lock()
_INSTALLED: dict[str, tuple[int, tuple[int, ...], tuple[str, ...]]] = {}


def nft_path() -> str | None:
    found = shutil.which("nft")
    if found:
        return found
    return next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)


def ruleset(uid: int, open_ports: tuple[int, ...], other_nodes: tuple[str, ...]) -> str:
    """The nftables script that (re)creates the table."""
    ports = ", ".join(str(p) for p in sorted({DNS_PORT, *open_ports}))
    api_ports = ", ".join(str(p) for p in sorted(set(open_ports))) or "0"
    owner = f"meta skuid {uid}"
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        f'    {owner} oifname "lo" tcp dport {{ {ports} }} accept',
        f'    {owner} oifname "lo" udp dport {DNS_PORT} accept',
        f'    {owner} oifname "lo" meta l4proto tcp reject with tcp reset',
        f'    {owner} oifname "lo" reject',
    ]
    v4 = [a for a in other_nodes if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in other_nodes if ipaddress.ip_address(a).version == 6]
    for family, addresses in (("ip", v4), ("ip6", v6)):
        if addresses:
            joined = ", ".join(addresses)
            lines.append(
                f"    {owner} {family} daddr {{ {joined} }} tcp dport != {{ {api_ports} }} "
                "reject with tcp reset"
            )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def ensure(uid: int, open_ports: tuple[int, ...], other_nodes: tuple[str, ...] = ()) -> str | None:
    """Install the table unless this process already did with the same content.

    Returns None when the rules are in place, else why they could not be installed.
    """
    want = (uid, tuple(sorted(set(open_ports))), tuple(sorted(set(other_nodes))))
    with _LOCK:
        if _INSTALLED.get(TABLE) == want:
            return None
        nft = nft_path()
        if nft is None:
            return "nft (Debian package nftables) is not installed"
        try:
            done = subprocess.run(
                [nft, "-f", "-"],
                input=ruleset(*want).encode(),
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"nft could not run: {exc}"
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            return "nft refused the rules: " + (reason[0] if reason else f"exit {done.returncode}")
        _INSTALLED[TABLE] = want
        return None
