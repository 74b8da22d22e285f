"""Errors of the HTTP API: every one is a JSON body ``{"error": {"type", "message"}}`` with a 4xx/5xx status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = ["ApiError", "STATUS_TYPES", "error_response", "validation_details", "error_type", "note_error"]


class ApiError(Exception):
    """An error answered as ``{"error": {"type", "message"}}`` with ``status`` (and extra response ``headers``)."""

    def __init__(self, status: int, type: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = details
        self.headers = headers


STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


def error_response(status: int, type: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": type, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _loc(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_details(errors: Sequence[Mapping[str, Any]], prefix: Sequence[Any] = ()) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for err in errors:
        loc = [*prefix, *(p for p in err.get("loc", ()) if p != "body")]
        details.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    message = "; ".join(f"{_loc(d['loc'])}: {d['msg']}" for d in details[:5])
    if len(details) > 5:
        message += f"; and {len(details) - 5} more"
    return message or "invalid request", details


def error_type(status: int) -> str:
    """The error type of a status code that no handler named more precisely (``bad_request`` / ``internal_error`` for others)."""
    return STATUS_TYPES.get(status, "bad_request" if status < 500 else "internal_error")


def note_error(request: Request, kind: str) -> None:
    """Tell the metrics middleware which kind of error this response is."""
    request.state.spanqa_error_type = kind
