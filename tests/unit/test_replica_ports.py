"""Each platform on a machine takes a block of Serve replica ports no other one holds
(computalot/platform.py): held for the life of the process that started it, even while none of
its replicas listens (a crashed replica restarting later binds again within its own block)."""

from __future__ import annotations

import subprocess
import sys

from computalot import platform

HOLDER = """
import sys
from computalot import platform
print(platform._replica_port_ranges()["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"], flush=True)
sys.stdin.readline()
"""


def _holder() -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def _release(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=30)


def test_a_block_another_process_holds_is_skipped_though_nobody_listens_on_it() -> None:
    first, first_block = _holder()
    try:
        second, second_block = _holder()
        try:
            assert second_block != first_block
            assert second_block % platform.REPLICA_PORT_BLOCK == 0
            ranges = {first_block, second_block}
        finally:
            _release(second)
        third, third_block = _holder()  # the second's block is free again once it ended
        _release(third)
        assert third_block in ranges and third_block != first_block
    finally:
        _release(first)


def test_the_same_process_keeps_its_block() -> None:
    once = platform._replica_port_ranges()
    again = platform._replica_port_ranges()
    assert once == again and once
    assert (
        int(once["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"])
        - int(once["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])
        == platform.REPLICA_PORT_BLOCK
    )
    assert int(once["RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT"]) == (
        int(once["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]) + 10000
    )
