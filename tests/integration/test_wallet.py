"""Wallet sign-in (docs/llms-full.md, "Auth") over real HTTP with real secp256k1 keys: challenge → personal_sign →
verify → ``fls_`` session, and every way it must refuse."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import Engine, create_engine, update

from computalot.ids import hash_token
from computalot.store.models import WalletChallenge, WalletSession

ENVELOPE_KEYS = {"code", "message", "details", "recommended_action"}


def assert_envelope(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert "Traceback" not in answer.text
    body = answer.json()
    assert "token" not in body, "a refused sign-in must never carry a token"
    assert "fls_" not in answer.text
    err = body["error"]
    assert set(err) >= ENVELOPE_KEYS, err
    assert err["code"] == code, err
    return dict(err)


def sign(message: str, key: Any) -> str:
    """``personal_sign`` as a wallet does it: 0x + 130 hex characters."""
    signed = Account.sign_message(encode_defunct(text=message), private_key=key)
    return "0x" + signed.signature.hex().removeprefix("0x")


@pytest.fixture(scope="module")
def db(platform: Any) -> Iterator[Engine]:
    """A sync engine on the platform's SQLite store, to age challenges and sessions."""
    url = platform.settings.resolved_database_url
    assert url.startswith("sqlite+aiosqlite://"), url
    engine = create_engine(
        url.replace("sqlite+aiosqlite://", "sqlite://"), connect_args={"timeout": 30}
    )
    yield engine
    engine.dispose()


@pytest.fixture
def wallet(admin: httpx.Client) -> Any:
    """A fresh, whitelisted (member) wallet."""
    acct = Account.create()
    answer = admin.post("/api/v1/admin/wallets", json={"wallet_address": acct.address})
    assert answer.status_code == 201, answer.text
    return acct


def challenge(client: httpx.Client, address: str, **extra: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/auth/wallet/challenge", json={"wallet_address": address, **extra})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["challenge"])


def verify(client: httpx.Client, challenge_id: str, address: str, signature: str) -> httpx.Response:
    return client.post(
        "/api/v1/auth/wallet/verify",
        json={"challenge_id": challenge_id, "wallet_address": address, "signature": signature},
    )


def test_challenge_is_an_eip4361_message(anon: httpx.Client, platform: Any, wallet: Any) -> None:
    ch = challenge(anon, wallet.address.lower(), chain="base")
    assert ch["id"].startswith("wch_")
    assert ch["wallet_address"] == wallet.address
    assert ch["chain"] == "base"
    message = ch["message"]
    lines = message.split("\n")
    domain = urlparse(platform.url).netloc
    assert lines[0] == f"{domain} wants you to sign in with your Ethereum account:"
    assert lines[1] == wallet.address  # checksummed even though we sent it lowercase
    assert f"URI: {platform.url.rstrip('/')}" in lines
    assert "Version: 1" in lines
    assert "Chain ID: 8453" in lines
    nonce = next(line.split(": ", 1)[1] for line in lines if line.startswith("Nonce: "))
    assert len(nonce) >= 8 and nonce.isalnum()
    assert any(line.startswith("Issued At: ") for line in lines)
    assert any(line.startswith("Expiration Time: ") for line in lines)
    expires = datetime.fromisoformat(ch["expires_at"].replace("Z", "+00:00"))
    remaining = expires - datetime.now(UTC)
    assert timedelta(minutes=3) < remaining <= timedelta(minutes=5, seconds=5)
    # Every challenge has its own nonce.
    other = challenge(anon, wallet.address)
    assert other["id"] != ch["id"] and other["message"] != message


def test_sign_in_gives_a_working_session(anon: httpx.Client, platform: Any, wallet: Any) -> None:
    ch = challenge(anon, wallet.address)
    answer = verify(anon, ch["id"], wallet.address, sign(ch["message"], wallet.key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    token = body["token"]
    assert token.startswith("fls_")
    assert body["account"]["wallet_address"] == wallet.address
    assert body["account"]["chain"] == "base"
    assert body["account"]["role"] == "member"
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24, minutes=1)

    with httpx.Client(base_url=platform.url, timeout=60) as client:
        me = client.get("/api/v1/account", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["id"] == body["account"]["id"]
        assert me.json()["wallet_address"] == wallet.address
        assert me.json()["chain"] == "base"
        assert me.json()["role"] == "member"

    # Signing in again (signature without 0x, as eth-account prints it) reuses the account.
    ch2 = challenge(anon, wallet.address)
    again = verify(anon, ch2["id"], wallet.address, sign(ch2["message"], wallet.key)[2:])
    assert again.status_code == 200, again.text
    assert again.json()["account"]["id"] == body["account"]["id"]
    assert again.json()["token"] != token


def test_whitelisted_role_carries_over(
    admin: httpx.Client, anon: httpx.Client, platform: Any
) -> None:
    acct = Account.create()
    assert (
        admin.post(
            "/api/v1/admin/wallets", json={"wallet_address": acct.address, "role": "viewer"}
        ).status_code
        == 201
    )
    ch = challenge(anon, acct.address)
    answer = verify(anon, ch["id"], acct.address, sign(ch["message"], acct.key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["account"]["role"] == "viewer"
    with httpx.Client(
        base_url=platform.url,
        headers={"Authorization": f"Bearer {answer.json()['token']}"},
        timeout=60,
    ) as client:
        assert client.get("/api/v1/account").json()["role"] == "viewer"
        refused = client.post("/api/v1/projects", json={"name": "wallet-viewer"})
        assert refused.status_code == 403, refused.text


def test_replayed_signature_is_401(anon: httpx.Client, wallet: Any) -> None:
    ch = challenge(anon, wallet.address)
    signature = sign(ch["message"], wallet.key)
    assert verify(anon, ch["id"], wallet.address, signature).status_code == 200
    err = assert_envelope(verify(anon, ch["id"], wallet.address, signature), 401, "unauthorized")
    assert "used" in err["message"]


def test_signature_by_another_key_is_401(anon: httpx.Client, wallet: Any) -> None:
    ch = challenge(anon, wallet.address)
    forger = Account.create()
    assert_envelope(
        verify(anon, ch["id"], wallet.address, sign(ch["message"], forger.key)), 401, "unauthorized"
    )
    # A refused attempt does not burn the challenge for its owner.
    assert (
        verify(anon, ch["id"], wallet.address, sign(ch["message"], wallet.key)).status_code == 200
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace("Chain ID: 8453", "Chain ID: 1"),
        lambda m: m.replace("Sign in to Computalot.", "Sign in to Computalot. Transfer all."),
        lambda m: m.rsplit("\n", 1)[0] + "\nExpiration Time: 2999-01-01T00:00:00Z",
        lambda m: m + "\n",
    ],
    ids=["chain", "statement", "expiry", "trailing-newline"],
)
def test_signature_over_a_tampered_message_is_401(
    anon: httpx.Client, wallet: Any, tamper: Any
) -> None:
    ch = challenge(anon, wallet.address)
    tampered = tamper(ch["message"])
    assert tampered != ch["message"]
    assert_envelope(
        verify(anon, ch["id"], wallet.address, sign(tampered, wallet.key)), 401, "unauthorized"
    )


def test_wrong_wallet_for_the_challenge_is_401(
    anon: httpx.Client, admin: httpx.Client, wallet: Any
) -> None:
    other = Account.create()
    assert (
        admin.post("/api/v1/admin/wallets", json={"wallet_address": other.address}).status_code
        == 201
    )
    ch = challenge(anon, wallet.address)
    # The other (whitelisted) wallet signs the message issued for the first one.
    assert_envelope(
        verify(anon, ch["id"], other.address, sign(ch["message"], other.key)), 401, "unauthorized"
    )
    # Claiming the right wallet with the other wallet's signature is refused as well.
    assert_envelope(
        verify(anon, ch["id"], wallet.address, sign(ch["message"], other.key)), 401, "unauthorized"
    )


def test_expired_challenge_is_401(anon: httpx.Client, wallet: Any, db: Engine) -> None:
    ch = challenge(anon, wallet.address)
    with db.begin() as conn:
        changed = conn.execute(
            update(WalletChallenge)
            .where(WalletChallenge.id == ch["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        assert changed.rowcount == 1
    err = assert_envelope(
        verify(anon, ch["id"], wallet.address, sign(ch["message"], wallet.key)), 401, "unauthorized"
    )
    assert "expired" in err["message"]


@pytest.mark.parametrize("challenge_id", ["wch_" + "A" * 22, "nope", "x" * 64])
def test_unknown_challenge_is_401(anon: httpx.Client, wallet: Any, challenge_id: str) -> None:
    real = challenge(anon, wallet.address)
    assert_envelope(
        verify(anon, challenge_id, wallet.address, sign(real["message"], wallet.key)),
        401,
        "unauthorized",
    )


@pytest.mark.parametrize("signature", ["0x", "0x" + "00" * 65, "zz" * 65, "0x" + "ab" * 64])
def test_garbage_signature_is_401(anon: httpx.Client, wallet: Any, signature: str) -> None:
    ch = challenge(anon, wallet.address)
    assert_envelope(verify(anon, ch["id"], wallet.address, signature), 401, "unauthorized")


def test_wallet_not_whitelisted_is_403(anon: httpx.Client, admin: httpx.Client) -> None:
    stranger = Account.create()
    ch = challenge(anon, stranger.address)
    signature = sign(ch["message"], stranger.key)
    err = assert_envelope(verify(anon, ch["id"], stranger.address, signature), 403, "forbidden")
    assert "whitelist" in err["message"]
    # The refused challenge stays consumed: whitelisting afterwards does not revive it ...
    assert (
        admin.post("/api/v1/admin/wallets", json={"wallet_address": stranger.address}).status_code
        == 201
    )
    assert_envelope(verify(anon, ch["id"], stranger.address, signature), 401, "unauthorized")
    # ... but a fresh challenge now succeeds.
    fresh = challenge(anon, stranger.address)
    ok = verify(anon, fresh["id"], stranger.address, sign(fresh["message"], stranger.key))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("address", ["0x1234", "not-an-address", "0x" + "g" * 40, ""])
def test_bad_address_is_422(anon: httpx.Client, address: str) -> None:
    answer = anon.post("/api/v1/auth/wallet/challenge", json={"wallet_address": address})
    assert answer.status_code == 422, answer.text
    err = answer.json()["error"]
    assert err["code"] == "validation_error"
    assert err["details"][0]["loc"] == ["wallet_address"]
    answer = verify(anon, "wch_" + "A" * 22, address, "0x" + "ab" * 65)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["loc"] == ["wallet_address"]


def test_bad_chain_is_422(anon: httpx.Client, wallet: Any) -> None:
    answer = anon.post(
        "/api/v1/auth/wallet/challenge",
        json={"wallet_address": wallet.address, "chain": "dogecoin"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["loc"] == ["chain"]


def test_other_chain_puts_its_chain_id_in_the_message(anon: httpx.Client) -> None:
    acct = Account.create()
    ch = challenge(anon, acct.address, chain="base-sepolia")
    assert "Chain ID: 84532" in ch["message"].split("\n")


def test_expired_session_is_401(anon: httpx.Client, platform: Any, wallet: Any, db: Engine) -> None:
    ch = challenge(anon, wallet.address)
    answer = verify(anon, ch["id"], wallet.address, sign(ch["message"], wallet.key))
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    with httpx.Client(
        base_url=platform.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        assert client.get("/api/v1/account").status_code == 200
        with db.begin() as conn:
            changed = conn.execute(
                update(WalletSession)
                .where(WalletSession.token_hash == hash_token(token))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            assert changed.rowcount == 1
        # Each replica remembers a verified credential for at most a second (serve_app.
        # auth_cache): a session changed in the store behind the API's back is refused within it.
        deadline = time.monotonic() + 3.0
        answer = client.get("/api/v1/account")
        while answer.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            answer = client.get("/api/v1/account")
        err = assert_envelope(answer, 401, "unauthorized")
        assert "expired" in err["message"]


def test_concurrent_verifies_of_one_challenge_give_one_session(
    anon: httpx.Client, platform: Any, wallet: Any
) -> None:
    ch = challenge(anon, wallet.address)
    signature = sign(ch["message"], wallet.key)

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=platform.url, timeout=60) as client:
            return verify(client, ch["id"], wallet.address, signature)

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(attempt, range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 401, 401, 401, 401, 401], [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 401:
            assert_envelope(answer, 401, "unauthorized")


def test_chain_name_is_case_insensitive(anon: httpx.Client, admin: httpx.Client) -> None:
    acct = Account.create()
    listed = admin.post(
        "/api/v1/admin/wallets", json={"wallet_address": acct.address, "chain": "base"}
    )
    assert listed.status_code == 201, listed.text
    ch = challenge(anon, acct.address, chain="Base")
    answer = verify(anon, ch["id"], acct.address, sign(ch["message"], acct.key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["account"]["chain"] == "base"
