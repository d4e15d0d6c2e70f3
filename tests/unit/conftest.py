import os

import pytest


@pytest.fixture(autouse=True)
def _no_platform_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see default settings, even after the integration session exported its own."""
    for name in list(os.environ):
        if name.startswith("COMPUTALOT_"):
            monkeypatch.delenv(name)
