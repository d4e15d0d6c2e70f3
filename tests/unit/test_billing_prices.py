"""Prices and the hold arithmetic (docs/llms-full.md, "Billing"; docs/operating.md, "Prices")."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from computalot.billing.holds import usage_usd, worst_case_usd
from computalot.billing.prices import price_table
from computalot.jobs.resources import presets_out, resolve_requirements
from computalot.schemas.jobs import Requirements
from computalot.settings import ConfigError, load_settings


def price_of(settings_prices: str | None, **requirements: object) -> Decimal:
    settings = load_settings(prices=settings_prices) if settings_prices else None
    req = Requirements.model_validate(requirements) if requirements else None
    return price_table(settings).usd_per_hour(resolve_requirements(req))


def test_the_cheapest_covering_preset_prices_a_job() -> None:
    assert price_of(None) == Decimal("0.05")  # no requirements: cpu-small
    assert price_of(None, cpu=2.0) == Decimal("0.10")  # cpu-medium
    assert price_of(None, cpu=3.0) == Decimal("0.40")  # cpu-large covers 3 cores
    assert price_of(None, memory_mb=20000) == Decimal("0.60")  # memory-large
    assert price_of(None, gpu_count=1.0) == Decimal("1.20")  # gpu-small
    assert price_of(None, profile="gpu-large") == Decimal("3.00")


def test_a_request_no_preset_covers_is_priced_per_resource() -> None:
    # 16 cores, 32 GiB, 2 GPUs: 16 × 0.05 + 32 × 0.005 + 2 × 1.00
    price = price_of(None, cpu=16.0, memory_mb=32 * 1024, gpu_count=2.0)
    assert price == Decimal("0.80") + Decimal("0.160") + Decimal("2.00")
    # storage_gb is not in any preset: per resource (storage itself is not priced)
    assert price_of(None, storage_gb=1.0) == Decimal("0.05")


def test_operator_prices_from_json_text_and_toml_file(tmp_path: Path) -> None:
    text = '{"presets": {"cpu-small": 0.02}, "resources": {"cpu_hour": 0.5}}'
    assert price_of(text) == Decimal("0.02")
    assert price_of(text, cpu=16.0) == Decimal("8.0")
    toml = tmp_path / "prices.toml"
    toml.write_text('[presets]\n"cpu-medium" = 0.01\n[resources]\ngpu_hour = 9\n')
    assert price_of(str(toml), cpu=2.0) == Decimal("0.01")
    assert price_of(str(toml), cpu=2.0, gpu_count=3.0) == Decimal("27") + Decimal("0.10")
    shown = {
        p["name"]: p["usd_per_hour"]
        for p in presets_out(price_table(load_settings(prices=str(toml))).presets_usd())["presets"]
    }
    assert shown["cpu-medium"] == 0.01 and shown["cpu-small"] == 0.05


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        '{"presets": {"cpu-small": -1}}',
        '{"presets": {"cpu-small": "cheap"}}',
        '{"resources": {"tpu_hour": 1}}',
        '{"discounts": {}}',
        "/no/such/prices.json",
    ],
)
def test_a_bad_price_table_stops_start_up_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="COMPUTALOT_PRICES"):
        load_settings(prices=bad)


def test_an_unknown_preset_name_is_refused() -> None:
    settings = load_settings(prices='{"presets": {"cpu-huge": 1}}')
    with pytest.raises(ValueError, match="cpu-huge"):
        price_table(settings)


def test_hold_and_usage_arithmetic() -> None:
    # 10 tasks × 60 s at $0.05/h = $0.008333… → held rounded up to the micro-dollar
    assert worst_case_usd(10, 60, Decimal("0.05")) == Decimal("0.008334")
    assert worst_case_usd(0, 60, Decimal("0.05")) == Decimal(0)
    assert usage_usd(36.0, Decimal("0.05")) == Decimal("0.000500")
    assert usage_usd(0.00001, Decimal("0.05")) == Decimal(0)
    assert usage_usd(-1.0, Decimal("0.05")) == Decimal(0)
