"""The console's Flask application: configuration and the safety rules every request passes.

- **Token.** When the console has a token (required on any non-loopback bind), every request
  must carry it: the ``vow_console_token`` cookie, the ``X-Vow-Token`` header, or ``?token=`` in
  the URL (answered with a redirect that sets the cookie and drops the token from the address).
  Compared in constant time (``hmac.compare_digest``). Without a token, only requests whose
  ``Host`` is a loopback name are served (a page on another site cannot reach the console through
  DNS rebinding).
- **CSRF.** State changes only by POST; each POST must carry the session's CSRF token (a random
  value kept in Flask's signed session cookie), compared in constant time. The session's signing
  key is random per process.
- **Escaping.** Jinja2 autoescapes every template; ids, tags and values are user data.
- **Errors.** Shown as a message page, never a traceback (the traceback goes to the log); a
  Redis outage is a banner on the page (``views.py``), which the live refresh replaces with the
  figures again once Redis answers.
- Responses carry a strict Content-Security-Policy (scripts and styles from the console only),
  ``Referrer-Policy: no-referrer`` (an address holding ``?token=`` never leaks) and no caching.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, current_app, redirect, render_template, request, session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from vow.coordinator import RedisStore, StoreConnectionError

from .command import is_loopback
from .throughput import Throughput

__all__ = [
    "CSRF_FIELD",
    "LIVE_HEADER",
    "TOKEN_COOKIE",
    "TOKEN_HEADER",
    "ConsoleState",
    "create_app",
    "csrf_token",
    "state",
]

TOKEN_COOKIE = "vow_console_token"
TOKEN_HEADER = "X-Vow-Token"
CSRF_FIELD = "csrf"
#: the header the page's script sends when it asks for the live part of a page only
LIVE_HEADER = "X-Vow-Live"
#: milliseconds between two refreshes of a page's figures
LIVE_INTERVAL_MS = 2000
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HERE = Path(__file__).resolve().parent

log = logging.getLogger("vow.console")


@dataclass
class ConsoleState:
    """What the views share: the store, the token (None: loopback only) and the sampler."""

    store: RedisStore
    token: str | None
    throughput: Throughput = field(default_factory=Throughput)
    live_interval_ms: int = LIVE_INTERVAL_MS


def state() -> ConsoleState:
    """The console's state, from the current application."""
    found: ConsoleState = current_app.extensions["vow_console"]
    return found


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def _same(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _host_name() -> str:
    host = request.host
    if host.startswith("["):
        return host[1: host.find("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_token(token: str) -> BaseResponse | None:
    """None when the request carries the token; else the response that refuses it."""
    query_token = request.args.get("token")
    if query_token is not None and _same(query_token, token):
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        target = request.path + ("?" + urlencode(args) if args else "")
        response = redirect(target, code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response
    bearer = request.headers.get("Authorization", "")
    for candidate in (request.headers.get(TOKEN_HEADER), request.cookies.get(TOKEN_COOKIE),
                      bearer[7:] if bearer.startswith("Bearer ") else None):
        if _same(candidate, token):
            return None
    message = ("This console needs its access token. Open the address that 'vow console' printed "
               "(it ends in ?token=...), or send the token in the X-Vow-Token header.")
    return _message_page(401, "Token required", message)


def _before_request() -> BaseResponse | None:
    console = state()
    if console.token is None:
        if not is_loopback(_host_name()):
            return _message_page(403, "Forbidden", "This console serves loopback addresses only "
                                 "(start it with --token to serve other hosts).")
    else:
        refused = _check_token(console.token)
        if refused is not None:
            return refused
    if request.method == "POST":
        expected = session.get(CSRF_FIELD)
        if not isinstance(expected, str) or not _same(request.form.get(CSRF_FIELD), expected):
            abort(403, "The form's security token is missing or wrong (it expires when the console restarts): "
                       "reload the page and send it again. Nothing was changed.")
    return None


def _after_request(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.vary.add(LIVE_HEADER)
    return response


def _message_page(code: int, title: str, message: str) -> Response:
    html = render_template("message.html", title=title, message=message, code=code)
    return Response(html, status=code, mimetype="text/html")


def _http_error(error: HTTPException) -> Response:
    return _message_page(error.code or 500, error.name, error.description or error.name)


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return _http_error(error)
    if isinstance(error, StoreConnectionError):
        return _message_page(503, "Redis unreachable", f"{error}. Reload once Redis is back.")
    log.exception("console: unexpected error on %s %s", request.method, request.path)
    return _message_page(500, "Unexpected error", f"Unexpected {type(error).__name__}: the console's log has the "
                         "details. Nothing more was changed by this request.")


def create_app(
    store: RedisStore,
    *,
    token: str | None = None,
    throughput: Throughput | None = None,
    live_interval_ms: int = LIVE_INTERVAL_MS,
) -> Flask:
    """The console as a WSGI application on ``store``; ``token`` None serves loopback only."""
    from .views import views

    app = Flask("vow.cli.console", root_path=str(_HERE), template_folder="templates", static_folder="static")
    app.secret_key = secrets.token_bytes(32)
    app.config.update(
        SESSION_COOKIE_NAME="vow_console_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=2 * store.max_data_bytes + 65_536,
        TRAP_HTTP_EXCEPTIONS=False,
        PROPAGATE_EXCEPTIONS=False,
    )
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.extensions["vow_console"] = ConsoleState(store, token, throughput or Throughput(), live_interval_ms)
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.jinja_env.globals.update(csrf_token=csrf_token, CSRF_FIELD=CSRF_FIELD, console_url=store.display_url)
    app.register_blueprint(views)
    return app


def page_context() -> dict[str, Any]:
    """Values every full page needs (navigation, the live region's refresh)."""
    return {"live_interval_ms": state().live_interval_ms}
