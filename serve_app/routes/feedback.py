"""POST /api/v1/feedback: no auth required (a token, if sent and valid, is recorded); a budget
per client address (:func:`serve_app.ratelimit.public_rate_limit`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from computalot.auth.principal import authenticate
from computalot.errors import ComputalotError
from computalot.schemas.accounts import FeedbackIn
from computalot.store.feedback import add_feedback, feedback_out
from serve_app.deps import Db, bearer_token
from serve_app.ratelimit import public_rate_limit
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1", tags=["feedback"], route_class=StrictJSONRoute)


@router.post("/feedback", status_code=201, dependencies=[Depends(public_rate_limit)])
async def send_feedback(body: FeedbackIn, request: Request, db: Db) -> dict[str, Any]:
    account_id = None
    try:
        token = bearer_token(request)
        if token:
            account_id = (await authenticate(db, token)).account_id
    except ComputalotError:
        account_id = None
    row = await add_feedback(
        db, type=body.type, title=body.title, description=body.description, account_id=account_id
    )
    await db.commit()
    return {"feedback": feedback_out(row)}
