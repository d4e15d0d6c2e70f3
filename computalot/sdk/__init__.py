"""The Python SDK (docs/python-sdk.md): :class:`ComputalotClient`, :class:`AsyncComputalotClient`
and the typed errors of :mod:`computalot.sdk.errors`."""

from computalot.sdk.async_client import AsyncComputalotClient
from computalot.sdk.client import ComputalotClient

__all__ = ["AsyncComputalotClient", "ComputalotClient"]
