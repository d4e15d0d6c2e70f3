"""Every non-2xx answer in the one error envelope (``computalot.errors.envelope``), FastAPI's own
404/405/422 included."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from computalot.errors import ComputalotError, envelope

log = logging.getLogger("computalot.api")


class EnvelopeHTTPException(StarletteHTTPException):
    """Carries a :class:`ComputalotError` through code that only lets ``HTTPException`` pass
    (FastAPI turns any other exception raised while reading a body into a bare 400)."""

    def __init__(self, error: ComputalotError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


def error_response(exc: ComputalotError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers or None)


def _loc(loc: tuple[Any, ...] | list[Any]) -> list[Any]:
    """Drop FastAPI's 'body' prefix so the failing field reads like the JSON the user sent."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    return parts


def validation_details(errors: list[Any]) -> tuple[str, list[dict[str, Any]], int]:
    details = []
    status = 422
    for err in errors:
        if err.get("type") == "json_invalid":
            status = 400
        loc = _loc(err.get("loc", ()))
        details.append({"loc": loc, "msg": str(err.get("msg", "invalid")), "type": err.get("type")})
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    field = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{field}: {first['msg']}", details, status


def _json_problem(errors: Any) -> str:
    """'request body is not valid JSON: <what the parser said> (at character N)'."""
    for err in errors:
        if err.get("type") == "json_invalid":
            what = (err.get("ctx") or {}).get("error")
            loc = list(err.get("loc", ()))
            where = f" (at character {loc[-1]})" if loc and isinstance(loc[-1], int) else ""
            if what:
                return f"request body is not valid JSON: {what}{where}"
    return "request body is not valid JSON"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ComputalotError)
    async def _computalot(req: Request, exc: ComputalotError) -> JSONResponse:
        response = error_response(exc)
        # A paid resend (serve_app.routes.quotes.paid_first) that still fails keeps its receipt.
        settlement = getattr(req.state, "payment_response", None)
        if settlement:
            response.headers["PAYMENT-RESPONSE"] = settlement
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(req: Request, exc: RequestValidationError) -> JSONResponse:
        message, details, status = validation_details(list(exc.errors()))
        content_type = req.headers.get("content-type", "")
        body_not_json = any(d["loc"] == [] for d in details) and "json" not in content_type
        if body_not_json and req.method in ("POST", "PUT", "PATCH"):
            return JSONResponse(
                envelope(
                    415,
                    f"expected a JSON body, got Content-Type {content_type or 'none'!r}",
                    details=[{"loc": ["body"], "msg": "send JSON"}],
                ),
                status_code=415,
            )
        if status == 400:
            body = envelope(400, _json_problem(exc.errors()), details=details)
        else:
            body = envelope(422, message, details=details)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, EnvelopeHTTPException):
            return error_response(exc.error)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such route"
        return JSONResponse(
            envelope(exc.status_code, detail),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
