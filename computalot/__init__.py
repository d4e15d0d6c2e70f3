"""Computalot: submit jobs over REST, get structured JSON results, on Ray.

The public Python surface is the SDK client; the platform itself runs with ``computalot up``.
The client is imported on first use, so platform processes (Ray workers above all) that import
``computalot.engine`` do not pay for the SDK's HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from computalot.callbacks.verify import verify_callback_signature
    from computalot.sdk.client import AsyncComputalotClient, ComputalotClient

__all__ = ["AsyncComputalotClient", "ComputalotClient", "verify_callback_signature"]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name == "verify_callback_signature":  # for receivers: the standard library only
        from computalot.callbacks import verify

        return verify.verify_callback_signature
    if name in __all__:
        from computalot.sdk import client

        return getattr(client, name)
    raise AttributeError(f"module 'computalot' has no attribute {name!r}")
