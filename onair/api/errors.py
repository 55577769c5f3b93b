"""Error bodies in the platform's shapes, so SDK users see familiar errors."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

NOT_FOUND_TEXT = "Not Found. Entity you are looking for was not found, please check the initial parameters"


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers


def not_found() -> ApiError:
    return ApiError(404, {"status": 404, "error": NOT_FOUND_TEXT})


def field_error(field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, {"errors": {field: [message]}})


def _field_name(loc: tuple[Any, ...]) -> str:
    # loc looks like ("body", "stream", "dvr_duration") or ("path", "stream_id") or ("query", "page")
    # the innermost named key wins: ("body", "stream") names the envelope itself when it is malformed
    parts = [str(p) for p in loc if p not in ("body", "path", "query", "header")]
    names = [p for p in parts if not p.isdigit()]
    return names[-1] if names else "body"


def validation_body(errors: list[Any]) -> dict[str, Any]:
    out: dict[str, list[str]] = {}
    for err in errors:
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "is invalid"))
        if msg.startswith("Value error, "):  # pydantic's prefix for ValueError raised in validators
            msg = msg[len("Value error, "):]
        if err.get("type") == "json_invalid":
            out.setdefault("body", []).append("malformed JSON: " + msg)
            continue
        if err.get("type") == "missing" and len(loc) == 1 and loc[0] == "body":
            out.setdefault("body", []).append("a JSON body is required")
            continue
        if err.get("type") == "missing":
            msg = "can't be blank"  # the platform's wording for a required key
        out.setdefault(_field_name(loc), []).append(msg)
    return {"errors": out}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if request.url.path.startswith("/streaming/statistics/"):
            # statistics report bad query parameters as 400 {"data": [], "errors": ["..."]}
            texts = [f"{_field_name(tuple(e.get('loc', ())))}: {e.get('msg', 'is invalid')}" for e in errors]
            return JSONResponse({"data": [], "errors": texts}, status_code=400)
        malformed = any(e.get("type") == "json_invalid" for e in errors)
        body = validation_body(errors)
        # malformed JSON is a bad request; well-formed but invalid fields are 422 as the spec shows
        return JSONResponse(json.loads(json.dumps(body, default=str)), status_code=400 if malformed else 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return JSONResponse({"status": 404, "error": NOT_FOUND_TEXT}, status_code=404)
        return JSONResponse({"status": exc.status_code, "error": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))
