"""Computalot: submit jobs over REST, get structured JSON results, on Ray.

The public Python surface is the SDK client; the platform itself runs with ``computalot up``.
"""

from computalot.client import AsyncComputalotClient, ComputalotClient

__all__ = ["AsyncComputalotClient", "ComputalotClient"]
__version__ = "0.2.0"
