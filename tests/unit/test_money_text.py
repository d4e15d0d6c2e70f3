"""Money in a request is a JSON number or a plain decimal string, nothing Decimal merely reads."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from computalot.schemas.accounts import CreateAccount, Grant


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(12.5, Decimal("12.5")), ("12.500000", Decimal("12.5")), ("3", Decimal(3)), (7, Decimal(7))],
)
def test_a_number_or_a_decimal_string_is_money(sent: object, kept: Decimal) -> None:
    assert Grant.model_validate({"amount_usd": sent}).amount_usd == kept
    assert CreateAccount.model_validate({"name": "a", "credit_usd": sent}).credit_usd == kept


@pytest.mark.parametrize("sent", [" 5 ", "1_000", "1e3", "\u0661", "+5", "5.", ".5", "0x10", ""])
def test_text_that_decimal_reads_but_no_client_means_is_refused(sent: str) -> None:
    for model, field in ((Grant, "amount_usd"), (CreateAccount, "credit_usd")):
        with pytest.raises(ValidationError) as refused:
            model.model_validate(
                {"name": "a", field: sent} if field == "credit_usd" else {field: sent}
            )
        assert refused.value.errors()[0]["loc"] == (field,)
        assert "decimal number" in refused.value.errors()[0]["msg"]
