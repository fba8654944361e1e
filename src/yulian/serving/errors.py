"""Errors in the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`, with the status codes the
official `openai` client maps to its exceptions (400 BadRequest, 401 Authentication, 403 PermissionDenied,
404 NotFound, 413, 422 UnprocessableEntity, 429 RateLimit with `retry-after`, 5xx InternalServer, retried).

No stack trace ever reaches a response: unexpected errors answer 500 with the request id, and the traceback goes
to the server's log (messages masked, see `yulian.serving.audit.mask`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["APIError", "error_body"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """An error answered to the client: status code, message and the envelope's type, param and code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The JSON envelope."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as JSON bytes."""
    envelope = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return json.dumps(envelope, ensure_ascii=False).encode()
