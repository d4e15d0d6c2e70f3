"""Task tokens (``flt_``): minted by the dispatcher, verified by any API replica."""

from __future__ import annotations

import base64
import string

import pytest

from computalot.auth.task_tokens import (
    EXPIRY_MARGIN_S,
    BadTaskToken,
    load_or_create_secret,
    mint_task_token,
    verify_task_token,
)

SECRET = "s3cret-for-tests"
TASK = "tsk_AAAAAAAAAAAAAAAAAAAAAA"


def test_round_trip_names_the_task_attempt_and_expiry() -> None:
    token = mint_task_token(SECRET, TASK, 2, timeout_s=60, now=1_000_000)
    assert token.startswith("flt_")
    claim = verify_task_token(SECRET, token, now=1_000_000 + 60)
    assert (claim.task_id, claim.attempt) == (TASK, 2)
    assert claim.expires_at == 1_000_000 + 60 + EXPIRY_MARGIN_S


def test_expired_token_is_refused() -> None:
    token = mint_task_token(SECRET, TASK, 1, timeout_s=10, now=1_000_000)
    with pytest.raises(BadTaskToken, match="expired"):
        verify_task_token(SECRET, token, now=1_000_000 + 10 + EXPIRY_MARGIN_S)


def test_other_secret_is_refused() -> None:
    token = mint_task_token(SECRET, TASK, 1, timeout_s=10)
    with pytest.raises(BadTaskToken, match="signature"):
        verify_task_token("another-secret", token)


def test_tampered_body_is_refused_even_with_a_valid_looking_claim() -> None:
    token = mint_task_token(SECRET, TASK, 1, timeout_s=10)
    body, mac = token[len("flt_") :].split(".")
    forged = base64.urlsafe_b64encode(f"{TASK}:2:9999999999".encode()).decode().rstrip("=")
    with pytest.raises(BadTaskToken, match="signature"):
        verify_task_token(SECRET, f"flt_{forged}.{mac}")
    assert verify_task_token(SECRET, f"flt_{body}.{mac}").attempt == 1
    # Every other last character, those that decode to the same MAC bytes included (base64
    # drops the last character's unused low bits), a character base64 would skip, padding.
    alphabet = string.ascii_letters + string.digits + "-_"
    others = [mac[:-1] + c for c in alphabet if c != mac[-1]]
    others += [mac[:5] + "!" + mac[5:], mac + "=", mac + "\n", mac[:-1] + "é"]
    for other in others:
        with pytest.raises(BadTaskToken, match="signature"):
            verify_task_token(SECRET, f"flt_{body}.{other}")


@pytest.mark.parametrize(
    "garbled", ["flt_", "flt_abc", "flt_.abc", "flt_abc.", "flk_abc.def", "flt_" + "a" * 300]
)
def test_garbled_tokens_are_refused(garbled: str) -> None:
    with pytest.raises(BadTaskToken):
        verify_task_token(SECRET, garbled)


def test_no_secret_means_no_task_token_verifies() -> None:
    token = mint_task_token(SECRET, TASK, 1, timeout_s=10)
    with pytest.raises(BadTaskToken, match="not enabled"):
        verify_task_token(None, token)
    with pytest.raises(ValueError):
        mint_task_token("", TASK, 1, timeout_s=10)


def test_secret_file_is_created_private_once_and_kept(tmp_path) -> None:
    first = load_or_create_secret(tmp_path)
    assert len(first) >= 40
    assert (tmp_path / "task_token_key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path) == first
