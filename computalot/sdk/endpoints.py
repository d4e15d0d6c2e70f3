"""Every REST route the server answers, as one method, written once for both SDK clients.

:class:`Endpoints` only *describes* calls (a :class:`Req`) and hands them to ``_call`` /
``_call_text``. The sync client implements those to return ``dict`` / ``str``; the async client
returns awaitables of the same. The type parameters carry that difference, so
``await async_client.get_job(id)`` and ``client.get_job(id)`` are both typed as dicts and no
route is spelled twice.

:data:`ROUTES` lists which method calls which route; a unit test walks the app's route table
against it, so the SDK has a method for every route and none for a route that does not exist.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from computalot.sdk.base import API, Req, clean, push_request, seg, tarball_bytes

#: A transfer progress callback: called with the size in bytes of each chunk moved.
Progress = Callable[[int], object]

D = TypeVar("D")  # what a JSON call returns: dict, or an awaitable dict
S = TypeVar("S")  # what a text call returns: str, or an awaitable str

#: The guides served under ``/api/v1/docs/<name>`` (``docs_guide(name)``).
GUIDES = ("recipes", "python-sdk", "workflows")


def _kv_path(name: str, key: str) -> str:
    """A KV key keeps its ``/`` (keys may have them); everything else is quoted."""
    return f"{API}/projects/{seg(name)}/kv/{quote(key, safe='/')}"


@dataclass(frozen=True)
class Route:
    """One route an SDK method calls: the method's name, the HTTP method and the path template
    as the server declares it (``{name}`` placeholders)."""

    sdk_method: str
    http_method: str
    path: str


ROUTES: tuple[Route, ...] = (
    # ops and discovery (docs/llms-full.md, "Ops")
    Route("health", "GET", "/health"),
    Route("live", "GET", "/live"),
    Route("ready", "GET", "/ready"),
    Route("metrics", "GET", "/metrics"),
    Route("skill_md", "GET", "/skill.md"),
    Route("llms_txt", "GET", "/llms.txt"),
    Route("llms_txt", "GET", "/llms-full.txt"),
    Route("openapi", "GET", "/openapi.json"),
    Route("docs_index", "GET", f"{API}/docs"),
    *(Route("docs_guide", "GET", f"{API}/docs/{name}") for name in GUIDES),
    Route("send_feedback", "POST", f"{API}/feedback"),
    # account and auth ("Auth")
    Route("account", "GET", f"{API}/account"),
    Route("rotate_callback_secret", "POST", f"{API}/account/callback_secret/rotate"),
    Route("wallet_challenge", "POST", f"{API}/auth/wallet/challenge"),
    Route("wallet_verify", "POST", f"{API}/auth/wallet/verify"),
    # balance, holds, ledger, quotes and x402 top-ups ("Billing")
    Route("balance", "GET", f"{API}/account/balance"),
    Route("list_holds", "GET", f"{API}/account/holds"),
    Route("list_ledger", "GET", f"{API}/account/ledger"),
    Route("list_quotes", "GET", f"{API}/account/quotes"),
    Route("topup_quote", "POST", f"{API}/account/quotes/topup"),
    Route("pay_quote_x402", "POST", f"{API}/account/quotes/{{quote_id}}/pay/x402"),
    # admin ("Admin")
    Route("admin_list_accounts", "GET", f"{API}/admin/accounts"),
    Route("admin_create_account", "POST", f"{API}/admin/accounts"),
    Route("admin_list_keys", "GET", f"{API}/admin/accounts/{{account_id}}/keys"),
    Route("admin_create_key", "POST", f"{API}/admin/accounts/{{account_id}}/keys"),
    Route("admin_revoke_key", "POST", f"{API}/admin/keys/{{key_id}}/revoke"),
    Route("admin_whitelist_wallet", "POST", f"{API}/admin/wallets"),
    Route("admin_grant", "POST", f"{API}/admin/accounts/{{account_id}}/grants"),
    Route("admin_list_feedback", "GET", f"{API}/admin/feedback"),
    # projects ("Projects")
    Route("list_projects", "GET", f"{API}/projects"),
    Route("create_project", "POST", f"{API}/projects"),
    Route("get_project", "GET", f"{API}/projects/{{name}}"),
    Route("update_project", "PUT", f"{API}/projects/{{name}}"),
    Route("delete_project", "DELETE", f"{API}/projects/{{name}}"),
    Route("push_project", "POST", f"{API}/projects/{{name}}/push"),
    Route("init_project", "POST", f"{API}/projects/{{name}}/init"),
    Route("project_status", "GET", f"{API}/projects/{{name}}/status"),
    Route("project_status_details", "GET", f"{API}/projects/{{name}}/status/details"),
    Route("invalidate_project", "POST", f"{API}/projects/{{name}}/invalidate"),
    Route("stream_project", "GET", f"{API}/projects/{{name}}/stream"),
    # project KV ("Project KV")
    Route("kv_put", "PUT", f"{API}/projects/{{name}}/kv/{{key}}"),
    Route("kv_get", "GET", f"{API}/projects/{{name}}/kv/{{key}}"),
    Route("kv_delete", "DELETE", f"{API}/projects/{{name}}/kv/{{key}}"),
    Route("kv_list", "GET", f"{API}/projects/{{name}}/kv"),
    # jobs ("Jobs", "Results", "Streaming")
    Route("submit_job", "POST", f"{API}/jobs"),
    Route("submit_jobs_batch", "POST", f"{API}/jobs/batch"),
    Route("list_jobs", "GET", f"{API}/jobs"),
    Route("get_job", "GET", f"{API}/jobs/{{job_id}}"),
    Route("get_tasks", "GET", f"{API}/jobs/{{job_id}}/tasks"),
    Route("get_output", "GET", f"{API}/jobs/{{job_id}}/output"),
    Route("get_events", "GET", f"{API}/jobs/{{job_id}}/events"),
    Route("cancel_job", "PUT", f"{API}/jobs/{{job_id}}/cancel"),
    Route("get_results", "GET", f"{API}/results/{{job_id}}"),
    Route("presets", "GET", f"{API}/presets"),
    Route("stream", "GET", f"{API}/jobs/{{job_id}}/stream"),
    Route("watch", "GET", f"{API}/jobs/watch"),
    # recipes ("Recipes")
    Route("list_recipes", "GET", f"{API}/recipes"),
    Route("get_recipe", "GET", f"{API}/recipes/{{name}}"),
    Route("submit_recipe_job", "POST", f"{API}/recipes/{{name}}/jobs"),
    # artifacts ("Artifacts")
    Route("upload_artifact", "POST", f"{API}/artifacts"),
    Route("create_direct_upload", "POST", f"{API}/artifacts/direct"),
    Route("put_direct_upload", "PUT", f"{API}/artifacts/direct/{{token}}"),
    Route("complete_direct_upload", "POST", f"{API}/artifacts/direct/{{artifact_id}}/complete"),
    Route("start_multipart_upload", "POST", f"{API}/artifacts/multipart"),
    Route("upload_part", "PUT", f"{API}/artifacts/multipart/{{upload_id}}/parts/{{n}}"),
    Route("multipart_status", "GET", f"{API}/artifacts/multipart/{{upload_id}}"),
    Route("complete_multipart_upload", "POST", f"{API}/artifacts/multipart/complete"),
    Route("list_artifacts", "GET", f"{API}/artifacts"),
    Route("artifact_meta", "GET", f"{API}/artifacts/{{artifact_id}}/meta"),
    Route("download_artifact", "GET", f"{API}/artifacts/{{artifact_id}}"),
    Route("delete_artifact", "DELETE", f"{API}/artifacts/{{artifact_id}}"),
)

#: Routes the server answers that no SDK method calls, each with why.
NOT_IN_SDK: dict[tuple[str, str], str] = {
    ("GET", "/docs"): "HTML for browsers; llms_txt(full=True) reads the same text",
    ("POST", f"{API}/auth/register"): "closed during the beta: it always answers 403",
}


def _job_body(job: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {**(job or {}), **clean(fields)}


def _idem(key: str | None) -> dict[str, str]:
    """The ``Idempotency-Key`` header: the caller's key, else a fresh one for this call, so the
    client's own retries of a submit (a dropped connection, a 503) never create a second job."""
    return {"Idempotency-Key": key or f"sdk-{uuid.uuid4().hex}"}


class Endpoints(Generic[D, S]):
    """Route methods; subclasses provide ``_call`` (JSON answer) and ``_call_text`` (text)."""

    def _call(self, req: Req) -> D:
        raise NotImplementedError

    def _call_text(self, req: Req) -> S:
        raise NotImplementedError

    def _call_upload(
        self, req: Req, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> D:
        """``req`` with the file at ``path`` as its body, streamed (never read whole);
        ``progress(n)`` is called with each chunk's size as it is read."""
        raise NotImplementedError

    def _call_download(
        self, req: Req, path: str | os.PathLike[str], progress: Progress | None = None
    ) -> D:
        """``req``'s answer body streamed into the file ``path``; ``progress(n)`` per chunk."""
        raise NotImplementedError

    # --- ops and discovery ------------------------------------------------------------------
    def health(self) -> D:
        return self._call(Req("GET", "/health"))

    def live(self) -> D:
        """``{"status": "ok"}`` while the API process is up (it checks nothing else)."""
        return self._call(Req("GET", "/live"))

    def ready(self) -> D:
        """``{"status": "ready", ...}``; raises NotReady (503) while the store or engine is down."""
        return self._call(Req("GET", "/ready"))

    def metrics(self) -> S:
        """Prometheus text; needs the admin key or the metrics token off the API host."""
        return self._call_text(Req("GET", "/metrics", expect="text"))

    def llms_txt(self, full: bool = False) -> S:
        return self._call_text(Req("GET", "/llms-full.txt" if full else "/llms.txt", expect="text"))

    def skill_md(self) -> S:
        return self._call_text(Req("GET", "/skill.md", expect="text"))

    def openapi(self) -> D:
        """The OpenAPI document of every route (request and answer schemas)."""
        return self._call(Req("GET", "/openapi.json"))

    def docs_index(self) -> D:
        return self._call(Req("GET", f"{API}/docs"))

    def docs_guide(self, name: Literal["recipes", "python-sdk", "workflows"]) -> D:
        """``{"name", "format": "markdown", "content"}`` of one guide (see :data:`GUIDES`)."""
        if name not in GUIDES:
            raise ValueError(f"no guide {name!r}; choose one of {', '.join(GUIDES)}")
        return self._call(Req("GET", f"{API}/docs/{name}"))

    def send_feedback(self, type: str, title: str, description: str) -> D:
        body = {"type": type, "title": title, "description": description}
        return self._call(Req("POST", f"{API}/feedback", json=body))

    # --- account and auth -------------------------------------------------------------------
    def account(self) -> D:
        return self._call(Req("GET", f"{API}/account"))

    def rotate_callback_secret(self) -> D:
        """A new ``callback_secret`` (the account object); callbacks sent from now on are signed
        with it only. Check them with ``computalot.verify_callback_signature``."""
        return self._call(Req("POST", f"{API}/account/callback_secret/rotate"))

    def wallet_challenge(self, wallet_address: str, chain: str = "base") -> D:
        body = {"wallet_address": wallet_address, "chain": chain}
        return self._call(Req("POST", f"{API}/auth/wallet/challenge", json=body))

    def wallet_verify(self, challenge_id: str, wallet_address: str, signature: str) -> D:
        """Exchange a signed SIWE challenge for ``{"token": "fls_…", "account", "expires_at"}``."""
        body = {
            "challenge_id": challenge_id,
            "wallet_address": wallet_address,
            "signature": signature,
        }
        return self._call(Req("POST", f"{API}/auth/wallet/verify", json=body))

    # --- balance, holds and ledger --------------------------------------------------------
    def balance(self) -> D:
        """``{"ledger_balance_usd", "held_usd", "available_usd"}``."""
        return self._call(Req("GET", f"{API}/account/balance"))

    def list_holds(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> D:
        """``{"holds": [...], "next_cursor"}``, newest first; ``status`` open or settled."""
        params = clean({"status": status, "limit": limit, "cursor": cursor})
        return self._call(Req("GET", f"{API}/account/holds", params=params))

    def list_ledger(self, limit: int | None = None, cursor: str | None = None) -> D:
        """``{"entries": [{"id", "kind", "amount_usd", "job_id", "created_at", "memo"}],
        "next_cursor"}``, newest first; debits are negative."""
        params = clean({"limit": limit, "cursor": cursor})
        return self._call(Req("GET", f"{API}/account/ledger", params=params))

    # --- quotes and x402 top-ups ----------------------------------------------------------
    def list_quotes(self, limit: int | None = None, cursor: str | None = None) -> D:
        """``{"quotes": [...], "next_cursor"}``, newest first."""
        params = {"limit": limit, "cursor": cursor}
        return self._call(Req("GET", f"{API}/account/quotes", params=params))

    def topup_quote(self, amount_usd: float, payment_signature: str | None = None) -> D:
        """Without ``payment_signature`` the server answers 402: this raises
        :class:`~computalot.sdk.errors.PaymentRequired`, whose ``quote`` and
        ``payment_requirements`` say what to sign (then call :meth:`pay_quote_x402`). With one
        (a base64 x402 payment of that quote), the receipt."""
        headers = {"PAYMENT-SIGNATURE": payment_signature} if payment_signature else None
        body = {"amount_usd": amount_usd}
        return self._call(Req("POST", f"{API}/account/quotes/topup", json=body, headers=headers))

    def pay_quote_x402(self, quote_id: str, payment_signature: str) -> D:
        """Pay a quote with an x402 payment payload (base64 JSON, as an x402 client's
        ``encode_payment_signature_header`` makes it): ``{"quote", "ledger_entry", "payment",
        "available_usd"}``."""
        headers = {"PAYMENT-SIGNATURE": payment_signature}
        path = f"{API}/account/quotes/{seg(quote_id)}/pay/x402"
        return self._call(Req("POST", path, headers=headers))

    # --- admin (admin key only) -------------------------------------------------------------
    def admin_list_accounts(self) -> D:
        return self._call(Req("GET", f"{API}/admin/accounts"))

    def admin_create_account(
        self, name: str, role: str = "member", credit_usd: float | None = None
    ) -> D:
        """``{"account", "key"}``; ``key.token`` is shown this once."""
        body = clean({"name": name, "role": role, "credit_usd": credit_usd})
        return self._call(Req("POST", f"{API}/admin/accounts", json=body))

    def admin_list_keys(self, account_id: str) -> D:
        return self._call(Req("GET", f"{API}/admin/accounts/{seg(account_id)}/keys"))

    def admin_create_key(self, account_id: str, name: str | None = None) -> D:
        body = clean({"name": name})
        return self._call(Req("POST", f"{API}/admin/accounts/{seg(account_id)}/keys", json=body))

    def admin_revoke_key(self, key_id: str) -> D:
        return self._call(Req("POST", f"{API}/admin/keys/{seg(key_id)}/revoke"))

    def admin_whitelist_wallet(
        self, wallet_address: str, chain: str = "base", role: str = "member"
    ) -> D:
        body = {"wallet_address": wallet_address, "chain": chain, "role": role}
        return self._call(Req("POST", f"{API}/admin/wallets", json=body))

    def admin_grant(self, account_id: str, amount_usd: float, memo: str | None = None) -> D:
        body = clean({"amount_usd": amount_usd, "memo": memo})
        return self._call(Req("POST", f"{API}/admin/accounts/{seg(account_id)}/grants", json=body))

    def admin_list_feedback(self, limit: int | None = None) -> D:
        return self._call(Req("GET", f"{API}/admin/feedback", params={"limit": limit}))

    # --- projects ---------------------------------------------------------------------------
    def list_projects(self) -> D:
        return self._call(Req("GET", f"{API}/projects"))

    def create_project(
        self, name: str, remote_dir: str | None = None, description: str | None = None
    ) -> D:
        body = clean({"name": name, "remote_dir": remote_dir, "description": description})
        return self._call(Req("POST", f"{API}/projects", json=body))

    def get_project(self, name: str) -> D:
        return self._call(Req("GET", f"{API}/projects/{seg(name)}"))

    def update_project(self, name: str, **fields: Any) -> D:
        """Change ``description`` / ``remote_dir``."""
        return self._call(Req("PUT", f"{API}/projects/{seg(name)}", json=clean(fields)))

    def delete_project(self, name: str) -> D:
        return self._call(Req("DELETE", f"{API}/projects/{seg(name)}"))

    def push_project(
        self,
        name: str,
        path_or_tarball: str | os.PathLike[str] | bytes,
        exclude: Iterable[str] = (),
    ) -> D:
        """Publish a new revision from a directory (packed here, without what its
        ``.gitignore`` / ``.computalotignore`` files and the ``.gitignore``-style ``exclude``
        patterns leave out), a ``.tar.gz`` file, or bytes."""
        return self._call(push_request(name, tarball_bytes(path_or_tarball, exclude)))

    def init_project(self, name: str) -> D:
        """Warm the active revision on every node (202 ``initializing``; follow it with
        :meth:`project_status` or ``stream_project``). 402
        :class:`~computalot.sdk.errors.PaymentRequired` with a quote while less than $5 is
        available."""
        return self._call(Req("POST", f"{API}/projects/{seg(name)}/init", json={}))

    def invalidate_project(self, name: str) -> D:
        """Forget the active revision's warm state; the next init or job prepares it again."""
        return self._call(Req("POST", f"{API}/projects/{seg(name)}/invalidate", json={}))

    def project_status(self, name: str) -> D:
        return self._call(Req("GET", f"{API}/projects/{seg(name)}/status"))

    def project_status_details(self, name: str) -> D:
        return self._call(Req("GET", f"{API}/projects/{seg(name)}/status/details"))

    # --- project KV -------------------------------------------------------------------------
    def kv_put(self, name: str, key: str, value: Any, *, if_match: int | str | None = None) -> D:
        """Write a JSON value; ``if_match``: the version it must be at (0 = must not exist,
        ``"*"`` = must exist), else 409 :class:`~computalot.sdk.errors.Conflict`."""
        headers = {"Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = str(if_match)
        body = json.dumps(value).encode()
        req = Req("PUT", _kv_path(name, key), content=body, headers=headers, retry=if_match is None)
        return self._call(req)

    def kv_get(self, name: str, key: str) -> D:
        return self._call(Req("GET", _kv_path(name, key)))

    def kv_delete(self, name: str, key: str, *, if_match: int | str | None = None) -> D:
        headers = {"If-Match": str(if_match)} if if_match is not None else None
        req = Req("DELETE", _kv_path(name, key), headers=headers, retry=if_match is None)
        return self._call(req)

    def kv_list(
        self,
        name: str,
        *,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        values: bool | None = None,
    ) -> D:
        params = {"prefix": prefix, "limit": limit, "cursor": cursor}
        if values is not None:
            params["values"] = "true" if values else "false"
        return self._call(Req("GET", f"{API}/projects/{seg(name)}/kv", params=params))

    # --- jobs -------------------------------------------------------------------------------
    def submit_job(
        self,
        job: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> D:
        """Submit one job, as a dict, keywords, or both (keywords win; None keywords are dropped).

        The same ``idempotency_key`` within 24 h returns the first job instead of a new one.
        Without one, a fresh key is made for this call: retrying it is safe, a second call is a
        second job.
        """
        body = _job_body(job, fields)
        return self._call(Req("POST", f"{API}/jobs", json=body, headers=_idem(idempotency_key)))

    # --- recipes ----------------------------------------------------------------------------
    def list_recipes(self) -> D:
        """``{"recipes": [{"name", "description", "operations", "placement", "available"}]}``."""
        return self._call(Req("GET", f"{API}/recipes"))

    def get_recipe(self, name: str) -> D:
        """One recipe: operations, ``payload_schema``, ``artifact_inputs``, ``result_schema``,
        ``examples``."""
        return self._call(Req("GET", f"{API}/recipes/{seg(name)}"))

    def submit_recipe_job(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> D:
        """Submit a recipe job: ``payload`` plus the common job fields as keywords
        (``timeout_s``, ``priority``, ``tags``, ``requirements`` …). Idempotency keys as for
        :meth:`submit_job`."""
        body = _job_body({"payload": dict(payload)}, fields)
        path = f"{API}/recipes/{seg(name)}/jobs"
        return self._call(Req("POST", path, json=body, headers=_idem(idempotency_key)))

    def submit_jobs_batch(self, jobs: Iterable[Mapping[str, Any]]) -> D:
        """``{"jobs": [job | {"error": …}]}``, in order; each job is validated on its own."""
        body = {"jobs": [dict(j) for j in jobs]}
        return self._call(Req("POST", f"{API}/jobs/batch", json=body))

    def list_jobs(
        self,
        status: str | None = None,
        project: str | None = None,
        tag: str | None = None,
        type: str | None = None,
        limit: int | None = 50,
        cursor: str | None = None,
    ) -> D:
        params = {
            "status": status,
            "project": project,
            "tag": tag,
            "type": type,
            "limit": limit,
            "cursor": cursor,
        }
        return self._call(Req("GET", f"{API}/jobs", params=params))

    def get_job(self, job_id: str) -> D:
        return self._call(Req("GET", f"{API}/jobs/{seg(job_id)}"))

    def get_tasks(
        self,
        job_id: str,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> D:
        """``{"job_id", "tasks", "next_cursor"}``: 100 tasks a page unless ``limit`` says."""
        params = {"status": status, "limit": limit, "cursor": cursor}
        return self._call(Req("GET", f"{API}/jobs/{seg(job_id)}/tasks", params=params))

    def get_output(self, job_id: str, limit: int | None = None, cursor: str | None = None) -> D:
        """``{"job_id", "tasks": [{"task_id", "stdout", "stderr", …}], "next_cursor"}``."""
        params = {"limit": limit, "cursor": cursor}
        return self._call(Req("GET", f"{API}/jobs/{seg(job_id)}/output", params=params))

    def get_events(self, job_id: str, limit: int | None = 200, after: int | None = None) -> D:
        params = {"limit": limit, "after": after}
        return self._call(Req("GET", f"{API}/jobs/{seg(job_id)}/events", params=params))

    def cancel_job(self, job_id: str) -> D:
        """Stop the job; cancelling a finished job is not an error (the job comes back)."""
        return self._call(Req("PUT", f"{API}/jobs/{seg(job_id)}/cancel"))

    def get_results(self, job_id: str, limit: int | None = None, cursor: str | None = None) -> D:
        params = {"limit": limit, "cursor": cursor}
        return self._call(Req("GET", f"{API}/results/{seg(job_id)}", params=params))

    def presets(self) -> D:
        return self._call(Req("GET", f"{API}/presets"))

    # --- artifacts --------------------------------------------------------------------------
    def upload_artifact(
        self,
        path: str | os.PathLike[str],
        filename: str | None = None,
        content_type: str | None = None,
        sha256: str | None = None,
        progress: Progress | None = None,
    ) -> D:
        """Stream the file at ``path`` up as a new artifact (at most 2 GiB); ``sha256`` (hex)
        makes the server check the bytes it got; ``progress(n)`` is called with each chunk's
        size. Returns ``{"id": "art_…", ...}``."""
        headers = {
            "X-Artifact-Filename": filename or os.path.basename(os.fspath(path)),
            "Content-Type": content_type or "application/octet-stream",
        }
        if sha256:
            headers["X-Artifact-Sha256"] = sha256
        return self._call_upload(Req("POST", f"{API}/artifacts", headers=headers), path, progress)

    def create_direct_upload(
        self, sha256: str, size: int, filename: str, content_type: str | None = None
    ) -> D:
        """A URL to PUT the bytes to (S3 presigned, or signed on the API): ``{"artifact_id",
        "upload_url", "method", "headers", "expires_at"}``; then :meth:`put_direct_upload`."""
        body = clean(
            {"sha256": sha256, "size": size, "filename": filename, "content_type": content_type}
        )
        return self._call(Req("POST", f"{API}/artifacts/direct", json=body))

    def put_direct_upload(
        self,
        upload_url: str,
        path: str | os.PathLike[str],
        headers: Mapping[str, str] | None = None,
    ) -> D:
        """PUT the file to ``upload_url`` (a full URL from :meth:`create_direct_upload`, or the
        token of an API-signed one) with the ``headers`` it came with. The bearer token is never
        sent to a URL outside the API."""
        url = upload_url if "/" in upload_url else f"{API}/artifacts/direct/{seg(upload_url)}"
        return self._call_upload(Req("PUT", url, headers=dict(headers or {})), path)

    def complete_direct_upload(self, artifact_id: str) -> D:
        """Publish a direct upload once its bytes are at the URL (needed after an S3 PUT;
        after a PUT to the API the artifact is available already and this returns it)."""
        return self._call(Req("POST", f"{API}/artifacts/direct/{seg(artifact_id)}/complete"))

    def start_multipart_upload(
        self,
        filename: str,
        size: int,
        sha256: str | None = None,
        part_size: int | None = None,
        content_type: str | None = None,
    ) -> D:
        """``{"upload_id", "part_size", "part_count"}``: send parts 1..part_count (any order,
        again after a dropped connection), then :meth:`complete_multipart_upload`."""
        body = clean(
            {
                "filename": filename,
                "size": size,
                "sha256": sha256,
                "part_size": part_size,
                "content_type": content_type,
            }
        )
        return self._call(Req("POST", f"{API}/artifacts/multipart", json=body))

    def upload_part(self, upload_id: str, n: int, data: bytes) -> D:
        return self._call(
            Req(
                "PUT",
                f"{API}/artifacts/multipart/{seg(upload_id)}/parts/{int(n)}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
        )

    def multipart_status(self, upload_id: str) -> D:
        """Which parts have arrived (``parts``) and which not (``missing``): to resume."""
        return self._call(Req("GET", f"{API}/artifacts/multipart/{seg(upload_id)}"))

    def complete_multipart_upload(self, upload_id: str) -> D:
        return self._call(
            Req("POST", f"{API}/artifacts/multipart/complete", json={"upload_id": upload_id})
        )

    def list_artifacts(self, limit: int | None = None, cursor: str | None = None) -> D:
        params = {"limit": limit, "cursor": cursor}
        return self._call(Req("GET", f"{API}/artifacts", params=params))

    def artifact_meta(self, artifact_id: str) -> D:
        return self._call(Req("GET", f"{API}/artifacts/{seg(artifact_id)}/meta"))

    def download_artifact(
        self,
        artifact_id: str,
        path: str | os.PathLike[str],
        progress: Progress | None = None,
    ) -> D:
        """Stream the artifact's bytes into the file ``path``; returns ``{"path", "size",
        "sha256"}`` (the sha256 is the answer's ETag). ``progress(n)`` per chunk received."""
        req = Req("GET", f"{API}/artifacts/{seg(artifact_id)}", headers={"Accept": "*/*"})
        return self._call_download(req, path, progress)

    def delete_artifact(self, artifact_id: str) -> D:
        return self._call(Req("DELETE", f"{API}/artifacts/{seg(artifact_id)}"))
