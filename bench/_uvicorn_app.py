"""``uvicorn --factory`` entry for bench/api_throughput.py: the API app without Ray Serve.

Settings come from the same ``COMPUTALOT_*`` variables as the platform's replicas, so both
servers answer from the same data dir and store.
"""

from __future__ import annotations

from fastapi import FastAPI

from computalot.settings import load_settings
from serve_app.app import create_app


def make() -> FastAPI:
    return create_app(load_settings())
