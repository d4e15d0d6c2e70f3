"""Quotes and x402 top-ups (docs/llms-full.md, "Billing").

``POST /account/quotes/topup`` answers 402 with a quote and its x402 requirements; the quote is
paid at ``POST /account/quotes/:id/pay/x402``, or by resending the top-up itself with the payment
header (what a stock x402 client does with any 402: :data:`PaidFirst`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from computalot.billing import quotes, x402
from computalot.billing.facilitator import Facilitator, facilitator_for
from computalot.billing.x402_pay import Receipt, closed_quote, pay_from_headers, pay_quote
from computalot.errors import PaymentRequired
from computalot.schemas.accounts import Strict, Usd
from computalot.settings import Settings
from serve_app.deps import AppSettings, Caller, Db, Writer
from serve_app.strict_json import StrictJSONRoute

router = APIRouter(prefix="/api/v1/account/quotes", tags=["billing"], route_class=StrictJSONRoute)


class TopUp(Strict):
    amount_usd: Usd


def get_facilitator(request: Request) -> Facilitator:
    """One facilitator per app (tests may set ``app.state.facilitator``)."""
    found = getattr(request.app.state, "facilitator", None)
    if found is None:
        settings: Settings = request.app.state.settings
        found = request.app.state.facilitator = facilitator_for(settings)
    return found


X402Facilitator = Annotated[Facilitator, Depends(get_facilitator)]


def answer_receipt(receipt: Receipt, response: Response) -> dict[str, Any]:
    response.headers[x402.PAYMENT_RESPONSE_HEADER] = receipt.settlement
    response.headers["Access-Control-Expose-Headers"] = x402.PAYMENT_RESPONSE_HEADER
    return receipt.body


async def paid_first(
    request: Request,
    response: Response,
    caller: Writer,
    db: Db,
    settings: AppSettings,
    facilitator: X402Facilitator,
) -> Receipt | None:
    """Pays the quote named by the request's x402 payment header, if any, before the route
    runs: a route that answered 402 then succeeds when a stock x402 client resends it paid.
    The receipt's ``PAYMENT-RESPONSE`` header goes on the route's answer."""
    receipt = await pay_from_headers(
        db, caller.account_id, request.headers, settings=settings, facilitator=facilitator
    )
    if receipt is not None:
        response.headers[x402.PAYMENT_RESPONSE_HEADER] = receipt.settlement
        request.state.payment_response = receipt.settlement
    return receipt


#: Add to a route that may answer 402 (``paid: PaidFirst``) so its paid retry goes through.
PaidFirst = Annotated[Receipt | None, Depends(paid_first)]


@router.get("")
async def list_quotes(
    caller: Caller,
    db: Db,
    settings: AppSettings,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None),
) -> dict[str, Any]:
    rows, next_cursor = await quotes.list_quotes(db, caller.account_id, limit=limit, cursor=cursor)
    return {"quotes": [quotes.quote_out(q, settings) for q in rows], "next_cursor": next_cursor}


@router.post("/topup")
async def top_up(
    body: TopUp,
    caller: Writer,
    db: Db,
    settings: AppSettings,
    response: Response,
    paid: PaidFirst,
) -> dict[str, Any]:
    """402 with a new top-up quote; resent with a payment of that quote, its receipt."""
    if paid is not None:
        return answer_receipt(paid, response)
    amount = Decimal(body.amount_usd)
    quote = await quotes.create_quote(
        db, caller.account_id, "topup", amount, memo="top-up", settings=settings
    )
    await db.commit()
    shown = quotes.quote_out(quote, settings)
    raise PaymentRequired(
        f"pay quote {quote.id} (${quote.amount_usd:.2f}) to top up",
        quote=shown,
        recommended_action=(
            f"sign one of 'accepts' with an x402 client and send it in a PAYMENT-SIGNATURE "
            f"header to POST /api/v1/account/quotes/{quote.id}/pay/x402 (or resend this "
            f"request with it) before {shown['expires_at']}"
        ),
    )


@router.post("/{quote_id}/pay/x402")
async def pay_x402(
    quote_id: str,
    request: Request,
    response: Response,
    caller: Writer,
    db: Db,
    settings: AppSettings,
    facilitator: X402Facilitator,
) -> dict[str, Any]:
    """Pay a quote with the x402 payment in ``PAYMENT-SIGNATURE`` (or ``X-PAYMENT``); without
    one, 402 with the quote's requirements (as any x402 resource answers)."""
    found = x402.payment_header(request.headers)
    if found is None:
        quote = await quotes.get_quote(db, caller.account_id, quote_id)
        status = quotes.quote_status(quote)
        if status != "open":
            raise closed_quote(quote, status)
        raise PaymentRequired(
            f"quote {quote_id}: send the payment in a PAYMENT-SIGNATURE header",
            quote=quotes.quote_out(quote, settings),
            details=[{"loc": ["header", "PAYMENT-SIGNATURE"], "msg": "missing"}],
        )
    header, value = found
    receipt = await pay_quote(
        db,
        caller.account_id,
        quote_id,
        header,
        value,
        settings=settings,
        facilitator=facilitator,
    )
    return answer_receipt(receipt, response)
