"""Ids and bearer secrets: shape, uniqueness, hashing, early rejection of garbled tokens."""

from __future__ import annotations

import hashlib
import re

import pytest

from computalot.ids import (
    ID_PREFIXES,
    SECRET_KINDS,
    hash_token,
    is_id,
    new_id,
    new_secret_token,
    token_kind,
    tokens_equal,
)

SPEC_PREFIXES = ["acct", "key", "job", "tsk", "art", "rev", "hold", "quote", "led", "wch", "upl"]


@pytest.mark.parametrize("prefix", [*SPEC_PREFIXES, "fb"])
def test_new_id_shape(prefix: str) -> None:
    value = new_id(prefix)
    assert re.fullmatch(rf"{prefix}_[A-Za-z0-9_-]{{22}}", value)  # 22 chars = 128 bits
    assert is_id(value, prefix)


def test_spec_prefixes_all_known() -> None:
    # the documented id prefixes plus our own: fb (feedback), wss (wallet session), prj (project)
    assert set(SPEC_PREFIXES) | {"fb", "wss", "prj"} == ID_PREFIXES


def test_new_id_unique() -> None:
    ids = {new_id("job") for _ in range(5000)}
    assert len(ids) == 5000


def test_new_id_rejects_unknown_prefix() -> None:
    with pytest.raises(ValueError, match="unknown id prefix"):
        new_id("jb")


def test_is_id_rejects_other_prefix_and_garbage() -> None:
    value = new_id("job")
    assert not is_id(value, "tsk")
    assert not is_id(value[:-1], "job")
    assert not is_id(value + "x", "job")
    assert not is_id(value.replace("_", "/", 1), "job")
    assert not is_id("", "job")


@pytest.mark.parametrize("kind", sorted(SECRET_KINDS))
def test_secret_token_shape_and_kind(kind: str) -> None:
    token = new_secret_token(kind)
    assert token.startswith(f"{kind}_")
    assert len(token) == len(kind) + 1 + 43  # 32 random bytes, unpadded base64url
    assert token_kind(token) == kind


def test_secret_tokens_unique() -> None:
    tokens = {new_secret_token("flk") for _ in range(5000)}
    assert len(tokens) == 5000


def test_new_secret_token_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown token kind"):
        new_secret_token("flx")


def test_hash_token_is_sha256_hex_and_deterministic() -> None:
    token = new_secret_token("fls")
    digest = hash_token(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert hash_token(token) == digest
    assert hash_token(new_secret_token("fls")) != digest


def test_tokens_equal() -> None:
    token = new_secret_token("flk")
    assert tokens_equal(hash_token(token), hash_token(token))
    assert not tokens_equal(hash_token(token), hash_token(new_secret_token("flk")))
    assert not tokens_equal(hash_token(token), "")


@pytest.mark.parametrize(
    "garbled",
    [
        "",
        "flk",
        "flk_",
        "flx_" + "a" * 43,  # unknown kind
        "FLK_" + "a" * 43,  # wrong case
        "flk-" + "a" * 43,  # wrong separator
        "flk_" + "a" * 42,  # truncated
        "flk_" + "a" * 44,  # too long
        "flk_" + "a" * 42 + "=",  # padding is not in the alphabet
        "flk_" + "a" * 42 + "/",  # standard (not URL-safe) base64
        "flk_" + "a" * 42 + " ",
        " flk_" + "a" * 43,
        "flk_" + "a" * 43 + "\n",
        "flk_" + "a" * 42 + "é",
        "Bearer flk_" + "a" * 43,
    ],
)
def test_token_kind_rejects_garbled(garbled: str) -> None:
    assert token_kind(garbled) is None


def test_token_kind_rejects_truncated_real_token() -> None:
    token = new_secret_token("flt")
    assert token_kind(token[:-1]) is None
    assert token_kind(token + "A") is None
