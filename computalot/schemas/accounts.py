"""Request and answer shapes for accounts, keys, wallets and feedback.

The reference is ``docs/llms-full.md``, sections "Auth", "Admin" and "Feedback".
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from computalot.schemas.text import reject_nul
from computalot.store.models import Account, ApiKey
from computalot.timeutil import iso

Role = Literal["admin", "member", "viewer"]


class Strict(BaseModel):
    """Unknown fields are refused; no value is coerced (``"10"`` or ``true`` for a number is an
    error, not 10 or 1); no string may carry U+0000 (PostgreSQL text cannot)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return reject_nul(value)


def _chain(value: str) -> str:
    return value.strip().lower()


Chain = Annotated[str, AfterValidator(_chain)]

_MONEY_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _money_text(value: Any) -> Any:
    """A money string is plain decimal ("12.500000"): ``Decimal`` also reads " 5 ", "1_000",
    "1e3" and other scripts' digits ("\u0661"), none of which a client writes for an amount."""
    if isinstance(value, str) and not _MONEY_TEXT.fullmatch(value):
        raise ValueError("must be a decimal number such as 12.5 (ASCII digits and one '.')")
    return value


# Money may come as a JSON number or a decimal string (never a boolean).
Usd = Annotated[
    Decimal,
    BeforeValidator(_money_text),
    Field(gt=0, max_digits=18, decimal_places=6, strict=False),
]


class CreateAccount(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role = "member"
    credit_usd: (
        Annotated[
            Decimal,
            BeforeValidator(_money_text),
            Field(ge=0, max_digits=18, decimal_places=6, strict=False),
        ]
        | None
    ) = None


class CreateKey(Strict):
    name: str | None = Field(default=None, max_length=200)


class WhitelistWallet(Strict):
    wallet_address: str
    chain: Chain = "base"
    role: Role = "member"
    name: str | None = Field(default=None, max_length=200)


class Grant(Strict):
    amount_usd: Usd
    memo: str | None = Field(default=None, max_length=500)


class ChallengeRequest(Strict):
    wallet_address: str
    chain: Chain = "base"


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
