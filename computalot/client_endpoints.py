"""Every REST route of SPEC §3 to §10 as one method, written once for both SDK clients.

:class:`Endpoints` only *describes* calls (a :class:`Req`) and hands them to ``_call`` /
``_call_text``. The sync client implements those to return ``dict`` / ``str``; the async client
returns awaitables of the same. The type parameters carry that difference, so
``await async_client.get_job(id)`` and ``client.get_job(id)`` are both typed as dicts and no
route is spelled twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from computalot.client_base import API, Req, clean, push_request, seg, tarball_bytes

D = TypeVar("D")  # what a JSON call returns: dict, or an awaitable dict
S = TypeVar("S")  # what a text call returns: str, or an awaitable str


def _job_body(job: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {**(job or {}), **clean(fields)}


def _idem(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


class Endpoints(Generic[D, S]):
    """Route methods; subclasses provide ``_call`` (JSON answer) and ``_call_text`` (text)."""

    def _call(self, req: Req) -> D:
        raise NotImplementedError

    def _call_text(self, req: Req) -> S:
        raise NotImplementedError

    # --- ops and discovery (SPEC §10) -------------------------------------------------------
    def health(self) -> D:
        return self._call(Req("GET", "/health"))

    def ready(self) -> D:
        """``{"status": "ready", ...}``; raises NotReady (503) while the store or engine is down."""
        return self._call(Req("GET", "/ready"))

    def llms_txt(self, full: bool = False) -> S:
        return self._call_text(Req("GET", "/llms-full.txt" if full else "/llms.txt", expect="text"))

    def skill_md(self) -> S:
        return self._call_text(Req("GET", "/skill.md", expect="text"))

    def docs_index(self) -> D:
        return self._call(Req("GET", f"{API}/docs"))

    def send_feedback(self, type: str, title: str, description: str) -> D:
        body = {"type": type, "title": title, "description": description}
        return self._call(Req("POST", f"{API}/feedback", json=body))

    # --- account and auth (SPEC §3) ---------------------------------------------------------
    def account(self) -> D:
        return self._call(Req("GET", f"{API}/account"))

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

    # --- projects (SPEC §4) -----------------------------------------------------------------
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

    def push_project(self, name: str, path_or_tarball: str | os.PathLike[str] | bytes) -> D:
        """Publish a new revision from a directory (packed here), a ``.tar.gz`` file, or bytes."""
        return self._call(push_request(name, tarball_bytes(path_or_tarball)))

    def init_project(self, name: str) -> D:
        return self._call(Req("POST", f"{API}/projects/{seg(name)}/init", json={}))

    def invalidate_project(self, name: str) -> D:
        return self._call(Req("POST", f"{API}/projects/{seg(name)}/invalidate", json={}))

    def project_status(self, name: str) -> D:
        return self._call(Req("GET", f"{API}/projects/{seg(name)}/status"))

    def project_status_details(self, name: str) -> D:
        return self._call(Req("GET", f"{API}/projects/{seg(name)}/status/details"))

    def kv_get(self, name: str, key: str) -> D:
        return self._call(Req("GET", f"{API}/projects/{seg(name)}/kv/{seg(key)}"))

    def kv_put(self, name: str, key: str, value: Any, if_match: int | str | None = None) -> D:
        """Write a JSON value; with ``if_match`` it is a compare-and-set (Conflict on mismatch)."""
        headers = {"If-Match": str(if_match)} if if_match is not None else None
        path = f"{API}/projects/{seg(name)}/kv/{seg(key)}"
        return self._call(Req("PUT", path, json=value, headers=headers))

    # --- jobs (SPEC §5) ---------------------------------------------------------------------
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
        """
        body = _job_body(job, fields)
        return self._call(Req("POST", f"{API}/jobs", json=body, headers=_idem(idempotency_key)))

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

    def get_tasks(self, job_id: str) -> D:
        return self._call(Req("GET", f"{API}/jobs/{seg(job_id)}/tasks"))

    def get_output(self, job_id: str) -> D:
        return self._call(Req("GET", f"{API}/jobs/{seg(job_id)}/output"))

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

    # --- recipes (SPEC §8) ------------------------------------------------------------------
    def list_recipes(self) -> D:
        return self._call(Req("GET", f"{API}/recipes"))

    def get_recipe(self, name: str) -> D:
        return self._call(Req("GET", f"{API}/recipes/{seg(name)}"))

    def submit_recipe_job(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> D:
        """Run a sealed recipe; ``fields`` are the common job fields (timeout_s, tags, …)."""
        body = {"payload": dict(payload), **clean(fields)}
        path = f"{API}/recipes/{seg(name)}/jobs"
        return self._call(Req("POST", path, json=body, headers=_idem(idempotency_key)))

    # --- artifacts metadata (SPEC §7; bytes go through upload/download_artifact) ------------
    def list_artifacts(self, limit: int | None = None, cursor: str | None = None) -> D:
        params = {"limit": limit, "cursor": cursor}
        return self._call(Req("GET", f"{API}/artifacts", params=params))

    def artifact_meta(self, artifact_id: str) -> D:
        return self._call(Req("GET", f"{API}/artifacts/{seg(artifact_id)}/meta"))

    # --- billing (SPEC §9) ------------------------------------------------------------------
    def balance(self) -> D:
        """``{"ledger_balance_usd", "held_usd", "available_usd"}``."""
        return self._call(Req("GET", f"{API}/account/balance"))

    def ledger(self) -> D:
        return self._call(Req("GET", f"{API}/account/ledger"))

    def holds(self) -> D:
        return self._call(Req("GET", f"{API}/account/holds"))

    def quotes(self) -> D:
        return self._call(Req("GET", f"{API}/account/quotes"))

    def topup(self, amount_usd: float) -> D:
        """A top-up quote with its x402 payment requirements (the server's 402 is the answer)."""
        body = {"amount_usd": amount_usd}
        req = Req("POST", f"{API}/account/quotes/topup", json=body, ok=frozenset({402}))
        return self._call(req)

    def pay_quote_x402(self, quote_id: str, payment_signature: str) -> D:
        """Settle a quote with a base64 x402 payment payload (sent as ``PAYMENT-SIGNATURE``)."""
        path = f"{API}/account/quotes/{seg(quote_id)}/pay/x402"
        return self._call(Req("POST", path, headers={"PAYMENT-SIGNATURE": payment_signature}))
