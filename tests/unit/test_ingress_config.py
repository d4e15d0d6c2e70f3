"""computalot.ingress: what the wrapper adds to Ray's HAProxy config, and the pages it writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from computalot.errors import status_action, status_code
from computalot.ingress import (
    INGRESS_HEADER,
    INGRESS_TOKEN_ENV,
    MARKER,
    patch_config,
    patch_config_file,
    real_haproxy,
)
from computalot.ingress_pages import (
    BODY_STATUSES,
    ERRORFILE_STATUSES,
    PAGES,
    envelope,
    error_page,
    write_pages,
)

RAY_CONFIG = """global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 3600s
    errorfile 502 {dir}/500.http
    errorfile 503 {dir}/500.http
    errorfile 504 {dir}/500.http
    balance leastconn
frontend prometheus
    bind 127.0.0.1:1
    http-request use-service prometheus-exporter if {{ path /metrics }}
frontend http_frontend
    bind 127.0.0.1:2
    acl healthcheck path -i /-/healthz
    use_backend http-computalot if {{ path_beg / }}
    default_backend default_backend
backend default_backend
    http-request return status 404 content-type text/plain lf-string "Path '%[path]' not found."
backend http-computalot
    http-reuse always
    server SERVE_REPLICA_a 127.0.0.1:3 check
listen stats
  bind *:4
  stats enable
"""


def _config(tmp_path: Path) -> Path:
    (tmp_path / "500.http").write_bytes(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    )
    path = tmp_path / "haproxy.cfg"
    path.write_text(RAY_CONFIG.format(dir=tmp_path))
    return path


def _section(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i][:1] not in (" ", "")), len(lines))
    return lines[start:end]


def test_every_status_has_a_whole_answer_in_the_envelope(tmp_path: Path) -> None:
    for status, page in PAGES.items():
        body = json.loads(envelope(status))["error"]
        assert set(body) == {"code", "message", "details", "recommended_action"}
        assert body["message"] and body["recommended_action"]
        assert body["code"] == status_code(status)  # the API's own table
        assert body["recommended_action"] == (page.action or status_action(status))
    for status in ERRORFILE_STATUSES:
        head, _, body_bytes = error_page(status).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith(f"HTTP/1.1 {status} ")
        assert f"Content-Length: {len(body_bytes)}" in lines
        assert "Content-Type: application/json" in lines
    pages, bodies = write_pages(tmp_path)
    assert set(pages) == set(ERRORFILE_STATUSES) and set(bodies) == set(BODY_STATUSES) == {414, 431}
    assert bodies[431].read_bytes() == envelope(431)


def test_the_config_gets_each_addition_once(tmp_path: Path) -> None:
    path = _config(tmp_path)
    patch_config_file(path, head_timeout_s=7)
    once = path.read_text()
    patch_config_file(path, head_timeout_s=7)
    assert path.read_text() == once and once.count(MARKER) == 1

    defaults = _section(once, "defaults")
    ours = [i for i, line in enumerate(defaults) if "computalot-errors/" in line]
    ray_last = max(i for i, line in enumerate(defaults) if line.endswith(f"{tmp_path}/500.http"))
    assert len(ours) == len(ERRORFILE_STATUSES) and min(ours) > ray_last  # the later one wins
    assert "    timeout http-request 7s" in defaults

    frontend = _section(once, "frontend http_frontend")
    assert "url,length gt 8192" in frontend[0] and "req.hdrs,length gt 16384" in frontend[1]
    assert not any("http-request return" in line for line in _section(once, "frontend prometheus"))

    default_backend = _section(once, "backend default_backend")
    assert default_backend[0] == "    http-request return status 404 default-errorfiles"
    assert default_backend[1].startswith("    # http-request return status 404")

    backend = _section(once, "backend http-computalot")
    rules = [line for line in backend if line.startswith("    http-response return")]
    assert len(rules) == len(ERRORFILE_STATUSES)
    assert all("!{ res.hdr(content-type) -m sub json }" in rule for rule in rules)
    # HAProxy's own listeners move to Unix sockets next to the config (no TCP port to race for).
    for section, sock in (
        ("listen stats", "stats.sock"),
        ("frontend prometheus", "prometheus.sock"),
    ):
        lines = _section(once, section)
        assert lines[0] == f"    bind unix@{tmp_path.resolve()}/{sock} mode 600"
        assert [line for line in lines if line.strip().startswith("bind")] == [lines[0]]
    assert "    http-request set-header X-Forwarded-For %[src]" in frontend


def test_the_forwarded_address_comes_with_the_ingress_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INGRESS_TOKEN_ENV, raising=False)
    path = _config(tmp_path)
    patch_config_file(path)
    frontend = _section(path.read_text(), "frontend http_frontend")
    assert f"    http-request del-header {INGRESS_HEADER}" in frontend  # no token: none trusted

    monkeypatch.setenv(INGRESS_TOKEN_ENV, "t0ken")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "8404")  # an operator's own: kept on TCP
    (tmp_path / "b").mkdir()
    path = _config(tmp_path / "b")
    patch_config_file(path)
    text = path.read_text()
    assert f"    http-request set-header {INGRESS_HEADER} t0ken" in _section(
        text, "frontend http_frontend"
    )
    assert not any("unix@" in line for line in _section(text, "listen stats"))
    assert any("unix@" in line for line in _section(text, "frontend prometheus"))


def test_a_timeout_ray_sets_is_kept() -> None:
    text = RAY_CONFIG.replace("    timeout client 3600s\n", "    timeout http-request 9s\n")
    patched = patch_config(text, {}, {414: Path("/a"), 431: Path("/b")}, head_timeout_s=30)
    assert "timeout http-request 30s" not in patched and "timeout http-request 9s" in patched


def test_haproxy_accepts_the_patched_config(tmp_path: Path) -> None:
    path = _config(tmp_path)
    patch_config_file(path)
    checked = subprocess.run(
        [real_haproxy(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ALERT" not in checked.stderr
