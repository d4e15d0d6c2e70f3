"""The API foundation over real HTTP through Ray Serve: auth, roles, admin routes and CLI, the
error envelope, body limits and account isolation (docs/llms-full.md: "Errors", "Auth")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from computalot.store.models import LedgerEntry

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "computalot"
MiB = 1024 * 1024
ENVELOPE_KEYS = {"code", "message", "details", "recommended_action"}


def assert_envelope(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """docs/llms-full.md, "Errors": every non-2xx answer is ``{"error": {code, message, details, recommended_action}}``."""
    assert answer.status_code == status, answer.text
    assert "Traceback" not in answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert "token" not in body
    err = body["error"]
    assert set(err) >= ENVELOPE_KEYS, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["details"], list), err
    assert isinstance(err["recommended_action"], str) and err["recommended_action"], err
    return dict(err)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fake_token(kind: str = "flk") -> str:
    """Well-formed (right prefix, charset and length) but never issued."""
    return f"{kind}_" + ("A" * 43)


@pytest.fixture(scope="module")
def member(new_account: Any) -> httpx.Client:
    return new_account("member")


@pytest.fixture(scope="module")
def viewer(new_account: Any) -> httpx.Client:
    return new_account("viewer")


# ---- authentication ---------------------------------------------------------------------------


def test_missing_token_is_401(anon: httpx.Client) -> None:
    err = assert_envelope(anon.get("/api/v1/account"), 401, "unauthorized")
    assert "bearer" in err["recommended_action"].lower()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-token",
        "Bearer flk_short",
        "Bearer " + fake_token("flk") + "x",
        "Bearer",
        "Basic x",
        "Basic " + fake_token("flk"),
        "Token " + fake_token("flk"),
        fake_token("flk"),
    ],
)
def test_garbled_authorization_is_401(anon: httpx.Client, header: str) -> None:
    assert_envelope(
        anon.get("/api/v1/account", headers={"Authorization": header}), 401, "unauthorized"
    )


@pytest.mark.parametrize("kind", ["flk", "fls", "flt"])
def test_unknown_well_formed_token_is_401(anon: httpx.Client, kind: str) -> None:
    answer = anon.get("/api/v1/account", headers=bearer(fake_token(kind)))
    assert_envelope(answer, 401, "unauthorized")


def test_revoked_key_is_401_and_other_keys_keep_working(
    admin: httpx.Client, new_account: Any
) -> None:
    client = new_account("member")
    account_id = client.account["id"]
    assert client.get("/api/v1/account").status_code == 200
    second = admin.post(f"/api/v1/admin/accounts/{account_id}/keys", json={"name": "second"})
    assert second.status_code == 201, second.text
    second_token = second.json()["key"]["token"]
    keys = admin.get(f"/api/v1/admin/accounts/{account_id}/keys").json()["keys"]
    first_key = next(k for k in keys if k["name"] == "initial")

    revoked = admin.post(f"/api/v1/admin/keys/{first_key['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["key"]["revoked_at"]
    assert "token" not in revoked.json()["key"]

    err = assert_envelope(client.get("/api/v1/account"), 401, "unauthorized")
    assert "revoked" in err["message"]
    ok = client.get("/api/v1/account", headers=bearer(second_token))
    assert ok.status_code == 200, ok.text
    assert ok.json()["id"] == account_id
    # Revoking twice is harmless and keeps the first timestamp.
    again = admin.post(f"/api/v1/admin/keys/{first_key['id']}/revoke")
    assert again.status_code == 200
    assert again.json()["key"]["revoked_at"] == revoked.json()["key"]["revoked_at"]


def test_account_shape(member: httpx.Client) -> None:
    answer = member.get("/api/v1/account")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {
        "id",
        "name",
        "role",
        "wallet_address",
        "chain",
        "callback_secret",
        "created_at",
    }
    assert body["id"] == member.account["id"]
    assert body["id"].startswith("acct_")
    assert body["name"] == member.account["name"]
    assert body["role"] == "member"
    assert body["wallet_address"] is None and body["chain"] is None
    assert isinstance(body["callback_secret"], str) and len(body["callback_secret"]) >= 32
    assert body["created_at"].endswith(("Z", "+00:00"))


def test_viewer_reads_but_cannot_write(viewer: httpx.Client) -> None:
    me = viewer.get("/api/v1/account")
    assert me.status_code == 200 and me.json()["role"] == "viewer"
    assert viewer.get("/api/v1/projects").status_code == 200
    err = assert_envelope(
        viewer.post("/api/v1/projects", json={"name": f"v-{uuid.uuid4().hex[:8]}"}),
        403,
        "forbidden",
    )
    assert "viewer" in err["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/admin/accounts", None),
        ("POST", "/api/v1/admin/accounts", {"name": "sneaky", "role": "admin"}),
        ("GET", "/api/v1/admin/feedback", None),
        ("POST", "/api/v1/admin/wallets", {"wallet_address": "0x" + "1" * 40}),
        ("POST", "/api/v1/admin/keys/key_x/revoke", None),
    ],
)
def test_member_cannot_call_admin_routes(
    member: httpx.Client, viewer: httpx.Client, method: str, path: str, body: Any
) -> None:
    for client in (member, viewer):
        assert_envelope(client.request(method, path, json=body), 403, "forbidden")


def test_admin_routes_need_a_token(anon: httpx.Client) -> None:
    assert_envelope(anon.get("/api/v1/admin/accounts"), 401, "unauthorized")


def test_register_is_closed(anon: httpx.Client, member: httpx.Client) -> None:
    for client in (anon, member):
        err = assert_envelope(
            client.post("/api/v1/auth/register", json={"name": "me"}), 403, "forbidden"
        )
        assert "feedback" in err["recommended_action"]


# ---- admin routes -----------------------------------------------------------------------------


def test_admin_create_account_shows_the_key_once(admin: httpx.Client, platform: Any) -> None:
    name = f"created-{uuid.uuid4().hex[:8]}"
    answer = admin.post("/api/v1/admin/accounts", json={"name": name, "role": "viewer"})
    assert answer.status_code == 201, answer.text
    account, key = answer.json()["account"], answer.json()["key"]
    assert account["name"] == name and account["role"] == "viewer"
    assert account["id"].startswith("acct_")
    token = key["token"]
    assert token.startswith("flk_") and key["id"].startswith("key_")
    assert key["account_id"] == account["id"]
    assert token.startswith(key["prefix"])

    listed = admin.get(f"/api/v1/admin/accounts/{account['id']}/keys")
    assert listed.status_code == 200, listed.text
    assert [k["id"] for k in listed.json()["keys"]] == [key["id"]]
    assert all("token" not in k for k in listed.json()["keys"])
    assert token not in listed.text
    accounts = admin.get("/api/v1/admin/accounts")
    assert accounts.status_code == 200
    assert account["id"] in {a["id"] for a in accounts.json()["accounts"]}
    assert token not in accounts.text

    me = httpx.get(f"{platform.url}/api/v1/account", headers=bearer(token), timeout=60)
    assert me.status_code == 200 and me.json()["id"] == account["id"]


def test_admin_create_key(admin: httpx.Client, new_account: Any) -> None:
    client = new_account("member")
    answer = admin.post(f"/api/v1/admin/accounts/{client.account['id']}/keys")
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]
    assert key["token"].startswith("flk_") and key["token"] != client.token
    me = client.get("/api/v1/account", headers=bearer(key["token"]))
    assert me.status_code == 200 and me.json()["id"] == client.account["id"]


def test_admin_unknown_ids_are_404(admin: httpx.Client) -> None:
    assert_envelope(admin.post("/api/v1/admin/accounts/acct_nope/keys"), 404, "not_found")
    assert_envelope(admin.get("/api/v1/admin/accounts/acct_nope/keys"), 404, "not_found")
    assert_envelope(admin.post("/api/v1/admin/keys/key_nope/revoke"), 404, "not_found")
    assert_envelope(
        admin.post("/api/v1/admin/accounts/acct_nope/grants", json={"amount_usd": 1}),
        404,
        "not_found",
    )


def test_admin_bad_role_is_422_naming_role(admin: httpx.Client) -> None:
    err = assert_envelope(
        admin.post("/api/v1/admin/accounts", json={"name": "x", "role": "superuser"}),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["role"]
    assert "role" in err["message"]
    err = assert_envelope(
        admin.post(
            "/api/v1/admin/wallets", json={"wallet_address": "0x" + "2" * 40, "role": "owner"}
        ),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["role"]


def test_admin_whitelist_wallet_normalizes_the_address(admin: httpx.Client) -> None:
    from eth_account import Account

    wallet = Account.create()
    answer = admin.post(
        "/api/v1/admin/wallets",
        json={"wallet_address": wallet.address.lower(), "role": "viewer", "name": "w"},
    )
    assert answer.status_code == 201, answer.text
    entry = answer.json()["wallet"]
    assert entry["wallet_address"] == wallet.address  # EIP-55 checksum form
    assert entry["chain"] == "base" and entry["role"] == "viewer"
    # Whitelisting again updates rather than conflicts.
    again = admin.post(
        "/api/v1/admin/wallets", json={"wallet_address": wallet.address, "role": "member"}
    )
    assert again.status_code == 201, again.text
    assert again.json()["wallet"]["role"] == "member"
    err = assert_envelope(
        admin.post("/api/v1/admin/wallets", json={"wallet_address": "0x1234"}),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["wallet_address"]
    err = assert_envelope(
        admin.post(
            "/api/v1/admin/wallets", json={"wallet_address": wallet.address, "chain": "dogecoin"}
        ),
        422,
        "validation_error",
    )
    assert err["details"][0]["loc"] == ["chain"]


def test_admin_grant_credit(admin: httpx.Client, new_account: Any) -> None:
    client = new_account("member")
    account_id = client.account["id"]
    answer = admin.post(
        f"/api/v1/admin/accounts/{account_id}/grants", json={"amount_usd": 12.5, "memo": "beta"}
    )
    assert answer.status_code == 201, answer.text
    entry = answer.json()["entry"]
    assert entry["amount_usd"] == 12.5
    assert entry["account_id"] == account_id
    assert entry["kind"] == "grant" and entry["memo"] == "beta"
    assert entry["id"].startswith("led_")
    for bad in (0, -1, "lots"):
        err = assert_envelope(
            admin.post(f"/api/v1/admin/accounts/{account_id}/grants", json={"amount_usd": bad}),
            422,
            "validation_error",
        )
        assert err["details"][0]["loc"] == ["amount_usd"]


def test_admin_create_account_with_credit(admin: httpx.Client, platform: Any) -> None:
    answer = admin.post(
        "/api/v1/admin/accounts",
        json={"name": f"rich-{uuid.uuid4().hex[:6]}", "role": "member", "credit_usd": 7.25},
    )
    assert answer.status_code == 201, answer.text
    assert ledger_total(platform, answer.json()["account"]["id"]) == Decimal("7.25")


# ---- admin CLI against the same store -----------------------------------------------------------


def ledger_total(platform: Any, account_id: str) -> Decimal:
    url = platform.settings.resolved_database_url.replace("sqlite+aiosqlite://", "sqlite://")
    engine = create_engine(url, connect_args={"timeout": 30})
    try:
        with engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(LedgerEntry.amount_usd), 0)).where(
                    LedgerEntry.account_id == account_id
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return Decimal(str(total)).quantize(Decimal("0.000001"))


@pytest.fixture(scope="module")
def cli(platform: Any) -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTALOT_")}
    data_dir = str(platform.settings.data_dir)
    exe = str(CLI) if CLI.exists() else None

    def run(*args: str, expect_ok: bool = True) -> Any:
        cmd = [exe] if exe else [sys.executable, "-m", "computalot.cli"]
        proc = subprocess.run(
            [*cmd, "admin", *args, "--data-dir", data_dir],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        if not expect_ok:
            return proc
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    yield run


def test_cli_admin_commands_drive_the_running_api(cli: Any, platform: Any) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = cli("create-account", "--name", name, "--role", "member", "--credit", "5", "--json")
    assert created["name"] == name and created["role"] == "member"
    token, account_id = created["api_key"], created["account_id"]
    assert token.startswith("flk_") and account_id.startswith("acct_")
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        me = client.get("/api/v1/account", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["id"] == account_id
        assert me.json()["name"] == name and me.json()["role"] == "member"
        assert ledger_total(platform, account_id) == Decimal("5")

        extra = cli("create-key", "--account", account_id, "--json")
        assert extra["account_id"] == account_id
        assert extra["api_key"].startswith("flk_") and extra["api_key"] != token
        assert client.get("/api/v1/account", headers=bearer(extra["api_key"])).status_code == 200

        revoked = cli("revoke-key", extra["key_id"], "--json")
        assert revoked["key_id"] == extra["key_id"] and revoked["revoked_at"] != "None"
        assert_envelope(
            client.get("/api/v1/account", headers=bearer(extra["api_key"])), 401, "unauthorized"
        )
        assert client.get("/api/v1/account", headers=bearer(token)).status_code == 200

        granted = cli("grant", "--account", account_id, "--amount", "2.5", "--json")
        assert granted["account_id"] == account_id and granted["amount_usd"] == 2.5
        assert ledger_total(platform, account_id) == Decimal("7.5")


def test_cli_whitelist_wallet_lets_the_wallet_sign_in(cli: Any, platform: Any) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    wallet = Account.create()
    listed = cli(
        "whitelist-wallet", "--wallet", wallet.address.lower(), "--role", "viewer", "--json"
    )
    assert listed == {"wallet_address": wallet.address, "chain": "base", "role": "viewer"}
    with httpx.Client(base_url=platform.url, timeout=60) as client:
        challenge = client.post(
            "/api/v1/auth/wallet/challenge", json={"wallet_address": wallet.address}
        ).json()["challenge"]
        signed = Account.sign_message(
            encode_defunct(text=challenge["message"]), private_key=wallet.key
        )
        verified = client.post(
            "/api/v1/auth/wallet/verify",
            json={
                "challenge_id": challenge["id"],
                "wallet_address": wallet.address,
                "signature": "0x" + signed.signature.hex().removeprefix("0x"),
            },
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["account"]["role"] == "viewer"


def test_cli_errors_exit_nonzero_without_a_traceback(cli: Any) -> None:
    bad_role = cli("create-account", "--name", "x", "--role", "root", "--json", expect_ok=False)
    assert bad_role.returncode != 0
    assert "role" in bad_role.stderr and "Traceback" not in bad_role.stderr
    missing = cli("revoke-key", "key_missing", "--json", expect_ok=False)
    assert missing.returncode != 0
    assert "not_found" in missing.stderr and "Traceback" not in missing.stderr
    bad_wallet = cli("whitelist-wallet", "--wallet", "0xnope", expect_ok=False)
    assert bad_wallet.returncode != 0 and "Traceback" not in bad_wallet.stderr


# ---- the error envelope -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b'{"type": "bug",', b"\xff\xfe"])
def test_malformed_json_is_400(anon: httpx.Client, admin: httpx.Client, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    assert_envelope(anon.post("/api/v1/feedback", content=raw, headers=headers), 400, "bad_request")
    assert_envelope(
        admin.post("/api/v1/admin/accounts", content=raw, headers=headers), 400, "bad_request"
    )


def test_schema_violation_is_422_naming_the_field(anon: httpx.Client) -> None:
    base = {"type": "bug", "title": "t", "description": "d"}
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({**base, "type": "nope"}, ["type"]),
        ({k: v for k, v in base.items() if k != "title"}, ["title"]),
        ({**base, "description": ""}, ["description"]),
        ({**base, "bogus": 1}, ["bogus"]),
    ]
    for body, loc in cases:
        err = assert_envelope(anon.post("/api/v1/feedback", json=body), 422, "validation_error")
        assert err["details"][0]["loc"] == loc, err
        assert err["message"].startswith(loc[0]), err
    # A JSON value of the wrong shape is a schema error too, not a parse error.
    err = assert_envelope(anon.post("/api/v1/feedback", json=[1, 2]), 422, "validation_error")
    assert err["details"], err


def test_unknown_route_is_404_envelope(anon: httpx.Client, member: httpx.Client) -> None:
    assert_envelope(anon.get("/no/such/route"), 404, "not_found")
    assert_envelope(member.get("/api/v1/nope"), 404, "not_found")
    assert_envelope(anon.post("/api/v1/nope", json={}), 404, "not_found")


def test_wrong_method_is_405_envelope(anon: httpx.Client, member: httpx.Client) -> None:
    answer = anon.delete("/health")
    assert_envelope(answer, 405, "method_not_allowed")
    assert "GET" in answer.headers.get("allow", "")
    assert_envelope(member.put("/api/v1/account", json={}), 405, "method_not_allowed")
    assert_envelope(anon.get("/api/v1/auth/wallet/verify"), 405, "method_not_allowed")


# ---- body limits and the rate limiter -----------------------------------------------------------


def test_json_body_over_16_mib_with_content_length_is_413(anon: httpx.Client) -> None:
    body = b'{"type": "bug", "title": "t", "description": "' + b"x" * (17 * MiB) + b'"}'
    answer = anon.post(
        "/api/v1/feedback",
        content=body,
        headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    err = assert_envelope(answer, 413, "payload_too_large")
    assert str(16 * MiB) in err["message"]


def test_json_body_of_exactly_16_mib_is_read(anon: httpx.Client) -> None:
    body = b'{"type": "bug", "title": "t", "description": "d"}'
    body += b" " * (16 * MiB - len(body))
    answer = anon.post(
        "/api/v1/feedback", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 201, answer.text[:500]


def test_chunked_json_body_over_16_mib_is_413(anon: httpx.Client) -> None:
    chunk = b"x" * MiB

    def chunks() -> Iterator[bytes]:
        yield b'{"type": "bug", "title": "t", "description": "'
        for _ in range(17):
            yield chunk
        yield b'"}'

    request = anon.build_request(
        "POST", "/api/v1/feedback", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers.get("transfer-encoding") == "chunked"
    answer = anon.send(request)
    err = assert_envelope(answer, 413, "payload_too_large")
    assert "limit" in err["message"]


def test_chunked_body_under_the_limit_is_accepted(anon: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "bug", "title": "chunked", '
        yield b'"description": "' + b"y" * 5000 + b'"}'

    answer = anon.post(
        "/api/v1/feedback", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 201, answer.text


def test_normal_traffic_is_not_rate_limited(member: httpx.Client) -> None:
    for _ in range(20):
        answer = member.get("/api/v1/account")
        assert answer.status_code == 200, answer.text
        assert "retry-after" not in answer.headers


# ---- account isolation ---------------------------------------------------------------------------


def test_accounts_never_see_each_other(new_account: Any) -> None:
    alice, bob = new_account("member"), new_account("member")
    a, b = alice.get("/api/v1/account"), bob.get("/api/v1/account")
    assert a.status_code == b.status_code == 200
    a_body, b_body = a.json(), b.json()
    assert a_body["id"] == alice.account["id"] and b_body["id"] == bob.account["id"]
    assert a_body["id"] != b_body["id"]
    assert a_body["callback_secret"] != b_body["callback_secret"]
    for secret in (b_body["id"], b_body["callback_secret"], b_body["name"], bob.token):
        assert secret not in a.text
    for secret in (a_body["id"], a_body["callback_secret"], a_body["name"], alice.token):
        assert secret not in b.text

    project = f"iso-{uuid.uuid4().hex[:8]}"
    assert alice.post("/api/v1/projects", json={"name": project}).status_code == 201
    assert alice.get(f"/api/v1/projects/{project}").status_code == 200
    # Another account's project is "not found", never "forbidden" (docs/llms-full.md, "Errors").
    assert_envelope(bob.get(f"/api/v1/projects/{project}"), 404, "not_found")
    assert project not in bob.get("/api/v1/projects").text
    # The name is per account: Bob may use it too.
    assert bob.post("/api/v1/projects", json={"name": project}).status_code == 201
    assert_envelope(alice.post("/api/v1/projects", json={"name": project}), 409, "conflict")


def test_probes_answer_head(anon: httpx.Client) -> None:
    for path in ("/health", "/live", "/ready"):
        assert anon.head(path).status_code == 200, path


def test_form_encoded_body_is_415_with_a_hint(anon: httpx.Client) -> None:
    # What `curl -d '{...}'` sends without -H 'Content-Type: application/json'.
    answer = anon.post(
        "/api/v1/feedback",
        content=b"type=bug&title=t",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    err = assert_envelope(answer, 415, "unsupported_media_type")
    assert "application/json" in err["recommended_action"]
