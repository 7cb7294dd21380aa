"""What every response and log line of the service carries or leaves out (issue 18):
security headers on every response (``SecurityHeaders``) and API keys redacted from the
access log (``RedactKeys``); see SECURITY.md.

Headers: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and CSP
``frame-ancestors 'none'`` (no page of the service inside another site's frame),
``Referrer-Policy: no-referrer`` (a link followed from the map page never sends its
address), and a ``Content-Security-Policy`` for HTML pages: scripts, styles and
connections from the service itself only (the map's inline data and styles allowed),
images also from any http(s) tile server (the office's own ``basemap``). ``/docs`` (the
Swagger page, whose scripts FastAPI loads from its CDN) gets the frame and referrer
headers only.

The access log: uvicorn logs each request line; a ``key=`` query parameter (``/map?key=…``,
the one place a browser can carry a key) is written as ``key=***``.
"""

from __future__ import annotations

import logging
import re

#: The policy of the HTML pages (the map, the OGC HTML views).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: http: https:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'")

_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"))
#: Paths whose pages load scripts from elsewhere (FastAPI's Swagger UI).
_NO_CSP = ("/docs",)


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response (headers a
    route set itself are kept)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = not scope.get("path", "").startswith(_NO_CSP)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _ALWAYS if k not in present]
                html = any(n.lower() == b"content-type" and v.startswith(b"text/html")
                           for n, v in headers)
                if csp and html and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy",
                                    CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_KEY_PARAM = re.compile(r"((?:^|[?&])(?:key|api_key|apikey|token)=)[^&\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the value of every key-like query parameter replaced by ``***``.

    >>> redact("/map?key=gg_abc.def&basemap=x")
    '/map?key=***&basemap=x'
    """
    return _KEY_PARAM.sub(r"\1***", text)


class RedactKeys(logging.Filter):
    """A logging filter for ``uvicorn.access``: the request path's key parameters are
    redacted (uvicorn passes the path as an argument of the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(app) -> None:
    """Add the headers to every response of ``app`` and redact keys from the access log
    (the filter goes on uvicorn's access logger, once per process)."""
    app.add_middleware(SecurityHeaders)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in access.filters):
        access.addFilter(RedactKeys())
