"""Errors in OpenAI's shape, and the request-body size limit.

OpenAI answers every error with ``{"error": {"message", "type", "param", "code"}}`` and a 4xx/5xx
status; the official client turns those into ``BadRequestError``, ``NotFoundError``, ... with
``.code`` and ``.param`` set. Validation errors (pydantic's list of complaints) become one 400
naming the first bad parameter, as OpenAI's do.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class APIError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def validation_error(exc: RequestValidationError) -> APIError:
    """pydantic's first complaint -> one OpenAI-style 400 naming the parameter."""
    errors = exc.errors()
    # A union (prompt: str | list[int] | ...) gives one error per branch; a branch whose type fit
    # but whose value did not ("too short") says more than "not a string".
    same_field = [e for e in errors if tuple(e.get("loc", ()))[:2] == tuple(errors[0].get("loc", ()))[:2]]
    err = next((e for e in same_field if not e.get("type", "").endswith(("_type", "_parsing"))), errors[0])
    kind = err.get("type", "")
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    # drop union-branch tags ("str", "list[int]") that pydantic puts in the location
    param = ".".join(p for p in loc if not any(c in p for c in "[]") and p not in ("str", "int", "float", "bool"))
    if kind == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: "
                        f"{err.get('ctx', {}).get('error', 'invalid JSON')}. Send a valid JSON object.",
                        code="invalid_json")
    if not param:
        return APIError(400, "The request body must be a JSON object with the parameters of this endpoint "
                        f"({err.get('msg', 'invalid body')}).", code="invalid_body")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: '{param}'.", param=param,
                        code="unknown_parameter")
    got = err.get("input")
    got = type(got).__name__ if not isinstance(got, (int, float, str, bool)) or len(str(got)) > 40 else repr(got)
    code = "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    return APIError(400, f"Invalid value for '{param}': {err.get('msg', 'invalid')} (got {got}).", param=param,
                    code=code)


class BodySizeLimit:
    """ASGI middleware: refuse a request body above ``max_bytes`` with 413, whether it announces its
    size (Content-Length) or streams it (chunked). The body is read here, bounded, then replayed to
    the app; later ``receive`` calls (disconnect notices) pass straight through."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        error = APIError(413, f"The request body is larger than this server's limit of {self.max_bytes} bytes; "
                         "send a shorter prompt or fewer inputs.", code="request_too_large")
        await error.response()(scope, receive, send)
