"""Wallet sign-in and the (closed) self-registration route; a challenge costs its client
address a share of a per-minute budget (:func:`serve_app.ratelimit.public_rate_limit`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from computalot.auth.wallet_flow import create_challenge, verify_challenge
from computalot.errors import Forbidden
from computalot.schemas.accounts import ChallengeRequest, VerifyRequest
from computalot.timeutil import iso
from serve_app.deps import AppSettings, Db
from serve_app.ratelimit import public_rate_limit
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], route_class=StrictJSONRoute)


@router.post("/wallet/challenge", dependencies=[Depends(public_rate_limit)])
async def wallet_challenge(body: ChallengeRequest, db: Db, settings: AppSettings) -> dict[str, Any]:
    challenge = await create_challenge(
        db,
        wallet_address=body.wallet_address,
        chain=body.chain,
        public_url=settings.resolved_public_url,
        ttl_s=settings.challenge_ttl_s,
    )
    await db.commit()
    return {
        "challenge": {
            "id": challenge.id,
            "message": challenge.message,
            "wallet_address": challenge.wallet_address,
            "chain": challenge.chain,
            "expires_at": iso(challenge.expires_at),
        }
    }


@router.post("/wallet/verify")
async def wallet_verify(body: VerifyRequest, db: Db, settings: AppSettings) -> dict[str, Any]:
    verified = await verify_challenge(
        db,
        challenge_id=body.challenge_id,
        wallet_address=body.wallet_address,
        signature=body.signature,
        public_url=settings.resolved_public_url,
        session_ttl_s=settings.session_ttl_s,
    )
    await db.commit()
    account = verified.account
    return {
        "token": verified.token,
        "expires_at": iso(verified.session.expires_at),
        "account": {
            "id": account.id,
            "wallet_address": account.wallet_address,
            "chain": account.chain,
            "role": account.role,
        },
    }


@router.post("/register")
async def register() -> None:
    raise Forbidden(
        "self-registration is closed during the beta",
        recommended_action="ask an admin for an API key, or join the waitlist; "
        "send a 'provisioning' request via POST /api/v1/feedback",
    )
