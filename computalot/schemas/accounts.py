"""Request and answer shapes for accounts, keys, wallets, feedback (SPEC §3, §10)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from computalot.store.models import Account, ApiKey
from computalot.timeutil import iso

Role = Literal["admin", "member", "viewer"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateAccount(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role = "member"
    credit_usd: Decimal | None = Field(default=None, ge=0)


class CreateKey(Strict):
    name: str | None = Field(default=None, max_length=200)


class WhitelistWallet(Strict):
    wallet_address: str
    chain: str = "base"
    role: Role = "member"
    name: str | None = Field(default=None, max_length=200)


class Grant(Strict):
    amount_usd: Decimal = Field(gt=0)
    memo: str | None = Field(default=None, max_length=500)


class ChallengeRequest(Strict):
    wallet_address: str
    chain: str = "base"


class VerifyRequest(Strict):
    challenge_id: str = Field(min_length=1, max_length=64)
    wallet_address: str
    signature: str = Field(min_length=1, max_length=200)


class FeedbackIn(Strict):
    type: Literal["bug", "feature_request", "provisioning", "job_type_request"]
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=10_000)


def account_out(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "role": account.role,
        "wallet_address": account.wallet_address,
        "chain": account.chain,
        "callback_secret": account.callback_secret,
        "created_at": iso(account.created_at),
    }


def key_out(key: ApiKey, token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": key.id,
        "account_id": key.account_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "revoked_at": iso(key.revoked_at),
    }
    if token is not None:
        out["token"] = token
    return out
