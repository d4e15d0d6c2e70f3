"""The SDK and the app agree: a method for every route, no method for a route that is not served.

The app's route table is walked as the docs test walks it (``docs_site.app_routes`` over the app
``create_app`` builds: no server, no Ray), paths compared with ``{}`` for parameters. Each SDK
method is called against a mock that answers only the routes of that table, so a method that
spells its path differently from :data:`computalot.sdk.endpoints.ROUTES` fails here.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from computalot.discovery import site as docs_site
from computalot.sdk.client import AsyncComputalotClient, ComputalotClient
from computalot.sdk.endpoints import NOT_IN_SDK, ROUTES
from computalot.settings import Settings
from tests.support.mock_api import KnownRoutes, Recorder, client_for, event_stream, sse

#: Public client methods that call other methods rather than a route of their own.
HELPERS = {
    "close",
    "aclose",
    "wait",
    "iter_results",
    "iter_result_pages",
    "topup",
    "upload_artifact_resumable",
}


def app_routes() -> set[tuple[str, str]]:
    """Every (HTTP method, normalised path) the app serves, HEAD twins left out."""
    from serve_app.app import create_app

    with tempfile.TemporaryDirectory() as data_dir:
        return docs_site.app_routes(create_app(Settings(data_dir=Path(data_dir))))


def _normal(routes: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(method, docs_site.normalize_path(path)) for method, path in routes}


def test_every_served_route_has_an_sdk_method_and_no_method_calls_a_missing_one() -> None:
    served = app_routes()
    in_sdk = _normal((r.http_method, r.path) for r in ROUTES)
    assert in_sdk <= served, f"SDK methods for routes the app does not serve: {in_sdk - served}"
    assert _normal(NOT_IN_SDK) <= served, _normal(NOT_IN_SDK) - served
    missing = served - in_sdk - _normal(NOT_IN_SDK)
    assert not missing, f"routes without an SDK method: {missing}"
    assert len(in_sdk) == len(ROUTES), "a route is listed twice"


@pytest.mark.parametrize("cls", [ComputalotClient, AsyncComputalotClient])
def test_each_public_method_is_a_listed_route_or_a_helper(cls: type[Any]) -> None:
    public = {name for name, _ in inspect.getmembers(cls, callable) if not name.startswith("_")}
    listed = {r.sdk_method for r in ROUTES}
    assert listed <= public, listed - public
    assert public - listed <= HELPERS, public - listed - HELPERS


END = [sse(1, "end", {"job_id": "job_1", "id": "job_1", "status": "completed"})]

#: One call per route of ROUTES (a method that serves several routes is called once for each).
CALLS: list[tuple[str, Callable[[ComputalotClient], Any]]] = [
    ("health", lambda c: c.health()),
    ("live", lambda c: c.live()),
    ("ready", lambda c: c.ready()),
    ("metrics", lambda c: c.metrics()),
    ("skill_md", lambda c: c.skill_md()),
    ("llms_txt", lambda c: c.llms_txt()),
    ("llms_txt", lambda c: c.llms_txt(full=True)),
    ("openapi", lambda c: c.openapi()),
    ("docs_index", lambda c: c.docs_index()),
    ("docs_guide", lambda c: c.docs_guide("recipes")),
    ("docs_guide", lambda c: c.docs_guide("python-sdk")),
    ("docs_guide", lambda c: c.docs_guide("workflows")),
    ("send_feedback", lambda c: c.send_feedback("bug", "t", "d")),
    ("account", lambda c: c.account()),
    ("rotate_callback_secret", lambda c: c.rotate_callback_secret()),
    ("wallet_challenge", lambda c: c.wallet_challenge("0xabc")),
    ("wallet_verify", lambda c: c.wallet_verify("wch_1", "0xabc", "0xsig")),
    ("balance", lambda c: c.balance()),
    ("list_holds", lambda c: c.list_holds(status="open")),
    ("list_ledger", lambda c: c.list_ledger(limit=5)),
    ("list_quotes", lambda c: c.list_quotes()),
    ("topup_quote", lambda c: c.topup_quote(5.0)),
    ("pay_quote_x402", lambda c: c.pay_quote_x402("quote_1", "eyJ9")),
    ("admin_list_accounts", lambda c: c.admin_list_accounts()),
    ("admin_create_account", lambda c: c.admin_create_account("alice")),
    ("admin_list_keys", lambda c: c.admin_list_keys("acct_1")),
    ("admin_create_key", lambda c: c.admin_create_key("acct_1")),
    ("admin_revoke_key", lambda c: c.admin_revoke_key("key_1")),
    ("admin_whitelist_wallet", lambda c: c.admin_whitelist_wallet("0xabc")),
    ("admin_grant", lambda c: c.admin_grant("acct_1", 1.0)),
    ("admin_list_feedback", lambda c: c.admin_list_feedback()),
    ("list_projects", lambda c: c.list_projects()),
    ("create_project", lambda c: c.create_project("demo")),
    ("get_project", lambda c: c.get_project("demo")),
    ("update_project", lambda c: c.update_project("demo", description="d")),
    ("delete_project", lambda c: c.delete_project("demo")),
    ("push_project", lambda c: c.push_project("demo", b"\x1f\x8b")),
    ("init_project", lambda c: c.init_project("demo")),
    ("project_status", lambda c: c.project_status("demo")),
    ("project_status_details", lambda c: c.project_status_details("demo")),
    ("invalidate_project", lambda c: c.invalidate_project("demo")),
    ("stream_project", lambda c: next(iter(c.stream_project("demo")))),
    ("kv_put", lambda c: c.kv_put("demo", "best", {"loss": 0.1}, if_match=3)),
    ("kv_get", lambda c: c.kv_get("demo", "best")),
    ("kv_delete", lambda c: c.kv_delete("demo", "best")),
    ("kv_list", lambda c: c.kv_list("demo", prefix="runs/")),
    ("submit_job", lambda c: c.submit_job(project="demo")),
    ("submit_jobs_batch", lambda c: c.submit_jobs_batch([{"project": "demo"}])),
    ("list_jobs", lambda c: c.list_jobs()),
    ("get_job", lambda c: c.get_job("job_1")),
    ("get_tasks", lambda c: c.get_tasks("job_1")),
    ("get_output", lambda c: c.get_output("job_1")),
    ("get_events", lambda c: c.get_events("job_1")),
    ("cancel_job", lambda c: c.cancel_job("job_1")),
    ("get_results", lambda c: c.get_results("job_1")),
    ("presets", lambda c: c.presets()),
    ("stream", lambda c: list(c.stream("job_1"))),
    ("watch", lambda c: list(c.watch(["job_1"]))),
    ("upload_artifact", lambda c: c.upload_artifact(_scratch_file())),
    ("create_direct_upload", lambda c: c.create_direct_upload("ab" * 32, 3, "x.bin")),
    ("put_direct_upload", lambda c: c.put_direct_upload("upl_1.9.sig", _scratch_file())),
    ("complete_direct_upload", lambda c: c.complete_direct_upload("art_1")),
    ("start_multipart_upload", lambda c: c.start_multipart_upload("x.bin", 3)),
    ("upload_part", lambda c: c.upload_part("upl_1", 1, b"abc")),
    ("multipart_status", lambda c: c.multipart_status("upl_1")),
    ("complete_multipart_upload", lambda c: c.complete_multipart_upload("upl_1")),
    ("list_artifacts", lambda c: c.list_artifacts(limit=5)),
    ("list_recipes", lambda c: c.list_recipes()),
    ("get_recipe", lambda c: c.get_recipe("packing")),
    ("submit_recipe_job", lambda c: c.submit_recipe_job("packing", {"operation": "eval"})),
    ("artifact_meta", lambda c: c.artifact_meta("art_1")),
    ("download_artifact", lambda c: c.download_artifact("art_1", _scratch_file())),
    ("delete_artifact", lambda c: c.delete_artifact("art_1")),
]


_SCRATCH = tempfile.TemporaryDirectory(prefix="sdk-routes-")


def _scratch_file() -> str:
    """A small file to upload, or to download over (removed with the test process)."""
    path = Path(_SCRATCH.name) / "scratch.bin"
    path.write_bytes(b"abc")
    return str(path)


def test_each_call_reaches_the_route_listed_for_its_method() -> None:
    reached: set[tuple[str, str, str]] = set()
    for name, call in CALLS:
        routes = KnownRoutes()
        call(
            client_for(
                Recorder(_answer(routes, streams=name in ("stream", "watch", "stream_project")))
            )
        )
        assert len(routes.matched) == 1, (name, routes.matched)
        reached.add((name, *routes.matched[0]))
    assert reached == {(r.sdk_method, r.http_method, r.path) for r in ROUTES}


def _answer(routes: KnownRoutes, *, streams: bool) -> Callable[[httpx.Request], httpx.Response]:
    """``routes``' answer, or for a stream an event stream that ends at once on a known route."""

    def reply(request: httpx.Request) -> httpx.Response:
        answer = routes(request)
        return event_stream(END) if streams and answer.status_code == 200 else answer

    return reply
