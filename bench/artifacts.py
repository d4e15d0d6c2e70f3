"""Artifact throughput: upload and download MB/s through the API against the plain way.

Anchors, on the same file: for the local store ``cp`` on the same disk followed by ``sync
FILE`` (the store makes each blob durable before it answers, and each API download here is
synced too: both sides end with the bytes on disk; plain page-cache ``cp`` is printed for
reference), and for the S3 store boto3 straight to the same S3 server (the faster of its
managed transfer, ``upload_file`` / ``download_file``, and one plain ``put_object`` / streamed
``get_object``). The S3 server is moto's server mode (``python -m moto.server``) on loopback.
The API is the platform as ``make run`` starts it (``computalot up``: Ray Serve behind its
ingress), one per backend in turn; the client is the SDK (``upload_artifact`` streams the file,
``download_artifact`` streams into one). Each figure is the best of ``--runs`` (default 3).
Goal: every ratio API/anchor ≥ 0.5.

    .venv/bin/python bench/artifacts.py              # 512 MiB file, 3 runs (~4 min)
    .venv/bin/python bench/artifacts.py --mib 128 --runs 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    deadline,
    fmt,
    free_port,
    isolated_env,
    log,
    machine_line,
    machine_state,
    table,
    verdict,
    write_results,
)

GOAL_RATIO = 0.5
MiB = 1024 * 1024
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, *, ready: bool = False) -> None:
    """Until ``url`` answers (with 200 when ``ready``), within 180 s."""
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            answer = httpx.get(url, timeout=2)
            if not ready or answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer within 180 s")


def start_moto(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **S3_ENV},
    )
    wait_http(f"http://127.0.0.1:{port}/moto-api/", proc, "moto")
    return proc


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def start_platform(
    data_dir: Path, extra: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The platform as ``make run`` starts it (``computalot up``: local Ray, the engine, the
    API in Ray Serve behind its ingress) on ``data_dir``; (process, URL, admin key)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
    env.update({**S3_ENV, **extra, "COMPUTALOT_RATE_LIMIT_PER_MINUTE": str(10**9)})
    env.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    port = free_port()
    cli = str(Path(sys.executable).with_name("computalot"))
    command = [cli, "up", "--data-dir", str(data_dir), "--port", str(port), "--num-cpus", "2"]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ready", proc, "computalot up", ready=True)
    return proc, url, (data_dir / "admin_key").read_text().strip()


def stop_platform(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops ``computalot up``; killed if it has not stopped in 90 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def member_client(url: str, admin_key: str) -> Any:
    from computalot.sdk.client import ComputalotClient

    with ComputalotClient(url, admin_key) as admin:
        made = admin.admin_create_account("bench-artifacts")
    return ComputalotClient(url, made["key"]["token"], timeout=600)


def best_mb_s(size: int, runs: int, fn: Callable[[int], None]) -> float:
    """Best MB/s (10^6 bytes) of ``runs`` calls of ``fn(run)``."""
    best = float("inf")
    for run in range(runs):
        start = time.perf_counter()
        fn(run)
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def api_figures(
    url: str, admin_key: str, source: Path, out: Path, runs: int
) -> tuple[float, float]:
    """(upload, download) MB/s of ``source`` through the API at ``url``, with the SDK."""
    client = member_client(url, admin_key)
    size = source.stat().st_size
    ids: list[str] = []
    try:
        up = best_mb_s(size, runs, lambda _run: ids.append(client.upload_artifact(source)["id"]))

        def download(_run: int) -> None:
            client.download_artifact(ids[0], out)
            subprocess.run(["sync", str(out)], check=True)

        down = best_mb_s(size, runs, download)
        for artifact_id in set(ids):
            client.delete_artifact(artifact_id)
    finally:
        client.close()
    return up, down


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 4 * MiB)
            out.write(os.urandom(n))
            left -= n


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.mib * MiB
    source = work / "source.bin"
    make_file(source, size)
    out = work / "out.bin"
    figures: dict[str, Any] = {"bytes": size}

    def cp(_run: int) -> None:
        subprocess.run(["cp", str(source), str(out)], check=True)

    def cp_durable(_run: int) -> None:
        subprocess.run(["cp", str(source), str(out)], check=True)
        subprocess.run(["sync", str(out)], check=True)

    # The local store makes every blob durable before it answers (fsync), and the API's
    # download is made durable here too: the anchor is the same, ``cp`` then ``sync FILE``.
    # Plain ``cp`` (page cache to page cache, nothing on disk yet) is shown for reference.
    figures["cp_mb_s"] = best_mb_s(size, args.runs, cp_durable)
    figures["cp_page_cache_mb_s"] = best_mb_s(size, args.runs, cp)

    moto_port = free_port()
    moto = start_moto(moto_port)
    procs: list[subprocess.Popen[bytes]] = [moto]
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="bench-direct")
        s3.create_bucket(Bucket="bench-api")

        def managed_up(run: int) -> None:
            s3.upload_file(str(source), "bench-direct", f"obj-{run}")

        def put_up(run: int) -> None:
            with open(source, "rb") as body:
                s3.put_object(Bucket="bench-direct", Key=f"put-{run}", Body=body)

        def managed_down(_run: int) -> None:
            s3.download_file("bench-direct", "obj-0", str(out))

        def streamed_down(_run: int) -> None:
            body = s3.get_object(Bucket="bench-direct", Key="obj-0")["Body"]
            with open(out, "wb") as sink:
                for chunk in body.iter_chunks(MiB):
                    sink.write(chunk)

        # The anchor is boto3's faster way each time: its managed transfer (threaded parts or
        # ranges) or one plain request.
        figures["boto3_upload_file_mb_s"] = best_mb_s(size, args.runs, managed_up)
        figures["boto3_put_object_mb_s"] = best_mb_s(size, args.runs, put_up)
        figures["boto3_download_file_mb_s"] = best_mb_s(size, args.runs, managed_down)
        figures["boto3_get_object_mb_s"] = best_mb_s(size, args.runs, streamed_down)
        figures["boto3_up_mb_s"] = max(
            figures["boto3_upload_file_mb_s"], figures["boto3_put_object_mb_s"]
        )
        figures["boto3_down_mb_s"] = max(
            figures["boto3_download_file_mb_s"], figures["boto3_get_object_mb_s"]
        )
        for run in range(args.runs):
            s3.delete_object(Bucket="bench-direct", Key=f"obj-{run}")
            s3.delete_object(Bucket="bench-direct", Key=f"put-{run}")

        for backend, extra in (
            ("local", {}),
            (
                "s3",
                {
                    "COMPUTALOT_ARTIFACT_STORE": "s3://bench-api/artifacts",
                    "COMPUTALOT_ARTIFACT_S3_ENDPOINT_URL": endpoint,
                },
            ),
        ):
            log(f"{backend}: starting the platform (computalot up)")
            proc, url, admin_key = start_platform(work / f"api-{backend}", extra)
            try:
                log(f"{backend}: {args.mib} MiB x {args.runs} up and down through the API")
                up, down = api_figures(url, admin_key, source, out, args.runs)
            finally:
                stop_platform(proc)
            figures[f"api_{backend}_up_mb_s"] = up
            figures[f"api_{backend}_down_mb_s"] = down
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=900)
    args = parser.parse_args()
    isolated_env(S3_ENV)
    work = Path(tempfile.mkdtemp(prefix="computalot-bench-artifacts-"))
    start = machine_state()
    try:
        with deadline(args.max_seconds):
            f = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    ratios: dict[str, float] = {}
    for backend, anchor_up, anchor_down, anchor in (
        ("local", f["cp_mb_s"], f["cp_mb_s"], "cp+sync"),
        ("s3", f["boto3_up_mb_s"], f["boto3_down_mb_s"], "boto3"),
    ):
        for way, anchor_mb_s in (("up", anchor_up), ("down", anchor_down)):
            api = f[f"api_{backend}_{way}_mb_s"]
            ratio = api / anchor_mb_s
            ratios[f"{backend}_{way}"] = ratio
            rows.append(
                [
                    f"{backend} {'upload' if way == 'up' else 'download'}",
                    fmt(api),
                    f"{anchor} {fmt(anchor_mb_s)}",
                    f"{ratio:.2f}x",
                    verdict(ratio >= GOAL_RATIO),
                ]
            )
    print(
        table(
            f"Artifacts: {args.mib} MiB, best of {args.runs} (MB/s = 10^6 bytes/s)",
            ["path", "API MB/s", "anchor MB/s", "API/anchor", f"goal >= {GOAL_RATIO}x"],
            rows,
        )
    )
    print(f"reference: plain cp (page cache, nothing synced) {fmt(f['cp_page_cache_mb_s'])} MB/s")
    print(machine_line(start, machine_state()))
    path = write_results("artifacts", {"figures": f, "ratios": ratios, "mib": args.mib})
    log(f"results in {path}")


if __name__ == "__main__":
    main()
