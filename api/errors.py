"""Named errors of the HTTP service and the status code of each (tipg's habit).

Every error a handler raises on purpose is an ``ApiError`` subclass; one exception
handler turns it into ``{"code": …, "description": …}`` with its status, as OGC API
servers answer. The product's own errors (``gis_grid.errors``) are mapped here too:
an ``InputError`` is 422 with every problem and its row, a missing layer 404.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gis_grid.errors import InputError, LayerNotFound, StoreError, summarize

log = logging.getLogger("gisgrid.api")


class ApiError(Exception):
    """Base of the service's named errors; ``status`` is the HTTP status code."""

    status = 500
    code = "ServerError"

    def __init__(self, description: str, *, extra: dict | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.extra = extra or {}
        self.headers = headers

    def body(self) -> dict:
        return {"code": self.code, "description": self.description, **self.extra}


class InvalidParameter(ApiError):
    """A query parameter is malformed or out of range (OGC: 400)."""

    status, code = 400, "InvalidParameterValue"


class InvalidBBox(InvalidParameter):
    code = "InvalidBBox"


class InvalidLimit(InvalidParameter):
    code = "InvalidLimit"


class InvalidCRS(InvalidParameter):
    code = "InvalidCRS"


class InvalidProperty(InvalidParameter):
    code = "InvalidProperty"


class NotAuthenticated(ApiError):
    status, code = 401, "NotAuthenticated"

    #: The challenges a 401 offers, one ``WWW-Authenticate`` header each: Bearer, and
    #: Basic so that browsers and QGIS ask for the key (as the password).
    CHALLENGES = ('Bearer realm="gisgrid"', 'Basic realm="gisgrid", charset="UTF-8"')

    def __init__(self, description: str) -> None:
        super().__init__(description)


class Forbidden(ApiError):
    """The caller is known but its role or institution does not allow this."""

    status, code = 403, "Forbidden"


class NotFound(ApiError):
    """No such collection, feature, job — or one the caller may not know exists."""

    status, code = 404, "NotFound"


class NotAcceptable(ApiError):
    status, code = 406, "NotAcceptable"


class Conflict(ApiError):
    status, code = 409, "Conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "PayloadTooLarge"


class TooManyRequests(ApiError):
    status, code = 429, "TooManyRequests"


class Unprocessable(ApiError):
    """The request was understood but its content failed the checks."""

    status, code = 422, "InvalidInput"


class NotImplementedHere(ApiError):
    status, code = 501, "NotImplemented"


class ServiceUnavailable(ApiError):
    status, code = 503, "ServiceUnavailable"


#: A URL with a scheme (a database URL, with or without its password).
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"]*")
#: An absolute server path (temp copies, the store's folder, the code).
_PATH = re.compile(r"(?<![\w.:/])(?:/(?:tmp|var|home|work|usr|opt|srv|root|private|data|mnt|run|"
                   r"etc|proc)\b|[A-Za-z]:\\)[^\s'\",;:)]*")
#: The lines a PostgreSQL error adds after its message: the statement and where it failed.
_SQL_LINE = re.compile(r"^\s*(LINE \d+:|CONTEXT:|QUERY:|STATEMENT:|DETAIL:.*\bSQL\b|\^)")
#: Statements quoted in a message (``COPY "outlets" (...) FROM STDIN``, ``SELECT …``).
_SQL = re.compile(r"\b(SELECT|COPY|INSERT INTO|UPDATE|DELETE FROM|CREATE|ALTER|DROP)\b.*",
                  re.DOTALL)


def public_message(text: str) -> str:
    """``text`` without internals, for an answer: no URLs (the database's), no server
    paths (a temp copy becomes its file name), no SQL statements or the lines PostgreSQL
    adds about them (issue 18, L3). The full text goes to the server log only."""
    lines = [line for line in str(text).splitlines() if not _SQL_LINE.match(line)]
    out = " ".join(line.strip() for line in lines if line.strip())
    out = _URL.sub(lambda m: "the store" + (":" if m.group(0).endswith(":") else ""), out)
    out = _PATH.sub(lambda m: "'" + m.group(0).rstrip("/\\").replace("\\", "/")
                    .rsplit("/", 1)[-1] + "'", out)
    out = _SQL.sub("(statement withheld)", out)
    return out.replace("''", "'")[:2000] or "the store could not answer"


#: Problems listed in a 422 answer; the summary by field and kind counts them all.
MAX_PROBLEMS = 1000


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that map errors to responses."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        body = exc.body()
        if exc.status >= 500:  # a server-side failure's text may carry the database's
            log.error("%s on %s: %s", exc.code, request.url.path, exc.description)
            body["description"] = public_message(exc.description)
        response = _json(exc.status, body, exc.headers)
        if isinstance(exc, NotAuthenticated):
            # A caller that sent its key in X-API-Key or as a Bearer token (a script, the
            # phone page's fetch) is offered Bearer only: a Basic challenge would make a
            # browser stop the page's request to ask for a password.
            sent = request.headers.get("x-api-key") or request.headers.get(
                "authorization", "").lower().startswith("bearer")
            for challenge in NotAuthenticated.CHALLENGES[:1] if sent else \
                    NotAuthenticated.CHALLENGES:
                response.headers.append("WWW-Authenticate", challenge)
        return response

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        # The list is capped (a file of 10^6 bad rows made a 329 MB answer): the counts by
        # field and kind come first, whole, then the first MAX_PROBLEMS rows.
        problems = [p.as_dict() for p in exc.problems[:MAX_PROBLEMS]]
        summary = [{"field": f, "kind": k, "count": n} for f, k, n in summarize(exc.problems)]
        return _json(422, {"code": "InvalidInput", "description": exc.report(limit=20),
                           "total": len(exc.problems), "summary": summary[:MAX_PROBLEMS],
                           "problems": problems,
                           "truncated": len(exc.problems) > MAX_PROBLEMS})

    @app.exception_handler(LayerNotFound)
    async def _layer_not_found(request: Request, exc: LayerNotFound) -> JSONResponse:
        return _json(404, {"code": "NotFound", "description": f"no layer {exc.layer!r}"})

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error on %s: %s", request.url.path, exc)
        return _json(503, {"code": "StoreError", "description": public_message(str(exc))})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # Query and path parameters are OGC parameters: malformed is 400. A JSON body
        # that fails its model is unprocessable content: 422.
        in_body = any(e.get("loc", ("",))[0] == "body" for e in errors)
        text = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                         for e in errors)
        code = "InvalidInput" if in_body else "InvalidParameterValue"
        return _json(422 if in_body else 400, {"code": code, "description": text})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        return _json(exc.status_code, {"code": names.get(exc.status_code, "HTTPError"),
                                       "description": str(exc.detail)},
                     getattr(exc, "headers", None))
