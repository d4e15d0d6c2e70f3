"""``computalot topup``: add credit paid over x402 with an eth-account key (docs/python-sdk.md,
"Billing"). ``balance`` and ``ledger`` live with the other read commands in
:mod:`computalot.cli.user`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from computalot.cli import render
from computalot.cli.exits import Exit
from computalot.cli.user import AsJson, Token, Url, _client, _fail, _print_json, console
from computalot.sdk.errors import PaymentRequired

commands = typer.Typer()

#: Where ``topup`` reads the paying wallet's private key when no --key-file is given.
WALLET_KEY_ENV = "COMPUTALOT_WALLET_KEY"


def _wallet_key(key_file: Path | None) -> str | None:
    if key_file is not None:
        try:
            return key_file.read_text().strip()
        except OSError as exc:
            raise _fail("unreadable_key", str(exc), "check --key-file") from None
    return os.environ.get(WALLET_KEY_ENV) or None


@commands.command()
def topup(
    amount: Annotated[float, typer.Argument(help="USD to add, e.g. 25.", min=0.01)],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help=f"File with the paying wallet's private key (else ${WALLET_KEY_ENV}).",
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Add AMOUNT USD of credit, paid over x402 with your wallet key.

    An EIP-3009 USDC authorisation for exactly the quote, signed with the key. Without a key:
    print the quote to pay and exit 6.
    """
    key = _wallet_key(key_file)
    with _client(url, token) as client:
        if key is None:
            try:
                client.topup_quote(amount)
            except PaymentRequired as quote:
                if as_json:
                    _print_json(quote.body)
                else:
                    q = quote.quote or {}
                    console.print(Text(f"quote {q.get('id')}: ${q.get('amount_usd')} to pay"))
                hint = f"pass --key-file or set {WALLET_KEY_ENV} to pay it over x402"
                raise _fail(
                    "payment_required", "no wallet key to pay with", hint, Exit.PAYMENT
                ) from None
            raise _fail("unexpected_answer", "the top-up was answered without a quote")
        try:
            receipt = client.topup(amount, account=key)
        except (ValueError, TypeError) as exc:  # not a private key eth-account can read
            raise _fail("bad_wallet_key", f"cannot use the wallet key: {exc}") from None
    if as_json:
        _print_json(receipt)
    else:
        console.print(render.topup_receipt(receipt))
