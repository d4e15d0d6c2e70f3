"""Artifact throughput: upload and download MB/s through the API against the plain way.

Anchors, on the same file: ``cp`` on the same disk for the local store, and boto3 straight to
the same S3 server for the S3 store (the faster of its managed transfer, ``upload_file`` /
``download_file``, and one plain ``put_object`` / streamed ``get_object``). The S3 server is
moto's server mode (``python -m moto.server``) on loopback. The API is the app under uvicorn
(one process, the same ``create_app`` the Serve replicas run), one server per backend; the
client is the SDK (``upload_artifact`` streams the file, ``download_artifact`` streams into
one). Each figure is the best of ``--runs`` (default 3). Goal: every ratio API/anchor ≥ 0.5.

    .venv/bin/python bench/artifacts.py              # 512 MiB file, 3 runs (~2 min)
    .venv/bin/python bench/artifacts.py --mib 128 --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
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


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within 60 s")


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


def start_api(data_dir: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    """The API under uvicorn on ``data_dir`` (migrated first); (process, URL, admin key)."""
    from computalot.platform import prepare_store
    from computalot.settings import load_settings

    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
    env.update({**S3_ENV, **extra, "COMPUTALOT_DATA_DIR": str(data_dir)})
    port = free_port()
    env["COMPUTALOT_PORT"] = str(port)
    admin_key = asyncio.run(prepare_store(load_settings(data_dir=data_dir, database_url=None)))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench._uvicorn_app:make",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/live", proc, "uvicorn")
    return proc, url, admin_key


def member_client(url: str, admin_key: str) -> Any:
    from computalot.client import ComputalotClient

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
        down = best_mb_s(size, runs, lambda _run: client.download_artifact(ids[0], out))
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

    figures["cp_mb_s"] = best_mb_s(size, args.runs, cp)

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
            proc, url, admin_key = start_api(work / f"api-{backend}", extra)
            procs.append(proc)
            log(f"{backend}: {args.mib} MiB x {args.runs} up and down through the API")
            up, down = api_figures(url, admin_key, source, out, args.runs)
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
        ("local", f["cp_mb_s"], f["cp_mb_s"], "cp"),
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
    print(machine_line(start, machine_state()))
    path = write_results("artifacts", {"figures": f, "ratios": ratios, "mib": args.mib})
    log(f"results in {path}")


if __name__ == "__main__":
    main()
