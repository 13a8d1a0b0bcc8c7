"""RFC 9457 problem+json: typed exceptions, rendered once for every failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from shared.i18n_problems import localize, preferred_language

PROBLEM_BASE = "https://batterytrace.kr/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("batterytrace.problems")


class Problem(Exception):
    """An error a client can act on. `code` is stable; `type` is derived from it."""

    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.errors = list(errors or [])
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class NotFound(Problem):
    status, code, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(Problem):
    status, code, title = 422, "validation-error", "Invalid request"


class Unauthorized(Problem):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Not allowed"


class Unavailable(Problem):
    status, code, title = 503, "unavailable", "Temporarily unavailable"

    def __init__(self, detail: str, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kw)


class EpcisException(Problem):
    """An exception of the EPCIS 2.0 REST binding: `type` is the standard's own (`epcisException:` and the name,
    e.g. `QueryParameterException`), the rest our problem members (`code`, `errors`)."""

    def __init__(self, exception: str, detail: str, *, status: int = 400, **kw: Any) -> None:
        kw.setdefault("code", "epcis-" + exception.removesuffix("Exception").lower())
        kw.setdefault("title", exception)
        super().__init__(detail, status=status, **kw)
        self.exception = exception

    def body(self, instance: str | None = None) -> dict[str, Any]:
        # No `instance`: the binding's schema takes an absolute URI there, and the request's path is not one.
        return {**super().body(None), "type": "epcisException:" + self.exception}


class EpcisFieldException(EpcisException):
    """An EPCIS exception about one field or parameter, named by its class (`QueryParameterException`, ...): the
    detail `<field>: <message>`, and that field's error under the class's `rule`."""

    rule: ClassVar[str]

    def __init__(self, field: str, message: str) -> None:
        super().__init__(type(self).__name__, f"{field}: {message}", errors=[field_error(field, self.rule, message)])


def field_error(field: str, rule: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "rule": rule, "message": message, **extra}


def validation_errors(exc_errors: Sequence[Any], *, prefix: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Turn pydantic errors into our {field, rule, message} items (dotted field paths)."""
    out = []
    for err in exc_errors:
        loc = [*prefix, *[p for p in err.get("loc", ()) if p not in ("body",)]]
        item = field_error(
            ".".join(str(p) for p in loc) or "body",
            str(err.get("type", "invalid")),
            str(err.get("msg", "invalid value")),
        )
        # In batch bodies ({"batteries": [...]}, {"events": [...]}) name the failing item's index.
        if len(loc) >= 2 and isinstance(loc[1], int) and isinstance(loc[0], str):
            item["index"] = loc[1]
        out.append(item)
    return out


def _language_headers(language: str) -> dict[str, str]:
    return {"Content-Language": language, "Vary": "Accept-Language"}


async def send_problem(send: Any, problem: Problem, scope: Mapping[str, Any] | None = None) -> None:
    """Answer with a problem straight from ASGI middleware (outside FastAPI's exception handlers); with the
    request's `scope`, in the language its Accept-Language prefers."""
    accept = None
    for name, value in (scope or {}).get("headers", ()):
        if name == b"accept-language":
            accept = value.decode("latin-1")
    language = preferred_language(accept)
    headers = [(b"content-type", MEDIA_TYPE.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers | _language_headers(language)).items()]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    body = localize(problem.body(), language)
    await send({"type": "http.response.body", "body": json.dumps(body, ensure_ascii=False).encode()})


def problem_response(problem: Problem, request: HTTPConnection | None = None) -> JSONResponse:
    """The problem as problem+json: title and detail in the language the request's Accept-Language prefers
    (Korean or English, `shared.i18n_problems`); the `code` is the same in both."""
    language = preferred_language(request.headers.get("accept-language") if request else None)
    return JSONResponse(
        localize(problem.body(str(request.url.path) if request else None), language),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers | _language_headers(language),
    )


_STATUS_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
}


def is_unavailable(exc: BaseException) -> bool:
    """Whether an error means a backing service (PostgreSQL, Kafka, a peer) is down or restarting, so
    the client should retry (503 + Retry-After), as opposed to a bug (500)."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    transient = (
        OSError,
        ConnectionError,
        TimeoutError,
        PoolTimeout,
        InterfaceError,
        OperationalError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.ProtocolError,  # the connection lost its place in the protocol: a new one works
        # So did one that was handed out between the server's "terminating connection" (FATAL 57P01/57P03, which
        # asyncpg reads on an idle connection as an out-of-step message) and the socket's close: "cannot switch
        # to state N; another operation (2) is in progress". tests/test_faults.py reproduces it with a proxy.
        asyncpg.exceptions.InternalClientError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.TooManyConnectionsError,
    )
    for current in _causes(exc):
        if isinstance(current, transient):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        # By SQLSTATE too, whatever wrapper carries it: 08 connection exception, 53 insufficient
        # resources, 57 operator intervention ("the database system is shutting down" is 57P03).
        if _sqlstate(current)[:2] in ("08", "53", "57"):
            return True
    return False


def _causes(exc: BaseException, *, context: bool = True) -> Iterator[BaseException]:
    """An exception, then what it wraps: a driver error's `orig` (SQLAlchemy), else its cause, else (with
    `context`) the exception it was raised while handling. Stops at a cycle."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else current.__cause__ or (current.__context__ if context else None)
        )


def _sqlstate(exc: BaseException) -> str:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) else ""


def _chain(exc: BaseException) -> str:
    """The classes of an exception and what it wraps, for the log line of an unexpected error."""
    return " <- ".join(f"{type(e).__module__}.{type(e).__qualname__}" for e in _causes(exc))


def is_bad_value(exc: BaseException) -> bool:
    """Whether the database refused a value from the request that validation let through: SQLSTATE class 22
    ("data exception": a NUL character, a number out of range) or asyncpg's own argument check. The client's
    input is at fault (422), not the server, and retrying cannot help (so not 503 either)."""
    import asyncpg

    # asyncpg's _base.DataError is its own check of an argument (e.g. an integer beyond 64 bits).
    return any(
        isinstance(e, asyncpg.exceptions._base.DataError) or _sqlstate(e).startswith("22")
        for e in _causes(exc, context=False)
    )


def install_problem_handlers(app: FastAPI) -> None:
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(exc.errors())
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem_response(Unprocessable(f"{first['field']}: {first['message']}", errors=errors), request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "error")
        return problem_response(
            Problem(
                str(exc.detail),
                status=exc.status_code,
                code=code,
                title=code.replace("-", " ").capitalize(),
                headers=getattr(exc, "headers", None),
            ),
            request,
        )

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        # Bad values are checked before is_unavailable (asyncpg's argument DataError is an InterfaceError).
        # A database that is away is answered here too, not left to on_unexpected: an exception that reaches
        # the outermost handler is re-raised to the server after the answer, and uvicorn then logs it as an
        # ASGI error and closes the keep-alive connection (the client's next request on it fails). Anything
        # else goes on to on_unexpected.
        if is_bad_value(exc):
            log.warning("value refused by the database: %r", exc)
            detail = "A value in the request cannot be stored (e.g. a NUL character or a number out of range)."
            return problem_response(Unprocessable(detail, code="invalid-value"), request)
        if is_unavailable(exc):
            log.warning("dependency unavailable: %r", exc)
            return problem_response(Unavailable("A backing service is unavailable; retry shortly."), request)
        raise exc

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            log.warning("dependency unavailable: %r", exc)
            return problem_response(Unavailable("A backing service is unavailable; retry shortly."), request)
        log.exception("unhandled error (%s)", _chain(exc))
        return problem_response(
            Problem("An internal error occurred.", status=500, code="internal-error", title="Internal error"),
            request,
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(asyncpg.PostgresError, on_database_error)
    app.add_exception_handler(asyncpg.exceptions._base.DataError, on_database_error)
    app.add_exception_handler(asyncpg.InterfaceError, on_database_error)
    app.add_exception_handler(asyncpg.exceptions.InternalClientError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "description": desc,
        "content": {
            MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "code": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
    for code, desc in {
        400: "Malformed request: a body that cannot be decoded",
        401: "Missing or invalid bearer token",
        403: "The caller's role may not do this",
        404: "Not found",
        409: "Conflict with the current state",
        422: "Invalid input: `errors` names each field and rule",
    }.items()
}
