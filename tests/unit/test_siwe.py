"""Sign-In with Ethereum: real keys, real signatures, every rejection path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from computalot.auth.siwe import (
    CHAINS,
    CLOCK_SKEW,
    SiweFields,
    build_message,
    chain_id,
    new_nonce,
    normalize_address,
    parse_message,
    recover_signer,
    verify_signed_message,
)
from computalot.errors import Unauthorized, ValidationFailed

DOMAIN = "computalot.example"
URI = "https://computalot.example/api/v1/auth/wallet/verify"
ISSUED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(minutes=5)
NOW = ISSUED + timedelta(seconds=30)


def sign(message: str, account: LocalAccount) -> str:
    """personal_sign as a wallet does it; hex as eth-account 0.14 prints it (no 0x)."""
    signed = Account.sign_message(encode_defunct(text=message), private_key=account.key)
    return str(signed.signature.hex())


@pytest.fixture
def wallet() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture
def nonce() -> str:
    return new_nonce()


@pytest.fixture
def message(wallet: LocalAccount, nonce: str) -> str:
    return build_message(
        domain=DOMAIN,
        uri=URI,
        address=wallet.address,
        chain="base",
        nonce=nonce,
        issued_at=ISSUED,
        expires_at=EXPIRES,
    )


def verify(message: str, signature: str, wallet: LocalAccount, nonce: str, **over: object) -> None:
    kwargs: dict[str, object] = {
        "message": message,
        "signature": signature,
        "expected_address": wallet.address,
        "expected_domain": DOMAIN,
        "expected_chain_id": 8453,
        "expected_nonce": nonce,
        "now": NOW,
    }
    kwargs.update(over)
    verify_signed_message(**kwargs)  # type: ignore[arg-type]


# --- building and parsing ------------------------------------------------------------------


def test_chains() -> None:
    assert CHAINS == {
        "base": 8453,
        "base-sepolia": 84532,
        "ethereum": 1,
        "sepolia": 11155111,
        "optimism": 10,
        "arbitrum": 42161,
        "polygon": 137,
    }
    assert chain_id("Base") == 8453


def test_build_message_exact_format(wallet: LocalAccount) -> None:
    text = build_message(
        domain=DOMAIN,
        uri=URI,
        address=wallet.address.lower(),
        chain="base-sepolia",
        nonce="abcDEF123456789xyz",
        issued_at=ISSUED,
        expires_at=EXPIRES,
    )
    assert text == (
        f"computalot.example wants you to sign in with your Ethereum account:\n"
        f"{wallet.address}\n"
        "\n"
        "Sign in to Computalot.\n"
        "\n"
        f"URI: {URI}\n"
        "Version: 1\n"
        "Chain ID: 84532\n"
        "Nonce: abcDEF123456789xyz\n"
        "Issued At: 2025-03-01T12:00:00Z\n"
        "Expiration Time: 2025-03-01T12:05:00Z"
    )


def test_build_message_converts_offsets_to_utc(wallet: LocalAccount, nonce: str) -> None:
    plus2 = ISSUED.astimezone(timezone(timedelta(hours=2)))
    text = build_message(
        domain=DOMAIN,
        uri=URI,
        address=wallet.address,
        chain="base",
        nonce=nonce,
        issued_at=plus2,
        expires_at=EXPIRES,
    )
    assert "Issued At: 2025-03-01T12:00:00Z" in text


def test_build_message_unknown_chain(wallet: LocalAccount, nonce: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        build_message(
            domain=DOMAIN,
            uri=URI,
            address=wallet.address,
            chain="solana",
            nonce=nonce,
            issued_at=ISSUED,
            expires_at=EXPIRES,
        )
    assert err.value.details == [{"loc": ["chain"], "msg": err.value.details[0]["msg"]}]
    assert "unsupported chain 'solana'" in err.value.message
    assert "base" in err.value.message


@pytest.mark.parametrize(
    "override",
    [
        {"nonce": "short"},
        {"nonce": "has space in it"},
        {"domain": "evil.example wants you"},
        {"uri": "not a uri"},
        {"statement": "two\nlines"},
        {"statement": ""},
        {"issued_at": ISSUED.replace(tzinfo=None)},
        {"expires_at": ISSUED},
    ],
)
def test_build_message_rejects_bad_server_inputs(
    wallet: LocalAccount, nonce: str, override: dict[str, object]
) -> None:
    kwargs: dict[str, object] = {
        "domain": DOMAIN,
        "uri": URI,
        "address": wallet.address,
        "chain": "base",
        "nonce": nonce,
        "issued_at": ISSUED,
        "expires_at": EXPIRES,
    }
    kwargs.update(override)
    with pytest.raises(ValueError):
        build_message(**kwargs)  # type: ignore[arg-type]


def test_new_nonce() -> None:
    nonces = {new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    for n in nonces:
        assert n.isalnum() and n.isascii() and len(n) >= 16


def test_parse_round_trip(message: str, wallet: LocalAccount, nonce: str) -> None:
    assert parse_message(message) == SiweFields(
        domain=DOMAIN,
        address=wallet.address,
        statement="Sign in to Computalot.",
        uri=URI,
        version="1",
        chain_id=8453,
        nonce=nonce,
        issued_at=ISSUED,
        expiration_time=EXPIRES,
    )


def test_parse_accepts_fractional_seconds_and_offsets(message: str) -> None:
    text = message.replace("12:00:00Z", "13:00:00.123456789+01:00")
    assert parse_message(text).issued_at == ISSUED.replace(microsecond=123456)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: "",
        lambda m: "hello",
        lambda m: m + "\n",
        lambda m: m.replace("\n", "\r\n"),
        lambda m: m.replace(" wants you to sign in", " would like you to sign in"),
        lambda m: m.replace("Version: 1", "Version: 2"),
        lambda m: m.replace("Chain ID: 8453", "Chain ID: base"),
        lambda m: m.replace("Chain ID: 8453", "Chain ID: 08453"),
        lambda m: m.replace("Chain ID: 8453", "Chain ID: "),
        lambda m: m.replace("Issued At: 2025-03-01T12:00:00Z", "Issued At: yesterday"),
        lambda m: m.replace("T12:05:00Z", "T12:05:00"),  # no timezone
        lambda m: m.replace("T12:05:00Z", "T25:05:00Z"),  # impossible hour
        lambda m: m.replace("URI: ", "Uri: "),
        lambda m: m.replace("Sign in to Computalot.", ""),  # statement missing
        lambda m: "\n".join(m.split("\n")[:-1]),  # expiration missing
        lambda m: m.replace("\nNonce:", "\nRequest ID: 1\nNonce:"),  # extra field
        lambda m: "\n".join(  # fields reordered
            [*m.split("\n")[:5], m.split("\n")[6], m.split("\n")[5], *m.split("\n")[7:]]
        ),
    ],
)
def test_parse_rejects_malformed(message: str, mutate: object) -> None:
    with pytest.raises(Unauthorized, match=r"^malformed sign-in message$"):
        parse_message(mutate(message))  # type: ignore[operator]


def test_parse_rejects_non_checksummed_address(message: str, wallet: LocalAccount) -> None:
    with pytest.raises(Unauthorized, match=r"malformed"):
        parse_message(message.replace(wallet.address, wallet.address.lower()))


# --- addresses --------------------------------------------------------------------------


def test_normalize_address(wallet: LocalAccount) -> None:
    hexpart = wallet.address[2:]
    assert normalize_address(wallet.address) == wallet.address
    assert normalize_address(wallet.address.lower()) == wallet.address
    assert normalize_address("0x" + hexpart.upper()) == wallet.address


@pytest.mark.parametrize(
    "bad", ["", "0x", "0x123", "0x" + "g" * 40, "0x" + "a" * 41, "a" * 42, "0X" + "a" * 40]
)
def test_normalize_address_rejects(bad: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        normalize_address(bad)
    assert err.value.details[0]["loc"] == ["wallet_address"]


# --- signatures --------------------------------------------------------------------------


def test_recover_signer_accepts_with_and_without_0x(message: str, wallet: LocalAccount) -> None:
    sig = sign(message, wallet)
    bare = sig.removeprefix("0x")
    assert recover_signer(message, bare) == wallet.address
    assert recover_signer(message, "0x" + bare) == wallet.address


def test_valid_round_trip(message: str, wallet: LocalAccount, nonce: str) -> None:
    verify(message, sign(message, wallet), wallet, nonce)


def test_valid_with_0x_signature(message: str, wallet: LocalAccount, nonce: str) -> None:
    verify(message, "0x" + sign(message, wallet).removeprefix("0x"), wallet, nonce)


def test_lowercase_expected_address_accepted(
    message: str, wallet: LocalAccount, nonce: str
) -> None:
    verify(message, sign(message, wallet), wallet, nonce, expected_address=wallet.address.lower())


def test_message_built_from_lowercase_address_verifies(wallet: LocalAccount, nonce: str) -> None:
    text = build_message(
        domain=DOMAIN,
        uri=URI,
        address=wallet.address.lower(),
        chain="base",
        nonce=nonce,
        issued_at=ISSUED,
        expires_at=EXPIRES,
    )
    verify(text, sign(text, wallet), wallet, nonce)


def test_forged_by_other_key(message: str, wallet: LocalAccount, nonce: str) -> None:
    forger = Account.create()
    with pytest.raises(Unauthorized, match=f"^signature was not made by {wallet.address}$"):
        verify(message, sign(message, forger), wallet, nonce)


def test_message_naming_other_wallet(wallet: LocalAccount, nonce: str) -> None:
    """The signer is genuine but the message names someone else's address."""
    victim = Account.create()
    text = build_message(
        domain=DOMAIN,
        uri=URI,
        address=victim.address,
        chain="base",
        nonce=nonce,
        issued_at=ISSUED,
        expires_at=EXPIRES,
    )
    with pytest.raises(Unauthorized, match=r"names"):
        verify(text, sign(text, wallet), wallet, nonce)


def test_tampered_after_signing(message: str, wallet: LocalAccount, nonce: str) -> None:
    sig = sign(message, wallet)
    tampered = message.replace(DOMAIN, "evil.example")
    with pytest.raises(Unauthorized, match=r"signature was not made by"):
        verify(tampered, sig, wallet, nonce, expected_domain="evil.example")


def test_wrong_domain_expected(message: str, wallet: LocalAccount, nonce: str) -> None:
    with pytest.raises(Unauthorized, match=r"domain 'computalot\.example', expected 'other'"):
        verify(message, sign(message, wallet), wallet, nonce, expected_domain="other")


def test_wrong_chain(message: str, wallet: LocalAccount, nonce: str) -> None:
    with pytest.raises(Unauthorized, match=r"chain id 8453, expected 1$"):
        verify(message, sign(message, wallet), wallet, nonce, expected_chain_id=1)


def test_wrong_nonce(message: str, wallet: LocalAccount, nonce: str) -> None:
    with pytest.raises(Unauthorized, match=r"nonce does not match"):
        verify(message, sign(message, wallet), wallet, nonce, expected_nonce=new_nonce())


def test_expired(message: str, wallet: LocalAccount, nonce: str) -> None:
    sig = sign(message, wallet)
    verify(message, sig, wallet, nonce, now=EXPIRES - timedelta(microseconds=1))
    for late in (EXPIRES, EXPIRES + timedelta(days=1)):
        with pytest.raises(Unauthorized, match=r"expired at 2025-03-01T12:05:00Z"):
            verify(message, sig, wallet, nonce, now=late)


def test_not_yet_valid(message: str, wallet: LocalAccount, nonce: str) -> None:
    sig = sign(message, wallet)
    verify(message, sig, wallet, nonce, now=ISSUED - CLOCK_SKEW)  # within skew: fine
    with pytest.raises(Unauthorized, match=r"not valid until"):
        verify(message, sig, wallet, nonce, now=ISSUED - CLOCK_SKEW - timedelta(seconds=1))


@pytest.mark.parametrize(
    "bad_sig",
    [
        "",
        "0x",
        "zz" * 65,
        "0x" + "zz" * 65,
        "00" * 65,  # right length, not a signature
        "0x" + "ab" * 64 + "05",  # invalid recovery byte
        "ab" * 66,  # too long
        "0x0x" + "ab" * 65,
    ],
)
def test_garbage_signature(message: str, wallet: LocalAccount, nonce: str, bad_sig: str) -> None:
    with pytest.raises(Unauthorized, match=r"^invalid wallet signature$"):
        verify(message, bad_sig, wallet, nonce)


def test_short_signature(message: str, wallet: LocalAccount, nonce: str) -> None:
    sig = sign(message, wallet)
    with pytest.raises(Unauthorized, match=r"^invalid wallet signature$"):
        verify(message, sig[:-2], wallet, nonce)


def test_malformed_message_is_unauthorized(wallet: LocalAccount, nonce: str) -> None:
    text = "please let me in"
    with pytest.raises(Unauthorized, match=r"^malformed sign-in message$"):
        verify(text, sign(text, wallet), wallet, nonce)


def test_errors_are_401(message: str, wallet: LocalAccount, nonce: str) -> None:
    with pytest.raises(Unauthorized) as err:
        verify(message, sign(message, Account.create()), wallet, nonce)
    assert err.value.status == 401
    assert err.value.to_dict()["error"]["code"] == "unauthorized"


def test_naive_now_rejected(message: str, wallet: LocalAccount, nonce: str) -> None:
    with pytest.raises(ValueError):
        verify(message, sign(message, wallet), wallet, nonce, now=NOW.replace(tzinfo=None))
