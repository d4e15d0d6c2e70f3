"""Paying a top-up quote over x402 from the SDK (docs/python-sdk.md, "Billing").

``client.topup(amount_usd, account=key)`` asks for a quote (the server answers 402 with the
x402 payment requirements), signs an EIP-3009 ``transferWithAuthorization`` for exactly that
quote with the caller's eth-account key through the stock ``x402`` client, and pays it. The
signing needs the ``x402`` package (``pip install 'computalot[wallet]'``); everything else in the SDK
works without it, so it is imported here, on first use, only.
"""

from __future__ import annotations

from typing import Any

from computalot.sdk.errors import ApiError, PaymentRequired

#: What to install when the x402 client is missing.
X402_HINT = "pip install 'computalot[wallet]' (the x402 client that signs the payment)"


def _local_account(account: Any) -> Any:
    """An eth-account ``LocalAccount``: the object as given, or one made from a private key."""
    if isinstance(account, str | bytes):
        from eth_account import Account

        return Account.from_key(account)
    if not hasattr(account, "sign_typed_data"):
        raise TypeError("account must be an eth-account LocalAccount or a private key (hex)")
    return account


def _requirements(refusal: PaymentRequired) -> Any:
    """The x402 ``PaymentRequired`` model from a 402: the ``PAYMENT-REQUIRED`` header, else
    the JSON body (which carries the same requirements at its top level)."""
    from x402.http.utils import decode_payment_required_header
    from x402.schemas import PaymentRequired as X402Required

    headers = {k.lower(): v for k, v in refusal.headers.items()}
    if headers.get("payment-required"):
        return decode_payment_required_header(headers["payment-required"])
    body = refusal.body
    if not body.get("accepts"):
        raise ApiError(
            "the 402 answer carries no x402 payment requirements",
            code="no_payment_requirements",
            recommended_action="check the server's x402 settings (COMPUTALOT_X402_PAY_TO)",
        )
    fields = ("x402Version", "resource", "accepts", "error", "extensions")
    return X402Required.model_validate({k: body[k] for k in fields if k in body})


def payment_signature(refusal: PaymentRequired, account: Any) -> str:
    """The ``PAYMENT-SIGNATURE`` header value that pays the quote of ``refusal``."""
    try:
        from x402 import x402ClientSync
        from x402.http.utils import encode_payment_signature_header
        from x402.mechanisms.evm.exact.register import register_exact_evm_client
    except ImportError as exc:  # the optional client is not installed
        raise ApiError(
            f"paying over x402 needs the x402 client: {exc}",
            code="x402_client_missing",
            recommended_action=X402_HINT,
        ) from exc
    signer = x402ClientSync()
    signer.set_spend_controls(False)  # the caller asked for this amount; no second cap
    register_exact_evm_client(signer, _local_account(account))
    payload = signer.create_payment_payload(_requirements(refusal))
    return str(encode_payment_signature_header(payload))


def quote_id(refusal: PaymentRequired) -> str:
    quote = refusal.quote or {}
    found = quote.get("id")
    if not found:
        raise ApiError(
            "the 402 answer names no quote to pay",
            code="no_quote",
            recommended_action="retry the top-up; GET /account/quotes lists open quotes",
        )
    return str(found)


def unexpected_answer(answer: Any) -> ApiError:
    return ApiError(
        f"the top-up was answered without a 402 quote: {str(answer)[:200]}",
        code="unexpected_answer",
        recommended_action="check --url points at a Computalot API",
    )
