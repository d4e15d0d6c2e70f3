"""The client's own address, as seen behind the platform's ingress (docs/operating.md,
"Stopping and restarting": per-client rate limits).

Behind Ray Serve's HAProxy ingress a replica's TCP peer is HAProxy, the same address for every
client. The ingress (:mod:`computalot.ingress`) sets ``X-Forwarded-For`` to the client's
address, replacing whatever the client sent, and adds ``X-Computalot-Ingress`` with the
platform's ingress token (``COMPUTALOT_INGRESS_TOKEN`` in every platform process's environment,
never in a task's). The forwarded address is believed only next to that token: a client that
reaches a replica directly (its port, or the app under plain uvicorn) is known by its own TCP
peer address, whatever ``X-Forwarded-For`` it sends.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from starlette.requests import Request

from computalot.ingress import INGRESS_HEADER, INGRESS_TOKEN_ENV

UNKNOWN = "unknown"


def ingress_token_from_env() -> str | None:
    return os.environ.get(INGRESS_TOKEN_ENV) or None


def _address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_address(request: Request, ingress_token: str | None) -> str:
    """The address to account a public request to: the forwarded one from our own ingress,
    else the TCP peer's."""
    peer = request.client.host if request.client is not None else UNKNOWN
    if not ingress_token:
        return peer
    sent = request.headers.get(INGRESS_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), ingress_token.encode()):
        return peer
    forwarded = request.headers.getlist("x-forwarded-for")
    if len(forwarded) != 1:  # the ingress sets exactly one
        return peer
    return _address(forwarded[0]) or peer
